#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests: real Postgres (DATABASE_URL; `make test` provides one) and the
//! real `reproq` binary.

mod beat;
mod beat_signals;
mod chaos;
mod claim;
mod cli;
mod cluster;
mod connections;
mod contrib;
mod django_path;
mod enqueue;
mod failover;
mod faults;
mod http;
mod lease;
mod ledger;
mod limit;
mod multihost;
mod ops;
mod packaging;
mod pgbouncer;
mod pool;
mod pool_output;
mod schema;
mod spawned;
mod support;
mod systemd;
mod torture_guard;
mod validate_golden;
mod wakeup;
mod worker;
mod workflow;
