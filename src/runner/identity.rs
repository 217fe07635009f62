//! Telling a genuinely live twin under the same `worker_id` apart from this process's
//! own dead predecessor (what a restart under systemd leaves behind): every reproq
//! worker holds a session-level advisory lock on its `worker_id` on a connection of
//! its own. The server drops the lock with the session, so a killed predecessor's lock
//! is gone by the time its successor starts, while a live twin's is not. The registry
//! row's hostname completes the picture: a recently seen row from this host whose lock
//! is free is our own predecessor and is taken over silently.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};
use tokio_util::sync::CancellationToken;

use crate::queue::registry;

/// How often the lock's connection is checked (and the lock retaken after a reconnect).
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// A killed process's session may take a moment to end on the server: one more try
/// after this before calling the holder a live twin.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The lock's connection, if the lock could be taken. It stays checked out of the
/// worker's pool (counted in `db_max_connections`) and is closed, never returned, so
/// the lock cannot linger on a pooled session.
pub struct Identity {
    conn: Option<PoolConnection<Postgres>>,
    /// `Some(false)`: another live session holds the lock; `None`: the database did
    /// not answer.
    pub free: Option<bool>,
}

/// Takes the identity lock of `worker_id` on a connection of its own (from `pool`).
pub async fn take(pool: &PgPool, worker_id: &str) -> Identity {
    let mut free = None;
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(RETRY_AFTER).await;
        }
        let Ok(mut conn) = pool.acquire().await else {
            return Identity { conn: None, free };
        };
        conn.close_on_drop();
        match registry::hold_identity(&mut conn, worker_id).await {
            Ok(true) => {
                return Identity {
                    conn: Some(conn),
                    free: Some(true),
                };
            }
            Ok(false) => free = Some(false),
            Err(_) => free = None,
        }
        let _ = conn.close().await;
    }
    Identity { conn: None, free }
}

/// Keeps the lock until `done` fires: after a lost connection (a server restart)
/// it is taken again on a new one; a twin that took it meanwhile is logged.
pub async fn keep(pool: PgPool, worker_id: String, identity: Identity, done: CancellationToken) {
    let mut conn = identity.conn;
    let mut warned = identity.free == Some(false);
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = done.cancelled() => break,
        }
        if let Some(held) = conn.as_mut() {
            if tokio::time::timeout(Duration::from_secs(5), held.ping())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                continue;
            }
        }
        let again = take(&pool, &worker_id).await;
        if again.free == Some(false) && !std::mem::replace(&mut warned, true) {
            tracing::warn!(
                worker_id = %worker_id,
                "Another live worker uses this worker_id; lease fencing cannot tell them apart"
            );
        }
        conn = again.conn;
    }
    if let Some(held) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(1), held.close()).await;
    }
}
