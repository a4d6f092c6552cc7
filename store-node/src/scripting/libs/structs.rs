//! `struct`: the binary packing library Redis bundles (Roberto Ierusalimschy's struct.c
//! 1.7), as it behaves in Redis on x86-64: `struct.pack(fmt, ...)`, `struct.unpack(fmt, data
//! [, pos])` (the values, then the position after them) and `struct.size(fmt)`.
//!
//! Formats: `>` big and `<` little endian (little by default, the machine's), `![n]` maximum
//! alignment (8 by default), `x` a padding byte, `b/B` `h/H` `l/L` signed/unsigned 1, 2 and 8
//! byte integers, `T` a `size_t`, `i/I[n]` integers of n bytes (4 by default, at most 32),
//! `f`/`d` float and double, `c[n]` n characters (`c0`: the whole string when packing, the
//! previous number as the length when unpacking), `s` a zero-terminated string, spaces
//! ignored. Integers are C `long`s: packing casts the Lua number as C does on x86-64, and
//! unpacking returns a Lua number (a double). The format is a C string: it ends at its first
//! zero byte.

use mlua::{Lua, MultiValue, Table, Value};

use super::args::{stack_overflow, truncate, Args, MAX_C_STACK};

/// Largest `i`/`I` size.
const MAX_INT_SIZE: usize = 32;

/// The default and largest alignment: `double`'s on x86-64.
const MAX_ALIGN: usize = 8;

/// The byte order of the values that follow in a format.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

