//! The worker end to end: real Postgres, real Python children (tests/python/fake_executor.py).

use serde_json::json;

use crate::support::{
    BOTH, NewTask, TestDb, Variant, insert, make_due, row, run_burst, start_observed_worker,
    start_worker, task, wait_for_event, wait_for_metric, wait_for_status,
};

#[tokio::test]
async fn success_is_recorded_with_every_column_on_both_variants() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let id = insert(
            &db.pool,
            NewTask {
                args: json!([{"n": 12345678901234567890_u64, "f": 1.5}]),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        let summary = run_burst(&db, &[]).await;
        assert_eq!(summary.stats.completed, 1, "{variant:?}");
        let r = row(&db.pool, id).await;
        assert_eq!(r.status, "SUCCESSFUL", "{variant:?}");
        assert_eq!(r.attempts, 1);
        assert_eq!(
            r.return_json.as_deref(),
            Some(r#"{"f": 1.5, "n": 12345678901234567890}"#),
            "raw return kept exactly"
        );
        assert_eq!(r.worker_ids, json!(["test-worker"]));
        assert!(r.finished && !r.failed && r.leased_by.is_none() && r.last_error.is_none());
    }
}

#[tokio::test]
async fn registry_row_lives_while_the_worker_runs_and_goes_on_a_clean_stop() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let registered = || async {
            sqlx::query_as::<_, (serde_json::Value, Option<String>)>(
                "select queues, version from reproq_workers where worker_id = 'test-worker'",
            )
            .fetch_optional(&db.pool)
            .await
            .unwrap()
        };
        let (handle, shutdown) = start_worker(&db, &["--queues", "default,mail"]).await;
        let mut row_seen = None;
        for _ in 0..100 {
            row_seen = registered().await;
            if row_seen.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (queues, version) = row_seen.expect("registered while running");
        assert_eq!(queues, json!(["default", "mail"]), "{variant:?}");
        assert_eq!(version.as_deref(), Some(reproq::VERSION));
        shutdown.stop.cancel();
        handle.await.unwrap();
        assert_eq!(
            registered().await,
            None,
            "{variant:?}: removed on a clean stop"
        );

        // A process that took the id over since (a newer registration) keeps its row.
        let (handle, shutdown) = start_worker(&db, &[]).await;
        for _ in 0..100 {
            if registered().await.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        sqlx::query(
            "update reproq_workers set started_at = now() + interval '1 second', hostname = 'other-host' \
             where worker_id = 'test-worker'",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        shutdown.stop.cancel();
        handle.await.unwrap();
        assert!(
            registered().await.is_some(),
            "{variant:?}: another registration under the same id is left alone"
        );
    }
}

#[tokio::test]
async fn app_error_retries_with_backoff_then_fails_for_good() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let id = insert(
            &db.pool,
            NewTask {
                max_attempts: 2,
                ..task("tasks.fail", json!({"message": "boom"}))
            },
        )
        .await;
        run_burst(&db, &[]).await;
        let r = row(&db.pool, id).await;
        assert_eq!((r.status.as_str(), r.attempts), ("READY", 1), "{variant:?}");
        let delay = r.run_after_in.unwrap();
        assert!(
            (25.0..=31.0).contains(&delay),
            "first retry after ~30 s, got {delay}"
        );
        assert_eq!(r.last_kind(), "app_error");
        assert!(r.last_error.is_none() && !r.failed);
        let entry = &r.errors_json[0];
        assert_eq!(
            (
                entry["exception_class"].as_str(),
                entry["attempt"].as_i64(),
                entry["worker_id"].as_str()
            ),
            (Some("ValueError"), Some(1), Some("test-worker"))
        );

        make_due(&db.pool).await;
        run_burst(&db, &[]).await;
        let r = row(&db.pool, id).await;
        assert_eq!((r.status.as_str(), r.attempts), ("FAILED", 2));
        assert_eq!(r.last_error.as_deref(), Some("boom"));
        assert!(r.failed && r.finished && r.run_after_in.is_none());
        assert_eq!(r.errors_json.as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn retry_then_success_clears_the_error_summary() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.flaky", json!({"succeed_on": 2}))).await;
    run_burst(&db, &[]).await;
    assert_eq!(row(&db.pool, id).await.status, "READY");
    make_due(&db.pool).await;
    run_burst(&db, &[]).await;
    let r = row(&db.pool, id).await;
    assert_eq!(
        (r.status.as_str(), r.attempts, r.return_json.as_deref()),
        ("SUCCESSFUL", 2, Some("2"))
    );
    assert!(r.last_error.is_none() && !r.failed);
    assert_eq!(
        r.errors_json.as_array().unwrap().len(),
        1,
        "the failed attempt stays in the history"
    );
}

#[tokio::test]
async fn bad_executor_output_is_a_recorded_failure_not_a_crash() {
    let db = TestDb::new(Variant::Django).await;
    let cases = [
        ("tasks.garbage", "Invalid JSON on stdout"),
        (
            "tasks.empty",
            "Invalid JSON on stdout: unexpected end of JSON input",
        ),
        ("tasks.huge", "output too large"),
        ("tasks.binary", "not UTF-8"),
        ("tasks.nan", "Invalid JSON on stdout"),
        ("tasks.crash", "Invalid JSON on stdout"),
        ("tasks.unknown_task", "Failed to import task"),
    ];
    let mut ids = Vec::new();
    for (path, _) in cases {
        ids.push(
            insert(
                &db.pool,
                NewTask {
                    max_attempts: 1,
                    ..task(path, json!({}))
                },
            )
            .await,
        );
    }
    let summary = run_burst(&db, &[]).await;
    assert_eq!(summary.stats.completed, cases.len() as u64);
    for ((path, needle), id) in cases.iter().zip(ids) {
        let r = row(&db.pool, id).await;
        assert_eq!(r.status, "FAILED", "{path}");
        assert_eq!(r.last_kind(), "app_error", "{path}");
        assert!(
            r.last_error.as_deref().unwrap_or("").contains(needle),
            "{path}: {:?}",
            r.last_error
        );
    }
}

#[tokio::test]
async fn envelope_decides_success_not_the_exit_status_or_noise() {
    let db = TestDb::new(Variant::Sql).await;
    let nonzero = insert(&db.pool, task("tasks.ok_nonzero", json!({}))).await;
    let noisy = insert(&db.pool, task("tasks.noisy", json!({}))).await;
    let nul = insert(&db.pool, task("tasks.nul_return", json!({}))).await;
    let none = insert(&db.pool, task("tasks.no_return", json!({}))).await;
    run_burst(&db, &[]).await;
    assert_eq!(row(&db.pool, nonzero).await.status, "SUCCESSFUL");
    assert_eq!(
        row(&db.pool, noisy).await.return_json.as_deref(),
        Some("\"after noise\"")
    );
    assert_eq!(
        row(&db.pool, nul).await.return_json.as_deref(),
        Some("\"a\u{fffd}b\""),
        "NUL replaced, write not rejected"
    );
    let r = row(&db.pool, none).await;
    assert_eq!(
        (r.status.as_str(), r.return_json),
        ("SUCCESSFUL", None),
        "no return key: SQL NULL"
    );
}

#[tokio::test]
async fn grandchild_holding_stdout_does_not_hang_the_slot() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.grandchild", json!({}))).await;
    let started = std::time::Instant::now();
    run_burst(&db, &[]).await;
    assert_eq!(row(&db.pool, id).await.status, "SUCCESSFUL");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "slot was held {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tasks_outside_the_allow_list_never_run() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("evil.tasks.rm_rf", json!({}))).await;
    run_burst(&db, &["--allowed-task-modules", "tasks."]).await;
    let r = row(&db.pool, id).await;
    assert_eq!(
        (r.status.as_str(), r.last_kind().as_str()),
        ("FAILED", "security_violation")
    );
    assert_eq!(
        r.last_error.as_deref(),
        Some("security violation: unauthorized task module path: evil.tasks.rm_rf")
    );
}

#[tokio::test]
async fn cancelled_or_expired_ready_rows_finish_without_running() {
    let db = TestDb::new(Variant::Django).await;
    let cancelled = insert(
        &db.pool,
        NewTask {
            cancel_requested: true,
            ..task("tasks.sleep", json!({"seconds": 30}))
        },
    )
    .await;
    let expired = insert(
        &db.pool,
        NewTask {
            expires_in_seconds: Some(-5.0),
            ..task("tasks.sleep", json!({"seconds": 30}))
        },
    )
    .await;
    let started = std::time::Instant::now();
    run_burst(&db, &[]).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "nothing should have run"
    );
    let r = row(&db.pool, cancelled).await;
    assert_eq!(
        (r.status.as_str(), r.last_kind().as_str()),
        ("FAILED", "cancelled")
    );
    assert_eq!(r.last_error.as_deref(), Some("Task cancelled by request"));
    let r = row(&db.pool, expired).await;
    assert_eq!(
        (r.status.as_str(), r.last_kind().as_str()),
        ("FAILED", "expired")
    );
}

