//! Wake on insert (`migrations/0003_wake_on_insert.sql`, `runner/idle.rs`): the trigger
//! notifies a queue only while a worker waits on it, once per statement, and an idle
//! worker with a 30 s poll backoff starts plain INSERTs and delayed tasks on time.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::support::{BOTH, TestDb, Variant, start_worker, task, wait_for_status};

/// The INSERT reproq-django's ORM sends (`TaskRun.objects.create`): every column but the
/// key, Python defaults included (spec/django-contract.md §4.6). `$1` queue, `$2` rows,
/// `$3` seconds until `run_after` (NULL: none).
const ORM_INSERT: &str = r#"INSERT INTO "task_runs" ("backend_alias", "queue_name", "priority", "run_after",
    "spec_json", "spec_hash", "task_path", "status", "enqueued_at", "started_at", "last_attempted_at",
    "finished_at", "attempts", "max_attempts", "timeout_seconds", "lock_key", "concurrency_key",
    "concurrency_limit", "worker_ids", "return_json", "errors_json", "metadata_json", "last_error",
    "failed_at", "leased_until", "leased_by", "logs_uri", "artifacts_uri", "expires_at", "parent_id",
    "workflow_id", "wait_count", "created_at", "updated_at", "cancel_requested")
SELECT 'default', $1, 0, now() + make_interval(secs => $3), jsonb_build_object('v', 1, 'task_path', 'tasks.ok',
    'args', '[]'::jsonb, 'kwargs', '{}'::jsonb, 'queue_name', $1, 'n', g),
    md5(random()::text || clock_timestamp()::text || g), 'tasks.ok', 'READY', now(), NULL, NULL, NULL, 0, 3, 900,
    NULL, NULL, 0, '[]'::jsonb, NULL, '[]'::jsonb, '{}'::jsonb, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, 0, now(), now(), false
FROM generate_series(1, $2) AS g
RETURNING "task_runs"."result_id""#;

async fn orm_insert(pool: &PgPool, queue: &str, rows: i32, run_after_in: Option<f64>) -> Vec<i64> {
    sqlx::query_scalar(ORM_INSERT)
        .bind(queue)
        .bind(rows)
        .bind(run_after_in)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Notifications received up to a sentinel sent after everything else (delivery follows
/// commit order, so nothing the earlier statements sent can arrive after it).
async fn notifications_until_sentinel(listener: &mut PgListener, pool: &PgPool) -> Vec<String> {
    sqlx::query("select pg_notify('reproq_tasks', 'sentinel')")
        .execute(pool)
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("the sentinel arrives")
            .unwrap();
        if notification.payload() == "sentinel" {
            return received;
        }
        received.push(notification.payload().to_owned());
    }
}

async fn waiters(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select queue_name from reproq_queue_waiters order by 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|q| (*q).to_owned()).collect()
}

#[tokio::test]
async fn trigger_notifies_only_waited_on_queues_once_per_statement() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
        listener.listen("reproq_tasks").await.unwrap();

        // Nobody waits: a plain insert sends nothing (a busy fleet never pays for NOTIFY).
        orm_insert(&db.pool, "default", 1, None).await;
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert!(got.is_empty(), "{variant:?}: {got:?}");

        // One ORM-shaped row into a waited-on queue: one notification, mark cleared.
        reproq::queue::waiters::mark(&db.pool, &queues(&["default", "idle"]))
            .await
            .unwrap();
        orm_insert(&db.pool, "default", 1, None).await;
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert_eq!(got, ["default"], "{variant:?}");
        assert_eq!(waiters(&db.pool).await, ["idle"], "{variant:?}");

        // A multi-row insert of 1,000 rows: one notification, not one per row; the
        // queue nobody waits on sends nothing.
        reproq::queue::waiters::mark(&db.pool, &queues(&["default"]))
            .await
            .unwrap();
        orm_insert(&db.pool, "default", 1000, None).await;
        orm_insert(&db.pool, "unwatched", 50, None).await;
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert_eq!(got, ["default"], "{variant:?}");

        // Rows due in the future notify too (a sleeping worker re-arms its timer).
        reproq::queue::waiters::mark(&db.pool, &queues(&["default"]))
            .await
            .unwrap();
        orm_insert(&db.pool, "default", 1, Some(3600.0)).await;
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert_eq!(got, ["default"], "{variant:?}: future run_after");
    }
}