/// The state a format's control options change.
struct Header {
    endian: Endian,
    align: usize,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// A format being read, option by option.
struct Format<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Format<'a> {
    fn new(format: &'a [u8]) -> Format<'a> {
        let end = format
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(format.len());
        Format {
            bytes: &format[..end],
            position: 0,
        }
    }

    fn next_option(&mut self) -> Option<u8> {
        let option = *self.bytes.get(self.position)?;
        self.position += 1;
        Some(option)
    }

    /// `getnum`: the number written next in the format, or `default`.
    fn number(&mut self, args: &Args<'_>, default: usize) -> mlua::Result<usize> {
        if !self
            .bytes
            .get(self.position)
            .is_some_and(u8::is_ascii_digit)
        {
            return Ok(default);
        }
        let mut value: i32 = 0;
        while let Some(digit) = self
            .bytes
            .get(self.position)
            .filter(|byte| byte.is_ascii_digit())
        {
            let digit = i32::from(digit - b'0');
            if value > i32::MAX / 10 || value * 10 > i32::MAX - digit {
                return Err(args.fail("integral size overflow"));
            }
            value = value * 10 + digit;
            self.position += 1;
        }
        Ok(value as usize)
    }

    /// `optsize`: the size of `option`'s item (0 for the options that have none).
    fn size(&mut self, args: &Args<'_>, option: u8) -> mlua::Result<usize> {
        Ok(match option {
            b'B' | b'b' | b'x' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.number(args, 1)?,
            b'i' | b'I' => {
                let size = self.number(args, 4)?;
                if size > MAX_INT_SIZE {
                    return Err(args.fail(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                size
            }
            _ => 0,
        })
    }

    /// `controloptions`: endianness, alignment and spaces; any other option is refused.
    fn control(&mut self, args: &Args<'_>, option: u8, header: &mut Header) -> mlua::Result<()> {
        match option {
            b' ' => {}
            b'>' => header.endian = Endian::Big,
            b'<' => header.endian = Endian::Little,
            b'!' => {
                let align = self.number(args, MAX_ALIGN)?;
                if !align.is_power_of_two() {
                    return Err(args.fail(format!("alignment {align} is not a power of 2")));
                }
                header.align = align;
            }
            other => {
                return Err(args.error(1, &format!("invalid format option '{}'", char::from(other))))
            }
        }
        Ok(())
    }
}

/// `gettoalign`: padding before an item of `size` at `position` (C's unsigned arithmetic,
/// which also gives what C gives for sizes that are not powers of two).
fn padding(position: usize, header: &Header, option: u8, size: usize) -> usize {
    if size == 0 || option == b'c' {
        return 0;
    }
    let size = size.min(header.align);
    size.wrapping_sub(position & (size - 1)) & (size - 1)
}

/// A Lua number as C's `(unsigned long)` of it on x86-64 (negative numbers through `long`).
fn to_unsigned(value: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if value < 0.0 {
        truncate(value) as u64
    } else if value.is_nan() || (TWO_63..TWO_63 * 2.0).contains(&value) {
        // gcc converts from 2^63 up by subtracting 2^63; NaN takes that path too.
        let reduced = value - TWO_63;
        if reduced.is_nan() {
            1 << 63
        } else {
            (reduced as u64) ^ (1 << 63)
        }
    } else if value >= TWO_63 * 2.0 {
        0
    } else {
        value as u64
    }
}

fn put_integer(out: &mut Vec<u8>, value: f64, endian: Endian, size: usize) {
    let mut bits = to_unsigned(value);
    let mut buffer = [0u8; MAX_INT_SIZE];
    for index in 0..size {
        let at = match endian {
            Endian::Little => index,
            Endian::Big => size - 1 - index,
        };
        buffer[at] = (bits & 0xff) as u8;
        bits = bits.checked_shr(8).unwrap_or(0);
    }
    out.extend_from_slice(&buffer[..size]);
}

fn get_integer(bytes: &[u8], endian: Endian, signed: bool) -> f64 {
    let size = bytes.len();
    let mut bits: u64 = 0;
    for index in 0..size {
        let at = match endian {
            Endian::Big => index,
            Endian::Little => size - 1 - index,
        };
        bits = (bits << 8) | u64::from(bytes[at]);
    }
    if !signed {
        return bits as f64;
    }
    // x86-64 shifts by the count modulo 64, so sizes past 8 bytes sign-extend from bit 63.
    let shift = ((size * 8) as u32).wrapping_sub(1) & 63;
    let mask = u64::MAX << shift;
    if bits & mask != 0 {
        bits |= mask;
    }
    bits as i64 as f64
}

/// The bytes of a float or double in `endian` order.
fn ordered<const N: usize>(mut bytes: [u8; N], endian: Endian) -> [u8; N] {
    if endian == Endian::Big {
        bytes.reverse();
    }
    bytes
}

fn pack(lua: &Lua, values: MultiValue) -> mlua::Result<mlua::LuaString> {
    let args = Args::new(lua, values);
    let format_text = args.string(1)?;
    let format_bytes = format_text.as_bytes();
    let mut format = Format::new(&format_bytes);
    // struct.c pushes a nil above its arguments: the first argument missing is that nil.
    let shown_missing = Value::Nil;
    let shown = |index: usize| args.get(index).or(Some(&shown_missing));
    let mut header = Header::default();
    let mut argument = 2;
    let mut out = Vec::new();
    while let Some(option) = format.next_option() {
        let mut size = format.size(&args, option)?;
        let pad = padding(out.len(), &header, option, size);
        out.resize(out.len() + pad, 0);
        match option {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let value = args.number_shown(argument, shown(argument))?;
                argument += 1;
                put_integer(&mut out, value, header.endian, size);
            }
            b'x' => out.push(0),
            b'f' => {
                let value = args.number_shown(argument, shown(argument))? as f32;
                argument += 1;
                out.extend_from_slice(&ordered(value.to_le_bytes(), header.endian));
            }
            b'd' => {
                let value = args.number_shown(argument, shown(argument))?;
                argument += 1;
                out.extend_from_slice(&ordered(value.to_le_bytes(), header.endian));
            }
            b'c' | b's' => {
                let text = args.string_shown(argument, shown(argument))?;
                let text = text.as_bytes();
                argument += 1;
                if size == 0 {
                    size = text.len();
                }
                if text.len() < size {
                    // struct.c names the argument after the string (it has counted it).
                    return Err(args.error(argument, "string too short"));
                }
                out.extend_from_slice(&text[..size]);
                if option == b's' {
                    out.push(0);
                }
            }
            other => format.control(&args, other, &mut header)?,
        }
    }
    lua.create_string(out)
}

fn unpack(lua: &Lua, values: MultiValue) -> mlua::Result<MultiValue> {
    let args = Args::new(lua, values);
    let format_text = args.string(1)?;
    let format_bytes = format_text.as_bytes();
    let mut format = Format::new(&format_bytes);
    let data = args.string(2)?;
    let data = data.as_bytes();
    let length = data.len();
    // A size_t: a negative offset wraps around, and fails as "data string too short".
    let start = args.optional_integer(3, 1)? as u64 as usize;
    if start == 0 {
        return Err(args.error(3, "offset must be 1 or greater"));
    }
    let mut position = start - 1;
    let mut header = Header::default();
    let mut results: Vec<Value> = Vec::new();
    let too_short = |size: usize, position: usize| size > length || position > length - size;
    while let Some(option) = format.next_option() {
        let mut size = format.size(&args, option)?;
        position = position.wrapping_add(padding(position, &header, option, size));
        if too_short(size, position) {
            return Err(args.error(2, "data string too short"));
        }
        if args.len() + results.len() + 2 > MAX_C_STACK {
            return Err(stack_overflow(lua, "too many results"));
        }
        let item = &data[position..position + size];
        match option {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let signed = option.is_ascii_lowercase();
                results.push(Value::Number(get_integer(item, header.endian, signed)));
            }
            b'x' => {}
            b'f' => {
                let bytes = ordered([item[0], item[1], item[2], item[3]], header.endian);
                results.push(Value::Number(f64::from(f32::from_le_bytes(bytes))));
            }
            b'd' => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(item);
                results.push(Value::Number(f64::from_le_bytes(ordered(
                    bytes,
                    header.endian,
                ))));
            }
            b'c' => {
                if size == 0 {
                    let previous = match results.last() {
                        Some(value @ (Value::Number(_) | Value::Integer(_) | Value::String(_))) => {
                            lua.coerce_number(value.clone())?
                        }
                        _ => None,
                    };
                    let Some(previous) = previous else {
                        return Err(args.fail("format 'c0' needs a previous size"));
                    };
                    results.pop();
                    size = to_unsigned(previous) as usize;
                    if too_short(size, position) {
                        return Err(args.error(2, "data string too short"));
                    }
                }
                results.push(Value::String(
                    lua.create_string(&data[position..position + size])?,
                ));
            }
            b's' => {
                let Some(end) = data[position..].iter().position(|&byte| byte == 0) else {
                    return Err(args.fail("unfinished string in data"));
                };
                results.push(Value::String(
                    lua.create_string(&data[position..position + end])?,
                ));
                size = end + 1;
            }
            other => format.control(&args, other, &mut header)?,
        }
        position = position.wrapping_add(size);
    }
    // Pushed as a Lua integer: an offset that wrapped around comes back negative.
    results.push(Value::Number(position.wrapping_add(1) as i64 as f64));
    Ok(results.into_iter().collect())
}

fn size(lua: &Lua, values: MultiValue) -> mlua::Result<f64> {
    let args = Args::new(lua, values);
    let format_text = args.string(1)?;
    let format_bytes = format_text.as_bytes();
    let mut format = Format::new(&format_bytes);
    let mut header = Header::default();
    let mut position: usize = 0;
    while let Some(option) = format.next_option() {
        let size = format.size(&args, option)?;
        position += padding(position, &header, option, size);
        if option == b's' {
            return Err(args.error(1, "option 's' has no fixed size"));
        }
        if option == b'c' && size == 0 {
            return Err(args.error(1, "option 'c0' has no fixed size"));
        }
        // Letters that are no option count for nothing here, as in struct.c.
        if !option.is_ascii_alphanumeric() {
            format.control(&args, option, &mut header)?;
        }
        position += size;
    }
    Ok(position as f64)
}

/// Registers the `struct` table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let table = lua.create_table()?;
    table.raw_set("pack", lua.create_function(pack)?)?;
    table.raw_set("unpack", lua.create_function(unpack)?)?;
    table.raw_set("size", lua.create_function(size)?)?;
    globals.raw_set("struct", table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_convert_to_unsigned_long_like_x86_64() {
        assert_eq!(to_unsigned(-1.0), u64::MAX);
        assert_eq!(to_unsigned(-0.5), 0);
        assert_eq!(to_unsigned(2f64.powi(63)), 1 << 63);
        assert_eq!(to_unsigned(2f64.powi(64)), 0);
        assert_eq!(to_unsigned(f64::INFINITY), 0);
        assert_eq!(to_unsigned(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(to_unsigned(f64::NAN), 1 << 63);
        assert_eq!(to_unsigned(-(2f64.powi(70))), 1 << 63);
    }

    #[test]
    fn integers_round_trip_in_both_byte_orders() {
        let mut out = Vec::new();
        put_integer(&mut out, -3.0, Endian::Big, 3);
        assert_eq!(out, [0xff, 0xff, 0xfd]);
        assert_eq!(get_integer(&out, Endian::Big, true), -3.0);
        assert_eq!(get_integer(&out, Endian::Big, false), 16_777_213.0);
        out.clear();
        put_integer(&mut out, -1.0, Endian::Big, 16);
        assert_eq!(&out[..8], [0; 8]);
        assert_eq!(&out[8..], [0xff; 8]);
        assert_eq!(get_integer(&[0xff; 16], Endian::Big, true), -1.0);
    }

    #[test]
    fn padding_follows_the_alignment() {
        let header = Header {
            endian: Endian::Little,
            align: 8,
        };
        assert_eq!(padding(1, &header, b'd', 8), 7);
        assert_eq!(padding(1, &header, b'i', 4), 3);
        assert_eq!(padding(1, &header, b'c', 4), 0);
        assert_eq!(padding(1, &Header::default(), b'd', 8), 0);
    }
}
