//! The two facts of an X.509 certificate the node reports: its serial number and when it
//! expires. A minimal DER walk over the fields before them (rustls validates certificates; this
//! only reads them for logs, metrics and tests), so the node needs no X.509 library.

/// What the node reports about a certificate it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The serial number in lowercase hex, without leading zero bytes.
    pub serial: String,
    /// `notAfter` as Unix seconds.
    pub not_after_unix: i64,
}

/// One DER element: its tag and contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Reads the serial number and `notAfter` of a DER certificate; `None` when the bytes are not
/// shaped like one.
pub fn certificate_info(der: &[u8]) -> Option<CertificateInfo> {
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (mut tag, mut field, mut rest) = element(tbs)?;
    if tag == VERSION {
        (tag, field, rest) = element(rest)?;
    }
    if tag != INTEGER {
        return None;
    }
    let serial_bytes = {
        let start = field
            .iter()
            .position(|&byte| byte != 0)
            .unwrap_or(field.len());
        &field[start..]
    };
    let serial: String = serial_bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let (_, _signature, rest) = element(rest)?;
    let (_, _issuer, rest) = element(rest)?;
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _not_before, rest) = element(validity)?;
    let (tag, not_after, _) = element(rest)?;
    Some(CertificateInfo {
        serial: if serial.is_empty() {
            "0".into()
        } else {
            serial
        },
        not_after_unix: parse_time(tag, not_after)?,
    })
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950-2049, RFC 5280) or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 13 => {
            let year = digits(&text[..2])?;
            (
                if year < 50 { 2000 + year } else { 1900 + year },
                &text[2..],
            )
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let field = |at: usize| digits(&rest[at..at + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_unix_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(parse_time(UTC_TIME, b"000301000000Z"), Some(951_868_800));
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20380119031408Z"),
            Some(2_147_483_648)
        );
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(UTC_TIME, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(parse_time(UTC_TIME, b"5001010000Z"), None);
    }

    #[test]
    fn reads_serial_and_expiry_of_a_generated_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x00, 0x9a, 0x01]));
        params.not_after = rcgen::date_time_ymd(2031, 7, 2);
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = params.self_signed(&key).expect("certificate");
        let info = certificate_info(certificate.der()).expect("parsed");
        assert_eq!(info.serial, "9a01");
        assert_eq!(info.not_after_unix, 1_940_716_800);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(certificate_info(b""), None);
        assert_eq!(certificate_info(b"\x30\x82\xff\xff"), None);
        assert_eq!(certificate_info(b"\x30\x03\x02\x01\x05"), None);
    }
}
