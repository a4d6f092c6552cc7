//! The node's listeners: [`resp`] accepts Redis clients and hands them to the
//! [`io_threads`], each serving its [`connection`]s; [`http`] is the session API, the probes,
//! `/v1/status`, `/v1/cluster` and `/metrics`.

pub mod connection;
pub mod http;
pub mod io_threads;
pub mod resp;
