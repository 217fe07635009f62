//! The lease keeper (spec §4.5, §13.9): renewals fenced on the worker id, and a database
//! outage that kills nothing while leases last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reproq::queue::{Attempt, TaskId};
use reproq::runner::lease_keeper::LeaseKeeper;
use reproq::runner::running::{KillReason, Running};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{TestDb, Variant, insert, task};

const LEASE: Duration = Duration::from_secs(300);

fn keeper(pool: sqlx::PgPool, running: Arc<Running>) -> LeaseKeeper {
    LeaseKeeper {
        pool,
        running,
        worker_id: "keeper-test".into(),
        lease: LEASE,
        heartbeat: Some(Duration::from_secs(60)),
        observer: Default::default(),
    }
}

/// A RUNNING row leased by `leased_by`, as a claim would leave it (attempt 1).
pub async fn running_row(db: &TestDb, leased_by: &str) -> Attempt {
    let id = insert(&db.pool, task("tasks.sleep", json!({}))).await;
    let claimed_at = sqlx::query_scalar(
        "update task_runs set status = 'RUNNING', attempts = 1, last_attempted_at = now(), leased_by = $2,
             leased_until = now() + interval '5 minutes' where result_id = $1 returning last_attempted_at",
    )
    .bind(id)
    .bind(leased_by)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    Attempt {
        id: TaskId(id),
        number: 1,
        claimed_at,
    }
}

#[tokio::test]
async fn renewal_extends_our_leases_and_kills_tasks_whose_lease_is_gone() {
    let db = TestDb::new(Variant::Sql).await;
    let ours = running_row(&db, "keeper-test").await;
    let stolen = running_row(&db, "another-worker").await;
    let running = Arc::new(Running::default());
    let abort = CancellationToken::new();
    let soon = Instant::now() + Duration::from_secs(5);
    let ours_handle = running.insert(ours, soon, &abort);
    let stolen_handle = running.insert(stolen, soon, &abort);

    keeper(db.pool.clone(), running.clone())
        .renew(&[ours, stolen])
        .await
        .unwrap();
    // The row the batch did not renew is renewed on its own, which finds the lease lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stolen_handle.reason().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ours_handle.reason(), None);
    assert!(
        ours_handle.lease_deadline() > Instant::now() + LEASE - Duration::from_secs(5),
        "the deadline moves to about now + lease"
    );
    assert_eq!(stolen_handle.reason(), Some(KillReason::LeaseLost));
    let leased_until_in: f64 = sqlx::query_scalar(
        "select extract(epoch from leased_until - now())::float8 from task_runs where result_id = $1",
    )
    .bind(ours.id.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(leased_until_in > 290.0, "{leased_until_in}");
}

#[tokio::test]
async fn a_database_outage_kills_only_tasks_whose_lease_runs_out() {
    let db = TestDb::new(Variant::Sql).await;
    let safe = running_row(&db, "keeper-test").await;
    let expiring = running_row(&db, "keeper-test").await;
    let running = Arc::new(Running::default());
    let abort = CancellationToken::new();
    let safe_handle = running.insert(safe, Instant::now() + Duration::from_secs(120), &abort);
    let expiring_handle = running.insert(
        expiring,
        Instant::now() + Duration::from_millis(200),
        &abort,
    );
    // A pool that cannot reach the database: every statement fails at once.
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let keeper = keeper(unreachable, running.clone());

    assert!(
        keeper.renew(&[safe, expiring]).await.is_err(),
        "the renewal failed"
    );
    assert_eq!(
        safe_handle.reason(),
        None,
        "a transient error does not kill a task whose lease is still good"
    );
    assert_eq!(
        expiring_handle.reason(),
        Some(KillReason::LeaseLost),
        "a lease that would end before the next retry is given up"
    );
}
