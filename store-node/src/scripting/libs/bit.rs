//! `bit`: LuaJIT's BitOp API (`tobit tohex bnot band bor bxor lshift rshift arshift rol ror
//! bswap`), which Redis bundles. Every operation works on 32-bit signed integers: an argument
//! is rounded to the nearest integer and reduced modulo 2^32, as BitOp's normalisation does.

use mlua::{Lua, Table, Variadic};

/// BitOp's normalisation of a Lua number to a signed 32-bit integer.
pub fn tobit(value: f64) -> i32 {
    if !value.is_finite() {
        return 0;
    }
    let rounded = value.round_ties_even();
    (rounded % 4_294_967_296.0) as i64 as u32 as i32
}

fn fold(values: &Variadic<f64>, first: f64, combine: impl Fn(i32, i32) -> i32) -> f64 {
    let start = tobit(first);
    f64::from(
        values
            .iter()
            .fold(start, |acc, value| combine(acc, tobit(*value))),
    )
}

/// `bit.tohex(x [, n])`: the low `|n|` hex digits of `x` (8 by default), uppercase when
/// `n` is negative.
pub fn tohex(value: f64, digits: Option<f64>) -> String {
    let bits = tobit(value) as u32;
    let digits = digits.map_or(8, tobit);
    let upper = digits < 0;
    let count = digits.unsigned_abs().min(8) as usize;
    let text = if upper {
        format!("{bits:08X}")
    } else {
        format!("{bits:08x}")
    };
    text[8 - count..].to_string()
}

/// Registers the `bit` table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let bit = lua.create_table()?;
    bit.raw_set(
        "tobit",
        lua.create_function(|_, x: f64| Ok(f64::from(tobit(x))))?,
    )?;
    bit.raw_set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| Ok(tohex(x, n)))?,
    )?;
    bit.raw_set(
        "bnot",
        lua.create_function(|_, x: f64| Ok(f64::from(!tobit(x))))?,
    )?;
    bit.raw_set(
        "band",
        lua.create_function(|_, (x, rest): (f64, Variadic<f64>)| Ok(fold(&rest, x, |a, b| a & b)))?,
    )?;
    bit.raw_set(
        "bor",
        lua.create_function(|_, (x, rest): (f64, Variadic<f64>)| Ok(fold(&rest, x, |a, b| a | b)))?,
    )?;
    bit.raw_set(
        "bxor",
        lua.create_function(|_, (x, rest): (f64, Variadic<f64>)| Ok(fold(&rest, x, |a, b| a ^ b)))?,
    )?;
    let shift = |op: fn(i32, u32) -> i32| {
        move |_: &Lua, (x, n): (f64, f64)| Ok(f64::from(op(tobit(x), (tobit(n) & 31) as u32)))
    };
    bit.raw_set(
        "lshift",
        lua.create_function(shift(|x, n| ((x as u32) << n) as i32))?,
    )?;
    bit.raw_set(
        "rshift",
        lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?,
    )?;
    bit.raw_set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    bit.raw_set(
        "rol",
        lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?,
    )?;
    bit.raw_set(
        "ror",
        lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?,
    )?;
    bit.raw_set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(f64::from(tobit(x).swap_bytes())))?,
    )?;
    globals.raw_set("bit", bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_bitop() {
        assert_eq!(tobit(4_294_967_295.0), -1);
        assert_eq!(tobit(4_294_967_296.0), 0);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(3.5), 4);
        assert_eq!(tohex(255.0, None), "000000ff");
        assert_eq!(tohex(-1.0, Some(-4.0)), "FFFF");
        assert_eq!(tohex(0x1234_5678 as f64, Some(2.0)), "78");
    }
}
