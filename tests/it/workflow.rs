//! Chains and chords (spec §4.13, contract §5), including failure propagation.

use serde_json::json;
use uuid::Uuid;

use crate::support::{BOTH, NewTask, TestDb, insert, row, run_burst, task};

async fn chain(db: &TestDb, paths: &[&str]) -> Vec<i64> {
    let workflow = Uuid::new_v4();
    let mut ids: Vec<i64> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let waiting = i > 0;
        let id = insert(
            &db.pool,
            NewTask {
                status: if waiting { "WAITING" } else { "READY" }.into(),
                wait_count: i32::from(waiting),
                parent_id: ids.last().copied(),
                workflow_id: Some(workflow),
                max_attempts: 1,
                ..task(path, json!({}))
            },
        )
        .await;
        ids.push(id);
    }
    ids
}

/// READY members of `workflow`, one attempt each.
async fn workflow_members(db: &TestDb, workflow: Uuid, paths: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for path in paths {
        ids.push(
            insert(
                &db.pool,
                NewTask {
                    workflow_id: Some(workflow),
                    max_attempts: 1,
                    ..task(path, json!({}))
                },
            )
            .await,
        );
    }
    ids
}

async fn chord(db: &TestDb, members: &[&str]) -> (Uuid, Vec<i64>, i64) {
    let workflow = Uuid::new_v4();
    let ids = workflow_members(db, workflow, members).await;
    let callback = insert(
        &db.pool,
        NewTask {
            status: "WAITING".into(),
            wait_count: members.len() as i32,
            workflow_id: Some(workflow),
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    sqlx::query("insert into workflow_runs (workflow_id, expected_count, success_count, failure_count, callback_result_id, status, created_at, updated_at) values ($1, $2, 0, 0, $3, 'RUNNING', now(), now())")
        .bind(workflow)
        .bind(members.len() as i32)
        .bind(callback)
        .execute(&db.pool)
        .await
        .unwrap();
    (workflow, ids, callback)
}

async fn workflow_status(db: &TestDb, id: Uuid) -> (String, i32, i32) {
    sqlx::query_as(
        "select status, success_count, failure_count from workflow_runs where workflow_id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn chain_runs_in_order() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let ids = chain(&db, &["tasks.ok", "tasks.ok", "tasks.ok"]).await;
        run_burst(&db, &[]).await;
        for id in &ids {
            assert_eq!(row(&db.pool, *id).await.status, "SUCCESSFUL", "{variant:?}");
        }
        let started: Vec<i64> =
            sqlx::query_scalar("select result_id from task_runs order by started_at")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(started, ids);
    }
}

#[tokio::test]
async fn failed_chain_step_fails_its_waiting_descendants() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let ids = chain(&db, &["tasks.ok", "tasks.fail", "tasks.ok", "tasks.ok"]).await;
        run_burst(&db, &[]).await;
        assert_eq!(row(&db.pool, ids[0]).await.status, "SUCCESSFUL");
        assert_eq!(row(&db.pool, ids[1]).await.status, "FAILED");
        for id in &ids[2..] {
            let r = row(&db.pool, *id).await;
            assert_eq!(
                (r.status.as_str(), r.last_kind().as_str()),
                ("FAILED", "workflow_failed"),
                "{variant:?}"
            );
            assert_eq!(r.errors_json[0]["failed_result_id"], ids[1]);
            assert_eq!(
                r.last_error.as_deref(),
                Some("workflow_failed: Workflow failed due to task failure")
            );
            assert_eq!(r.attempts, 0, "never ran");
        }
    }
}

#[tokio::test]
async fn chord_releases_its_callback_after_the_last_member() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let (workflow, members, callback) = chord(&db, &["tasks.ok", "tasks.ok", "tasks.ok"]).await;
        run_burst(&db, &[]).await;
        for id in members {
            assert_eq!(row(&db.pool, id).await.status, "SUCCESSFUL");
        }
        assert_eq!(
            row(&db.pool, callback).await.status,
            "SUCCESSFUL",
            "{variant:?}"
        );
        assert_eq!(
            workflow_status(&db, workflow).await,
            ("SUCCESSFUL".into(), 3, 0)
        );
    }
}

