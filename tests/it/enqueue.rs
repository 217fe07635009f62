//! `reproq enqueue`: Django's spec and hash, dedup, bulk copies.

use sha2::{Digest, Sha256};

use crate::support::{BOTH, TestDb, reproq, stdout};

#[tokio::test]
async fn enqueue_builds_djangos_spec_hash_and_dedupes() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let args = [
            "enqueue",
            "--dsn",
            &db.url,
            "--task-path",
            "contracts.example_task",
            "--args",
            r#"[1, {"nested": true}]"#,
            "--kwargs",
            r#"{"token": "123e4567-e89b-12d3-a456-426614174000", "notes": "hello", "amount": "12.34"}"#,
            "--priority",
            "5",
            "--lock-key",
            "user:123",
            "--run-after",
            "2025-01-01T12:00:00Z",
            "--concurrency-key",
            "account:42",
            "--concurrency-limit",
            "2",
        ];
        let out = reproq(&args, &[], None);
        assert!(out.status.success(), "{out:?}");
        // contracts/spec_hash.json is this spec with provenance set; enqueue sets none.
        let contract = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contracts/spec_hash.json"
        ))
        .unwrap();
        let expected = contract.trim().replace(
            r#""provenance":{"code_ref":"abc123","pip_lock_hash":"deadbeef"}"#,
            r#""provenance":{"code_ref":null,"pip_lock_hash":null}"#,
        );
        let expected_hash = hex::encode(Sha256::digest(expected.as_bytes()));
        let (hash, lock, climit, attempts, metadata): (String, Option<String>, i32, i32, serde_json::Value) = sqlx::query_as(
            "select spec_hash::text, lock_key, concurrency_limit, max_attempts, metadata_json from task_runs",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(hash, expected_hash, "{variant:?}");
        assert_eq!(
            (lock.as_deref(), climit, attempts, metadata),
            (Some("user:123"), 2, 3, serde_json::json!({}))
        );
        let again = reproq(&args, &[], None);
        assert!(
            stdout(&again).contains("already active as result_id"),
            "{again:?}"
        );
        let count: i64 = sqlx::query_scalar("select count(*) from task_runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 1, "Django's dedup: no duplicate");
    }
}

