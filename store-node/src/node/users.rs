//! Named users (Redis `AUTH <user> <password>`), each with a role: `readwrite`, or `readonly`
//! (commands flagged `WRITE` answer Redis's `NOPERM`). Users come from `--users-dir`: one
//! directory per user, named after the user, holding two files, `password` (one trailing
//! newline trimmed) and `role`. The directory is re-read when it changes, so a user is added,
//! removed, or given a new password or role without a restart: a removed user's connections
//! lose their authentication at their next command. Entries whose names start with `.` are
//! skipped (Kubernetes keeps its `..data` links there). The `default` user is the
//! `--password-file` password, as before.
//!
//! Passwords are kept and compared as SHA-256 digests, in constant time
//! ([`password_matches`]), as Redis compares its ACL passwords.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

/// What a user may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every command.
    ReadWrite,
    /// Every command not flagged `WRITE` (and no `CONFIG SET`).
    ReadOnly,
}

impl Role {
    /// The spelling of the `role` file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadWrite => "readwrite",
            Role::ReadOnly => "readonly",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "readwrite" => Some(Role::ReadWrite),
            "readonly" => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// What is wrong with `--users-dir`; each variant names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    /// A directory or file could not be read.
    #[error("failed to read {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A `role` file holds something else than a role.
    #[error("{path}: unknown role {found:?} (expected readwrite or readonly)")]
    Role {
        /// The file.
        path: String,
        /// What it holds.
        found: String,
    },
    /// A user directory is named `default`, the `--password-file` user.
    #[error("{path}: the default user is configured with --password-file, not --users-dir")]
    Reserved {
        /// The directory.
        path: String,
    },
    /// A user directory's name is not a valid user name.
    #[error("{path}: user names cannot contain spaces or control characters")]
    BadName {
        /// The directory.
        path: String,
    },
}

/// SHA-256 of a password.
fn digest(password: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, password);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn digests_equal(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Whether `presented` is `expected`, in time independent of where they differ and of their
/// lengths (both are hashed first, as Redis does).
pub fn password_matches(expected: &[u8], presented: &[u8]) -> bool {
    digests_equal(&digest(expected), &digest(presented))
}

/// Whether `presented` is one of the passwords of a password file, one per non-empty line (the
/// operator adds the previous password while a new one rolls out, as Redis lets a user have
/// several). Every line is compared, in constant time each.
pub fn any_password_matches(accepted: &str, presented: &[u8]) -> bool {
    accepted
        .lines()
        .filter(|line| !line.is_empty())
        .fold(false, |any, line| {
            password_matches(line.as_bytes(), presented) | any
        })
}

/// One named user, shared by the connections authenticated as it.
#[derive(Debug)]
pub struct User {
    name: String,
    role: AtomicU8,
    password: RwLock<[u8; 32]>,
    removed: AtomicBool,
}

impl User {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's role now (a reload may change it).
    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            0 => Role::ReadWrite,
            _ => Role::ReadOnly,
        }
    }

    /// Whether a reload removed the user: its connections are no longer authenticated.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    fn set(&self, role: Role, password: [u8; 32]) {
        self.role.store(role as u8, Ordering::Relaxed);
        *self.password.write() = password;
    }
}

/// One user as read from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    role: Role,
    password: [u8; 32],
}

/// The named users of a node.
#[derive(Debug, Default)]
pub struct Users {
    dir: Option<PathBuf>,
    users: RwLock<HashMap<String, Arc<User>>>,
    loaded: Mutex<Vec<Entry>>,
}