#[tokio::test]
async fn chord_member_failure_fails_the_callback_and_workflow() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let (workflow, members, callback) = chord(&db, &["tasks.ok", "tasks.fail"]).await;
        run_burst(&db, &[]).await;
        assert_eq!(row(&db.pool, members[1]).await.status, "FAILED");
        let r = row(&db.pool, callback).await;
        assert_eq!(
            (r.status.as_str(), r.last_kind().as_str(), r.wait_count),
            ("FAILED", "workflow_failed", 0),
            "{variant:?}"
        );
        let (status, _, failures) = workflow_status(&db, workflow).await;
        assert_eq!((status.as_str(), failures), ("FAILED", 1));
    }
}

#[tokio::test]
async fn reclaim_requeues_or_fails_expired_leases_with_workflow_handling() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let ids = chain(&db, &["tasks.ok", "tasks.ok"]).await;
        let retry = insert(
            &db.pool,
            NewTask {
                max_attempts: 3,
                ..task("tasks.ok", json!({}))
            },
        )
        .await;
        sqlx::query("update task_runs set status = 'RUNNING', attempts = 1, leased_by = 'gone', leased_until = now() - interval '1 minute' where result_id = any($1)")
            .bind(vec![ids[0], retry])
            .execute(&db.pool)
            .await
            .unwrap();
        let report = reproq::queue::reclaim::reclaim_expired(&db.pool, 3)
            .await
            .unwrap();
        assert_eq!(
            (report.requeued, report.failed, report.dependants_failed),
            (1, 1, 1),
            "{variant:?}"
        );
        let r = row(&db.pool, retry).await;
        assert_eq!(
            (r.status.as_str(), r.last_kind().as_str(), r.leased_by),
            ("READY", "lease_expiry", None)
        );
        let r = row(&db.pool, ids[0]).await;
        assert_eq!(
            r.last_error.as_deref(),
            Some("lease_expiry: Worker heartbeat lost or process crashed")
        );
        assert_eq!(
            row(&db.pool, ids[1]).await.status,
            "FAILED",
            "chain successor failed with it"
        );
    }
}

#[tokio::test]
async fn released_successors_wake_idle_workers_without_waiting_for_the_poll() {
    let db = TestDb::new(crate::support::Variant::Sql).await;
    let ids = chain(&db, &["tasks.ok", "tasks.ok", "tasks.ok"]).await;
    // Idle sleeps of 20-25 s: without the NOTIFY wake-up each step would wait that long.
    let (handle, shutdown) = crate::support::start_worker(
        &db,
        &[
            "--poll-min-backoff",
            "20s",
            "--poll-max-backoff",
            "25s",
            "--concurrency",
            "2",
        ],
    )
    .await;
    let started = std::time::Instant::now();
    crate::support::wait_for_status(&db.pool, ids[2], "SUCCESSFUL", 15).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    shutdown.stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn batched_successes_release_successors_outside_workflows() {
    // Rows linked by parent_id alone (no workflow_id) take the batched completion path.
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let parent = insert(&db.pool, task("tasks.ok", json!({}))).await;
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
        run_burst(&db, &[]).await;
        assert_eq!(
            row(&db.pool, parent).await.status,
            "SUCCESSFUL",
            "{variant:?}"
        );
        assert_eq!(
            row(&db.pool, child).await.status,
            "SUCCESSFUL",
            "{variant:?}"
        );
    }
}

#[tokio::test]
async fn members_of_a_workflow_without_callback_are_counted() {
    // Spec §13.2: the reference compared `callback_result_id <> $1`, which is NULL (not
    // true) when the workflow has no callback, so such members were never counted.
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let mut workflows = Vec::new();
        for paths in [&["tasks.ok", "tasks.ok"][..], &["tasks.fail"][..]] {
            let workflow = Uuid::new_v4();
            workflow_members(&db, workflow, paths).await;
            sqlx::query("insert into workflow_runs (workflow_id, expected_count, success_count, failure_count, callback_result_id, status, created_at, updated_at) values ($1, $2, 0, 0, null, 'RUNNING', now(), now())")
                .bind(workflow)
                .bind(paths.len() as i32)
                .execute(&db.pool)
                .await
                .unwrap();
            workflows.push(workflow);
        }
        run_burst(&db, &[]).await;
        assert_eq!(
            workflow_status(&db, workflows[0]).await,
            ("WAITING_CALLBACK".into(), 2, 0),
            "{variant:?}: every success counted, no callback to release"
        );
        assert_eq!(
            workflow_status(&db, workflows[1]).await,
            ("FAILED".into(), 0, 1),
            "{variant:?}"
        );
    }
}
