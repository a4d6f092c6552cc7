//! Script digests: Redis names a script by the lowercase hex SHA1 of its body, and gives
//! scripts the same function as `redis.sha1hex`.

/// The lowercase hex SHA1 of `data`.
pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(data);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
