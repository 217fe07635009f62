//! reproq: a PostgreSQL-backed background task worker, drop-in compatible with the Go
//! `reproq-worker` that reproq-django drives.
//!
//! # Codemap
//!
//! - `cli/`: clap front-end (Go flag syntax), one file per subcommand, exit codes.
//! - `config/`: one table row per setting (`table.rs`; rows in `worker.rs`,
//!   `metrics.rs`, `beat.rs`) → clap flags (`flags.rs`), defaults ← file ← env ← flags
//!   (`resolve.rs`), checks (`validate.rs`), typed structs; DSN and Go-duration parsing.
//! - `telemetry/`: the JSON (or text) log layer and its redaction rule.
//! - `db/`: connecting a pool (`hosts`: the libpq host walk and `target_session_attrs`;
//!   `failover`: keeping a pool on the chosen host; `pooler`: transaction-mode pooler
//!   support); the idempotent schema migrations.
//! - `queue/`: one-shot SQL operations, one file per operation (long statements in
//!   sibling `.sql` files): claim, complete, workflows, leases, reclaim, periodic (and
//!   the beat's leader lock and savepoints), ops.
//! - `executor/`: runs one attempt as a child process (`process.rs`, spawn mode) or in a
//!   warm runner (`pool/`), configured by its own `ExecutorConfig` (`settings.rs`);
//!   envelope parsing, capture caps, log files. No SQL, no `queue/`.
//! - `spec/`: task specs (canonical JSON, spec v1) and the rules shared by every reader
//!   of user JSON: nesting limit (`depth`), NUL replacement (`pg_text`).
//! - `beat/`: pure logic of the scheduler: cron schedules, the byte-exact periodic spec.
//! - `runner/`: the long-lived services: `dispatcher` (claim loop) → `pipeline` (one
//!   task) → `record` (outcome writes, retried until they land) and `completer`
//!   (batched success writes); `lease_keeper`, `stall` (one-row writes that wait on a
//!   lock), `identity` (the `worker_id` lock), `maintenance` (reclaimer, registry),
//!   `wake` (LISTEN/NOTIFY), `idle` (how long an idle claim loop sleeps; the
//!   worker's half of wake-on-insert), `beat` (scheduler loop).
//! - `systemd.rs`: the sd_notify protocol (readiness, status, watchdog);
//!   `runner/watchdog.rs` decides when the claim (or beat) loop is alive.
//! - `shutdown.rs`: the `stop` (drain) and `abort` (kill) tokens and the signals.
//! - `http/`: `/healthz`, `/metrics`, `/events` (hyper 1, auth, TLS) and the DB metrics
//!   collector; `metrics` (Prometheus registry) and `events` (SSE bus) depend on nothing
//!   of ours; `runner/observer.rs` feeds both from the task pipeline.
//!
//! # Invariants
//!
//! - Dependencies point one way: `main → cli → runner → {queue, executor} → db`;
//!   `config` and `telemetry` depend on nothing of ours.
//! - SQL lives only in `db/` and `queue/`.
//! - Only `main.rs` and `cli/` print to stdout, read arguments or the environment
//!   (the DSN's libpq `PG*` fallbacks aside), or use `anyhow`.

pub mod beat;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod queue;
pub mod runner;
pub mod shutdown;
pub mod spec;
pub mod systemd;
pub mod telemetry;

/// The crate version, written to `reproq_workers.version` and `reproq --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
