//! `reproq beat` against real Postgres: passes, dedup, broken rows, leadership.

use sqlx::PgPool;

use crate::support::{BOTH, TestDb, Variant, reproq, stderr};

async fn periodic(pool: &PgPool, name: &str, cron: &str, payload: &str, next_run_at: &str) {
    sqlx::query(
        r#"insert into periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
               concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled, created_at, updated_at)
           values ($1, $2, 'app.tasks.sample', $3::jsonb, 'default', 0, 3, null, 0, null, $4::timestamptz, true, now(), now())"#,
    )
    .bind(name)
    .bind(cron)
    .bind(payload)
    .bind(next_run_at)
    .execute(pool)
    .await
    .unwrap();
}

async fn task_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from task_runs")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn due_row_enqueues_one_task_with_the_go_spec_and_hash() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        periodic(
            &db.pool,
            "nightly",
            "0 0 * * *",
            r#"{"args": [1], "kwargs": {"k": "v"}}"#,
            "2025-01-01T00:00:00Z",
        )
        .await;
        let report = reproq::runner::beat::run_pass(&db.pool, &[]).await.unwrap();
        assert_eq!(
            (report.enqueued, report.failures.len()),
            (1, 0),
            "{variant:?}"
        );
        let (hash, spec, run_after, status, metadata): (String, String, String, String, serde_json::Value) = sqlx::query_as(
            "select spec_hash::text, spec_json::text, to_char(run_after at time zone 'utc', 'YYYY-MM-DD HH24:MI'), status, metadata_json from task_runs",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            hash, "dc9cfe990b30ff659166a016e420b1aad33f0eee42942c3869ef847c69e8ce48",
            "{variant:?}"
        );
        assert_eq!(
            spec,
            r#"{"args": [1], "exec": {"max_attempts": 3, "timeout_seconds": 900}, "kwargs": {"k": "v"}, "priority": 0, "task_path": "app.tasks.sample", "queue_name": "default", "scheduled_at": "2025-01-01T00:00:00Z", "periodic_name": "nightly", "concurrency_key": null, "concurrency_limit": 0}"#
        );
        assert_eq!(
            (run_after.as_str(), status.as_str()),
            ("2025-01-01 00:00", "READY")
        );
        assert_eq!(metadata, serde_json::json!({}));
        let (last, next_in_future): (String, bool) =
            sqlx::query_as("select to_char(last_run_at at time zone 'utc', 'YYYY-MM-DD'), next_run_at > now() from periodic_tasks")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!((last.as_str(), next_in_future), ("2025-01-01", true));
    }
}

#[tokio::test]
async fn hash_of_a_payload_round_tripped_through_jsonb() {
    let db = TestDb::new(Variant::Sql).await;
    // Postgres reorders keys and normalises numbers; the spec is built from its rendering.
    periodic(
        &db.pool,
        "weekly",
        "0 8 * * 1",
        r#"{"kwargs": {"zeta": 1, "a": [1, 2.50, 1e3]}, "args": ["<x>&"]}"#,
        "2025-03-03T08:00:00Z",
    )
    .await;
    sqlx::query("update periodic_tasks set task_path = 'app.tasks.report', queue_name = 'reports', priority = 5, max_attempts = 4, concurrency_key = 'acct:1', concurrency_limit = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    reproq::runner::beat::run_pass(&db.pool, &[]).await.unwrap();
    let hash: String = sqlx::query_scalar("select spec_hash::text from task_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        hash,
        "b8e1c1b2c9a4a2e9d1f022ee0b1ae9729c597185918b8f24b8dc722e3c2d0a89"
    );
}

#[tokio::test]
async fn missed_slots_enqueue_one_run_and_an_active_duplicate_is_not_repeated() {
    let db = TestDb::new(Variant::Django).await;
    periodic(
        &db.pool,
        "every_minute",
        "* * * * *",
        "{}",
        "2020-01-01T00:00:00Z",
    )
    .await;
    let report = reproq::runner::beat::run_pass(&db.pool, &[]).await.unwrap();
    assert_eq!(report.enqueued, 1);
    assert_eq!(
        reproq::runner::beat::run_pass(&db.pool, &[]).await.unwrap(),
        Default::default(),
        "not due again yet"
    );
    // Re-due the same slot while its task is still active: deduplicated, row advanced.
    sqlx::query("update periodic_tasks set next_run_at = '2020-01-01T00:00:00Z'")
        .execute(&db.pool)
        .await
        .unwrap();
    let report = reproq::runner::beat::run_pass(&db.pool, &[]).await.unwrap();
    assert_eq!((report.enqueued, report.deduplicated), (0, 1));
    assert_eq!(task_count(&db.pool).await, 1);
}

#[tokio::test]
async fn broken_rows_fail_alone_and_enqueue_nothing() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        periodic(
            &db.pool,
            "good",
            "*/5 * * * *",
            "{}",
            "2025-01-01T00:00:00Z",
        )
        .await;
        periodic(
            &db.pool,
            "bad_cron",
            "61 * * * *",
            "{}",
            "2025-01-01T00:00:00Z",
        )
        .await;
        periodic(
            &db.pool,
            "never",
            "0 0 30 2 *",
            "{}",
            "2025-01-01T00:00:00Z",
        )
        .await;
        periodic(
            &db.pool,
            "bad_payload",
            "* * * * *",
            "5",
            "2025-01-01T00:00:00Z",
        )
        .await;
        let report = reproq::runner::beat::run_pass(&db.pool, &[]).await.unwrap();
        assert_eq!(report.enqueued, 1, "{variant:?}");
        let mut failed: Vec<&str> = report.failures.iter().map(|(n, _)| n.as_str()).collect();
        failed.sort();
        assert_eq!(failed, ["bad_cron", "bad_payload", "never"]);
        assert!(
            report
                .failures
                .iter()
                .any(|(_, e)| e.contains("never fires"))
        );
        assert_eq!(task_count(&db.pool).await, 1);
        let stuck: i64 = sqlx::query_scalar(
            "select count(*) from periodic_tasks where next_run_at = '2025-01-01T00:00:00Z'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            stuck, 3,
            "broken rows keep their slot; no 0001-01-01 is stored"
        );
    }
}

