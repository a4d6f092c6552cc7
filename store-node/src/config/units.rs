//! Memory values as Redis's configuration writes them (`512mb`, `1gb`, `10%`), for the client
//! limits' flags and `CONFIG SET`, with Redis's error texts.

/// A byte count, or a percentage of the memory limit (`maxmemory-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryOrPercent {
    /// Bytes.
    Bytes(u64),
    /// Percent of the memory limit (0..=100).
    Percent(u64),
}

impl std::fmt::Display for MemoryOrPercent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryOrPercent::Bytes(bytes) => write!(formatter, "{bytes}"),
            MemoryOrPercent::Percent(percent) => write!(formatter, "{percent}%"),
        }
    }
}

/// Parses a memory value as Redis's configuration does: digits with an optional unit, `k`
/// (1000) `kb` (1024) `m` `mb` `g` `gb`, case-insensitive. The error is Redis's CONFIG SET text.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    const NOT_MEMORY: &str = "argument must be a memory value";
    let lower = text.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(NOT_MEMORY.to_string()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|value| value.checked_mul(multiplier))
        .filter(|&value| value <= i64::MAX as u64)
        .ok_or_else(|| NOT_MEMORY.to_string())
}

/// [`parse_memory`] held to Redis's range for `proto-max-bulk-len` and
/// `client-query-buffer-limit`: at least 1 MiB.
pub fn parse_buffer_limit(text: &str) -> Result<u64, String> {
    let bytes = parse_memory(text)?;
    if bytes < 1024 * 1024 {
        return Err(format!(
            "argument must be between 1048576 and {} inclusive",
            i64::MAX
        ));
    }
    Ok(bytes)
}

/// A memory value or `N%` (`maxmemory-clients`), with Redis's CONFIG SET texts.
pub fn parse_memory_or_percent(text: &str) -> Result<MemoryOrPercent, String> {
    if let Some(percent) = text.strip_suffix('%') {
        let percent: u64 = percent
            .parse()
            .map_err(|_| "argument must be a memory or percent value".to_string())?;
        if percent > 100 {
            return Err("percentage argument must be less or equal to 100".to_string());
        }
        return Ok(MemoryOrPercent::Percent(percent));
    }
    parse_memory(text)
        .map(MemoryOrPercent::Bytes)
        .map_err(|_| "argument must be a memory or percent value".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values_parse_as_redis_does() {
        assert_eq!(parse_memory("512mb"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        assert_eq!(parse_memory("100k"), Ok(100_000));
        assert_eq!(parse_memory("100kb"), Ok(102_400));
        assert_eq!(parse_memory("4096"), Ok(4096));
        for bad in ["", "mb", "-1", "1tb", "1.5mb", "99999999999gb"] {
            assert_eq!(
                parse_memory(bad),
                Err("argument must be a memory value".to_string()),
                "{bad}"
            );
        }
        assert_eq!(parse_buffer_limit("1mb"), Ok(1 << 20));
        assert!(parse_buffer_limit("1000k").is_err());
        assert_eq!(
            parse_memory_or_percent("25%"),
            Ok(MemoryOrPercent::Percent(25))
        );
        assert_eq!(
            parse_memory_or_percent("64mb"),
            Ok(MemoryOrPercent::Bytes(64 << 20))
        );
        assert_eq!(MemoryOrPercent::Percent(25).to_string(), "25%");
        assert_eq!(MemoryOrPercent::Bytes(0).to_string(), "0");
    }
}
