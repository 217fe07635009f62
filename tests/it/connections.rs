//! The worker's and beat's connections: every one carries the `application_name` of
//! the DSN or `PGAPPNAME`, the pool is sized from the concurrency (or
//! `--db-max-connections`), and 200 tasks finishing at once are all recorded.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use crate::spawned::Spawned;
use crate::support::{NewTask, TestDb, Variant, insert, reproq, stdout, task, worker_args};

/// A connection to `db` that the assertions recognise as the test's own.
async fn observer(db: &TestDb) -> PgConnection {
    let options: PgConnectOptions = db.url.parse().unwrap();
    options
        .application_name("it-observer")
        .connect()
        .await
        .unwrap()
}

fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// `application_name` and last query of every client connection to this database but
/// the observer's, opened since the last [`opened_from_now`] (so the test's own setup
/// connections, and those of a process stopped earlier, never count, however long the
/// server takes to end their sessions).
async fn others(conn: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "select application_name, query from pg_stat_activity
         where datname = current_database() and backend_type = 'client backend'
           and pid <> pg_backend_pid()
           and backend_start >= coalesce(
               nullif(current_setting('reproq_test.since', true), '')::timestamptz,
               '-infinity')",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// From now on [`others`] counts only connections opened after this call.
async fn opened_from_now(conn: &mut PgConnection) {
    sqlx::query("select set_config('reproq_test.since', clock_timestamp()::text, false)")
        .execute(conn)
        .await
        .unwrap();
}

/// Waits until the connections other than the observer's satisfy `ready`.
async fn wait_for_connections(
    conn: &mut PgConnection,
    ready: impl Fn(&[(String, String)]) -> bool,
    what: &str,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = others(conn).await;
        if ready(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn finished(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("select count(*) from task_runs where status in ('SUCCESSFUL', 'FAILED')")
        .fetch_one(conn)
        .await
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn every_worker_and_beat_connection_carries_the_application_name() {
    let db = TestDb::new(Variant::Sql).await;
    for _ in 0..3 {
        insert(&db.pool, task("tasks.ok", json!({}))).await;
    }
    // From here on, every other connection to this database is the worker's or beat's.
    db.pool.close().await;
    let mut conn = observer(&db).await;

    let dsn = with_param(&db.url, "application_name=app-from-dsn");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["worker"];
    args.extend(worker_args(
        &db,
        &["--metrics-addr", &addr, "--concurrency", "2"],
    ));
    args[2] = &dsn;
    opened_from_now(&mut conn).await;
    let mut worker = Spawned::start(&args, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished(&mut conn).await < 3 {
        assert!(Instant::now() < deadline, "{}", worker.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker
        .wait_for_output("Serving health and metrics", 10)
        .await;
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // LISTEN, the health check's own connection and the pool's: at least three.
    let seen = wait_for_connections(
        &mut conn,
        // Waited for, not sampled once: the closed setup pool's backends may linger on
        // a loaded server for a moment after the close.
        |seen| {
            seen.len() >= 3
                && seen
                    .iter()
                    .any(|(_, q)| q.to_lowercase().starts_with("listen"))
                && seen.iter().all(|(name, _)| name == "app-from-dsn")
        },
        "the worker's LISTEN, health and pool connections, all named app-from-dsn",
    )
    .await;
    assert!(
        seen.iter().all(|(name, _)| name == "app-from-dsn"),
        "{seen:?}"
    );
    worker.signal(Signal::SIGTERM);
    assert!(worker.wait_exit(30).await.success());

    opened_from_now(&mut conn).await;
    let mut beat = Spawned::start(
        &["beat", "--dsn", &db.url, "--interval", "200ms"],
        &[("PGAPPNAME", "app-from-env")],
    );
    let seen = wait_for_connections(
        &mut conn,
        |seen| {
            seen.iter().any(|(_, q)| q.contains("pg_try_advisory_lock"))
                && seen.len() >= 2
                && seen.iter().all(|(name, _)| name == "app-from-env")
        },
        "beat's leader-lock and pool connections, all named app-from-env",
    )
    .await;
    assert!(
        seen.iter().all(|(name, _)| name == "app-from-env"),
        "{seen:?}"
    );
    beat.signal(Signal::SIGTERM);
    assert!(beat.wait_exit(30).await.success());
}

#[test]
fn the_pool_is_sized_from_the_concurrency_unless_set() {
    let dsn = "postgres://u@127.0.0.1/x";
    let setting = |extra: &[&str]| {
        let mut args = vec!["worker", "--validate", "--dsn", dsn];
        args.extend_from_slice(extra);
        let out = reproq(&args, &[], None);
        stdout(&out)
            .lines()
            .find(|l| l.contains("db_max_connections"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        setting(&["--concurrency", "10"]).contains("0 (sized from concurrency: 18)"),
        "{}",
        setting(&["--concurrency", "10"])
    );
    assert!(setting(&["--concurrency", "200"]).contains("sized from concurrency: 40"));
    let fixed = setting(&["--db-max-connections", "5"]);
    assert!(fixed.contains('5') && fixed.contains("flag"), "{fixed}");
    let out = reproq(
        &[
            "worker",
            "--validate",
            "--dsn",
            dsn,
            "--db-max-connections",
            "1",
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("worker.db_max_connections"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_small_pool_bounds_the_workers_connections() {
    let db = TestDb::new(Variant::Sql).await;
    for _ in 0..40 {
        insert(
            &db.pool,
            NewTask {
                max_attempts: 1,
                ..task("tasks.fail", json!({}))
            },
        )
        .await;
    }
    db.pool.close().await;
    let mut conn = observer(&db).await;
    let mut args = vec!["worker"];
    args.extend(worker_args(
        &db,
        &["--concurrency", "8", "--db-max-connections", "3"],
    ));
    opened_from_now(&mut conn).await;
    let mut worker = Spawned::start(&args, &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut most = 0;
    let mut at_most = Vec::new();
    // Sampled once a task has finished: the start-up check's connection (closed before
    // the pool opens any) may linger on the server for a moment under load.
    loop {
        let done = finished(&mut conn).await;
        if done >= 40 {
            break;
        }
        if done == 0 {
            assert!(Instant::now() < deadline, "{}", worker.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let seen = others(&mut conn).await;
        if seen.len() > most {
            most = seen.len();
            at_most = seen;
        }
        assert!(Instant::now() < deadline, "{}", worker.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        most <= 3,
        "{most} connections with --db-max-connections 3: {at_most:?}"
    );
    // LISTEN and the identity lock hold theirs for good: the samples saw the pool.
    assert!(most >= 2, "sampled {most} connections only");
    worker.signal(Signal::SIGTERM);
    assert!(worker.wait_exit(30).await.success());
}

/// A stand-in interpreter: marks its start, waits on a shared lock the test holds, then
/// succeeds for even result ids and fails for odd ones, so 200 outcomes land together,
/// half through the batched success path and half through single failure writes.
fn barrier_executor(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("barrier.sh");
    let text = format!(
        r#"#!/bin/sh
# argv: -m <module> --result-id N --attempt A --task-path P --payload-stdin
cat > /dev/null
touch "{dir}/started.$4"
flock -s "{dir}/barrier" true
if [ $(( $4 % 2 )) -eq 0 ]; then
  printf '{{"ok": true, "return": %s}}\n' "$4"
else
  printf '{{"ok": false, "exception_class": "E", "message": "odd", "traceback": ""}}\n'
fi
"#,
        dir = dir.display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test]
async fn two_hundred_tasks_finishing_together_are_all_recorded() {
    const TASKS: usize = 200;
    let db = TestDb::new(Variant::Sql).await;
    for _ in 0..TASKS {
        insert(
            &db.pool,
            NewTask {
                max_attempts: 1,
                ..task("tasks.together", json!({}))
            },
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = barrier_executor(dir.path());
    let barrier = std::fs::File::create(dir.path().join("barrier")).unwrap();
    let held = nix::fcntl::Flock::lock(barrier, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let script = script.display().to_string();
    let mut args = vec!["worker"];
    args.extend(worker_args(
        &db,
        &["--concurrency", "200", "--python-bin", &script],
    ));
    let mut worker = Spawned::start(&args, &[]);
    let started = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("started.")
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while started() < TASKS {
        assert!(
            Instant::now() < deadline,
            "{} of {TASKS} started\n{}",
            started(),
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    // Leases last 300 s: an outcome given up would leave its row RUNNING far past this.
    let mut conn = observer(&db).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished(&mut conn).await < TASKS as i64 {
        assert!(
            Instant::now() < deadline,
            "{} of {TASKS} recorded\n{}",
            finished(&mut conn).await,
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts: Vec<(String, i32, i64)> = sqlx::query_as(
        "select status, attempts, count(*) from task_runs group by 1, 2 order by 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        counts,
        [
            ("FAILED".to_owned(), 1, 100),
            ("SUCCESSFUL".to_owned(), 1, 100)
        ]
    );
    worker.signal(Signal::SIGTERM);
    assert!(worker.wait_exit(60).await.success());
    let log = worker.output();
    assert!(!log.contains("Failed to mark"), "{log}");
}

#[tokio::test]
async fn health_checks_answer_while_the_pool_is_taken() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(
        &db.pool,
        NewTask {
            max_attempts: 1,
            ..task("tasks.sleep", json!({"seconds": 1}))
        },
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["worker"];
    args.extend(worker_args(
        &db,
        &[
            "--metrics-addr",
            &addr,
            "--concurrency",
            "1",
            "--db-max-connections",
            "3",
        ],
    ));
    let mut worker = Spawned::start(&args, &[]);
    crate::support::wait_for_status(&db.pool, id, "RUNNING", 30).await;
    // The task's outcome write waits on this row lock, holding the one pool connection
    // LISTEN and the identity lock leave.
    let mut blocker = observer(&db).await;
    sqlx::raw_sql(&format!(
        "begin; select 1 from task_runs where result_id = {id} for update"
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and application_name = 'reproq'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", worker.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = health.status();
    assert_eq!(
        (status.as_u16(), health.text().await.unwrap().as_str()),
        (200, "ok")
    );
    sqlx::raw_sql("rollback")
        .execute(&mut blocker)
        .await
        .unwrap();
    crate::support::wait_for_status(&db.pool, id, "SUCCESSFUL", 30).await;
    worker.signal(Signal::SIGTERM);
    assert!(worker.wait_exit(30).await.success());
}
