//! Test support: a fresh database per test, on either schema variant.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// Which tables the database starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Built by `reproq migrate` from nothing (the worker's SQL baseline).
    Sql,
    /// Built by reproq-django's migrations, then `reproq migrate` over them.
    Django,
}

pub const BOTH: [Variant; 2] = [Variant::Sql, Variant::Django];

/// The Django-variant tables (no defaults, varchar hash, deferred FK).
pub const DJANGO_SCHEMA: &str = include_str!("../fixtures/django_variant.sql");

/// The admin DSN every test database is created from.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a Postgres server; `make test` starts one for you")
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    name: String,
}

impl TestDb {
    /// An empty database (no tables).
    pub async fn empty() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "reproq_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let admin: PgConnectOptions = admin_url().parse().unwrap();
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options)
            .await
            .unwrap();
        TestDb { pool, url, name }
    }

    /// A database of `variant`, migrated by `reproq migrate`'s code.
    pub async fn new(variant: Variant) -> TestDb {
        let db = TestDb::empty().await;
        if variant == Variant::Django {
            sqlx::raw_sql(DJANGO_SCHEMA)
                .execute(&db.pool)
                .await
                .unwrap();
        }
        reproq::db::migrate::run(&db.pool).await.unwrap();
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which is blocked while we wait here, so the
        // cleanup runs on a thread and runtime of its own; `with (force)` ends the test
        // pool's connections.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let admin: PgConnectOptions = admin_url().parse().unwrap();
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish() as u32
}

/// Runs the real binary with `args`, a clean environment plus `env`, in `cwd`.
pub fn reproq(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&std::path::Path>,
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command.output().unwrap()
}

/// stdout of a finished command, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a finished command, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
