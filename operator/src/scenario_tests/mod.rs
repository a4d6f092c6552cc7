//! Reconcile scenarios against a mocked API server (`mock_api`) with fake store-node pods
//! (`harness`), one file per topic: what a user sees happen to the cluster, its children, its
//! status and its events.

mod harness;
mod mock_api;

mod auth;
mod lifecycle;
mod members;
mod monitoring;
mod outside;
mod scaling;
mod security;
mod stuck;
mod truth;
mod volumes;
mod watches;
