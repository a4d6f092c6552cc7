//! store-node binary.
fn main() {}
