//! The libraries Redis gives scripts beside Lua's own `string`, `table` and `math`: [`cjson`],
//! [`cmsgpack`], [`bit`] (LuaJIT's BitOp API) and `struct` ([`structs`]), implemented in Rust
//! over mlua with the observable behaviour of the C libraries Redis bundles, errors included
//! ([`args`]); no registry crate provides them for mlua.

pub mod args;
pub mod bit;
pub mod cjson;
mod cjson_decode;
pub mod cmsgpack;
pub mod structs;

use mlua::{Lua, Table};

/// Registers every library in `globals`.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    bit::install(lua, globals)?;
    cjson::install(lua, globals)?;
    cmsgpack::install(lua, globals)?;
    structs::install(lua, globals)?;
    Ok(())
}

/// A number as C's `%.14g` writes it (Lua 5.1's `tostring`, lua-cjson's numbers).
pub fn format_g14(value: f64) -> String {
    format_g(value, 14)
}

/// A number as C's `%.<precision>g` writes it.
pub fn format_g(value: f64, precision: i32) -> String {
    let precision = precision.max(1);
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let scientific = format!("{:.*e}", (precision - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..precision).contains(&exponent) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (precision - 1 - exponent).max(0) as usize;
        trim_zeros(&format!("{value:.decimals$}")).to_string()
    }
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_printf_g14() {
        assert_eq!(format_g14(1.0), "1");
        assert_eq!(format_g14(-3.5), "-3.5");
        assert_eq!(format_g14(2f64.powi(53)), "9.007199254741e+15");
        assert_eq!(format_g14(0.1), "0.1");
        assert_eq!(format_g14(1e-5), "1e-05");
        assert_eq!(format_g14(123456789012345.0), "1.2345678901234e+14");
        assert_eq!(format_g14(12345678901234.0), "12345678901234");
        assert_eq!(format_g(1.23456, 3), "1.23");
        assert_eq!(format_g(1234.0, 2), "1.2e+03");
    }
}
