//! The SessionCluster operator.

fn main() {}
