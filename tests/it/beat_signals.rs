//! `reproq beat` and signals, with the real binary: a stop is honoured while the server
//! keeps the beat waiting to connect, and a second signal ends a pass that cannot finish.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sqlx::{Connection, PgConnection};

use crate::spawned::Spawned;
use crate::support::{TestDb, Variant};

/// A "server" that accepts connections and never answers, as a frozen (SIGSTOPped)
/// Postgres does; it counts the connections it accepted.
async fn silent_server() -> (u16, tokio::sync::watch::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted, watch) = tokio::sync::watch::channel(0);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            accepted.send_replace(held.len());
        }
    });
    (port, watch)
}

#[tokio::test]
async fn a_stop_is_honoured_while_waiting_to_connect() {
    let (port, mut accepted) = silent_server().await;
    let dsn = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut beat = Spawned::start(&["beat", "--dsn", &dsn, "--interval", "1s"], &[]);
    tokio::time::timeout(Duration::from_secs(20), accepted.wait_for(|n| *n >= 1))
        .await
        .expect("the beat connected")
        .unwrap();
    let sent = Instant::now();
    beat.signal(Signal::SIGTERM);
    // Well before the 10 s connect timeout would have ended the wait on its own.
    let status = beat.wait_exit(5).await;
    assert_eq!(status.code(), Some(0), "{}", beat.output());
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert!(
        beat.output().contains("Shutting down beat"),
        "{}",
        beat.output()
    );
}

#[tokio::test]
async fn a_second_signal_ends_a_pass_that_cannot_finish() {
    let db = TestDb::new(Variant::Sql).await;
    // Holds every lock on periodic_tasks: the beat's pass waits on it for good.
    let mut blocker = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("begin; lock table periodic_tasks in access exclusive mode")
        .execute(&mut blocker)
        .await
        .unwrap();
    let mut beat = Spawned::start(&["beat", "--dsn", &db.url, "--interval", "100ms"], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and query like '%periodic_tasks%'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", beat.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    beat.signal(Signal::SIGTERM);
    beat.wait_for_output("Shutdown requested", 10).await;
    beat.signal(Signal::SIGTERM);
    let status = beat.wait_exit(5).await;
    assert_eq!(status.code(), Some(0), "{}", beat.output());
    let output = beat.output();
    assert!(
        output.contains("Second signal") && output.contains("Abandoning the beat pass"),
        "{output}"
    );
    sqlx::raw_sql("rollback")
        .execute(&mut blocker)
        .await
        .unwrap();
}
