//! The claim: gates, order, rate limits, and caps that hold under concurrent claimers.

use std::time::Duration;

use reproq::queue::{ClaimOrder, ClaimRequest, Claimer, claim_order};
use serde_json::json;

use crate::support::{BOTH, NewTask, TestDb, Variant, insert, task};

fn request<'a>(worker: &'a str, limit: usize) -> ClaimRequest<'a> {
    ClaimRequest {
        queue: "default",
        worker_id: worker,
        lease: Duration::from_secs(300),
        limit,
    }
}

async fn claim_ids(db: &TestDb, claimer: &Claimer, limit: usize) -> Vec<i64> {
    claimer
        .claim(&db.pool, &request("w", limit))
        .await
        .unwrap()
        .iter()
        .map(|t| t.id.0)
        .collect()
}

#[tokio::test]
async fn claim_sets_the_spec_columns() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let id = insert(&db.pool, task("tasks.ok", json!({"a": 1}))).await;
        let claimer = Claimer::new(claim_order::detect(&db.pool, 60.0).await.unwrap());
        let claimed = claimer.claim(&db.pool, &request("w-1", 1)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let t = &claimed[0];
        assert_eq!(
            (t.id.0, t.attempts, t.max_attempts, t.queue_name.as_str()),
            (id, 1, 3, "default")
        );
        assert_eq!(
            t.spec_hash.len(),
            32,
            "{variant:?}: char(64) padding trimmed"
        );
        let spec: serde_json::Value = serde_json::from_str(&t.spec_json).unwrap();
        assert_eq!(spec["kwargs"]["a"], 1);
        let (status, leased_by, worker_ids, started, lease_left): (String, String, serde_json::Value, bool, f64) = sqlx::query_as(
            "select status, leased_by, worker_ids, started_at is not null, extract(epoch from leased_until - now())::float8 from task_runs where result_id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), leased_by.as_str(), worker_ids),
            ("RUNNING", "w-1", json!(["w-1"]))
        );
        assert!(
            started && (295.0..=301.0).contains(&lease_left),
            "{lease_left}"
        );
        assert!(
            claimer
                .claim(&db.pool, &request("w-1", 1))
                .await
                .unwrap()
                .is_empty(),
            "nothing left"
        );
    }
}

