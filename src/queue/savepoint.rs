//! Savepoints inside an open transaction, so one failing step (a beat row) rolls back
//! alone. Names are chosen by our code, never by input: an identifier of ASCII letters,
//! digits and underscores.

use sqlx::PgConnection;

/// `SAVEPOINT name`.
///
/// # Errors
/// The database refused it (no transaction, a lost connection).
pub async fn create(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    run(conn, "savepoint", name).await
}

/// `ROLLBACK TO SAVEPOINT name`: undoes what followed it; the transaction goes on.
///
/// # Errors
/// As [`create`].
pub async fn rollback_to(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    run(conn, "rollback to savepoint", name).await
}

/// `RELEASE SAVEPOINT name`: keeps what followed it.
///
/// # Errors
/// As [`create`].
pub async fn release(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    run(conn, "release savepoint", name).await
}

async fn run(conn: &mut PgConnection, command: &str, name: &str) -> Result<(), sqlx::Error> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(sqlx::Error::Protocol(format!(
            "invalid savepoint name {name:?}"
        )));
    }
    sqlx::raw_sql(&format!("{command} {name}"))
        .execute(conn)
        .await
        .map(|_| ())
}