#[tokio::test]
async fn cancelling_a_running_task_kills_it_within_seconds() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.sleep", json!({"seconds": 60}))).await;
    let worker = start_observed_worker(&db, &[]).await;
    // The executor is running the task (not just the row marked RUNNING by the claim).
    wait_for_event(&worker.events, "task_started", id, 20).await;
    sqlx::query("update task_runs set cancel_requested = true where result_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let r = wait_for_status(&db.pool, id, "FAILED", 15).await;
    assert_eq!(r.last_kind(), "cancelled");
    assert_eq!(r.attempts, 1);
    worker.stop().await;
}

#[tokio::test]
async fn per_task_timeout_kills_the_process_group() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(
        &db.pool,
        NewTask {
            timeout_seconds: 1,
            max_attempts: 1,
            ..task("tasks.ignore_term", json!({"seconds": 60}))
        },
    )
    .await;
    let started = std::time::Instant::now();
    run_burst(&db, &[]).await;
    let r = row(&db.pool, id).await;
    assert_eq!(
        (r.status.as_str(), r.last_kind().as_str()),
        ("FAILED", "infra_error")
    );
    assert!(
        r.last_message().contains("timed out"),
        "{}",
        r.last_message()
    );
    // 1 s timeout + 3 s SIGTERM grace (ignored) + SIGKILL.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[tokio::test]
