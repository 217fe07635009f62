//! One reclaimer pass (spec §4.10): RUNNING rows whose lease expired go back to READY
//! while attempts remain, else FAILED; a terminal failure also fails its workflow
//! dependants (fixes §13.4). `runner/reclaimer.rs` decides when to run it.

use sqlx::PgPool;
use uuid::Uuid;

use super::task::TaskId;
use super::workflow;

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Rows put back to READY.
    pub requeued: u64,
    /// Rows failed for good.
    pub failed: u64,
    /// Workflow dependants failed along with them.
    pub dependants_failed: u64,
}

#[derive(sqlx::FromRow)]
struct Reclaimed {
    result_id: TaskId,
    status: String,
    workflow_id: Option<Uuid>,
}

/// Reclaims every expired lease, in one transaction.
///
/// # Errors
/// Database errors; nothing is changed then.
pub async fn reclaim_expired(
    pool: &PgPool,
    max_attempts_default: i32,
) -> Result<ReclaimReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Reclaimed> = sqlx::query_as(
        r#"with expired as (
               select result_id from task_runs
               where status = 'RUNNING' and leased_until < now()
               for update skip locked
           )
           update task_runs t set
             status = case when t.attempts < coalesce(t.max_attempts, $1::int4) then 'READY' else 'FAILED' end,
             finished_at = case when t.attempts < coalesce(t.max_attempts, $1::int4) then null else now() end,
             last_error = case when t.attempts < coalesce(t.max_attempts, $1::int4) then null
                               else 'lease_expiry: Worker heartbeat lost or process crashed' end,
             failed_at = case when t.attempts < coalesce(t.max_attempts, $1::int4) then null else now() end,
             errors_json = coalesce(t.errors_json, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                 'kind', 'lease_expiry', 'message', 'Worker heartbeat lost or process crashed', 'at', now())),
             leased_until = null, leased_by = null, updated_at = now()
           from expired e
           where t.result_id = e.result_id
           returning t.result_id, t.status, t.workflow_id"#,
    )
    .bind(max_attempts_default)
    .fetch_all(&mut *tx)
    .await?;
    let mut report = ReclaimReport::default();
    for row in rows {
        if row.status == "READY" {
            report.requeued += 1;
        } else {
            report.failed += 1;
            report.dependants_failed +=
                workflow::on_terminal_failure(&mut tx, row.result_id, row.workflow_id).await?;
        }
    }
    tx.commit().await?;
    Ok(report)
}
