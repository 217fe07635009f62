//! The database edge: connecting a pool from a [`Dsn`], and the schema migrations.
//! SQL lives only here and in `queue/`.

pub mod migrate;
pub mod readiness;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::config::Dsn;

/// Most connections one process opens (the Go worker's pool size).
pub const MAX_CONNECTIONS: u32 = 20;

/// A failure to reach the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The DSN's parameters were rejected.
    #[error(transparent)]
    Dsn(#[from] crate::config::dsn::DsnError),
    /// The first connection failed.
    #[error("failed to connect to database {dsn}: {source}")]
    Connect {
        /// The DSN, password redacted.
        dsn: String,
        /// Why.
        source: sqlx::Error,
    },
}

/// Connects once (so a bad DSN fails fast with the driver's reason), then returns a
/// pool of up to `max_connections` that reconnects on its own.
///
/// # Errors
/// [`DbError`] when the DSN is unusable or the server does not answer.
pub async fn connect(dsn: &Dsn, max_connections: u32, plans: Plans) -> Result<PgPool, DbError> {
    let options = connect_options(dsn, plans)?;
    let mut first = tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
    .map_err(|source| DbError::Connect {
        dsn: dsn.to_string(),
        source,
    })?;
    first.ping().await.map_err(|source| DbError::Connect {
        dsn: dsn.to_string(),
        source,
    })?;
    let _ = first.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .max_lifetime(Duration::from_secs(3600))
        .idle_timeout(Duration::from_secs(1800))
        .connect_lazy_with(options))
}

/// How Postgres should cache the plans of a pool's prepared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// `plan_cache_mode=auto`: custom plans for the first runs of a statement. Right
    /// for commands that run each statement a few times (`triage`, `prune`, `beat`),
    /// where a plan for the actual values (`$1 is null or …` folded away) wins.
    Auto,
    /// `plan_cache_mode=force_generic_plan`, for the worker: its statements are
    /// prepared once per connection and run thousands of times. Left on `auto`,
    /// Postgres re-plans the claim on every call (its generic estimate, with an unknown
    /// `LIMIT $4`, looks worse than a custom plan), and planning that statement cost
    /// more CPU than running it (1.4 ms against 0.85 ms per claim, measured with
    /// pg_stat_statements). The generic plan is the same index-backed plan
    /// (`cargo bench --bench claim`: 1.98 ms at 100k rows, 1.61 ms at 1M).
    Generic,
}

impl Plans {
    /// The session settings for this mode, JIT off in both: our statements are short
    /// OLTP queries, and JIT compiling a claim costs more than it runs.
    pub fn session_settings(self) -> [(&'static str, &'static str); 2] {
        let mode = match self {
            Plans::Auto => "auto",
            Plans::Generic => "force_generic_plan",
        };
        [("jit", "off"), ("plan_cache_mode", mode)]
    }
}

/// Driver options for `dsn`, with a recognisable `application_name` and the
/// [`Plans::session_settings`] of `plans`.
///
/// # Errors
/// The DSN's parameters were rejected.
pub fn connect_options(dsn: &Dsn, plans: Plans) -> Result<PgConnectOptions, DbError> {
    let options = dsn.connect_options()?.options(plans.session_settings());
    Ok(if options.get_application_name().is_none() {
        options.application_name("reproq")
    } else {
        options
    })
}
