//! `--executor-mode pool`: the same outcomes as spawn mode, plus reuse, recycling and
//! isolation between tasks of one runner.

use serde_json::json;

use crate::support::{
    NewTask, TestDb, Variant, insert, row, run_burst, start_worker, task, wait_for_status,
};

const POOL: &[&str] = &["--executor-mode", "pool"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = POOL.to_vec();
    all.extend_from_slice(extra);
    all
}

fn returned(r: &crate::support::Row) -> serde_json::Value {
    serde_json::from_str(r.return_json.as_deref().unwrap()).unwrap()
}

#[tokio::test]
async fn outcomes_match_spawn_mode() {
    for mode in ["spawn", "pool"] {
        let db = TestDb::new(Variant::Django).await;
        let ok = insert(
            &db.pool,
            NewTask {
                args: json!([7]),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        let fail = insert(
            &db.pool,
            NewTask {
                max_attempts: 1,
                ..task("tasks.fail", json!({}))
            },
        )
        .await;
        let retry = insert(&db.pool, task("tasks.flaky", json!({"succeed_on": 2}))).await;
        let crash = insert(
            &db.pool,
            NewTask {
                max_attempts: 1,
                ..task("tasks.crash", json!({}))
            },
        )
        .await;
        let garbage = insert(
            &db.pool,
            NewTask {
                max_attempts: 1,
                ..task("tasks.garbage", json!({}))
            },
        )
        .await;
        let printed = insert(&db.pool, task("tasks.print", json!({}))).await;
        let timeout = insert(
            &db.pool,
            NewTask {
                max_attempts: 1,
                timeout_seconds: 1,
                ..task("tasks.sleep", json!({"seconds": 30}))
            },
        )
        .await;
        let after_crash = insert(
            &db.pool,
            NewTask {
                args: json!([8]),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        run_burst(&db, &["--executor-mode", mode, "--concurrency", "2"]).await;
        assert_eq!(
            row(&db.pool, ok).await.return_json.as_deref(),
            Some("7"),
            "{mode}"
        );
        assert_eq!(
            row(&db.pool, fail).await.last_error.as_deref(),
            Some("boom"),
            "{mode}"
        );
        let r = row(&db.pool, retry).await;
        assert_eq!(
            (r.status.as_str(), r.last_kind().as_str()),
            ("READY", "app_error"),
            "{mode}"
        );
        let r = row(&db.pool, crash).await;
        assert_eq!(
            r.status, "FAILED",
            "{mode}: a runner killed by os._exit is a failed attempt"
        );
        assert!(
            r.last_error.unwrap().contains("Invalid JSON on stdout"),
            "{mode}"
        );
        assert!(
            row(&db.pool, garbage)
                .await
                .last_error
                .unwrap()
                .contains("Invalid JSON on stdout"),
            "{mode}"
        );
        assert_eq!(
            row(&db.pool, printed).await.return_json.as_deref(),
            Some("\"printed\""),
            "{mode}: last line with ok wins"
        );
        let r = row(&db.pool, timeout).await;
        assert_eq!(
            (r.status.as_str(), r.last_kind().as_str()),
            ("FAILED", "infra_error"),
            "{mode}"
        );
        assert_eq!(
            row(&db.pool, after_crash).await.status,
            "SUCCESSFUL",
            "{mode}: the pool recovers"
        );
    }
}

#[tokio::test]
async fn runners_are_reused_and_recycled_after_max_tasks() {
    let db = TestDb::new(Variant::Sql).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(insert(&db.pool, task("tasks.counter", json!({}))).await);
    }
    run_burst(&db, &args(&["--concurrency", "1", "--pool-max-tasks", "2"])).await;
    let mut counters = Vec::new();
    let mut pids = Vec::new();
    for id in ids {
        let value = returned(&row(&db.pool, id).await);
        counters.push(value["counter"].as_i64().unwrap());
        pids.push(value["pid"].as_i64().unwrap());
    }
    assert_eq!(
        counters,
        [1, 2, 1, 2, 1],
        "{pids:?}: module state survives within a runner and resets on recycle"
    );
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_eq!(pids[2], pids[3]);
}

#[tokio::test]
async fn runner_over_the_rss_limit_is_replaced() {
    let db = TestDb::new(Variant::Sql).await;
    let first = insert(&db.pool, task("tasks.balloon", json!({"mib": 80}))).await;
    let second = insert(&db.pool, task("tasks.counter", json!({}))).await;
    run_burst(
        &db,
        &args(&["--concurrency", "1", "--pool-max-rss", "60MiB"]),
    )
    .await;
    let balloon_pid = returned(&row(&db.pool, first).await).as_i64().unwrap();
    let next = returned(&row(&db.pool, second).await);
    assert_ne!(next["pid"].as_i64().unwrap(), balloon_pid);
    assert_eq!(next["counter"], 1);
}

#[tokio::test]
async fn working_directory_argv_and_signal_handlers_are_restored_between_tasks() {
    for mode in ["spawn", "pool"] {
        let db = TestDb::new(Variant::Sql).await;
        let one_slot = ["--executor-mode", mode, "--concurrency", "1"];
        let chdir = insert(&db.pool, task("tasks.chdir", json!({}))).await;
        let trap = insert(&db.pool, task("tasks.trap_sigterm", json!({}))).await;
        run_burst(&db, &one_slot).await;
        assert_eq!(
            row(&db.pool, chdir).await.return_json.as_deref(),
            Some("\"/\""),
            "{mode}"
        );
        assert_eq!(row(&db.pool, trap).await.status, "SUCCESSFUL", "{mode}");
        let probe = insert(&db.pool, task("tasks.where", json!({}))).await;
        run_burst(&db, &one_slot).await;
        let value = returned(&row(&db.pool, probe).await);
        assert_eq!(
            value["cwd"].as_str().unwrap(),
            std::env::current_dir().unwrap().to_str().unwrap(),
            "{mode}"
        );
        assert_eq!(value["sigterm_default"], true, "{mode}");
        assert!(
            value["argv0"]
                .as_str()
                .unwrap()
                .ends_with("tests/python/fake_executor.py"),
            "{mode}: argv[0] as `python -m` sets it: {value}"
        );
    }
}

#[tokio::test]
async fn cancel_and_drain_behave_the_same_in_both_modes() {
    for mode in ["spawn", "pool"] {
        let db = TestDb::new(Variant::Sql).await;
        let cancelled = insert(&db.pool, task("tasks.sleep", json!({"seconds": 60}))).await;
        let drained = insert(&db.pool, task("tasks.sleep", json!({"seconds": 60}))).await;
        let (handle, shutdown) = start_worker(
            &db,
            &[
                "--executor-mode",
                mode,
                "--concurrency",
                "3",
                "--shutdown-timeout",
                "5s",
            ],
        )
        .await;
        wait_for_status(&db.pool, cancelled, "RUNNING", 20).await;
        wait_for_status(&db.pool, drained, "RUNNING", 20).await;
        sqlx::query("update task_runs set cancel_requested = true where result_id = $1")
            .bind(cancelled)
            .execute(&db.pool)
            .await
            .unwrap();
        let r = wait_for_status(&db.pool, cancelled, "FAILED", 15).await;
        assert_eq!(r.last_kind(), "cancelled", "{mode}");
        // Started just before SIGTERM and shorter than the shutdown timeout: finishes.
        let finishing = insert(
            &db.pool,
            task("tasks.sleep", json!({"seconds": 2, "return_pid": true})),
        )
        .await;
        wait_for_status(&db.pool, finishing, "RUNNING", 20).await;
        shutdown.stop.cancel();
        let summary = tokio::time::timeout(std::time::Duration::from_secs(30), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.stats.requeued, 1, "{mode}");
        let r = row(&db.pool, drained).await;
        assert_eq!((r.status.as_str(), r.attempts), ("READY", 0), "{mode}");
        let r = row(&db.pool, finishing).await;
        assert_eq!(r.status, "SUCCESSFUL", "{mode}: drained to completion");
        let pid = returned(&r).as_i64().unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{mode}: the process that ran the task ({pid}) is gone once the worker returns"
        );
    }
}

#[tokio::test]
async fn a_runner_that_cannot_start_burns_no_attempts() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.ok", json!({}))).await;
    let (handle, shutdown) =
        start_worker(&db, &args(&["--python-bin", "/nonexistent/python3"])).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    shutdown.stop.cancel();
    let summary = handle.await.unwrap();
    assert!(
        summary.stats.claimed <= 4,
        "backs off (2 s, 4 s, …) instead of claiming in a tight loop: {summary:?}"
    );
    let r = row(&db.pool, id).await;
    assert_eq!(
        (
            r.status.as_str(),
            r.attempts,
            r.errors_json.as_array().unwrap().len()
        ),
        ("READY", 0, 0),
        "{:?}",
        r.errors_json
    );
}
