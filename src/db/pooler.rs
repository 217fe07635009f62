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
//! commits together, as one statement in autocommit would.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

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
    settings: &[(&'static str, &'static str)],
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    let mut statement = String::from("BEGIN");
    for (name, value) in settings {
        statement.push_str(&format!("; SET LOCAL {name} = '{value}'"));
    }
    statement.push_str(&format!("; SAVEPOINT {CHECKOUT_SAVEPOINT}"));
    PgTransactionManager::begin(conn, Some(Cow::Owned(statement)))
}

/// Ends the checkout's transaction, leaving no prepared statement on the server.
///
/// # Errors
/// The connection is broken (the pool then closes it).
pub fn end(conn: &mut PgConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(end_checkout(conn))
}

async fn end_checkout(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if PgTransactionManager::get_transaction_depth(conn) == 0 {
        return Ok(());
    }
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
/// already taken, PgBouncer's `08P01` "prepared statement name is already in use").
pub fn hint(error: &sqlx::Error) -> Option<&'static str> {
    let code = error.as_database_error()?.code()?;
    let message = error.as_database_error()?.message();
    let pooler = matches!(code.as_ref(), "26000" | "42P05")
        || (code == "08P01" && message.contains("prepared statement"));
    pooler.then_some(
        "a named prepared statement was lost or duplicated, as happens behind a \
         transaction-mode pooler such as PgBouncer: add default_query_exec_mode=exec \
         (or statement_cache_capacity=0) to the DSN",
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