async fn timeouts_retry_while_attempts_remain() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(
        &db.pool,
        NewTask {
            timeout_seconds: 1,
            max_attempts: 2,
            ..task("tasks.sleep", json!({"seconds": 30}))
        },
    )
    .await;
    run_burst(&db, &[]).await;
    let r = row(&db.pool, id).await;
    assert_eq!(
        (r.status.as_str(), r.last_kind().as_str()),
        ("READY", "infra_error")
    );
    assert!(r.run_after_in.unwrap() > 5.0, "infra retries wait ~10 s");
}

#[tokio::test]
async fn missing_interpreter_counts_attempts_instead_of_looping() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(
        &db.pool,
        NewTask {
            max_attempts: 1,
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    run_burst(&db, &["--python-bin", "/nonexistent/python"]).await;
    let r = row(&db.pool, id).await;
    assert_eq!(
        (r.status.as_str(), r.last_kind().as_str()),
        ("FAILED", "infra_error")
    );
    assert!(
        r.last_message().contains("/nonexistent/python"),
        "{}",
        r.last_message()
    );
}

#[tokio::test]
async fn oversized_payload_is_terminal_at_once() {
    let db = TestDb::new(Variant::Sql).await;
    let big = "x".repeat(2 * 1024 * 1024);
    let id = insert(&db.pool, task("tasks.ok", json!({"blob": big}))).await;
    run_burst(&db, &[]).await;
    let r = row(&db.pool, id).await;
    assert_eq!((r.status.as_str(), r.attempts), ("FAILED", 1));
    assert!(
        r.last_message().starts_with("payload size "),
        "{}",
        r.last_message()
    );
}

#[tokio::test]
async fn payload_modes_and_argv_follow_the_contract() {
    for mode in ["stdin", "file", "inline"] {
        let db = TestDb::new(Variant::Sql).await;
        let id = insert(
            &db.pool,
            task(
                "tasks.echo",
                json!({"mode": mode, "env": ["REPROQ_TEST_MARKER"]}),
            ),
        )
        .await;
        run_burst(&db, &["--payload-mode", mode]).await;
        let r = row(&db.pool, id).await;
        assert_eq!(r.status, "SUCCESSFUL", "{mode}: {r:?}");
        let returned: serde_json::Value =
            serde_json::from_str(r.return_json.as_deref().unwrap()).unwrap();
        let argv: Vec<&str> = returned["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            &argv[..6],
            [
                "--result-id",
                &id.to_string(),
                "--attempt",
                "1",
                "--task-path",
                "tasks.echo"
            ],
            "{mode}"
        );
        let flag = match mode {
            "stdin" => "--payload-stdin",
            "file" => "--payload-file",
            _ => "--payload-json",
        };
        assert_eq!(argv[6], flag);
        if mode == "file" {
            assert!(argv[7].contains(&format!("reproq-payload-{id}-")));
            assert!(
                !std::path::Path::new(argv[7]).exists(),
                "payload file removed"
            );
        }
        assert_eq!(
            returned["spec"]["kwargs"]["mode"], mode,
            "the spec arrives intact"
        );
        assert_eq!(
            returned["cwd"].as_str().unwrap(),
            std::env::current_dir().unwrap().to_str().unwrap(),
            "working directory inherited"
        );
    }
}

#[tokio::test]
async fn logs_dir_files_are_written_and_linked() {
    let db = TestDb::new(Variant::Sql).await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let id = insert(&db.pool, task("tasks.noisy", json!({}))).await;
    run_burst(&db, &["--logs-dir", logs.to_str().unwrap()]).await;
    let r = row(&db.pool, id).await;
    let path = logs.join(format!("task-{id}-attempt-1.log"));
    assert_eq!(r.logs_uri.as_deref(), Some(path.to_str().unwrap()));
    let content = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        content,
        "STDOUT:\nsome library printed this\n{\"ok\": true, \"return\": \"after noise\"}\nSTDERR:\na warning on stderr\n"
    );

    // A stdout over the (default, 1 MiB) cap: the log says it was cut (spec §13.32).
    let cap = 1 << 20;
    let huge = insert(
        &db.pool,
        NewTask {
            max_attempts: 1,
            ..task("tasks.huge", json!({"bytes": cap + 100}))
        },
    )
    .await;
    run_burst(&db, &["--logs-dir", logs.to_str().unwrap()]).await;
    let content = std::fs::read_to_string(logs.join(format!("task-{huge}-attempt-1.log"))).unwrap();
    let stdout = content
        .strip_prefix("STDOUT:\n")
        .and_then(|rest| rest.split("\nSTDERR:").next())
        .unwrap();
    assert!(
        stdout.len() == cap + "\n[TRUNCATED due to size limit]".len()
            && stdout.ends_with("x\n[TRUNCATED due to size limit]"),
        "{}",
        &stdout[stdout.len().saturating_sub(80)..]
    );
}

