//! The beat's leader lock: a session-level advisory lock held on a connection of its
//! own for as long as that session lives, so only one beat runs passes and another
//! takes over within one interval when the leader's session ends.

use sqlx::PgConnection;

/// Takes the lock on `conn` if no other session holds it.
///
/// # Errors
/// The database did not answer.
pub async fn try_acquire(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended('reproq:beat', 0))")
        .fetch_one(conn)
        .await
}

/// Checks that the session holding the lock is still alive (and with it the lock).
///
/// # Errors
/// The session is gone.
pub async fn still_held(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("select 1").execute(conn).await.map(|_| ())
}
