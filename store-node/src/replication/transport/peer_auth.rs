//! The peer key and the challenge-response that opens every peer connection when one is
//! configured (`--peer-key-file`): before any peer message, each end proves it holds the
//! cluster's key with an HMAC-SHA256 over both ends' fresh random nonces, so a node of another
//! cluster, or a client without the key, is refused before it can ask or send anything, and a
//! recorded exchange proves nothing later.
//!
//! ```text
//! dialer   -> acceptor: "SSPEERv1" | dialer nonce (32 bytes)
//! acceptor -> dialer:   acceptor nonce (32) | n (1 byte) | n × HMAC(key_i, "acceptor" | dialer nonce | acceptor nonce)
//! dialer   -> acceptor: HMAC(key, "dialer" | acceptor nonce | dialer nonce)
//! ```
//!
//! The labels keep one side's proof from being reflected as the other's. The key file holds
//! one key per line, at most [`MAX_KEYS`]: the acceptor proves with each of its keys, the
//! dialer with the first of its keys that one of those proofs matches, and each side accepts a
//! proof made with any of its keys. Two nodes that share any key authenticate, so a key is
//! rotated without a split: add the new key to every node's file, then remove the old one.
//! Without TLS this authenticates the two ends when they connect; it does not encrypt or
//! protect the traffic after that from a machine on the path (docs/security.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first bytes a dialer sends: not a valid frame header of any version (its length field
/// would announce 1.4 GB), so a node without a key refuses it as garbage too.
pub const MAGIC: &[u8; 8] = b"SSPEERv1";

const NONCE_LEN: usize = 32;
const PROOF_LEN: usize = 32;
const ACCEPTOR_LABEL: &[u8] = b"sessionstore peer acceptor";
const DIALER_LABEL: &[u8] = b"sessionstore peer dialer";

/// The shortest key accepted: shorter ones could be guessed.
pub const MIN_KEY_LEN: usize = 16;

/// Most keys in a key file (a rotation needs two).
pub const MAX_KEYS: usize = 8;

/// What is wrong with the peer key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerKeyError {
    /// The file could not be read.
    #[error("failed to read the peer key file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The file holds no key.
    #[error("the peer key file {path} holds no key")]
    Empty {
        /// The file.
        path: String,
    },
    /// More keys than [`MAX_KEYS`].
    #[error("the peer key file {path} holds more than {MAX_KEYS} keys")]
    TooMany {
        /// The file.
        path: String,
    },
    /// A key is too short.
    #[error(
        "the peer key on line {line} of {path} has {len} bytes; at least {MIN_KEY_LEN} are needed"
    )]
    TooShort {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The key's length.
        len: usize,
    },
}

/// Why the challenge-response failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    /// The other end did not open with the peer greeting (a node without a peer key, or not a
    /// node at all).
    #[error("no peer key presented (the connection did not open with the peer greeting)")]
    NoGreeting,
    /// The other end's proof matches none of this node's keys.
    #[error("the peer's proof matches no key of this node (another cluster, or another key)")]
    WrongKey,
    /// The dialer hung up instead of proving the key: none of the acceptor's proofs matched a
    /// key of its own.
    #[error("the peer closed the connection instead of proving the key (another cluster, or another key)")]
    NoProof,
    /// Reading or writing failed, or the other end closed.
    #[error("failed during the peer key exchange: {0}")]
    Io(String),
    /// The system's random source failed.
    #[error("no randomness for the peer key exchange")]
    Random,
}

fn parse_keys(path: &Path, text: &[u8]) -> Result<Vec<hmac::Key>, PeerKeyError> {
    let mut keys = Vec::new();
    for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.len() < MIN_KEY_LEN {
            return Err(PeerKeyError::TooShort {
                path: path.display().to_string(),
                line: index + 1,
                len: line.len(),
            });
        }
        keys.push(hmac::Key::new(hmac::HMAC_SHA256, line));
    }
    if keys.is_empty() {
        return Err(PeerKeyError::Empty {
            path: path.display().to_string(),
        });
    }
    if keys.len() > MAX_KEYS {
        return Err(PeerKeyError::TooMany {
            path: path.display().to_string(),
        });
    }
    Ok(keys)
}

/// The cluster's peer keys, read from `--peer-key-file` and re-read when it changes.
pub struct PeerKeys {
    path: PathBuf,
    keys: RwLock<Arc<Vec<hmac::Key>>>,
    contents: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerKeys")
            .field("path", &self.path)
            .field("keys", &self.keys.read().len())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PeerKeyError> {
    std::fs::read(path).map_err(|error| PeerKeyError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    })
}