#[tokio::test]
async fn rows_becoming_ready_notify_and_claims_do_not() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let ids = orm_insert(&db.pool, "default", 3, None).await;
        let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
        listener.listen("reproq_tasks").await.unwrap();
        reproq::queue::waiters::mark(&db.pool, &queues(&["default"]))
            .await
            .unwrap();

        // A claim (READY -> RUNNING) and a heartbeat leave the mark alone.
        sqlx::query(
            "update task_runs set status = 'RUNNING', started_at = now(), leased_by = 'w', \
             leased_until = now() + interval '5 minutes', attempts = attempts + 1 where result_id = any($1)",
        )
        .bind(&ids)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query("update task_runs set leased_until = now() + interval '10 minutes' where result_id = any($1)")
            .bind(&ids)
            .execute(&db.pool)
            .await
            .unwrap();
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert!(got.is_empty(), "{variant:?}: {got:?}");
        assert_eq!(waiters(&db.pool).await, ["default"], "{variant:?}");

        // A retry (RUNNING -> READY with a backoff), for all three rows in one statement:
        // one notification.
        sqlx::query(
            "update task_runs set status = 'READY', run_after = now() + interval '30 seconds', \
             leased_by = null, leased_until = null where result_id = any($1)",
        )
        .bind(&ids)
        .execute(&db.pool)
        .await
        .unwrap();
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert_eq!(got, ["default"], "{variant:?}: retry");
        assert!(waiters(&db.pool).await.is_empty(), "{variant:?}");

        // Moving a READY row's run_after notifies (the sleeping worker re-arms).
        reproq::queue::waiters::mark(&db.pool, &queues(&["default"]))
            .await
            .unwrap();
        sqlx::query("update task_runs set run_after = now() where result_id = $1")
            .bind(ids[0])
            .execute(&db.pool)
            .await
            .unwrap();
        let got = notifications_until_sentinel(&mut listener, &db.pool).await;
        assert_eq!(got, ["default"], "{variant:?}: run_after moved");
    }
}

#[tokio::test]
async fn an_insert_in_flight_during_the_mark_is_listed_until_it_commits() {
    // The race the writer list closes: an insert that looked for waiters before the mark
    // and commits after the worker's re-check. The worker must see it is still running.
    let db = TestDb::new(Variant::Sql).await;
    let mut inserter = db.pool.begin().await.unwrap();
    sqlx::query_scalar::<_, i64>(ORM_INSERT)
        .bind("default")
        .bind(1)
        .bind(None::<f64>)
        .fetch_all(&mut *inserter)
        .await
        .unwrap();
    let queues = queues(&["default"]);
    reproq::queue::waiters::mark(&db.pool, &queues)
        .await
        .unwrap();
    let writers = reproq::queue::waiters::writers(&db.pool, None)
        .await
        .unwrap();
    assert_eq!(writers.len(), 1, "the uncommitted insert is a writer");
    let due = reproq::queue::waiters::due(&db.pool, &queues)
        .await
        .unwrap();
    assert!(!due.now, "its row is not visible yet");
    inserter.commit().await.unwrap();
    let still = reproq::queue::waiters::writers(&db.pool, Some(&writers))
        .await
        .unwrap();
    assert!(still.is_empty(), "{still:?}");
    let due = reproq::queue::waiters::due(&db.pool, &queues)
        .await
        .unwrap();
    assert!(due.now, "the committed row is seen by the re-check");
}

