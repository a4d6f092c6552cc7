//! Lua 5.1's argument checks and error positions for the libraries written in Rust, so their
//! errors read exactly like those of the C libraries Redis bundles: `luaL_error` prefixes the
//! caller's position (`user_script:1: `), `luaL_argerror` names the argument and the function
//! as the caller wrote it (`bad argument #2 to 'pack' (number expected, got nil)`), and the
//! checks accept what the C API accepts (a numeric string is a number, a number a string).

use mlua::{Lua, LuaString, MultiValue, Value};

/// Lua 5.1's `LUAI_MAXCSTACK`: the most stack slots a C function may hold.
pub const MAX_C_STACK: usize = 8000;

/// `luaL_where(L, 1)`: `<source>:<line>: ` of the function that called the library function,
/// empty when that is not a Lua function (a library function called through `pcall`).
pub fn caller_position(lua: &Lua) -> String {
    lua.inspect_stack(1, |debug| {
        let line = debug.current_line()?;
        let source = debug.source().short_src?.into_owned();
        Some(format!("{source}:{line}: "))
    })
    .flatten()
    .unwrap_or_default()
}

/// `luaL_error`: `message` with the caller's position.
pub fn error(lua: &Lua, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{}{message}", caller_position(lua)))
}

/// A library's own error raised from deep in its work (`Cannot serialise ...`), with the
/// caller's position as `luaL_error` would have added; other errors pass unchanged.
pub fn positioned(lua: &Lua, failure: mlua::Error) -> mlua::Error {
    match failure {
        mlua::Error::RuntimeError(message) => error(lua, message),
        other => other,
    }
}

/// `luaL_argerror`: `bad argument #index to 'name' (message)`, the name as the caller spelt
/// the function (`?` when Lua cannot tell, as through `pcall(f, ...)`).
pub fn argument_error(lua: &Lua, index: usize, message: &str) -> mlua::Error {
    let named = lua
        .inspect_stack(0, |debug| {
            let names = debug.names();
            (
                names.name.map(|name| name.into_owned()),
                names.name_what == Some("method"),
            )
        })
        .unwrap_or((None, false));
    let (name, method) = named;
    let name = name.unwrap_or_else(|| "?".to_string());
    if method {
        if index == 1 {
            return error(lua, format!("calling '{name}' on bad self ({message})"));
        }
        return error(
            lua,
            format!("bad argument #{} to '{name}' ({message})", index - 1),
        );
    }
    error(
        lua,
        format!("bad argument #{index} to '{name}' ({message})"),
    )
}

/// Lua 5.1's name of a value's type (`luaL_typename`); `None` is an absent argument.
pub fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None => "no value",
        Some(Value::Nil) => "nil",
        Some(Value::Boolean(_)) => "boolean",
        Some(Value::LightUserData(_) | Value::UserData(_)) => "userdata",
        Some(Value::Integer(_) | Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Table(_)) => "table",
        Some(Value::Function(_)) => "function",
        Some(Value::Thread(_)) => "thread",
        Some(_) => "userdata",
    }
}

/// The arguments of one call of a library function, checked as the C API checks them.
pub struct Args<'a> {
    lua: &'a Lua,
    values: Vec<Value>,
}

impl<'a> Args<'a> {
    /// The arguments `values` of a call.
    pub fn new(lua: &'a Lua, values: MultiValue) -> Args<'a> {
        Args {
            lua,
            values: values.into_iter().collect(),
        }
    }

    /// How many arguments were passed (`lua_gettop`).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no argument was passed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Argument `index` (1-based), `None` when absent.
    pub fn get(&self, index: usize) -> Option<&Value> {
        index.checked_sub(1).and_then(|at| self.values.get(at))
    }

    /// `luaL_argerror` for argument `index` of this function.
    pub fn error(&self, index: usize, message: &str) -> mlua::Error {
        argument_error(self.lua, index, message)
    }

    /// `luaL_error` with the caller's position.
    pub fn fail(&self, message: impl std::fmt::Display) -> mlua::Error {
        error(self.lua, message)
    }

    fn type_error(&self, index: usize, expected: &str, shown: Option<&Value>) -> mlua::Error {
        self.error(
            index,
            &format!("{expected} expected, got {}", type_name(shown)),
        )
    }

    /// `luaL_checknumber`: a number or a string Lua converts to one.
    pub fn number(&self, index: usize) -> mlua::Result<f64> {
        self.number_shown(index, self.get(index))
    }

    /// [`Args::number`], naming the type of `shown` when it fails: a C function that pushed
    /// a value of its own above its arguments finds that value in an absent argument's slot.
    pub fn number_shown(&self, index: usize, shown: Option<&Value>) -> mlua::Result<f64> {
        let converted = match self.get(index) {
            Some(Value::Integer(value)) => Some(*value as f64),
            Some(Value::Number(value)) => Some(*value),
            Some(value @ Value::String(_)) => self.lua.coerce_number(value.clone())?,
            _ => None,
        };
        converted.ok_or_else(|| self.type_error(index, "number", shown))
    }

    /// `luaL_checkinteger`: [`Args::number`] truncated toward zero, as Lua 5.1 does on x86-64.
    pub fn integer(&self, index: usize) -> mlua::Result<i64> {
        self.number(index).map(truncate)
    }

    /// `luaL_optinteger`: `default` when the argument is absent or nil.
    pub fn optional_integer(&self, index: usize, default: i64) -> mlua::Result<i64> {
        match self.get(index) {
            None | Some(Value::Nil) => Ok(default),
            Some(_) => self.integer(index),
        }
    }

    /// `luaL_checklstring`: a string, or a number as Lua writes it (`%.14g`).
    pub fn string(&self, index: usize) -> mlua::Result<LuaString> {
        self.string_shown(index, self.get(index))
    }

    /// [`Args::string`], naming the type of `shown` when it fails (see [`Args::number_shown`]).
    pub fn string_shown(&self, index: usize, shown: Option<&Value>) -> mlua::Result<LuaString> {
        let converted = match self.get(index) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(value @ (Value::Integer(_) | Value::Number(_))) => {
                self.lua.coerce_string(value.clone())?
            }
            _ => None,
        };
        converted.ok_or_else(|| self.type_error(index, "string", shown))
    }
}

/// A double converted to an integer as C's cast does on x86-64: toward zero, and the
/// "integer indefinite" value (`i64::MIN`) for NaN and anything out of range.
pub fn truncate(value: f64) -> i64 {
    if value.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&value) {
        i64::MIN
    } else {
        value as i64
    }
}

/// `luaL_checkstack`'s failure: `stack overflow (what)`.
pub fn stack_overflow(lua: &Lua, what: &str) -> mlua::Error {
    error(lua, format!("stack overflow ({what})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_truncate_like_x86_64() {
        assert_eq!(truncate(1.9), 1);
        assert_eq!(truncate(-1.9), -1);
        assert_eq!(truncate(f64::NAN), i64::MIN);
        assert_eq!(truncate(2f64.powi(63)), i64::MIN);
        assert_eq!(truncate(-(2f64.powi(63))), i64::MIN);
        assert_eq!(truncate(f64::INFINITY), i64::MIN);
    }
}