impl PeerKeys {
    /// Reads the key file: one key per line, the first the one this node proves with.
    pub fn load(path: &Path) -> Result<PeerKeys, PeerKeyError> {
        let contents = read(path)?;
        let keys = parse_keys(path, &contents)?;
        Ok(PeerKeys {
            path: path.to_path_buf(),
            keys: RwLock::new(Arc::new(keys)),
            contents: Mutex::new(contents),
        })
    }

    /// Re-reads the file; `Ok(true)` when new keys were installed. A changed but unusable file
    /// keeps the previous keys.
    pub fn reload_if_changed(&self) -> Result<bool, PeerKeyError> {
        let contents = read(&self.path)?;
        let mut current = self.contents.lock();
        if *current == contents {
            return Ok(false);
        }
        let keys = parse_keys(&self.path, &contents)?;
        *self.keys.write() = Arc::new(keys);
        *current = contents;
        Ok(true)
    }

    fn current(&self) -> Arc<Vec<hmac::Key>> {
        self.keys.read().clone()
    }
}

fn io_error(error: std::io::Error) -> PeerAuthError {
    PeerAuthError::Io(error.to_string())
}

fn nonce() -> Result<[u8; NONCE_LEN], PeerAuthError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| PeerAuthError::Random)?;
    Ok(nonce)
}

fn proof(key: &hmac::Key, label: &[u8], first: &[u8], second: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(label);
    context.update(first);
    context.update(second);
    context.sign()
}

/// The first of `keys` that made `tag` (each compared in constant time).
fn matching_key<'k>(
    keys: &'k [hmac::Key],
    label: &[u8],
    first: &[u8],
    second: &[u8],
    tag: &[u8],
) -> Option<&'k hmac::Key> {
    let mut message = Vec::with_capacity(label.len() + first.len() + second.len());
    message.extend_from_slice(label);
    message.extend_from_slice(first);
    message.extend_from_slice(second);
    keys.iter()
        .find(|key| hmac::verify(key, &message, tag).is_ok())
}

/// The dialer's half: checks and proves the key over `stream` before any peer message.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &PeerKeys,
) -> Result<(), PeerAuthError> {
    let keys = keys.current();
    let mine = nonce()?;
    let mut greeting = Vec::with_capacity(MAGIC.len() + NONCE_LEN);
    greeting.extend_from_slice(MAGIC);
    greeting.extend_from_slice(&mine);
    stream.write_all(&greeting).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut head = [0u8; NONCE_LEN + 1];
    stream.read_exact(&mut head).await.map_err(io_error)?;
    let (theirs, count) = (&head[..NONCE_LEN], usize::from(head[NONCE_LEN]));
    if count == 0 || count > MAX_KEYS {
        return Err(PeerAuthError::WrongKey);
    }
    let mut proofs = vec![0u8; count * PROOF_LEN];
    stream.read_exact(&mut proofs).await.map_err(io_error)?;
    let shared = proofs
        .chunks(PROOF_LEN)
        .find_map(|proof| matching_key(&keys, ACCEPTOR_LABEL, &mine, theirs, proof))
        .ok_or(PeerAuthError::WrongKey)?;
    let my_proof = proof(shared, DIALER_LABEL, theirs, &mine);
    stream
        .write_all(my_proof.as_ref())
        .await
        .map_err(io_error)?;
    stream.flush().await.map_err(io_error)
}

