//! Walking a DSN's host list as libpq does: hosts in order, each attempt bounded by
//! `connect_timeout`, each answering server checked against `target_session_attrs`
//! (`SHOW transaction_read_only` and `pg_is_in_recovery()`, as libpq asks servers that
//! do not report them), `prefer-standby` with libpq's second pass. Used for every
//! connection reproq opens outside a pool (the first one, beat's lock session) and by
//! `db::failover` to pick the host the pool connects to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::config::Dsn;
use crate::config::dsn::{Endpoint, TargetSessionAttrs};

/// A boxed, `Send` future: spelled out so that callers inside sqlx's pool hooks and
/// spawned tasks see a concrete `Send` type (an `async fn` over `&mut PgConnection`
/// trips rustc's higher-ranked `Send` inference there).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The servers of one DSN and how to reach each; cheap to clone.
#[derive(Clone)]
pub struct Connector {
    targets: Vec<(Endpoint, PgConnectOptions)>,
    attrs: TargetSessionAttrs,
    timeout: Duration,
    dsn: String,
}

/// A connection the walk accepted, and which host it reached.
pub struct Connected {
    /// The open connection.
    pub conn: PgConnection,
    /// Index of the host in [`Connector::endpoints`].
    pub index: usize,
}

/// Why one host of the walk was passed over.
#[derive(Debug)]
pub enum HostFailure {
    /// The driver's error (refused, authentication, TLS, …).
    Connect(sqlx::Error),
    /// No answer within `connect_timeout`.
    TimedOut(Duration),
    /// It answered but is not what `target_session_attrs` asks for.
    Rejected(String),
}

impl fmt::Display for HostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostFailure::Connect(error) => write!(f, "{error}"),
            HostFailure::TimedOut(after) => {
                write!(f, "no answer within {}s (connect_timeout)", after.as_secs())
            }
            HostFailure::Rejected(why) => f.write_str(why),
        }
    }
}

/// Every host failed: each one with its reason, in the order tried.
#[derive(Debug)]
pub struct WalkError {
    /// The DSN, password redacted.
    pub dsn: String,
    /// Each host tried and why it was passed over.
    pub attempts: Vec<(Endpoint, HostFailure)>,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no usable database host in {}", self.dsn)?;
        for (i, (endpoint, failure)) in self.attempts.iter().enumerate() {
            let separator = if i == 0 { ": " } else { "; " };
            write!(f, "{separator}{endpoint}: {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WalkError {}

impl Connector {
    /// One set of driver options per host of `dsn`, each passed through `adjust`
    /// (session settings, application name).
    ///
    /// # Errors
    /// A host list that does not add up or a parameter the driver rejects.
    pub fn new(
        dsn: &Dsn,
        adjust: impl Fn(PgConnectOptions) -> PgConnectOptions,
    ) -> Result<Self, crate::config::dsn::DsnError> {
        let targets = dsn
            .endpoints()?
            .into_iter()
            .map(|endpoint| {
                let options = adjust(dsn.connect_options_for(&endpoint)?);
                Ok((endpoint, options))
            })
            .collect::<Result<_, crate::config::dsn::DsnError>>()?;
        Ok(Connector {
            targets,
            attrs: dsn.target_session_attrs(),
            timeout: dsn.connect_timeout(),
            dsn: dsn.to_string(),
        })
    }

    /// The hosts, in the order they are tried.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.targets.iter().map(|(endpoint, _)| endpoint)
    }

    /// How many hosts the DSN names.
    pub fn host_count(&self) -> usize {
        self.targets.len()
    }

    /// What `target_session_attrs` asks for.
    pub fn attrs(&self) -> TargetSessionAttrs {
        self.attrs
    }

    /// The driver options for host `index`.
    pub(crate) fn options(&self, index: usize) -> Option<&PgConnectOptions> {
        self.targets.get(index).map(|(_, options)| options)
    }

    /// The DSN, password redacted.
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// Connects to the first acceptable host, trying them in order.
    ///
    /// # Errors
    /// [`WalkError`] naming every host and why it was passed over.
    pub fn connect(&self) -> BoxFuture<'_, Result<Connected, WalkError>> {
        Box::pin(self.walk())
    }

    async fn walk(&self) -> Result<Connected, WalkError> {
        let mut attempts = Vec::new();
        let passes: &[TargetSessionAttrs] = match self.attrs {
            TargetSessionAttrs::PreferStandby => {
                &[TargetSessionAttrs::Standby, TargetSessionAttrs::Any]
            }
            _ => std::slice::from_ref(&self.attrs),
        };
        for &attrs in passes {
            for (index, (endpoint, options)) in self.targets.iter().enumerate() {
                match self.try_host(options, attrs).await {
                    Ok(conn) => return Ok(Connected { conn, index }),
                    Err(failure) => {
                        tracing::debug!(host = %endpoint, reason = %failure, "Database host passed over");
                        attempts.push((endpoint.clone(), failure));
                    }
                }
            }
        }
        Err(WalkError {
            dsn: self.dsn.clone(),
            attempts,
        })
    }

    async fn try_host(
        &self,
        options: &PgConnectOptions,
        attrs: TargetSessionAttrs,
    ) -> Result<PgConnection, HostFailure> {
        let mut conn = tokio::time::timeout(self.timeout, PgConnection::connect_with(options))
            .await
            .map_err(|_| HostFailure::TimedOut(self.timeout))?
            .map_err(HostFailure::Connect)?;
        match check(&mut conn, attrs).await {
            Ok(()) => Ok(conn),
            Err(failure) => {
                let _ = conn.close().await;
                Err(failure)
            }
        }
    }
}

/// Checks an open connection against `attrs` (nothing to ask for `any`).
///
/// # Errors
/// [`HostFailure::Rejected`] naming what the server is, or the query's error.
pub fn check(
    conn: &mut PgConnection,
    attrs: TargetSessionAttrs,
) -> BoxFuture<'_, Result<(), HostFailure>> {
    Box::pin(check_attrs(conn, attrs))
}

async fn check_attrs(
    conn: &mut PgConnection,
    attrs: TargetSessionAttrs,
) -> Result<(), HostFailure> {
    if attrs == TargetSessionAttrs::Any {
        return Ok(());
    }
    let (read_only, in_recovery) = server_state(conn).await.map_err(HostFailure::Connect)?;
    if attrs.accepts(read_only, in_recovery) {
        Ok(())
    } else {
        let what = match (in_recovery, read_only) {
            (true, _) => "a standby (in recovery)",
            (false, true) => "read-only",
            (false, false) => "a read-write primary",
        };
        Err(HostFailure::Rejected(format!(
            "server is {what}, target_session_attrs={attrs}"
        )))
    }
}

/// `(transaction_read_only, pg_is_in_recovery())` of the server behind `conn`, in one
/// simple-protocol round trip (no prepared statement, so it works behind any pooler).
///
/// # Errors
/// The query failed (the connection is likely gone).
pub fn server_state(conn: &mut PgConnection) -> BoxFuture<'_, Result<(bool, bool), sqlx::Error>> {
    Box::pin(async move {
        let row = conn
            .fetch_one(
                "select current_setting('transaction_read_only') = 'on', pg_is_in_recovery()",
            )
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    })
}