#[tokio::test]
async fn once_from_the_cli_exits_non_zero_naming_the_broken_row() {
    let db = TestDb::new(Variant::Sql).await;
    periodic(
        &db.pool,
        "good",
        "*/5 * * * *",
        "{}",
        "2025-01-01T00:00:00Z",
    )
    .await;
    let output = reproq(
        &["beat", "--once", "--dsn", &db.url],
        &[],
        Some(std::path::Path::new("/")),
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(task_count(&db.pool).await, 1);
    periodic(
        &db.pool,
        "broken",
        "not a cron",
        "{}",
        "2025-01-01T00:00:00Z",
    )
    .await;
    let output = reproq(
        &["beat", "-once", "-dsn", &db.url],
        &[],
        Some(std::path::Path::new("/")),
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("\"broken\"") && text.contains("invalid cron expr"),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_passes_never_double_enqueue() {
    let db = TestDb::new(Variant::Sql).await;
    for i in 0..40 {
        periodic(
            &db.pool,
            &format!("row{i}"),
            "*/5 * * * *",
            &format!(r#"{{"args": [{i}]}}"#),
            "2025-01-01T00:00:00Z",
        )
        .await;
    }
    let pass = || reproq::runner::beat::run_pass(&db.pool, &[]);
    let (a, b, c, d) = tokio::join!(pass(), pass(), pass(), pass());
    let enqueued: u64 = [a, b, c, d].into_iter().map(|r| r.unwrap().enqueued).sum();
    assert_eq!((enqueued, task_count(&db.pool).await), (40, 40));
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_dies() {
    let db = TestDb::new(Variant::Sql).await;
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
            .args(["beat", "--interval", "500ms", "--dsn", &db.url])
            .current_dir("/")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut leader = start();
    wait_for_leader(&db.pool).await;
    let mut standby = start();
    // The standby's log, line by line, as it comes.
    let standby_log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        use std::io::BufRead;
        let lines = std::io::BufReader::new(standby.stdout.take().unwrap()).lines();
        let log = standby_log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !standby_log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("standing by"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second beat never stood by"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    periodic(
        &db.pool,
        "first",
        "*/5 * * * *",
        "{}",
        "2025-01-01T00:00:00Z",
    )
    .await;
    wait_for_tasks(&db.pool, 1).await;
    leader.kill().unwrap(); // SIGKILL: its session ends and the lock with it
    leader.wait().unwrap();
    periodic(
        &db.pool,
        "second",
        "*/5 * * * *",
        "{}",
        "2025-01-01T00:00:00Z",
    )
    .await;
    wait_for_tasks(&db.pool, 2).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(standby.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = standby.wait().unwrap();
        reader.join().unwrap();
        status
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    let log = standby_log.lock().unwrap().join("\n");
    assert!(
        log.contains("standing by") && log.contains("Took over as the leading beat"),
        "{log}"
    );
    for line in log.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (parsed["worker_id"].as_str(), parsed["role"].as_str()),
            (Some("beat"), Some("beat")),
            "{line}"
        );
    }
}

/// Waits until a beat holds the leader's session-level advisory lock in this database.
async fn wait_for_leader(pool: &PgPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let held: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_locks where locktype = 'advisory' and granted \
             and database = (select oid from pg_database where datname = current_database()))",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if held {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no beat took the lead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn wait_for_tasks(pool: &PgPool, count: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while task_count(pool).await < count {
        assert!(
            std::time::Instant::now() < deadline,
            "expected {count} tasks"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn beat_honours_the_memory_log_interval() {
    let db = TestDb::new(Variant::Sql).await;
    let output = reproq(
        &["beat", "--once", "--dsn", &db.url],
        &[("REPROQ_MEMORY_LOG_INTERVAL", "1h")],
        Some(std::path::Path::new("/")),
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let log = String::from_utf8_lossy(&output.stdout);
    let line = log
        .lines()
        .find(|l| l.contains("reproq memory usage"))
        .unwrap_or_else(|| panic!("no memory log line in {log}"));
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(parsed["rss_bytes"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(parsed["role"], "beat");

    let output = reproq(
        &["beat", "--once", "--dsn", &db.url],
        &[("REPROQ_MEMORY_LOG_INTERVAL", "soon")],
        Some(std::path::Path::new("/")),
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        log.contains("Invalid REPROQ_MEMORY_LOG_INTERVAL; skipping memory logger")
            && !log.contains("reproq memory usage"),
        "{log}"
    );
}
