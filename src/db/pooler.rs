//! Running behind a transaction-mode pooler (PgBouncer `pool_mode = transaction`),
//! selected by pgx's DSN parameters `default_query_exec_mode` (any mode but
//! `cache_statement`) or `statement_cache_capacity=0`
//! ([`Dsn::transaction_pooling`](crate::config::Dsn::transaction_pooling)).
//!
//! Behind such a pooler a server connection belongs to a client only for one
//! transaction, and sqlx cannot run a statement without a named prepared statement nor
//! without two `Sync`s (prepare, then execute), between which PgBouncer may hand the
//! server to another client. So in this mode every pool checkout is one transaction:
//!
//! - on checkout, `BEGIN` with the session settings as `SET LOCAL` (they are not sent
//!   as startup `options`, which PgBouncer refuses), through sqlx's transaction manager
//!   so a `pool.begin()` inside becomes a savepoint;
//! - the statement cache is off, so sqlx never reuses a statement name across
//!   checkouts;
//! - on release, `DEALLOCATE ALL` then `COMMIT`, so no named statement outlives the
//!   transaction on the server connection. A checkout whose statement failed is rolled
//!   back to its start first (what autocommit would have kept: nothing).
//!
//! A checkout therefore costs three more round trips than direct; what a checkout does
//! commits together, as one statement in autocommit would, but only when the
//! connection goes back to the pool (sqlx does that on a task of its own, just after
//! the statement). So before a process exits or closes a pool it waits for those
//! commits ([`settle`], [`super::close`]); a crash in between loses that last
//! statement, which reproq's at-least-once design absorbs (a lost claim leaves the
//! task READY, a lost outcome leaves it to the reclaimer). sqlx's `max_lifetime` is off
//! in this mode, since it closes an expired connection before the release hook runs.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgTransactionManager;
use sqlx::{Executor, PgConnection, TransactionManager};

use super::hosts::BoxFuture;

/// The savepoint that marks the start of a checkout.
const CHECKOUT_SAVEPOINT: &str = "reproq_checkout";

/// Starts the checkout's transaction with `settings` applied as `SET LOCAL`.
///
/// # Errors
/// The server refused (the connection is then discarded by the pool).
pub fn begin<'c>(
    conn: &'c mut PgConnection,
    settings: &[(&'static str, String)],
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    let mut statement = String::from("BEGIN");
    for (name, value) in settings {
        statement.push_str(&format!("; SET LOCAL {name} = '{value}'"));
    }
    statement.push_str(&format!("; SAVEPOINT {CHECKOUT_SAVEPOINT}"));
    Box::pin(async move {
        PgTransactionManager::begin(conn, Some(Cow::Owned(statement))).await?;
        OPEN_CHECKOUTS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

/// Checkouts begun and not yet ended, process-wide.
static OPEN_CHECKOUTS: AtomicUsize = AtomicUsize::new(0);

/// Waits (at most `limit`) until every checkout's transaction has ended, so that the
/// last statements are committed before the process exits or its pool closes.
pub async fn settle(limit: Duration) {
    let deadline = Instant::now() + limit;
    while OPEN_CHECKOUTS.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Ends the checkout's transaction, leaving no prepared statement on the server.
///
/// # Errors
/// The connection is broken (the pool then closes it).
pub fn end(conn: &mut PgConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        if PgTransactionManager::get_transaction_depth(conn) == 0 {
            return Ok(());
        }
        let ended = end_checkout(conn).await;
        let _ =
            OPEN_CHECKOUTS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        ended
    })
}

async fn end_checkout(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // A user transaction dropped without commit leaves its rollback queued; it runs
    // before the next statement. Extra depth means one was abandoned mid-way.
    while PgTransactionManager::get_transaction_depth(conn) > 1 {
        PgTransactionManager::rollback(conn).await?;
    }
    let deallocate = format!("DEALLOCATE ALL; RELEASE SAVEPOINT {CHECKOUT_SAVEPOINT}");
    if conn.execute(deallocate.as_str()).await.is_err() {
        // The transaction is aborted (a statement of this checkout failed).
        let recover = format!("ROLLBACK TO SAVEPOINT {CHECKOUT_SAVEPOINT}; DEALLOCATE ALL");
        conn.execute(recover.as_str()).await?;
    }
    PgTransactionManager::commit(conn).await
}

/// What to tell the user when `error` is what a transaction-mode pooler does to named
/// prepared statements (`26000` a statement the server does not know, `42P05` a name
/// already taken, PgBouncer's `08P01` "prepared statement name is already in use") or
/// to our startup `options` (PgBouncer's `08P01` "unsupported startup parameter").
pub fn hint(error: &sqlx::Error) -> Option<&'static str> {
    let code = error.as_database_error()?.code()?;
    let message = error.as_database_error()?.message();
    let pooler = matches!(code.as_ref(), "26000" | "42P05")
        || (code == "08P01"
            && (message.contains("prepared statement")
                || message.contains("unsupported startup parameter")));
    pooler.then_some(
        "this looks like a transaction-mode pooler such as PgBouncer (which keeps no \
         named prepared statements and refuses startup options): add \
         default_query_exec_mode=exec (or statement_cache_capacity=0) to the DSN",
    )
}

static REPORTED: AtomicBool = AtomicBool::new(false);

/// Logs [`hint`] for `error` as an error, once per process.
pub fn report(error: &sqlx::Error) {
    if let Some(hint) = hint(error) {
        if !REPORTED.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %error, dsn_parameter = "default_query_exec_mode=exec", "{hint}");
        }
    }
}
