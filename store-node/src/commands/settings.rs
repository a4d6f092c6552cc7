//! Redis's encoding parameters (`hash-max-listpack-entries`, `set-max-intset-entries`, ...):
//! CONFIG SET accepts them and CONFIG GET reports them, as tools and test suites set them, and
//! OBJECT ENCODING names the encoding Redis would use for a value under them. store-node keeps
//! every value in one compact form whatever they say.

use crate::node::NodeState;

/// One integer parameter.
pub struct Parameter {
    /// Its name.
    pub name: &'static str,
    /// The Redis 6 name it still answers to.
    pub alias: Option<&'static str>,
    /// Redis's default.
    pub default: i64,
    /// The smallest accepted value.
    pub min: i64,
    /// The largest accepted value.
    pub max: i64,
}

const fn parameter(name: &'static str, alias: Option<&'static str>, default: i64) -> Parameter {
    Parameter {
        name,
        alias,
        default,
        min: 0,
        max: i64::MAX,
    }
}

/// The encoding parameters, with Redis 7.2's defaults.
pub static PARAMETERS: &[Parameter] = &[
    parameter(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        128,
    ),
    parameter(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        64,
    ),
    parameter("set-max-intset-entries", None, 512),
    parameter("set-max-listpack-entries", None, 128),
    parameter("set-max-listpack-value", None, 64),
    parameter(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        128,
    ),
    parameter(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        64,
    ),
    Parameter {
        name: "list-max-listpack-size",
        alias: Some("list-max-ziplist-size"),
        default: -2,
        min: i32::MIN as i64,
        max: i32::MAX as i64,
    },
    parameter("list-compress-depth", None, 0),
];

/// The parameter named `name` (or its alias), case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Parameter> {
    PARAMETERS.iter().find(|parameter| {
        parameter.name.as_bytes().eq_ignore_ascii_case(name)
            || parameter
                .alias
                .is_some_and(|alias| alias.as_bytes().eq_ignore_ascii_case(name))
    })
}

/// The value of parameter `name` on this node.
pub fn value(state: &NodeState, name: &str) -> i64 {
    let Some(parameter) = lookup(name.as_bytes()) else {
        return 0;
    };
    state
        .setting(parameter.name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(parameter.default)
}

/// Checks and stores a value; the error is CONFIG SET's.
pub fn set(state: &NodeState, parameter: &'static Parameter, value: &[u8]) -> Result<(), String> {
    let failed = |why: String| {
        format!(
            "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
            parameter.name
        )
    };
    let number = std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| failed("argument couldn't be parsed into an integer".to_string()))?;
    if number < parameter.min || number > parameter.max {
        return Err(failed(format!(
            "argument must be between {} and {} inclusive",
            parameter.min, parameter.max
        )));
    }
    state.set_setting(parameter.name, number.to_string());
    Ok(())
}
