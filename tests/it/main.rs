#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests: real Postgres (DATABASE_URL; `make test` provides one) and the
//! real `reproq` binary.

mod beat;
mod claim;
mod cli;
mod cluster;
mod enqueue;
mod failover;
mod http;
mod lease;
mod limit;
mod multihost;
mod ops;
mod pgbouncer;
mod pool;
mod schema;
mod support;
mod worker;
mod workflow;
