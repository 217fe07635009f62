//! Telling a write that waits on a row lock apart from one the database cannot answer,
//! and finding who holds the lock (`pg_blocking_pids`), for the stall log line.

use sqlx::{PgConnection, PgPool};

/// SQLSTATE `lock_not_available`: the session's `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE `query_canceled`: the session's `statement_timeout` ran out (or a cancel).
const QUERY_CANCELED: &str = "57014";

/// Whether `error` says the statement gave up waiting for a lock another transaction
/// holds: the database answered, and the row is locked (so no reclaimer can take it).
pub fn is_lock_timeout(error: &sqlx::Error) -> bool {
    has_sqlstate(error, LOCK_NOT_AVAILABLE)
}

/// Whether `error` says the statement ran into `statement_timeout`.
pub fn is_statement_timeout(error: &sqlx::Error) -> bool {
    has_sqlstate(error, QUERY_CANCELED)
}

fn has_sqlstate(error: &sqlx::Error, code: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// The server process id of `conn`'s session.
///
/// # Errors
/// Database errors.
pub async fn backend_pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(conn)
        .await
}

/// The server process ids that hold the locks session `pid` waits for (empty when it
/// waits for none).
///
/// # Errors
/// Database errors.
pub async fn blocking_pids(pool: &PgPool, pid: i32) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar("select pg_blocking_pids($1::int4)")
        .bind(pid)
        .fetch_one(pool)
        .await
}
