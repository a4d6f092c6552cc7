//! The shebang line a Redis 7 script may start with: `#!lua [flags=<flag>,...]`. A script
//! without one runs in Redis's compatibility mode (every write is checked as it runs); one
//! with it declares up front whether it writes (`no-writes` makes it read-only, and a script
//! that may write is refused at once by `EVAL_RO`, while the log cannot be written, or, without
//! `allow-oom`, while memory is full). The line is left out of the compiled body but its line
//! feed is kept, so line numbers stay the user's. `allow-stale`, `no-cluster` and
//! `allow-cross-slot-keys` are accepted and change nothing: a node is never a stale replica
//! nor part of a Redis Cluster.

/// What a script declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScriptFlags {
    /// It has a shebang line (not Redis's compatibility mode).
    pub declared: bool,
    /// `no-writes`: write commands are refused.
    pub no_writes: bool,
    /// `allow-oom`: it runs, and writes, even when memory is full.
    pub allow_oom: bool,
}

/// Flags Redis knows (`scripts_flags_def`).
const KNOWN: &[&str] = &[
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// The flags of `body` and the length of its shebang line (0 without one), or Redis's error
/// text for a malformed line.
pub fn parse(body: &[u8]) -> Result<(ScriptFlags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((ScriptFlags::default(), 0));
    }
    let Some(end) = body.iter().position(|&byte| byte == b'\n') else {
        return Err("ERR Invalid script shebang".to_string());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("ERR Invalid engine in script shebang".to_string());
    };
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = ScriptFlags {
        declared: true,
        ..ScriptFlags::default()
    };
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        if list.is_empty() {
            continue;
        }
        for flag in list.split(',') {
            if !KNOWN.contains(&flag) {
                return Err(format!("ERR Unexpected flag in script shebang: {flag}"));
            }
            flags.no_writes |= flag == "no-writes";
            flags.allow_oom |= flag == "allow-oom";
        }
    }
    Ok((flags, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_parse_like_redis() {
        assert_eq!(parse(b"return 1"), Ok((ScriptFlags::default(), 0)));
        let declared = ScriptFlags {
            declared: true,
            ..ScriptFlags::default()
        };
        assert_eq!(parse(b"#!lua\nreturn 1"), Ok((declared, 5)));
        assert_eq!(
            parse(b"#!lua flags=no-writes,allow-stale\nreturn 1"),
            Ok((
                ScriptFlags {
                    no_writes: true,
                    ..declared
                },
                33
            ))
        );
        assert_eq!(parse(b"#!lua flags=\nreturn 1"), Ok((declared, 12)));
        assert_eq!(
            parse(b"#!lua"),
            Err("ERR Invalid script shebang".to_string())
        );
        assert_eq!(
            parse(b"#!not-lua\nreturn 1"),
            Err("ERR Unexpected engine in script shebang: #!not-lua".to_string())
        );
        assert_eq!(
            parse(b"#!lua badger=data\nreturn 1"),
            Err("ERR Unknown lua shebang option: badger=data".to_string())
        );
        assert_eq!(
            parse(b"#!lua flags=allow-oom,what?\nreturn 1"),
            Err("ERR Unexpected flag in script shebang: what?".to_string())
        );
    }
}
