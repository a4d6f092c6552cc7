//! The Redis wire protocol: reply frames and their RESP2/RESP3 encoding ([`frame`]), a general
//! frame decoder used by tests, fuzzing and clients ([`decode`]), and the request parser the
//! server runs on every read buffer, with its size limits ([`request`]).

pub mod decode;
pub mod frame;
pub mod request;

pub use frame::{format_double, Frame, Protocol};
pub use request::{Limits, Parsed, ProtocolError, RequestParser};
