//! `bit`: LuaJIT's BitOp API (`tobit tohex bnot band bor bxor lshift rshift arshift rol ror
//! bswap`), which Redis bundles. Every operation works on 32-bit signed integers: an argument
//! is rounded to the nearest integer and reduced modulo 2^32, as BitOp's normalisation does.

use mlua::{Function, Lua, MultiValue, Table};

use super::args::Args;

/// BitOp's normalisation of a Lua number to a signed 32-bit integer.
pub fn tobit(value: f64) -> i32 {
    if !value.is_finite() {
        return 0;
    }
    let rounded = value.round_ties_even();
    (rounded % 4_294_967_296.0) as i64 as u32 as i32
}

/// `bit.band` and its kin: `combine` folded over every argument (at least one).
fn fold(args: &Args<'_>, combine: impl Fn(i32, i32) -> i32) -> mlua::Result<f64> {
    let mut bits = tobit(args.number(1)?);
    for index in 2..=args.len() {
        bits = combine(bits, tobit(args.number(index)?));
    }
    Ok(f64::from(bits))
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

/// A `bit` function of the arguments as [`Args`] (so a bad argument reads as BitOp's).
fn function(
    lua: &Lua,
    body: impl Fn(&Args<'_>) -> mlua::Result<f64> + Send + 'static,
) -> mlua::Result<Function> {
    lua.create_function(move |lua, values: MultiValue| body(&Args::new(lua, values)))
}

/// A shift or rotation of the first argument by the second (taken modulo 32).
fn shift(lua: &Lua, op: fn(i32, u32) -> i32) -> mlua::Result<Function> {
    function(lua, move |args| {
        let (x, n) = (tobit(args.number(1)?), tobit(args.number(2)?));
        Ok(f64::from(op(x, (n & 31) as u32)))
    })
}

/// Registers the `bit` table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let bit = lua.create_table()?;
    bit.raw_set(
        "tobit",
        function(lua, |args| Ok(f64::from(tobit(args.number(1)?))))?,
    )?;
    bit.raw_set(
        "tohex",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            let x = args.number(1)?;
            // Only an absent count means 8 (`lua_isnone`): a nil one is a bad argument.
            let digits = match args.get(2) {
                None => None,
                Some(_) => Some(args.number(2)?),
            };
            Ok(tohex(x, digits))
        })?,
    )?;
    bit.raw_set(
        "bnot",
        function(lua, |args| Ok(f64::from(!tobit(args.number(1)?))))?,
    )?;
    bit.raw_set("band", function(lua, |args| fold(args, |a, b| a & b))?)?;
    bit.raw_set("bor", function(lua, |args| fold(args, |a, b| a | b))?)?;
    bit.raw_set("bxor", function(lua, |args| fold(args, |a, b| a ^ b))?)?;
    bit.raw_set("lshift", shift(lua, |x, n| ((x as u32) << n) as i32)?)?;
    bit.raw_set("rshift", shift(lua, |x, n| ((x as u32) >> n) as i32)?)?;
    bit.raw_set("arshift", shift(lua, |x, n| x >> n)?)?;
    bit.raw_set("rol", shift(lua, |x, n| (x as u32).rotate_left(n) as i32)?)?;
    bit.raw_set("ror", shift(lua, |x, n| (x as u32).rotate_right(n) as i32)?)?;
    bit.raw_set(
        "bswap",
        function(lua, |args| {
            Ok(f64::from(tobit(args.number(1)?).swap_bytes()))
        })?,
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
