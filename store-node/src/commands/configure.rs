//! CONFIG GET/SET/RESETSTAT: the parameters a node reports and those it lets clients change
//! at run time with Redis's names and error texts: `notify-keyspace-events`,
//! `replica-serve-stale-data`, the client limits (`proto-max-bulk-len`,
//! `proto-max-multibulk-len`, `client-query-buffer-limit`, `maxmemory-clients`),
//! `client-output-buffer-limit` (its `pubsub` class), `busy-reply-threshold` (`lua-time-limit`)
//! and the encoding parameters of [`super::settings`]. A read-only user may not change them.

use bytes::Bytes;

use super::{is, no_permission, settings, text, Call};
use crate::config::{parse_buffer_limit, parse_memory_or_percent};
use crate::node::users::Role;
use crate::protocol::Frame;

/// The parameters CONFIG SET takes besides [`settings::PARAMETERS`].
const SETTABLE: &[&str] = &[
    "notify-keyspace-events",
    "replica-serve-stale-data",
    "client-output-buffer-limit",
    "busy-reply-threshold",
    "lua-time-limit",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "maxmemory-clients",
    "proto-max-multibulk-len",
];

fn config_values(call: &Call<'_>) -> Vec<(&'static str, String)> {
    let memory = call.state.engine.memory();
    let limits = &call.state.client_limits;
    let config = &call.state.config;
    let yes_no = |value: bool| if value { "yes" } else { "no" }.to_string();
    let mut values = vec![
        ("maxmemory", memory.limit_bytes.to_string()),
        ("maxmemory-policy", memory.policy.as_str().to_string()),
        ("maxmemory-clients", limits.maxmemory_clients().to_string()),
        (
            "proto-max-bulk-len",
            limits.proto_max_bulk_len().to_string(),
        ),
        (
            "proto-max-multibulk-len",
            limits.proto_max_multibulk_len().to_string(),
        ),
        (
            "client-query-buffer-limit",
            limits.query_buffer_limit().to_string(),
        ),
        ("tls-port", config.tls_port.to_string()),
        (
            "tls-auth-clients",
            config.tls_auth_clients.as_str().to_string(),
        ),
        ("tls-replication", yes_no(config.tls_replication)),
        ("maxclients", call.state.config.max_clients.to_string()),
        ("timeout", call.state.config.client_idle_timeout.to_string()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        (
            "notify-keyspace-events",
            call.state.notify_keyspace_events(),
        ),
        ("port", call.state.config.resp_port.to_string()),
        (
            "replica-serve-stale-data",
            if call.state.serve_stale_data() {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
        ("client-output-buffer-limit", {
            let limit = call.state.pubsub.output_limit();
            format!(
                "normal 0 0 0 slave 268435456 67108864 60 pubsub {} {} {}",
                limit.hard, limit.soft, limit.soft_seconds
            )
        }),
        (
            "busy-reply-threshold",
            call.state.scripts.busy_threshold_ms().to_string(),
        ),
        (
            "lua-time-limit",
            call.state.scripts.busy_threshold_ms().to_string(),
        ),
    ];
    for parameter in settings::PARAMETERS {
        values.push((
            parameter.name,
            settings::value(call.state, parameter.name).to_string(),
        ));
    }
    values
}

/// `CONFIG SET client-output-buffer-limit "<class> <hard> <soft> <seconds> ..."`: the
/// `pubsub` class applies to subscribers; `normal` and `replica` (`slave`) are accepted and
/// have no effect (replies to ordinary clients are flushed every 1 MiB instead).
fn set_output_limit(call: &Call<'_>, value: &str) -> Result<(), String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".to_string());
    }
    let mut pubsub = None;
    for class in words.chunks(4) {
        let parse = |text: &str| {
            crate::config::parse_memory(text).map_err(|_| {
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
            })
        };
        let hard = parse(class[1])?;
        let soft = parse(class[2])?;
        let seconds = class[3].parse::<u64>().map_err(|_| {
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.".to_string()
        })?;
        match class[0].to_ascii_lowercase().as_str() {
            "pubsub" => {
                pubsub = Some(crate::pubsub::OutputLimit {
                    hard,
                    soft,
                    soft_seconds: seconds,
                })
            }
            "normal" | "slave" | "replica" => {}
            _ => {
                return Err(
                    "Invalid client class specified in buffer limit configuration.".to_string(),
                )
            }
        }
    }
    if let Some(limit) = pubsub {
        call.state.pubsub.set_output_limit(limit);
    }
    Ok(())
}

/// CONFIG GET pattern [pattern ...] | SET name value [name value ...] | RESETSTAT.
pub fn config(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let sub = &args[1];
    if is(sub, "get") && args.len() >= 3 {
        let values = config_values(call);
        let mut pairs: Vec<(Frame, Frame)> = values
            .into_iter()
            .filter(|(name, _)| {
                args[2..].iter().any(|pattern| {
                    crate::store::glob::matches(&pattern.to_ascii_lowercase(), name.as_bytes())
                })
            })
            .map(|(name, value)| {
                (
                    Frame::bulk(name.as_bytes()),
                    Frame::Bulk(Bytes::from(value)),
                )
            })
            .collect();
        // A Redis 6 name answers when asked for by name.
        for pattern in &args[2..] {
            if let Some(parameter) = settings::lookup(pattern) {
                if let Some(alias) = parameter.alias {
                    if alias.as_bytes().eq_ignore_ascii_case(pattern) {
                        let value = settings::value(call.state, parameter.name).to_string();
                        pairs.push((
                            Frame::bulk(alias.as_bytes()),
                            Frame::Bulk(Bytes::from(value)),
                        ));
                    }
                }
            }
        }
        Frame::Map(pairs)
    } else if is(sub, "set") && args.len() >= 4 && args.len().is_multiple_of(2) {
        config_set(call)
    } else if is(sub, "set") && args.len() >= 3 {
        Frame::error("ERR wrong number of arguments for 'config|set' command")
    } else if is(sub, "resetstat") && args.len() == 2 {
        Frame::ok()
    } else {
        Frame::Error(
            format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                text(sub)
            )
            .into(),
        )
    }
}

/// CONFIG SET name value [name value ...]: every name is checked before any is applied, as
/// Redis does.
fn config_set(call: &mut Call<'_>) -> Frame {
    if call.client.role() == Role::ReadOnly {
        return no_permission(call.client, "config|set");
    }
    let args = call.args;
    let unknown = args[2..].chunks_exact(2).find(|pair| {
        !SETTABLE.iter().any(|name| is(&pair[0], name)) && settings::lookup(&pair[0]).is_none()
    });
    if let Some(pair) = unknown {
        return Frame::Error(
            format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                text(&pair[0])
            )
            .into(),
        );
    }
    for pair in args[2..].chunks_exact(2) {
        let name = text(&pair[0]).to_ascii_lowercase();
        let applied = match settings::lookup(&pair[0]) {
            Some(parameter) => settings::set(call.state, parameter, &pair[1]),
            None => set_one(call, &name, text(&pair[1])).map_err(|reason| {
                format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
            }),
        };
        if let Err(error) = applied {
            return Frame::Error(error.into());
        }
        tracing::info!(client = call.client.id, parameter = %name, value = %text(&pair[1]), "CONFIG SET");
    }
    Frame::ok()
}