#[tokio::test]
async fn index_backed_order_is_detected_and_matches_the_reference_order() {
    let db = TestDb::new(Variant::Django).await;
    assert_eq!(
        claim_order::detect(&db.pool, 60.0).await.unwrap(),
        ClaimOrder::Ranked { factor: 60.0 }
    );
    assert_eq!(
        claim_order::detect(&db.pool, 45.0).await.unwrap(),
        ClaimOrder::Aging { factor: 45.0 }
    );
    assert_eq!(
        claim_order::detect(&db.pool, 0.0).await.unwrap(),
        ClaimOrder::Priority
    );
    // priority 5 enqueued now, priority 0 enqueued 10 minutes ago (= +10 points at factor 60),
    // priority 3 enqueued 1 minute ago (= 4 points), priority 5 enqueued later (tie broken by age).
    let fresh_high = insert(
        &db.pool,
        NewTask {
            priority: 5,
            enqueued_seconds_ago: 0.0,
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    let old_low = insert(
        &db.pool,
        NewTask {
            priority: 0,
            enqueued_seconds_ago: 600.0,
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    let mid = insert(
        &db.pool,
        NewTask {
            priority: 3,
            enqueued_seconds_ago: 60.0,
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    let older_high = insert(
        &db.pool,
        NewTask {
            priority: 5,
            enqueued_seconds_ago: 1.0,
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    for order in [
        ClaimOrder::Ranked { factor: 60.0 },
        ClaimOrder::Aging { factor: 60.0 },
    ] {
        let claimer = Claimer::new(order.clone());
        let mut tx_order = Vec::new();
        let mut conn = db.pool.begin().await.unwrap();
        // Look without claiming: run the candidate order inside a rolled-back transaction.
        for _ in 0..4 {
            let sql = format!(
                "select t.result_id from task_runs t where status = 'READY' and not (result_id = any($1)) order by {} limit 1",
                order.order_by()
            );
            let next: i64 = sqlx::query_scalar(&sql)
                .bind(&tx_order)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            tx_order.push(next);
        }
        conn.rollback().await.unwrap();
        assert_eq!(
            tx_order,
            [old_low, older_high, fresh_high, mid],
            "{order:?}"
        );
        drop(claimer);
    }
    let plain = Claimer::new(ClaimOrder::Priority);
    assert_eq!(claim_ids(&db, &plain, 4).await.len(), 4);
}

#[tokio::test]
async fn ranked_claim_uses_the_expression_index() {
    let db = TestDb::new(Variant::Sql).await;
    sqlx::query(
        "insert into task_runs (spec_json, spec_hash, queue_name, priority) select jsonb_build_object('task_path','tasks.ok'), md5(i::text), 'q' || (i % 3), i % 7 from generate_series(1, 20000) i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("analyze task_runs")
        .execute(&db.pool)
        .await
        .unwrap();
    let order = ClaimOrder::Ranked { factor: 60.0 };
    let sql = format!(
        "explain select t.result_id from task_runs t where t.status = 'READY' and t.queue_name = 'q1' order by {} limit 1",
        order.order_by()
    );
    let plan: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&db.pool).await.unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("idx_task_runs_claim_rank"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}

#[tokio::test]
async fn gates_run_after_paused_queue_and_other_queues() {
    let db = TestDb::new(Variant::Django).await;
    let claimer = Claimer::new(ClaimOrder::Priority);
    insert(
        &db.pool,
        NewTask {
            queue: "other".into(),
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    let later = insert(&db.pool, task("tasks.ok", json!({}))).await;
    sqlx::query("update task_runs set run_after = now() + interval '1 hour' where result_id = $1")
        .bind(later)
        .execute(&db.pool)
        .await
        .unwrap();
    insert(
        &db.pool,
        NewTask {
            status: "WAITING".into(),
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    assert!(claim_ids(&db, &claimer, 5).await.is_empty());
    let now = insert(&db.pool, task("tasks.ok", json!({}))).await;
    sqlx::query("insert into reproq_queue_controls (queue_name, paused, paused_at, reason, created_at, updated_at) values ('default', true, now(), 'test', now(), now())")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(claim_ids(&db, &claimer, 5).await.is_empty(), "paused queue");
    sqlx::query("update reproq_queue_controls set paused = false")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(claim_ids(&db, &claimer, 5).await, [now]);
}

/// Many claimers at the same instant, each on its own connection.
async fn race(db: &TestDb, claimers: usize, batch: usize) -> usize {
    let claimer = Claimer::new(ClaimOrder::Priority);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(claimers));
    let mut handles = Vec::new();
    for i in 0..claimers {
        let (pool, claimer, barrier) = (db.pool.clone(), claimer.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            let worker = format!("w{i}");
            barrier.wait().await;
            claimer
                .claim(
                    &pool,
                    &ClaimRequest {
                        queue: "default",
                        worker_id: &worker,
                        lease: Duration::from_secs(60),
                        limit: batch,
                    },
                )
                .await
                .unwrap()
                .len()
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap();
    }
    total
}

#[tokio::test]
async fn lock_key_allows_one_running_task_under_concurrent_claims() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        for _ in 0..20 {
            insert(
                &db.pool,
                NewTask {
                    lock_key: Some("user:1".into()),
                    ..task("tasks.ok", json!({}))
                },
            )
            .await;
        }
        for round in 0..3 {
            let claimed = race(&db, 8, 4).await;
            let running: i64 =
                sqlx::query_scalar("select count(*) from task_runs where status = 'RUNNING'")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            assert_eq!(running, 1, "{variant:?} round {round}");
            assert!(claimed <= 1);
        }
    }
}

#[tokio::test]
async fn concurrency_limit_is_never_exceeded_under_concurrent_claims() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        for _ in 0..30 {
            insert(
                &db.pool,
                NewTask {
                    concurrency_key: Some("acct:9".into()),
                    concurrency_limit: 3,
                    ..task("tasks.ok", json!({}))
                },
            )
            .await;
        }
        for _ in 0..3 {
            race(&db, 8, 5).await;
            let running: i64 =
                sqlx::query_scalar("select count(*) from task_runs where status = 'RUNNING'")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            assert_eq!(running, 3, "{variant:?}");
        }
    }
}

#[tokio::test]
async fn rate_limits_spend_tokens_and_do_not_block_other_keys() {
    let db = TestDb::new(Variant::Sql).await;
    reproq::queue::rate_limit::set(&db.pool, "task:tasks.limited", 0.001, 2)
        .await
        .unwrap();
    for _ in 0..5 {
        insert(
            &db.pool,
            NewTask {
                priority: 9,
                ..task("tasks.limited", json!({}))
            },
        )
        .await;
    }
    let free = insert(&db.pool, task("tasks.free", json!({}))).await;
    let claimer = Claimer::new(ClaimOrder::Priority);
    let first = claim_ids(&db, &claimer, 1).await;
    let second = claim_ids(&db, &claimer, 1).await;
    assert_eq!((first.len(), second.len()), (1, 1), "burst of 2");
    let third = claim_ids(&db, &claimer, 1).await;
    assert_eq!(
        third,
        [free],
        "an empty bucket does not block the rest of the queue (spec §13.12)"
    );
    assert!(claim_ids(&db, &claimer, 1).await.is_empty());
    let tokens: f64 = sqlx::query_scalar(
        "select current_tokens::float8 from rate_limits where key = 'task:tasks.limited'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(tokens < 1.0);
    // A zero-rate specific key exempts the task from the queue limit.
    reproq::queue::rate_limit::set(&db.pool, "queue:default", 0.001, 1)
        .await
        .unwrap();
    reproq::queue::rate_limit::set(&db.pool, "task:tasks.limited", 0.0, 1)
        .await
        .unwrap();
    assert_eq!(claim_ids(&db, &claimer, 3).await.len(), 3);
}