#[tokio::test]
async fn max_tasks_stops_after_n_completions() {
    let db = TestDb::new(Variant::Sql).await;
    for _ in 0..5 {
        insert(&db.pool, task("tasks.ok", json!({}))).await;
    }
    let worker = crate::support::worker(&db, &["--max-tasks", "3", "--concurrency", "2"]).await;
    let summary = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        worker.run(reproq::shutdown::Shutdown::new()),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.reason,
        reproq::runner::dispatcher::StopReason::MaxTasks
    );
    assert_eq!(summary.stats.completed, 3);
    let ready: i64 = sqlx::query_scalar("select count(*) from task_runs where status = 'READY'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(ready, 2);
}

#[tokio::test]
async fn drain_requeues_unfinished_tasks_without_consuming_an_attempt() {
    let db = TestDb::new(Variant::Django).await;
    let long = insert(&db.pool, task("tasks.sleep", json!({"seconds": 60}))).await;
    let short = insert(&db.pool, task("tasks.sleep", json!({"seconds": 1}))).await;
    let (handle, shutdown) = start_worker(&db, &["--shutdown-timeout", "3s"]).await;
    wait_for_status(&db.pool, long, "RUNNING", 20).await;
    wait_for_status(&db.pool, short, "RUNNING", 20).await;
    shutdown.stop.cancel();
    let summary = tokio::time::timeout(std::time::Duration::from_secs(30), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.stats.completed, summary.stats.requeued), (1, 1));
    assert_eq!(
        row(&db.pool, short).await.status,
        "SUCCESSFUL",
        "a task that finishes within the timeout completes"
    );
    let r = row(&db.pool, long).await;
    assert_eq!(
        (r.status.as_str(), r.attempts, r.leased_by),
        ("READY", 0, None),
        "refunded"
    );
    assert!(r.errors_json.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn lost_lease_kills_the_task_and_writes_nothing() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.sleep", json!({"seconds": 60}))).await;
    let worker =
        start_observed_worker(&db, &["--lease-seconds", "5", "--heartbeat-seconds", "1"]).await;
    wait_for_event(&worker.events, "task_started", id, 20).await;
    // What `manage.py reproq reclaim --action requeue` does to a row.
    sqlx::query("update task_runs set status = 'READY', leased_by = null, leased_until = null, run_after = now() + interval '1 hour' where result_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    // The lease keeper notices and kills the 60 s task: the executor returns.
    let executed = r#"reproq_exec_duration_seconds_count{queue="default"}"#;
    wait_for_metric(&worker.metrics, executed, 1.0, 20).await;
    let summary = worker.stop().await;
    assert_eq!(summary.stats.abandoned, 1);
    let r = row(&db.pool, id).await;
    assert_eq!(
        (r.status.as_str(), r.errors_json.as_array().unwrap().len()),
        ("READY", 0),
        "nothing written after the lease was lost"
    );
}

#[tokio::test]
async fn sigkilled_worker_task_is_reclaimed_and_completed_by_another() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.sleep", json!({"seconds": 2}))).await;
    let args = crate::support::worker_args(
        &db,
        &[
            "--lease-seconds",
            "2",
            "--heartbeat-seconds",
            "1",
            "--worker-id",
            "doomed",
        ],
    );
    let mut doomed = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .arg("worker")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_status(&db.pool, id, "RUNNING", 20).await;
    doomed.kill().unwrap(); // SIGKILL: no drain, no completion write
    doomed.wait().unwrap();
    let (handle, shutdown) = start_worker(
        &db,
        &["--reclaim-interval-seconds", "1", "--worker-id", "rescuer"],
    )
    .await;
    let r = wait_for_status(&db.pool, id, "SUCCESSFUL", 30).await;
    assert_eq!(r.worker_ids, json!(["doomed", "rescuer"]));
    assert_eq!(r.errors_json[0]["kind"], "lease_expiry");
    shutdown.stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, task("tasks.sleep", json!({"seconds": 60}))).await;
    let args = crate::support::worker_args(&db, &["--shutdown-timeout", "1s"]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .arg("worker")
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_status(&db.pool, id, "RUNNING", 20).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
    let log = String::from_utf8_lossy(&status.stdout);
    assert!(
        log.contains("Shutdown requested, waiting for tasks..."),
        "{log}"
    );
    let r = row(&db.pool, id).await;
    assert_eq!((r.status.as_str(), r.attempts), ("READY", 0));
    for line in log.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert_eq!(parsed["worker_id"], "test-worker", "{line}");
    }
}