/// Applies one of [`SETTABLE`]; the error is Redis's reason text.
fn set_one(call: &Call<'_>, name: &str, value: String) -> Result<(), String> {
    let limits = &call.state.client_limits;
    match name {
        "notify-keyspace-events" => call.state.set_notify_keyspace_events(&value),
        "replica-serve-stale-data" => {
            // Redis's yes/no (its boolean parser takes only these two, any case).
            if value.eq_ignore_ascii_case("yes") {
                call.state.set_serve_stale_data(true);
                Ok(())
            } else if value.eq_ignore_ascii_case("no") {
                call.state.set_serve_stale_data(false);
                Ok(())
            } else {
                Err("argument must be 'yes' or 'no'".to_string())
            }
        }
        "client-output-buffer-limit" => set_output_limit(call, &value),
        "busy-reply-threshold" | "lua-time-limit" => match value.parse::<u64>() {
            Ok(milliseconds) => {
                call.state.scripts.set_busy_threshold_ms(milliseconds);
                Ok(())
            }
            Err(_) => Err("argument couldn't be parsed into an integer".to_string()),
        },
        "proto-max-bulk-len" => {
            parse_buffer_limit(&value).map(|bytes| limits.set_proto_max_bulk_len(bytes))
        }
        "client-query-buffer-limit" => {
            parse_buffer_limit(&value).map(|bytes| limits.set_query_buffer_limit(bytes))
        }
        "maxmemory-clients" => {
            parse_memory_or_percent(&value).map(|cap| limits.set_maxmemory_clients(cap))
        }
        "proto-max-multibulk-len" => match value.parse::<u64>() {
            Ok(count) if (1..=i32::MAX as u64).contains(&count) => {
                limits.set_proto_max_multibulk_len(count);
                Ok(())
            }
            _ => Err(format!(
                "argument must be between 1 and {} inclusive",
                i32::MAX
            )),
        },
        _ => Err(format!("{name} is not settable")),
    }
}
