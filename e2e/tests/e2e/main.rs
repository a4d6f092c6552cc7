//! The end-to-end suite against a real cluster with the operator installed (see
//! e2e/README.md): one file per scenario, numbered in the order of the README's table. One test
//! binary, so `--test-threads=N` runs independent scenarios side by side; each scenario works in
//! its own temporary namespace. Every test is `#[ignore]`: run them with `e2e/run.sh` or
//! `cargo test -p e2e -- --ignored`.

mod bad_manifests;
mod deletion;
mod disc;
mod install;
mod memory;
mod optional_objects;
mod password_rotation;
mod paused;
mod pod_loss;
mod pressure_latency;
mod ram_cluster;
mod rolling;
mod scale;
mod sessions_lost;
mod stuck_image;
mod tls;
mod volumes;