#[tokio::test]
async fn works_on_a_baseline_schema_without_our_claim_index() {
    // What reproq-django's `migrate-worker` builds: the baseline, none of our additions.
    let db = TestDb::new(Variant::Django).await;
    sqlx::raw_sql("drop index idx_task_runs_claim_rank; drop function reproq_claim_rank(integer, timestamptz, double precision)")
        .execute(&db.pool)
        .await
        .unwrap();
    let order = reproq::queue::claim_order::detect(&db.pool, 60.0)
        .await
        .unwrap();
    assert_eq!(order, reproq::queue::ClaimOrder::Aging { factor: 60.0 });
    let id = insert(&db.pool, task("tasks.ok", json!({}))).await;
    run_burst(&db, &[]).await;
    assert_eq!(row(&db.pool, id).await.status, "SUCCESSFUL");
}

#[tokio::test]
async fn env_scrub_removes_variables_from_task_processes() {
    let db = TestDb::new(Variant::Sql).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reproq.yaml");
    // cargo sets CARGO_PKG_NAME for test processes, so the worker (and its children) inherit it.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    std::fs::write(&config, "worker:\n  env_scrub: [CARGO_PKG_NAME]\n").unwrap();
    let id = insert(
        &db.pool,
        task("tasks.echo", json!({"env": ["CARGO_PKG_NAME", "PATH"]})),
    )
    .await;
    run_burst(&db, &["--config", config.to_str().unwrap()]).await;
    let r = row(&db.pool, id).await;
    let returned: serde_json::Value =
        serde_json::from_str(r.return_json.as_deref().unwrap()).unwrap();
    assert_eq!(
        returned["env"]["CARGO_PKG_NAME"],
        serde_json::Value::Null,
        "scrubbed"
    );
    assert!(
        returned["env"]["PATH"].is_string(),
        "everything else is inherited"
    );
}

