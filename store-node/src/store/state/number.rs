//! The arithmetic of counters: a string or hash-field counter is its base plus every origin's
//! total, all kept as text; the sum is exact in integers (`INCR`), exact in decimals of up to
//! 17 fractional digits (`INCRBYFLOAT`, so `0.1 + 0.2` is `0.3`, as Redis's long doubles print
//! it), and falls back to `f64` beyond that range. Scores (`ZINCRBY`) are `f64`, as in Redis.

use bytes::Bytes;

/// Fractional digits of a decimal: what Redis prints for `INCRBYFLOAT` (`%.17Lf`).
const SCALE: u32 = 17;
const ONE: i128 = 100_000_000_000_000_000;

/// A counter's number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer.
    Int(i128),
    /// A decimal: `units / 10^17`.
    Decimal(i128),
    /// Beyond the decimal range.
    Float(f64),
}

/// Parses an integer the way Redis's `string2ll` does: no spaces, no `+`, no leading zeros,
/// within `i64`.
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    if arg.is_empty() || arg.len() > 20 {
        return None;
    }
    if arg == b"0" {
        return Some(0);
    }
    let (negative, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        _ => (false, arg),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

/// Parses a float the way Redis's `string2ld` accepts one (`strtold` over the whole argument,
/// no leading space): decimal with optional sign, fraction and exponent, or `inf`/`infinity`;
/// `None` for anything else, NaN included.
pub fn parse_number(text: &[u8]) -> Option<Number> {
    if let Some(value) = parse_i64(text) {
        return Some(Number::Int(i128::from(value)));
    }
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let unsigned = text.trim_start_matches(['+', '-']);
    if unsigned.len() + 1 < text.len() {
        return None;
    }
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        let value = if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Some(Number::Float(value));
    }
    if !unsigned
        .bytes()
        .all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    Some(exact_decimal(text).map_or(Number::Float(value), Number::Decimal))
}

/// The exact decimal `units` of a decimal literal, if it has at most 17 fractional digits and
/// fits.
fn exact_decimal(text: &str) -> Option<i128> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits: String = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    // value = digits * 10^(exponent - fraction.len())
    let shift = i64::from(exponent) - fraction.len() as i64 + i64::from(SCALE);
    let mut units: i128 = 0;
    for byte in digits.bytes() {
        units = units
            .checked_mul(10)?
            .checked_add(i128::from(byte - b'0'))?;
    }
    if shift >= 0 {
        units = units.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    } else {
        let divisor = 10i128.checked_pow(u32::try_from(-shift).ok()?)?;
        if units % divisor != 0 {
            return None;
        }
        units /= divisor;
    }
    if units > i128::MAX / 10 {
        return None;
    }
    Some(if negative { -units } else { units })
}

impl Number {
    /// The sum, exact while both are integers or decimals in range.
    pub fn plus(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => match a.checked_add(b) {
                Some(sum) => Number::Int(sum),
                None => Number::Float(a as f64 + b as f64),
            },
            (Number::Float(a), b) | (b, Number::Float(a)) => Number::Float(a + b.to_f64()),
            (a, b) => match (a.units(), b.units()) {
                (Some(a), Some(b)) => match a.checked_add(b) {
                    Some(sum) if sum.abs() <= i128::MAX / 10 => Number::Decimal(sum),
                    _ => Number::Float(a as f64 / ONE as f64 + b as f64 / ONE as f64),
                },
                _ => Number::Float(a.to_f64() + b.to_f64()),
            },
        }
    }

    fn units(self) -> Option<i128> {
        match self {
            Number::Int(value) => value.checked_mul(ONE),
            Number::Decimal(units) => Some(units),
            Number::Float(_) => None,
        }
    }

    /// The value as an `f64`.
    pub fn to_f64(self) -> f64 {
        match self {
            Number::Int(value) => value as f64,
            Number::Decimal(units) => units as f64 / ONE as f64,
            Number::Float(value) => value,
        }
    }

    /// Whether it is finite.
    pub fn is_finite(self) -> bool {
        match self {
            Number::Float(value) => value.is_finite(),
            _ => true,
        }
    }

    /// The integer, if it is one within `i64`.
    pub fn to_i64(self) -> Option<i64> {
        match self {
            Number::Int(value) => i64::try_from(value).ok(),
            _ => None,
        }
    }

    /// The text a counter shows: an integer's digits; otherwise what Redis prints for
    /// `INCRBYFLOAT` (`%.17Lf` with trailing zeros and a trailing point removed, `-0` as `0`).
    pub fn to_text(self) -> Bytes {
        Bytes::from(match self {
            Number::Int(value) => value.to_string(),
            Number::Decimal(units) => human_decimal(units),
            Number::Float(value) => human_float(value),
        })
    }
}