#[tokio::test]
async fn due_reports_the_next_run_after_and_skips_paused_queues() {
    let db = TestDb::new(Variant::Django).await;
    let queues = queues(&["default", "paused"]);
    orm_insert(&db.pool, "default", 1, Some(60.0)).await;
    orm_insert(&db.pool, "default", 1, Some(120.0)).await;
    orm_insert(&db.pool, "paused", 1, None).await;
    orm_insert(&db.pool, "paused", 1, Some(5.0)).await;
    sqlx::query(
        "insert into reproq_queue_controls (queue_name, paused, created_at, updated_at) values ('paused', true, now(), now())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let due = reproq::queue::waiters::due(&db.pool, &queues)
        .await
        .unwrap();
    assert!(!due.now, "{due:?}");
    let next = due.next_in.unwrap().as_secs_f64();
    assert!((55.0..=60.0).contains(&next), "{due:?}");
}

/// Waits until the worker has marked `queue` as waited on (it is idle and listening).
async fn wait_until_waiting(pool: &PgPool, queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !waiters(pool).await.iter().any(|q| q == queue) {
        assert!(Instant::now() < deadline, "the worker never marked {queue}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn seconds(pool: &PgPool, sql: &str, id: i64) -> f64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A poll backoff no test waits out: a task started well before it came by a wake-up.
const SLOW_POLL: &[&str] = &["--poll-min-backoff", "30s", "--poll-max-backoff", "30s"];

#[tokio::test]
async fn an_idle_worker_starts_a_plain_insert_without_waiting_for_its_poll() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let (handle, shutdown) = start_worker(&db, SLOW_POLL).await;
        wait_until_waiting(&db.pool, "default").await;
        let id = orm_insert(&db.pool, "default", 1, None).await[0];
        wait_for_status(&db.pool, id, "SUCCESSFUL", 20).await;
        let pickup = seconds(
            &db.pool,
            "select extract(epoch from started_at - enqueued_at)::float8 from task_runs where result_id = $1",
            id,
        )
        .await;
        // Polling would have taken 30 s; the wake path takes milliseconds (the trickle
        // bench measures it). The bound leaves room for a loaded CI machine.
        assert!(
            pickup < 1.0,
            "{variant:?}: started {pickup:.3}s after the insert"
        );
        shutdown.stop.cancel();
        handle.await.unwrap();
    }
}

#[tokio::test]
async fn a_delayed_task_starts_when_due_not_at_the_next_poll() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let (handle, shutdown) = start_worker(&db, SLOW_POLL).await;
        wait_until_waiting(&db.pool, "default").await;
        let id = orm_insert(&db.pool, "default", 1, Some(1.5)).await[0];
        wait_for_status(&db.pool, id, "SUCCESSFUL", 20).await;
        let late = seconds(
            &db.pool,
            "select extract(epoch from started_at - run_after)::float8 from task_runs where result_id = $1",
            id,
        )
        .await;
        assert!(
            (0.0..1.0).contains(&late),
            "{variant:?}: started {late:.3}s after run_after"
        );
        shutdown.stop.cancel();
        handle.await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_moved_earlier_wakes_the_sleeping_worker() {
    let db = TestDb::new(Variant::Django).await;
    let (handle, shutdown) = start_worker(&db, SLOW_POLL).await;
    wait_until_waiting(&db.pool, "default").await;
    let id = crate::support::insert(&db.pool, task("tasks.flaky", json!({"succeed_on": 2}))).await;
    // The first attempt fails and is retried 30 s later (the trigger notified the
    // retry; the worker sleeps until it is due).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = crate::support::row(&db.pool, id).await;
        if row.status == "READY" && row.attempts == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no retry: {row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until_waiting(&db.pool, "default").await;
    sqlx::query(
        "update task_runs set run_after = now() + interval '200 milliseconds' where result_id = $1",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
    let row = wait_for_status(&db.pool, id, "SUCCESSFUL", 10).await;
    assert_eq!(row.attempts, 2);
    shutdown.stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn without_the_triggers_the_worker_still_polls() {
    let db = TestDb::new(Variant::Django).await;
    sqlx::raw_sql(
        "drop trigger trg_task_runs_wake_on_insert on task_runs; \
         drop trigger trg_task_runs_wake_on_ready on task_runs",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (handle, shutdown) = start_worker(&db, &[]).await;
    let id = orm_insert(&db.pool, "default", 1, None).await[0];
    wait_for_status(&db.pool, id, "SUCCESSFUL", 20).await;
    assert!(
        waiters(&db.pool).await.is_empty(),
        "no marks without triggers"
    );
    shutdown.stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_second_migrate_leaves_the_triggers_in_place() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let oids = || async {
            sqlx::query_scalar::<_, String>(
                "select string_agg(oid::text, ',' order by tgname) from pg_trigger \
                 where tgname like 'trg_task_runs_wake%'",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap()
        };
        let before = oids().await;
        assert_eq!(before.split(',').count(), 2, "{variant:?}");
        reproq::db::migrate::run(&db.pool).await.unwrap();
        assert_eq!(
            before,
            oids().await,
            "{variant:?}: triggers were re-created"
        );
    }
}

#[tokio::test]
async fn repeatable_read_inserts_always_notify() {
    // Their snapshot may predate a worker's mark, so they cannot tell whether one waits.
    let db = TestDb::new(Variant::Sql).await;
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen("reproq_tasks").await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("set transaction isolation level repeatable read")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query_scalar::<_, i64>(ORM_INSERT)
        .bind("default")
        .bind(2)
        .bind(None::<f64>)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let got = notifications_until_sentinel(&mut listener, &db.pool).await;
    assert_eq!(got, ["default"]);
}
