//! Multi-host DSNs against real servers: a dead first host (refused, and one that
//! accepts TCP but never answers, bounded by `connect_timeout`), and
//! `target_session_attrs` choosing between a primary and its streaming standby.
//!
//! The "blackholed" host is a loopback listener that is never `accept`ed: the kernel
//! completes the TCP handshake, so the connect succeeds and the startup message is
//! never answered, which is what a dropped-packets address looks like to a client
//! once connected. (An iptables DROP rule would need root and iptables; this needs
//! neither and behaves the same for the walk: only `connect_timeout` ends the wait.)

use std::time::{Duration, Instant};

use reproq::config::Dsn;
use reproq::db::{self, Plans};
use sqlx::postgres::PgConnectOptions;

use crate::cluster::Cluster;
use crate::support::{TestDb, Variant, insert, reproq, stderr, stdout, task, worker_args};

/// A loopback port nobody listens on (bound, then released).
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `postgres://user@127.0.0.1:<dead>,<host>:<port>/<db>?<query>` for a test database.
fn two_host_url(db: &TestDb, dead: u16, query: &str) -> String {
    let options: PgConnectOptions = db.url.parse().unwrap();
    format!(
        "postgres://{}@127.0.0.1:{dead},{}:{}/{}?{query}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

#[tokio::test]
async fn a_refused_first_host_is_skipped_by_validate_and_the_worker() {
    let db = TestDb::new(Variant::Sql).await;
    let url = two_host_url(&db, refused_port(), "connect_timeout=2");
    let validated = reproq(&["worker", "--validate", "--dsn", &url], &[], None);
    let text = stdout(&validated);
    assert!(validated.status.success(), "{text}{}", stderr(&validated));
    assert!(text.contains("host 1: 127.0.0.1:"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("host 2:") && l.contains("answered")),
        "{text}"
    );

    let id = insert(&db.pool, task("tasks.ok", serde_json::json!({}))).await;
    let mut args = worker_args(&db, &["--burst"]);
    args[1] = url.as_str();
    let mut full = vec!["worker"];
    full.extend(args);
    let ran = reproq(&full, &[("PYTHONPATH", env!("CARGO_MANIFEST_DIR"))], None);
    assert!(ran.status.success(), "{}", stderr(&ran));
    let status: String = sqlx::query_scalar("select status from task_runs where result_id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "SUCCESSFUL");
}

#[tokio::test]
async fn a_host_that_never_answers_costs_one_connect_timeout() {
    let db = TestDb::new(Variant::Sql).await;
    // Accepts TCP (the backlog), never reads: the startup message goes unanswered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dsn: Dsn = two_host_url(&db, port, "connect_timeout=2")
        .parse()
        .unwrap();
    let started = Instant::now();
    let (pool, answered, _) = db::connect_reporting(&dsn, 2, Plans::Auto, db::Limits::NONE)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answered, 1, "the second host answers");
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(8),
        "one connect_timeout (2 s) on the silent host, then the next: {waited:?}"
    );
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    drop(silent);
}

#[tokio::test]
async fn every_host_failing_names_each_one() {
    let dead = refused_port();
    let other = refused_port();
    let url =
        format!("host=127.0.0.1,127.0.0.1 port={dead},{other} user=postgres connect_timeout=2");
    let output = reproq(&["migrate", "--dsn", &url], &[], None);
    let text = stderr(&output);
    assert!(!output.status.success());
    assert!(
        text.contains(&format!("127.0.0.1:{dead}")) && text.contains(&format!("127.0.0.1:{other}")),
        "{text}"
    );
    let bad = reproq(
        &["worker", "--validate", "--dsn", "host=a,b port=1,2,3"],
        &[],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stdout(&bad).contains("3 ports for 2 host(s)"),
        "{}",
        stdout(&bad)
    );
}

#[tokio::test]
async fn target_session_attrs_choose_between_primary_and_standby() {
    let primary = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("skipping: cannot start a throwaway cluster: {reason}");
            return;
        }
    };
    let standby = primary.standby().unwrap();
    // Standby listed first: libpq order, then the attrs decide.
    let base = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?connect_timeout=5&target_session_attrs=",
        standby.port, primary.port
    );
    for (attrs, expected) in [
        ("any", 0),
        ("read-write", 1),
        ("primary", 1),
        ("read-only", 0),
        ("standby", 0),
        ("prefer-standby", 0),
    ] {
        let dsn: Dsn = format!("{base}{attrs}").parse().unwrap();
        let (pool, answered, _) = db::connect_reporting(&dsn, 2, Plans::Auto, db::Limits::NONE)
            .await
            .unwrap_or_else(|e| panic!("{attrs}: {e}"));
        assert_eq!(answered, expected, "{attrs}");
        let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            in_recovery,
            expected == 0,
            "{attrs}: pool connections go to the chosen host"
        );
        pool.close().await;
    }
    // prefer-standby's second pass: with only the primary listed, it takes the primary.
    let only_primary: Dsn = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?target_session_attrs=prefer-standby",
        primary.port
    )
    .parse()
    .unwrap();
    assert!(
        db::connect(&only_primary, 1, Plans::Auto, db::Limits::NONE)
            .await
            .is_ok()
    );
    // standby with no standby listed: a clear error naming what the host is.
    let no_standby: Dsn = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?target_session_attrs=standby",
        primary.port
    )
    .parse()
    .unwrap();
    let error = db::connect(&no_standby, 1, Plans::Auto, db::Limits::NONE)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("read-write primary"), "{error}");
}