fn human_decimal(units: i128) -> String {
    let negative = units < 0;
    let magnitude = units.unsigned_abs();
    let whole = magnitude / ONE as u128;
    let fraction = magnitude % ONE as u128;
    let mut text = if fraction == 0 {
        whole.to_string()
    } else {
        let digits = format!("{fraction:017}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    if negative && text != "0" {
        text.insert(0, '-');
    }
    text
}

fn human_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let mut text = format!("{value:.17}");
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(trimmed);
    }
    if text == "-0" {
        text = "0".to_string();
    }
    text
}

/// A counter's value: its base (the register's text, empty when unset or deleted) plus the
/// totals, in the order given (by origin). `None` when a part is not a number.
pub fn sum_text(base: Option<&[u8]>, totals: &[&[u8]]) -> Option<Number> {
    let mut sum = match base {
        Some(base) => parse_number(base)?,
        None => Number::Int(0),
    };
    for total in totals {
        sum = sum.plus(parse_number(total)?);
    }
    Some(sum)
}

/// A score stored as 8 little-endian bytes.
pub fn score_of(bytes: &[u8]) -> f64 {
    bytes.try_into().map(f64::from_le_bytes).unwrap_or(0.0)
}

/// A score's 8 little-endian bytes.
pub fn score_bytes(score: f64) -> Bytes {
    Bytes::copy_from_slice(&score.to_le_bytes())
}

/// A score: the base (0 when unset or deleted) plus the totals in origin order.
pub fn score_sum(base: Option<f64>, totals: &[f64]) -> f64 {
    totals
        .iter()
        .fold(base.unwrap_or(0.0), |sum, total| sum + total)
}

/// The total that makes `base + totals` (with `own` replaced by the result, in origin order)
/// equal `target` when this origin is the only contributor: the sum then matches Redis's
/// sequential `ZINCRBY`s exactly instead of differing in the last bit. Otherwise
/// `own + increment`.
pub fn own_score_total(base: Option<f64>, own: f64, increment: f64, others: usize) -> f64 {
    let plain = own + increment;
    if others > 0 {
        return plain;
    }
    let base = base.unwrap_or(0.0);
    let target = base + own + increment;
    let candidate = target - base;
    let mut total = candidate;
    for _ in 0..4 {
        if base + total == target {
            return total;
        }
        total = if base + total < target {
            next_up(total)
        } else {
            next_down(total)
        };
    }
    plain
}

fn next_up(value: f64) -> f64 {
    if value.is_nan() || value == f64::INFINITY {
        return value;
    }
    if value == 0.0 {
        return f64::from_bits(1);
    }
    let bits = value.to_bits();
    f64::from_bits(if value > 0.0 { bits + 1 } else { bits - 1 })
}

fn next_down(value: f64) -> f64 {
    -next_up(-value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(text: &str) -> String {
        let value = parse_number(text.as_bytes()).expect("a number");
        String::from_utf8_lossy(&value.to_text()).into_owned()
    }

    #[test]
    fn decimals_add_exactly_and_print_like_redis() {
        let sum = |a: &str, b: &str| {
            let a = parse_number(a.as_bytes()).expect("a");
            let b = parse_number(b.as_bytes()).expect("b");
            String::from_utf8_lossy(&a.plus(b).to_text()).into_owned()
        };
        assert_eq!(sum("0.1", "0.2"), "0.3");
        assert_eq!(sum("10.50", "0.1"), "10.6");
        assert_eq!(sum("10.6", "-5"), "5.6");
        assert_eq!(sum("5.0e3", "2.0e2"), "5200");
        assert_eq!(sum("17179869184", "1.5"), "17179869185.5");
        assert_eq!(sum("0.024390243902439025", "-0.024390243902439025"), "0");
        assert_eq!(float("3.0"), "3");
        assert_eq!(float("-0.0"), "0");
        assert_eq!(float("1e300").len(), 301);
    }

    #[test]
    fn floats_parse_like_strtold_over_the_whole_argument() {
        for bad in ["", " 1", "1 ", "abc", "nan", "1.2.3", "--1", "0x"] {
            assert_eq!(parse_number(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_number(b"+1.5"), Some(Number::Decimal(15 * ONE / 10)));
        assert_eq!(parse_number(b".5"), Some(Number::Decimal(ONE / 2)));
        assert_eq!(
            parse_number(b"-inf"),
            Some(Number::Float(f64::NEG_INFINITY))
        );
        assert_eq!(parse_number(b"12"), Some(Number::Int(12)));
    }

    #[test]
    fn one_origins_scores_match_sequential_sums() {
        let (base, increments) = (0.1, [0.2, 0.3, 0.7, 1e-3]);
        let (mut sequential, mut own) = (base, 0.0);
        for increment in increments {
            sequential += increment;
            own = own_score_total(Some(base), own, increment, 0);
            assert_eq!(score_sum(Some(base), &[own]), sequential);
        }
    }
}