fn read_error(path: &Path, error: std::io::Error) -> UsersError {
    UsersError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

fn trim_newline(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn read_dir(dir: &Path) -> Result<Vec<Entry>, UsersError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|error| read_error(dir, error))? {
        let entry = entry.map_err(|error| read_error(dir, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        if name == "default" {
            return Err(UsersError::Reserved {
                path: path.display().to_string(),
            });
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UsersError::BadName {
                path: path.display().to_string(),
            });
        }
        let password_path = path.join("password");
        let password =
            std::fs::read(&password_path).map_err(|error| read_error(&password_path, error))?;
        let role_path = path.join("role");
        let role_text =
            std::fs::read_to_string(&role_path).map_err(|error| read_error(&role_path, error))?;
        let role = Role::parse(role_text.trim()).ok_or_else(|| UsersError::Role {
            path: role_path.display().to_string(),
            found: role_text.trim().to_string(),
        })?;
        entries.push(Entry {
            name,
            role,
            password: digest(trim_newline(&password)),
        });
    }
    entries.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(entries)
}

impl Users {
    /// Reads `dir`; an error names the file or directory that is wrong.
    pub fn load(dir: &Path) -> Result<Users, UsersError> {
        let users = Users {
            dir: Some(dir.to_path_buf()),
            ..Users::default()
        };
        let entries = read_dir(dir)?;
        users.install(entries);
        Ok(users)
    }

    /// Re-reads the directory; `Ok(true)` when users changed. A directory that cannot be read
    /// or holds an invalid user keeps the users as they are.
    pub fn reload_if_changed(&self) -> Result<bool, UsersError> {
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        let entries = read_dir(dir)?;
        if *self.loaded.lock() == entries {
            return Ok(false);
        }
        self.install(entries);
        Ok(true)
    }

    fn install(&self, entries: Vec<Entry>) {
        let mut users = self.users.write();
        let mut next = HashMap::with_capacity(entries.len());
        for entry in &entries {
            let user = users.remove(&entry.name).unwrap_or_else(|| {
                Arc::new(User {
                    name: entry.name.clone(),
                    role: AtomicU8::new(entry.role as u8),
                    password: RwLock::new(entry.password),
                    removed: AtomicBool::new(false),
                })
            });
            user.set(entry.role, entry.password);
            next.insert(entry.name.clone(), user);
        }
        for gone in users.values() {
            gone.removed.store(true, Ordering::Relaxed);
        }
        *users = next;
        *self.loaded.lock() = entries;
    }

    /// The user `name` when `password` is its password.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name).ok()?;
        let user = self.users.read().get(name).cloned()?;
        let matches = digests_equal(&user.password.read(), &digest(password));
        matches.then_some(user)
    }

    /// The number of named users.
    pub fn len(&self) -> usize {
        self.users.read().len()
    }

    /// Whether there are no named users.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("store-node-users-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create dir");
        dir
    }

    fn add(dir: &Path, name: &str, role: &str, password: &str) {
        let user = dir.join(name);
        std::fs::create_dir_all(&user).expect("user dir");
        std::fs::write(user.join("role"), role).expect("role");
        std::fs::write(user.join("password"), password).expect("password");
    }

    #[test]
    fn passwords_compare_by_digest() {
        assert!(password_matches(b"secret", b"secret"));
        assert!(!password_matches(b"secret", b"secreT"));
        assert!(!password_matches(b"secret", b"secret2"));
        assert!(!password_matches(b"", b"x"));
    }

    #[test]
    fn users_load_with_their_roles_and_reload() {
        let dir = users_dir("load");
        add(&dir, "alice", "readonly\n", "apw\n");
        add(&dir, "bob", "readwrite", "bpw");
        std::fs::create_dir_all(dir.join("..data")).expect("k8s link dir");
        let users = Users::load(&dir).expect("load");
        assert_eq!(users.len(), 2);
        let alice = users.authenticate(b"alice", b"apw").expect("alice");
        assert_eq!(alice.role(), Role::ReadOnly);
        assert!(users.authenticate(b"alice", b"apw\n").is_none());
        assert!(users.authenticate(b"alice", b"bpw").is_none());
        assert!(users.authenticate(b"carol", b"x").is_none());
        assert_eq!(users.reload_if_changed(), Ok(false));

        std::fs::write(dir.join("alice").join("role"), "readwrite").expect("role");
        std::fs::remove_dir_all(dir.join("bob")).expect("remove bob");
        let bob = users.authenticate(b"bob", b"bpw").expect("bob");
        assert_eq!(users.reload_if_changed(), Ok(true));
        assert_eq!(
            alice.role(),
            Role::ReadWrite,
            "a connection sees the new role"
        );
        assert!(bob.removed());
        assert!(users.authenticate(b"bob", b"bpw").is_none());
    }

    #[test]
    fn bad_users_are_named() {
        let dir = users_dir("bad-role");
        add(&dir, "alice", "admin", "pw");
        let role = dir.join("alice").join("role");
        assert_eq!(
            Users::load(&dir).unwrap_err().to_string(),
            format!(
                "{}: unknown role \"admin\" (expected readwrite or readonly)",
                role.display()
            )
        );
        let dir = users_dir("default");
        add(&dir, "default", "readonly", "pw");
        assert!(matches!(
            Users::load(&dir),
            Err(UsersError::Reserved { .. })
        ));
        let dir = users_dir("no-password");
        std::fs::create_dir_all(dir.join("carol")).expect("dir");
        std::fs::write(dir.join("carol").join("role"), "readonly").expect("role");
        let error = Users::load(&dir).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "failed to read {}",
                dir.join("carol").join("password").display()
            )),
            "{error}"
        );
    }
}