/// The acceptor's half: proves and checks the key over `stream` before any peer message.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &PeerKeys,
) -> Result<(), PeerAuthError> {
    let keys = keys.current();
    let mut greeting = [0u8; MAGIC.len() + NONCE_LEN];
    stream
        .read_exact(&mut greeting[..MAGIC.len()])
        .await
        .map_err(io_error)?;
    if &greeting[..MAGIC.len()] != MAGIC {
        return Err(PeerAuthError::NoGreeting);
    }
    stream
        .read_exact(&mut greeting[MAGIC.len()..])
        .await
        .map_err(io_error)?;
    let theirs = &greeting[MAGIC.len()..];
    let mine = nonce()?;
    let mut answer = Vec::with_capacity(NONCE_LEN + 1 + keys.len() * PROOF_LEN);
    answer.extend_from_slice(&mine);
    answer.push(keys.len() as u8);
    for key in keys.iter() {
        answer.extend_from_slice(proof(key, ACCEPTOR_LABEL, theirs, &mine).as_ref());
    }
    stream.write_all(&answer).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut their_proof = [0u8; PROOF_LEN];
    stream
        .read_exact(&mut their_proof)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                PeerAuthError::NoProof
            }
            _ => io_error(error),
        })?;
    matching_key(&keys, DIALER_LABEL, &mine, theirs, &their_proof)
        .map(|_| ())
        .ok_or(PeerAuthError::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("store-node-peer-key-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write key file");
        path
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 1, through the label-and-nonces path the exchange uses.
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[0x0b; 20]);
        let tag = proof(&key, b"Hi", b" Th", b"ere");
        let expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
        let hex: String = tag
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert!(matching_key(&[key], b"Hi", b" Th", b"ere", tag.as_ref()).is_some());
    }

    #[test]
    fn key_files_are_checked() {
        let path = keys_file("short", "tooshort\n");
        assert_eq!(
            PeerKeys::load(&path).map(|_| ()),
            Err(PeerKeyError::TooShort {
                path: path.display().to_string(),
                line: 1,
                len: 8
            })
        );
        let path = keys_file("empty", "\n\n");
        assert_eq!(
            PeerKeys::load(&path).map(|_| ()).unwrap_err().to_string(),
            format!("the peer key file {} holds no key", path.display())
        );
        let missing = std::env::temp_dir().join("store-node-no-such-key-file");
        assert!(PeerKeys::load(&missing)
            .unwrap_err()
            .to_string()
            .starts_with(&format!(
                "failed to read the peer key file {}",
                missing.display()
            )));
    }

    async fn exchange(
        dialer: &PeerKeys,
        acceptor: &PeerKeys,
    ) -> (Result<(), PeerAuthError>, Result<(), PeerAuthError>) {
        let (mut left, mut right) = tokio::io::duplex(1024);
        // Each side closes its end when it is done, as a refused connection is closed.
        tokio::join!(async move { dial(&mut left, dialer).await }, async move {
            accept(&mut right, acceptor).await
        })
    }

    #[tokio::test]
    async fn the_same_key_on_both_ends_authenticates() {
        let one = PeerKeys::load(&keys_file("a1", "0123456789abcdef-one\n")).expect("keys");
        let same = PeerKeys::load(&keys_file("a2", "0123456789abcdef-one")).expect("keys");
        assert_eq!(exchange(&one, &same).await, (Ok(()), Ok(())));
    }

    #[tokio::test]
    async fn another_key_is_refused_by_both_ends() {
        let one = PeerKeys::load(&keys_file("b1", "0123456789abcdef-one\n")).expect("keys");
        let other = PeerKeys::load(&keys_file("b2", "0123456789abcdef-two\n")).expect("keys");
        let (dialer, acceptor) = exchange(&one, &other).await;
        assert_eq!(dialer, Err(PeerAuthError::WrongKey));
        // The dialer stops before proving anything: the acceptor sees the connection close.
        assert_eq!(acceptor, Err(PeerAuthError::NoProof));
    }

    #[tokio::test]
    async fn nodes_sharing_any_key_authenticate_so_a_rotation_never_splits() {
        let old = PeerKeys::load(&keys_file("c1", "0123456789abcdef-old\n")).expect("keys");
        let both = PeerKeys::load(&keys_file(
            "c2",
            "0123456789abcdef-new\n0123456789abcdef-old\n",
        ))
        .expect("keys");
        let new = PeerKeys::load(&keys_file("c3", "0123456789abcdef-new\n")).expect("keys");
        // Step 1: the new key added everywhere, in any order; step 2: the old one removed.
        assert_eq!(exchange(&old, &both).await, (Ok(()), Ok(())));
        assert_eq!(exchange(&both, &old).await, (Ok(()), Ok(())));
        assert_eq!(exchange(&new, &both).await, (Ok(()), Ok(())));
        assert_eq!(exchange(&both, &new).await, (Ok(()), Ok(())));
        let (dialer, _) = exchange(&old, &new).await;
        assert_eq!(dialer, Err(PeerAuthError::WrongKey));
    }

    #[tokio::test]
    async fn a_frame_instead_of_the_greeting_is_refused() {
        let keys = PeerKeys::load(&keys_file("d1", "0123456789abcdef-one\n")).expect("keys");
        let (mut left, mut right) = tokio::io::duplex(1024);
        left.write_all(&[0, 0, 0, 40, 1, 2, 3, 4, 9, 9])
            .await
            .expect("write");
        assert_eq!(
            accept(&mut right, &keys).await,
            Err(PeerAuthError::NoGreeting)
        );
    }

    #[tokio::test]
    async fn a_changed_key_file_is_reloaded() {
        let path = keys_file("e1", "0123456789abcdef-one\n");
        let keys = PeerKeys::load(&path).expect("keys");
        assert_eq!(keys.reload_if_changed(), Ok(false));
        std::fs::write(&path, "short\n").expect("write");
        assert!(keys.reload_if_changed().is_err());
        let peer = PeerKeys::load(&keys_file("e2", "0123456789abcdef-one\n")).expect("keys");
        assert_eq!(
            exchange(&keys, &peer).await,
            (Ok(()), Ok(())),
            "old key kept"
        );
        std::fs::write(&path, "0123456789abcdef-two\n").expect("write");
        assert_eq!(keys.reload_if_changed(), Ok(true));
        assert_eq!(exchange(&keys, &peer).await.0, Err(PeerAuthError::WrongKey));
    }
}