#[tokio::test]
async fn deeply_nested_json_fails_the_task_and_the_worker_runs_on() {
    let db = TestDb::new(Variant::Sql).await;
    let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    // PostgreSQL's own jsonb parser refuses 100,000 levels ("stack depth limit exceeded"),
    // so the spec row is as deep as it stores: 10,000 levels.
    let deep_spec = insert(&db.pool, task("tasks.ok", json!({}))).await;
    sqlx::query("update task_runs set spec_json = $1::jsonb where result_id = $2")
        .bind(format!(
            r#"{{"task_path": "tasks.ok", "args": [{}], "kwargs": {{}}}}"#,
            nested(10_000)
        ))
        .bind(deep_spec)
        .execute(&db.pool)
        .await
        .unwrap();
    // The executor prints an envelope whose `return` nests 100,000 arrays.
    let deep_return = insert(
        &db.pool,
        NewTask {
            max_attempts: 1,
            ..task("tasks.deep_return", json!({"levels": 100_000}))
        },
    )
    .await;
    let (handle, shutdown) = start_worker(&db, &[]).await;

    let r = wait_for_status(&db.pool, deep_spec, "FAILED", 30).await;
    assert_eq!(
        (r.attempts, r.last_kind().as_str()),
        (1, "invalid_spec"),
        "{r:?}"
    );
    assert!(
        r.last_message().contains("nested deeper than 1000 levels"),
        "{}",
        r.last_message()
    );
    let r = wait_for_status(&db.pool, deep_return, "FAILED", 30).await;
    assert!(
        r.last_message()
            .starts_with("Invalid JSON on stdout: the return value has arrays and objects nested deeper than 1000 levels"),
        "{}",
        r.last_message()
    );
    assert!(
        r.return_json.is_none(),
        "nothing of the deep value is stored"
    );

    // The worker is still running and takes the next task.
    let next = insert(&db.pool, task("tasks.ok", json!({}))).await;
    wait_for_status(&db.pool, next, "SUCCESSFUL", 30).await;
    assert!(!handle.is_finished());
    shutdown.stop.cancel();
    handle.await.unwrap();
}
