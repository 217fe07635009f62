//! Writes that wait on their own row: when one has not answered after
//! [`STALL_REPORT`], the stall is logged once, with the task and the sessions that
//! hold the lock it waits for (`pg_blocking_pids`), so an operator can find the idle
//! transaction or the long admin `UPDATE` behind it.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::pool::PoolConnection;

use crate::queue::{Attempt, lock_wait};

/// How long a one-row write may wait before the stall is looked into and logged.
pub const STALL_REPORT: Duration = Duration::from_secs(1);

/// A connection of its own for one watched write, with its server pid.
pub struct WatchedConnection {
    /// The connection the write runs on.
    pub conn: PoolConnection<sqlx::Postgres>,
    /// Its server process id.
    pub pid: i32,
}

/// Takes a connection from `pool` and asks for its server pid.
///
/// # Errors
/// The pool or the database failed.
pub async fn connection(pool: &PgPool) -> Result<WatchedConnection, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let pid = lock_wait::backend_pid(&mut conn).await?;
    Ok(WatchedConnection { conn, pid })
}

/// Awaits `write` (running on the connection of server process `pid`); if it takes
/// longer than [`STALL_REPORT`] and waits for a lock another session holds, logs that
/// once per `reported` flag (the caller keeps it across retries of the same write).
pub async fn watch<F: Future>(
    pool: &PgPool,
    pid: i32,
    attempt: Attempt,
    what: &'static str,
    reported: &mut bool,
    write: F,
) -> F::Output {
    tokio::pin!(write);
    if *reported {
        return write.await;
    }
    tokio::select! {
        done = &mut write => return done,
        () = tokio::time::sleep(STALL_REPORT) => {}
    }
    let blockers = tokio::time::timeout(STALL_REPORT, lock_wait::blocking_pids(pool, pid)).await;
    if let Ok(Ok(blocking_pids)) = blockers {
        if !blocking_pids.is_empty() {
            *reported = true;
            tracing::warn!(
                result_id = attempt.id.0, attempt = attempt.number, blocking_pids = ?blocking_pids,
                write = what,
                "Task row locked by another session; waiting for it (only this task is held up)"
            );
        }
    }
    write.await
}
