//! Operator commands against real Postgres: cancel, replay, triage, prune.

use serde_json::json;

use crate::support::{BOTH, NewTask, TestDb, insert, reproq, row, stderr, stdout, task};

async fn set(db: &TestDb, sql: &str, id: i64) {
    sqlx::query(sql).bind(id).execute(&db.pool).await.unwrap();
}

#[tokio::test]
async fn cancel_reports_what_it_found() {
    let db = TestDb::new(crate::support::Variant::Django).await;
    let dsn = db.url.as_str();
    let ready = insert(&db.pool, task("tasks.ok", json!({}))).await;
    let running = insert(&db.pool, task("tasks.ok", json!({}))).await;
    set(
        &db,
        "update task_runs set status = 'RUNNING' where result_id = $1",
        running,
    )
    .await;
    let done = insert(&db.pool, task("tasks.ok", json!({}))).await;
    set(
        &db,
        "update task_runs set status = 'SUCCESSFUL' where result_id = $1",
        done,
    )
    .await;
    let out = reproq(
        &["cancel", "--id", &ready.to_string(), "--dsn", dsn],
        &[],
        None,
    );
    assert!(stdout(&out).contains("READY"), "{out:?}");
    let out = reproq(
        &["cancel", "-id", &running.to_string(), "-dsn", dsn],
        &[],
        None,
    );
    assert!(stdout(&out).contains("RUNNING"));
    let out = reproq(
        &["cancel", "--id", &done.to_string(), "--dsn", dsn],
        &[],
        None,
    );
    assert!(stdout(&out).contains("already finished (SUCCESSFUL)"));
    let flagged: Vec<bool> =
        sqlx::query_scalar("select cancel_requested from task_runs order by result_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(flagged, [true, true, false]);
    let out = reproq(&["cancel", "--id", "999999", "--dsn", dsn], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        reproq(&["cancel", "--dsn", dsn], &[], None).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn replay_copies_and_refuses_active_duplicates() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let dsn = db.url.as_str();
        let id = insert(
            &db.pool,
            NewTask {
                lock_key: Some("k".into()),
                ..task("tasks.ok", json!({"a": 1}))
            },
        )
        .await;
        let out = reproq(
            &["replay", "--id", &id.to_string(), "--dsn", dsn],
            &[],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{variant:?}: source still READY"
        );
        assert!(
            stderr(&out).contains(&format!("already active as result_id {id}")),
            "{}",
            stderr(&out)
        );
        set(
            &db,
            "update task_runs set status = 'FAILED' where result_id = $1",
            id,
        )
        .await;
        let out = reproq(
            &["replay", "--id", &id.to_string(), "--dsn", dsn],
            &[],
            None,
        );
        assert!(out.status.success(), "{variant:?}: {out:?}");
        assert!(stdout(&out).starts_with(&format!("Requeued task {id} as new result_id ")));
        let (status, lock, attempts, errors, spec): (String, Option<String>, i32, serde_json::Value, serde_json::Value) =
            sqlx::query_as("select status, lock_key, attempts, errors_json, spec_json from task_runs where result_id <> $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            (status.as_str(), lock.as_deref(), attempts, errors),
            ("READY", Some("k"), 0, json!([]))
        );
        assert_eq!(spec["kwargs"]["a"], 1);
        let hash: String =
            sqlx::query_scalar("select spec_hash::text from task_runs where result_id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        let out = reproq(&["replay", "--spec-hash", &hash, "--dsn", dsn], &[], None);
        assert_eq!(out.status.code(), Some(1), "the copy is active now");
        assert_eq!(
            reproq(&["replay", "--dsn", dsn], &[], None).status.code(),
            Some(2)
        );
        assert_eq!(
            reproq(
                &["replay", "--id", "1", "--spec-hash", "x", "--dsn", dsn],
                &[],
                None
            )
            .status
            .code(),
            Some(2)
        );
    }
}

#[tokio::test]
async fn triage_lists_inspects_and_retries_around_conflicts() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let dsn = db.url.as_str();
        let out = reproq(&["triage", "list", "--dsn", dsn], &[], None);
        assert_eq!(stdout(&out), "No failed tasks.\n");
        let a = insert(&db.pool, task("tasks.fail", json!({}))).await;
        let b = insert(
            &db.pool,
            NewTask {
                queue: "other".into(),
                ..task("tasks.fail", json!({"x": 1}))
            },
        )
        .await;
        for id in [a, b] {
            set(&db, "update task_runs set status = 'FAILED', attempts = 3, failed_at = now(), last_error = 'boom', errors_json = '[{\"kind\": \"app_error\"}]' where result_id = $1", id).await;
        }
        let out = reproq(
            &["triage", "list", "--dsn", dsn, "--queue", "other"],
            &[("TZ", "UTC")],
            None,
        );
        let text = stdout(&out);
        assert_eq!(
            text.lines().next(),
            Some("ID\tQueue\tTask\tAttempts\tFailedAt\tLastError")
        );
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains(&format!("{b}\tother\ttasks.fail\t3/3\t")) && text.ends_with("\tboom\n"),
            "{text}"
        );
        let out = reproq(&["triage", "list", "--json", "--dsn", dsn], &[], None);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 2);
        let out = reproq(
            &["triage", "inspect", "--id", &a.to_string(), "--dsn", dsn],
            &[],
            None,
        );
        let text = stdout(&out);
        assert!(
            text.contains(&format!("Result ID: {a}\n"))
                && text.contains("Status: FAILED\n")
                && text.contains("Errors JSON: [{\"kind\": \"app_error\"}]"),
            "{text}"
        );
        // An identical task is active again for `a`: retry skips it and retries `b`.
        let twin = insert(&db.pool, task("tasks.ok", json!({}))).await;
        sqlx::query("update task_runs set spec_hash = (select spec_hash from task_runs where result_id = $1) where result_id = $2")
            .bind(a)
            .bind(twin)
            .execute(&db.pool)
            .await
            .unwrap();
        let out = reproq(&["triage", "retry", "--all", "--dsn", dsn], &[], None);
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "Skipped task {a}: an identical task is already active as result_id {twin}"
            )),
            "{text}"
        );
        assert!(text.contains("Retried 1 task(s)"), "{text}");
        let r = row(&db.pool, b).await;
        assert_eq!(
            (r.status.as_str(), r.attempts, r.last_error),
            ("READY", 0, None),
            "{variant:?}"
        );
        assert_eq!(r.errors_json.as_array().unwrap().len(), 1, "history kept");
        assert_eq!(row(&db.pool, a).await.status, "FAILED");
        assert_eq!(
            reproq(&["triage", "retry", "--dsn", dsn], &[], None)
                .status
                .code(),
            Some(2)
        );
        assert_eq!(
            reproq(
                &["triage", "inspect", "--id", &b.to_string(), "--dsn", dsn],
                &[],
                None
            )
            .status
            .code(),
            Some(1)
        );
    }
}

