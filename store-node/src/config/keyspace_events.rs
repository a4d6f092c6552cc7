//! `notify-keyspace-events`: Redis's class letters, parsed and written back exactly as Redis 7
//! does (`CONFIG GET` shows the canonical form, not what was set), for the flag, the env and
//! `CONFIG SET`.

/// The classes of keyspace events a node publishes, as Redis's bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyspaceEvents(pub u32);

impl KeyspaceEvents {
    /// `K`: publish on `__keyspace@0__:<key>`.
    pub const KEYSPACE: u32 = 1 << 0;
    /// `E`: publish on `__keyevent@0__:<event>`.
    pub const KEYEVENT: u32 = 1 << 1;
    /// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
    pub const GENERIC: u32 = 1 << 2;
    /// `$`: string commands.
    pub const STRING: u32 = 1 << 3;
    /// `l`: list commands.
    pub const LIST: u32 = 1 << 4;
    /// `s`: set commands.
    pub const SET: u32 = 1 << 5;
    /// `h`: hash commands.
    pub const HASH: u32 = 1 << 6;
    /// `z`: sorted set commands.
    pub const ZSET: u32 = 1 << 7;
    /// `x`: a key expired.
    pub const EXPIRED: u32 = 1 << 8;
    /// `e`: a key was evicted for memory.
    pub const EVICTED: u32 = 1 << 9;
    /// `t`: stream commands (accepted; store-node has no streams).
    pub const STREAM: u32 = 1 << 10;
    /// `m`: key misses (accepted; not published, as Redis leaves it out of `A`).
    pub const KEY_MISS: u32 = 1 << 11;
    /// `d`: module events (accepted; store-node has no modules).
    pub const MODULE: u32 = 1 << 13;
    /// `n`: a key was created.
    pub const NEW: u32 = 1 << 14;
    /// `A`: every class but `m` and `n`, as Redis's alias.
    pub const ALL: u32 = Self::GENERIC
        | Self::STRING
        | Self::LIST
        | Self::SET
        | Self::HASH
        | Self::ZSET
        | Self::EXPIRED
        | Self::EVICTED
        | Self::STREAM
        | Self::MODULE;

    /// Nothing published (Redis's default).
    pub const NONE: KeyspaceEvents = KeyspaceEvents(0);

    /// Parses Redis's letters (`Ag$lshzxeKEtmdn`, case-sensitive, in any order, repeats
    /// allowed); the error is Redis's CONFIG SET reason.
    pub fn parse(text: &str) -> Result<KeyspaceEvents, String> {
        let mut flags = 0;
        for letter in text.chars() {
            flags |= match letter {
                'A' => Self::ALL,
                'g' => Self::GENERIC,
                '$' => Self::STRING,
                'l' => Self::LIST,
                's' => Self::SET,
                'h' => Self::HASH,
                'z' => Self::ZSET,
                'x' => Self::EXPIRED,
                'e' => Self::EVICTED,
                'K' => Self::KEYSPACE,
                'E' => Self::KEYEVENT,
                't' => Self::STREAM,
                'm' => Self::KEY_MISS,
                'd' => Self::MODULE,
                'n' => Self::NEW,
                _ => {
                    return Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string())
                }
            };
        }
        Ok(KeyspaceEvents(flags))
    }

    /// Whether events of `class` are published: the class is on, and so is `K` or `E`.
    pub fn publishes(self, class: u32) -> bool {
        self.0 & class != 0 && self.0 & (Self::KEYSPACE | Self::KEYEVENT) != 0
    }
}

impl std::fmt::Display for KeyspaceEvents {
    /// Redis 7's canonical form: `A` for all classes, else the class letters in Redis's order
    /// (`n` among them, and so not shown beside `A`, as Redis 7.0 writes it), then `K`, `E`,
    /// `m`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flags = self.0;
        let mut out = String::new();
        if flags & Self::ALL == Self::ALL {
            out.push('A');
        } else {
            for (class, letter) in [
                (Self::GENERIC, 'g'),
                (Self::STRING, '$'),
                (Self::LIST, 'l'),
                (Self::SET, 's'),
                (Self::HASH, 'h'),
                (Self::ZSET, 'z'),
                (Self::EXPIRED, 'x'),
                (Self::EVICTED, 'e'),
                (Self::STREAM, 't'),
                (Self::MODULE, 'd'),
                (Self::NEW, 'n'),
            ] {
                if flags & class != 0 {
                    out.push(letter);
                }
            }
        }
        for (class, letter) in [
            (Self::KEYSPACE, 'K'),
            (Self::KEYEVENT, 'E'),
            (Self::KEY_MISS, 'm'),
        ] {
            if flags & class != 0 {
                out.push(letter);
            }
        }
        formatter.write_str(&out)
    }
}

/// The clap parser of `--notify-keyspace-events`.
pub fn parse_keyspace_events(text: &str) -> Result<KeyspaceEvents, String> {
    KeyspaceEvents::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair was read back from Redis 7.0.15 (`CONFIG SET`, then `CONFIG GET`).
    #[test]
    fn canonical_forms_are_redis_7s() {
        for (set, shown) in [
            ("AKEn", "AKE"),
            ("Egx", "gxE"),
            ("KEA", "AKE"),
            ("g$lshzxetdnKEm", "AKEm"),
            ("KEAm", "AKEm"),
            ("n", "n"),
            ("Ax", "A"),
            ("d", "d"),
            ("t", "t"),
            ("", ""),
            ("gK", "gK"),
            ("Kgg$", "g$K"),
            ("Eh", "hE"),
        ] {
            let parsed = KeyspaceEvents::parse(set);
            assert_eq!(
                parsed.map(|flags| flags.to_string()),
                Ok(shown.to_string()),
                "{set}"
            );
        }
    }

    #[test]
    fn an_unknown_letter_is_refused_with_redis_reason() {
        for bad in ["Kq", "EgX", "a", " E"] {
            assert_eq!(
                KeyspaceEvents::parse(bad),
                Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string())
            );
        }
    }

    #[test]
    fn a_class_is_published_only_with_k_or_e() {
        let parse = |text| KeyspaceEvents::parse(text).unwrap_or_default();
        assert!(parse("Egx").publishes(KeyspaceEvents::EXPIRED));
        assert!(parse("Egx").publishes(KeyspaceEvents::GENERIC));
        assert!(!parse("Egx").publishes(KeyspaceEvents::STRING));
        assert!(!parse("gx").publishes(KeyspaceEvents::GENERIC));
        assert!(!parse("AK").publishes(KeyspaceEvents::NEW));
        assert!(parse("AKn").publishes(KeyspaceEvents::NEW));
        assert!(!parse("").publishes(KeyspaceEvents::ALL));
    }
}
