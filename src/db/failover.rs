//! Keeping a pool on the right host of a multi-host DSN.
//!
//! sqlx 0.8's pool connects every new connection with one set of options and offers no
//! hook around the connect itself (a refused connect is retried against the same host
//! until the acquire times out), so a pool cannot walk the host list per connection as
//! libpq does. Instead the pool follows a walk:
//!
//! - its options point at the host the latest walk of [`Connector::connect`] chose;
//! - every new connection is checked against `target_session_attrs` (`after_connect`);
//!   a mismatch fails that connection and asks for a new walk;
//! - for DSNs with several hosts, a monitor keeps one connection to the chosen host and
//!   checks it every [`MONITOR_INTERVAL`]; when it breaks or no longer matches, the
//!   monitor walks the list again (from the first host) and points the pool at the
//!   result ([`sqlx::Pool::set_connect_options`]): the pool's pending connects pick it up
//!   on their next retry;
//! - connections opened before a switch are closed when next acquired
//!   (`before_acquire`), so a demoted host's sessions do not linger.
//!
//! The difference from libpq: after a failover the pool stays on the new host until it
//! fails, even if an earlier host of the list comes back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Notify;

use super::hosts::{self, Connector};

/// How often the monitor checks the chosen host.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);

/// The shared state of one pool's host choice.
#[derive(Clone)]
pub struct Follower {
    connector: Connector,
    state: Arc<Mutex<Choice>>,
    rewalk: Arc<Notify>,
}

struct Choice {
    index: usize,
    switched_at: Option<Instant>,
}

impl Follower {
    /// A follower whose pool starts on host `index`.
    pub fn new(connector: Connector, index: usize) -> Self {
        Follower {
            connector,
            state: Arc::new(Mutex::new(Choice {
                index,
                switched_at: None,
            })),
            rewalk: Arc::new(Notify::new()),
        }
    }

    /// Checks a new pool connection against `target_session_attrs`.
    ///
    /// # Errors
    /// The server is not acceptable (a walk is requested) or did not answer.
    pub async fn check_new(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        match hosts::check(conn, self.connector.attrs()).await {
            Ok(()) => Ok(()),
            Err(hosts::HostFailure::Connect(error)) => Err(error),
            Err(failure) => {
                self.rewalk.notify_one();
                Err(sqlx::Error::Configuration(failure.to_string().into()))
            }
        }
    }

    /// False for a connection opened before the pool last switched hosts.
    pub fn is_current(&self, age: Duration) -> bool {
        let switched_at = self.state.lock().ok().and_then(|s| s.switched_at);
        match switched_at {
            Some(at) => at.elapsed() > age,
            None => true,
        }
    }

    /// Starts the monitor for `pool` (only useful with more than one host); it ends
    /// when the pool is closed.
    pub fn spawn_monitor(&self, pool: PgPool) {
        if self.connector.host_count() < 2 {
            return;
        }
        let follower = self.clone();
        tokio::spawn(async move { follower.monitor(pool).await });
    }

    async fn monitor(self, pool: PgPool) {
        let mut watched: Option<PgConnection> = None;
        let mut outage_logged = false;
        while !pool.is_closed() {
            if let Some(conn) = watched.as_mut() {
                let healthy = hosts::check(conn, self.connector.attrs()).await.is_ok();
                if !healthy {
                    if let Some(conn) = watched.take() {
                        let _ = conn.close_hard().await;
                    }
                    continue;
                }
            } else {
                match self.connector.connect().await {
                    Ok(connected) => {
                        self.switch_to(&pool, connected.index);
                        watched = Some(connected.conn);
                        if outage_logged {
                            tracing::info!(host = %self.host_name(connected.index), "Database host available again");
                            outage_logged = false;
                        }
                    }
                    Err(error) => {
                        if !outage_logged {
                            tracing::error!(error = %error, "No database host is usable; retrying every second");
                            outage_logged = true;
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(MONITOR_INTERVAL) => {}
                () = self.rewalk.notified() => {
                    if let Some(conn) = watched.take() {
                        let _ = conn.close().await;
                    }
                }
                () = pool.close_event() => break,
            }
        }
        if let Some(conn) = watched {
            let _ = conn.close().await;
        }
    }

    fn switch_to(&self, pool: &PgPool, index: usize) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.index == index {
            return;
        }
        let Some(options) = self.connector.options(index) else {
            return;
        };
        tracing::warn!(
            from = %self.host_name(state.index),
            to = %self.host_name(index),
            "Database host changed; new connections go to the new host"
        );
        pool.set_connect_options(options.clone());
        state.index = index;
        state.switched_at = Some(Instant::now());
    }

    fn host_name(&self, index: usize) -> String {
        self.connector
            .endpoints()
            .nth(index)
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}