#[tokio::test]
async fn prune_deletes_expired_and_old_rows_without_breaking_chains() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let dsn = db.url.as_str();
        let expired = insert(
            &db.pool,
            NewTask {
                expires_in_seconds: Some(-60.0),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        let running = insert(
            &db.pool,
            NewTask {
                expires_in_seconds: Some(-60.0),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        set(
            &db,
            "update task_runs set status = 'RUNNING' where result_id = $1",
            running,
        )
        .await;
        let parent = insert(
            &db.pool,
            NewTask {
                expires_in_seconds: Some(-60.0),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        set(&db, "update task_runs set status = 'SUCCESSFUL', finished_at = now() - interval '10 days' where result_id = $1", parent).await;
        let child = insert(
            &db.pool,
            NewTask {
                status: "WAITING".into(),
                wait_count: 1,
                parent_id: Some(parent),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        let old = insert(&db.pool, task("tasks.ok", json!({}))).await;
        set(&db, "update task_runs set status = 'SUCCESSFUL', finished_at = now() - interval '10 days' where result_id = $1", old).await;
        let old_child = insert(
            &db.pool,
            NewTask {
                parent_id: Some(old),
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        set(
            &db,
            "update task_runs set status = 'SUCCESSFUL', finished_at = now() where result_id = $1",
            old_child,
        )
        .await;

        // An expired member of a chord still running, and of one that is over.
        let mut chord_members = Vec::new();
        for workflow_status in ["RUNNING", "FAILED"] {
            let workflow = uuid::Uuid::new_v4();
            let member = insert(
                &db.pool,
                NewTask {
                    expires_in_seconds: Some(-60.0),
                    workflow_id: Some(workflow),
                    ..task("tasks.ok", json!({}))
                },
            )
            .await;
            sqlx::query("insert into workflow_runs (workflow_id, expected_count, success_count, failure_count, status, created_at, updated_at) values ($1, 1, 0, 0, $2, now(), now())")
                .bind(workflow)
                .bind(workflow_status)
                .execute(&db.pool)
                .await
                .unwrap();
            chord_members.push(member);
        }
        let [live_member, finished_member] = chord_members[..] else {
            unreachable!()
        };

        let out = reproq(&["prune", "expired", "--dry-run", "--dsn", dsn], &[], None);
        assert_eq!(
            stdout(&out),
            "Would prune 2 expired task(s)\n",
            "{variant:?}: only the unreferenced, non-running rows outside live workflows"
        );
        let out = reproq(&["prune", "expired", "--dsn", dsn], &[], None);
        assert_eq!(stdout(&out), "Pruned 2 expired task(s)\n");
        let out = reproq(
            &["prune", "successful", "--older-than", "168h", "--dsn", dsn],
            &[],
            None,
        );
        assert!(out.status.success(), "{variant:?}: {out:?}");
        assert_eq!(
            stdout(&out),
            "Pruned 1 successful task(s)\n",
            "the chain parent stays"
        );
        let left: Vec<i64> =
            sqlx::query_scalar("select result_id from task_runs order by result_id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(left, [running, parent, child, old_child, live_member]);
        assert!(
            !left.contains(&expired) && !left.contains(&old) && !left.contains(&finished_member)
        );
        assert_eq!(row(&db.pool, child).await.status, "WAITING");
        assert_eq!(
            reproq(&["prune", "successful", "--dsn", dsn], &[], None)
                .status
                .code(),
            Some(2)
        );
    }
}
