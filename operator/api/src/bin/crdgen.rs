//! Writes the CRD YAML.
fn main() {}
