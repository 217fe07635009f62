//! The database edge: connecting a pool from a [`Dsn`], and the schema migrations.
//! SQL lives only here and in `queue/`.

pub mod failover;
pub mod hosts;
pub mod migrate;
pub mod pooler;
pub mod readiness;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::config::Dsn;
pub use hosts::Connector;

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
    /// No host of a multi-host DSN (or of a DSN with `target_session_attrs`) was usable.
    #[error(transparent)]
    NoHost(#[from] hosts::WalkError),
}

/// Connects once (so a bad DSN fails fast with the driver's reason), then returns a
/// pool of up to `max_connections` that reconnects on its own. With several hosts the
/// first acceptable one is used, and the pool follows failovers ([`failover`]); with
/// `default_query_exec_mode` other than `cache_statement` the pool is safe behind a
/// transaction-mode pooler ([`pooler`]).
///
/// # Errors
/// [`DbError`] when the DSN is unusable or no server answers.
pub async fn connect(
    dsn: &Dsn,
    max_connections: u32,
    plans: Plans,
    limits: Limits,
) -> Result<PgPool, DbError> {
    Ok(connect_reporting(dsn, max_connections, plans, limits)
        .await?
        .0)
}

/// [`connect`], also returning the index of the host that answered (among
/// [`Connector::endpoints`]) and the connector, for `--validate`.
///
/// # Errors
/// As [`connect`].
pub async fn connect_reporting(
    dsn: &Dsn,
    max_connections: u32,
    plans: Plans,
    limits: Limits,
) -> Result<(PgPool, usize, Connector), DbError> {
    let connector = connector(dsn, plans, limits)?;
    let first = first_connection(&connector).await?;
    let index = first.index;
    let mut conn = first.conn;
    conn.ping().await.map_err(|source| DbError::Connect {
        dsn: dsn.to_string(),
        source,
    })?;
    let _ = conn.close().await;
    let follower = failover::Follower::new(connector.clone(), index);
    let pooled = dsn.transaction_pooling();
    let settings = std::sync::Arc::new(session_settings(plans, limits));
    let (on_connect, on_acquire) = (follower.clone(), follower.clone());
    let (connect_settings, acquire_settings) = (settings.clone(), settings);
    let mut options = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .max_lifetime((!pooled).then_some(Duration::from_secs(3600)))
        .idle_timeout(Duration::from_secs(1800))
        .after_connect(move |conn, _| {
            let follower = on_connect.clone();
            let settings = connect_settings.clone();
            Box::pin(async move {
                follower.check_new(conn).await?;
                if pooled {
                    pooler::begin(conn, &settings).await?;
                }
                Ok(())
            })
        })
        .before_acquire(move |conn, meta| {
            let follower = on_acquire.clone();
            let settings = acquire_settings.clone();
            Box::pin(async move {
                if !follower.is_current(meta.age) {
                    return Ok(false);
                }
                if pooled {
                    pooler::begin(conn, &settings).await?;
                }
                Ok(true)
            })
        });
    if pooled {
        options = options.after_release(|conn, _| {
            Box::pin(async move {
                pooler::end(conn).await?;
                Ok(true)
            })
        });
    }
    let first_options = connector
        .options(index)
        .cloned()
        .ok_or_else(|| crate::config::dsn::DsnError::from_message("no host to connect to"))?;
    let pool = options.connect_lazy_with(first_options);
    follower.spawn_monitor(pool.clone());
    Ok((pool, index, connector))
}

/// Closes `pool` after its pending commits (behind a transaction-mode pooler, the
/// last statements commit as their connections return; see [`pooler`]).
pub async fn close(pool: &PgPool) {
    pooler::settle(Duration::from_secs(5)).await;
    pool.close().await;
}

/// The walk for `dsn`: one set of driver options per host, with our session settings.
///
/// # Errors
/// The DSN's parameters were rejected.
pub fn connector(dsn: &Dsn, plans: Plans, limits: Limits) -> Result<Connector, DbError> {
    let pooled = dsn.transaction_pooling();
    let settings = session_settings(plans, limits);
    Ok(Connector::new(dsn, |options| {
        with_settings(options, &settings, pooled)
    })?)
}

/// One connection outside any pool (beat's lock session), walking the host list.
///
/// # Errors
/// No host was usable.
pub async fn connect_one(connector: &Connector) -> Result<PgConnection, DbError> {
    Ok(first_connection(connector).await?.conn)
}

async fn first_connection(connector: &Connector) -> Result<hosts::Connected, DbError> {
    connector.connect().await.map_err(|mut error| {
        // One host that failed to connect: the driver's error, as before multi-host.
        if let [(_, hosts::HostFailure::Connect(_))] = error.attempts.as_slice() {
            if let Some((_, hosts::HostFailure::Connect(source))) = error.attempts.pop() {
                return DbError::Connect {
                    dsn: error.dsn,
                    source,
                };
            }
        }
        DbError::NoHost(error)
    })
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

/// Session bounds on every statement (`lock_timeout`, `statement_timeout`; zero: none),
/// so no statement of the worker or beat waits for good on a lock or a stuck plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a lock another session holds.
    pub lock_timeout: Duration,
    /// Longest run of one statement.
    pub statement_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lock_timeout: crate::config::worker::DEFAULT_LOCK_TIMEOUT,
            statement_timeout: crate::config::worker::DEFAULT_STATEMENT_TIMEOUT,
        }
    }
}

impl Limits {
    /// No bounds (migrations and one-off admin commands, which may run long).
    pub const NONE: Limits = Limits {
        lock_timeout: Duration::ZERO,
        statement_timeout: Duration::ZERO,
    };

    /// The session settings, in milliseconds.
    pub fn session_settings(self) -> [(&'static str, String); 2] {
        [
            ("lock_timeout", self.lock_timeout.as_millis().to_string()),
            (
                "statement_timeout",
                self.statement_timeout.as_millis().to_string(),
            ),
        ]
    }
}

/// Every session setting of a connection: the plan mode's and the limits'.
pub fn session_settings(plans: Plans, limits: Limits) -> Vec<(&'static str, String)> {
    plans
        .session_settings()
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .chain(limits.session_settings())
        .collect()
}

/// A pool of one connection, opened on first use and not checked up front: for
/// `/healthz`, so a probe waits on its own connection, never on the worker's. It starts
/// with `pool`'s options (the host the worker's pool uses); the probe takes over the
/// worker pool's options again each time, so it follows a failover too.
pub fn single_connection(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(1800))
        .connect_lazy_with((*pool.connect_options()).clone())
}

/// Driver options for `dsn`'s first host, with a recognisable `application_name` and
/// the [`session_settings`] of `plans` and `limits` (as startup `options`, except
/// behind a transaction-mode pooler, where [`pooler`] applies them per transaction).
///
/// # Errors
/// The DSN's parameters were rejected.
pub fn connect_options(
    dsn: &Dsn,
    plans: Plans,
    limits: Limits,
) -> Result<PgConnectOptions, DbError> {
    Ok(with_settings(
        dsn.connect_options()?,
        &session_settings(plans, limits),
        dsn.transaction_pooling(),
    ))
}

fn with_settings(
    options: PgConnectOptions,
    settings: &[(&'static str, String)],
    pooled: bool,
) -> PgConnectOptions {
    let options = if pooled {
        // No named statement may outlive a transaction (see `pooler`).
        options.statement_cache_capacity(0)
    } else {
        options.options(settings.iter().map(|(name, value)| (*name, value.as_str())))
    };
    if options.get_application_name().is_none() {
        options.application_name("reproq")
    } else {
        options
    }
}
