#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests: real Postgres (DATABASE_URL; `make test` provides one) and the
//! real `reproq` binary.

mod beat;
mod claim;
mod cli;
mod django_path;
mod enqueue;
mod http;
mod lease;
mod limit;
mod ops;
mod pool;
mod schema;
mod support;
mod wakeup;
mod worker;
mod workflow;
