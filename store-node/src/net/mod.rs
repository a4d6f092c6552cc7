//! The node's listeners: [`resp`] accepts Redis clients (plain or TLS) and hands them to the
//! [`io_threads`], each serving its [`connection`]s over a [`stream`]; [`http`] is the session
//! API, the probes, `/v1/status`, `/v1/cluster` and `/metrics`, over HTTP or HTTPS.

pub mod connection;
pub mod http;
pub mod io_threads;
mod published;
pub mod resp;
mod script_runs;
pub mod stream;
