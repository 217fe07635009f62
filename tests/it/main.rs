#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests: real Postgres (DATABASE_URL; `make test` provides one) and the
//! real `reproq` binary.

mod beat;
mod claim;
mod cli;
mod contrib;
mod enqueue;
mod http;
mod lease;
mod limit;
mod ops;
mod packaging;
mod pool;
mod schema;
mod support;
mod systemd;
mod worker;
mod workflow;