#[tokio::test]
async fn count_inserts_distinct_copies() {
    let db = TestDb::new(crate::support::Variant::Django).await;
    let out = reproq(
        &[
            "enqueue",
            "--dsn",
            &db.url,
            "--task-path",
            "tasks.ok",
            "--count",
            "1200",
            "--queue",
            "bulk",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("Enqueued 1200 task(s)"));
    let (rows, hashes, indexes): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(distinct spec_hash), count(distinct spec_json->'batch'->>'index') from task_runs where queue_name = 'bulk' and status = 'READY'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((rows, hashes, indexes), (1200, 1200, 1200));
}

#[test]
fn bad_arguments_exit_2() {
    for (args, needle) in [
        (
            vec!["enqueue", "--args", "[1,", "--task-path", "t.x"],
            "--args",
        ),
        (
            vec!["enqueue", "--kwargs", "[]", "--task-path", "t.x"],
            "--kwargs must be a JSON object",
        ),
        (vec!["enqueue", "--args", "[]"], "--task-path is required"),
        (
            vec!["enqueue", "--task-path", "t.x", "--run-after", "tomorrow"],
            "--run-after",
        ),
    ] {
        check(args, needle);
    }
    // Deep nesting is an error, not a stack overflow: 100,000 nested arrays (the text is
    // cut at 100,000 `[`, since Linux caps one argument at 128 KiB), and a complete
    // 65,000-deep value.
    let open = "[".repeat(100_000);
    let closed = format!("{}{}", "[".repeat(65_000), "]".repeat(65_000));
    let kwargs = format!("{}1{}", r#"{"a":"#.repeat(20_000), "}".repeat(20_000));
    for (flag, text) in [
        ("--args", &open),
        ("--args", &closed),
        ("--kwargs", &kwargs),
    ] {
        check(
            vec!["enqueue", "--task-path", "t.x", flag, text],
            "nested deeper than 1000 levels",
        );
    }

    fn check(args: Vec<&str>, needle: &str) {
        let out = reproq(
            &args,
            &[("DATABASE_URL", "postgres://x@127.0.0.1:1/x")],
            None,
        );
        let shown: Vec<&str> = args.iter().map(|a| &a[..a.len().min(40)]).collect();
        assert_eq!(out.status.code(), Some(2), "{shown:?}");
        let err = crate::support::stderr(&out);
        assert!(
            err.contains(needle),
            "{shown:?}: {}",
            &err[..err.len().min(400)]
        );
    }
}

#[tokio::test]
async fn torture_drains_its_batch_and_reports() {
    let db = TestDb::new(crate::support::Variant::Django).await;
    let out = reproq(
        &[
            "torture",
            "--count",
            "300",
            "--concurrency",
            "5",
            "--dsn",
            &db.url,
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("Tasks: 300 total, 300 succeeded, 0 failed, 0 unfinished, 0 duplicates"),
        "{text}"
    );
    assert!(
        text.contains("Throughput: ") && text.contains("Claim latency: p50 "),
        "{text}"
    );
    let out = reproq(
        &[
            "torture",
            "--workers",
            "0",
            "--count",
            "10",
            "--dsn",
            &db.url,
        ],
        &[],
        None,
    );
    assert!(stdout(&out).contains("10 unfinished"), "{out:?}");
    let out = reproq(&["torture", "--dsn", "postgres://u@192.0.2.1/x"], &[], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "non-loopback refused before connecting"
    );
}

#[tokio::test]
async fn enqueue_replay_and_triage_retry_wake_an_idle_worker() {
    // Idle sleeps of 20-25 s: only the NOTIFY from the command can make these fast.
    use crate::support::{wait_for_metric, wait_until_listening};
    let db = TestDb::new(crate::support::Variant::Sql).await;
    let worker = crate::support::start_observed_worker(
        &db,
        &["--poll-min-backoff", "20s", "--poll-max-backoff", "25s"],
    )
    .await;
    // Asleep: listening for wake-ups, and its first claim found nothing. After each pickup
    // it claims once more (nothing) before sleeping again: one queue, 1 + 2k claims.
    let claims = r#"reproq_claim_duration_seconds_count{queue="default"}"#;
    let asleep_after =
        |pickups: u32| wait_for_metric(&worker.metrics, claims, f64::from(1 + 2 * pickups), 10);
    wait_until_listening(&db.pool, 10).await;
    asleep_after(0).await;
    let id_of = |out: &std::process::Output| -> i64 {
        let text = stdout(out);
        text.split(|c: char| !c.is_ascii_digit())
            .find(|part| !part.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no id in {text:?}"))
    };
    let started = std::time::Instant::now();
    let out = reproq(
        &["enqueue", "--dsn", &db.url, "--task-path", "tasks.ok"],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let enqueued = id_of(&out);
    crate::support::wait_for_status(&db.pool, enqueued, "SUCCESSFUL", 10).await;
    asleep_after(1).await;

    let out = reproq(
        &["replay", "--id", &enqueued.to_string(), "--dsn", &db.url],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let replayed: i64 =
        sqlx::query_scalar("select max(result_id) from task_runs where result_id <> $1")
            .bind(enqueued)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    crate::support::wait_for_status(&db.pool, replayed, "SUCCESSFUL", 10).await;

    sqlx::query("update task_runs set status = 'FAILED', failed_at = now() where result_id = $1")
        .bind(replayed)
        .execute(&db.pool)
        .await
        .unwrap();
    asleep_after(2).await;
    let out = reproq(
        &[
            "triage",
            "retry",
            "--id",
            &replayed.to_string(),
            "--dsn",
            &db.url,
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let r = crate::support::wait_for_status(&db.pool, replayed, "SUCCESSFUL", 10).await;
    assert_eq!(r.attempts, 1, "ran again after the retry");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "three pickups inside one idle sleep: {:?}",
        started.elapsed()
    );
    worker.stop().await;
}
