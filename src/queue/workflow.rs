//! Workflow effects of a terminal failure, run in the same transaction as the failure
//! (spec §4.7 step 2, §4.13; contract §5), with the reference's defects fixed: typed
//! parameters (§13.1), NULL-safe callback comparison (§13.2), and chain failure
//! propagation (§13.3). The success side is one statement: `complete_success.sql`.

use sqlx::PgConnection;
use uuid::Uuid;

use super::task::TaskId;

/// The message recorded on dependants failed because a workflow member failed.
pub const WORKFLOW_FAILED_MESSAGE: &str = "Workflow failed due to task failure";

/// After `id` failed for good: fail the chord (and its callback) it belongs to, and
/// every WAITING chain descendant, each with a `workflow_failed` error naming `id`.
/// Returns how many dependant tasks were failed.
///
/// # Errors
/// Database errors (the caller rolls back the whole completion).
pub async fn on_terminal_failure(
    tx: &mut PgConnection,
    id: TaskId,
    workflow_id: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    let mut doomed: Vec<i64> = Vec::new();
    if let Some(workflow_id) = workflow_id {
        sqlx::query(
            "update workflow_runs set status = 'FAILED', updated_at = now() where workflow_id = $1::uuid and callback_result_id = $2::bigint",
        )
        .bind(workflow_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let callback: Option<Option<i64>> = sqlx::query_scalar(
            r#"update workflow_runs set failure_count = failure_count + 1, status = 'FAILED', updated_at = now()
               where workflow_id = $1::uuid and callback_result_id is distinct from $2::bigint and status <> 'FAILED'
               returning callback_result_id"#,
        )
        .bind(workflow_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        doomed.extend(callback.flatten());
    }
    let descendants: Vec<i64> = sqlx::query_scalar(
        r#"with recursive chain as (
               select result_id from task_runs where parent_id = $1::bigint and status = 'WAITING'
               union
               select t.result_id from task_runs t join chain c on t.parent_id = c.result_id where t.status = 'WAITING'
           )
           select result_id from chain"#,
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    doomed.extend(descendants);
    if doomed.is_empty() {
        return Ok(0);
    }
    let failed = sqlx::query(
        r#"update task_runs set
             status = 'FAILED',
             finished_at = now(),
             errors_json = coalesce(errors_json, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                 'kind', 'workflow_failed', 'message', $3::text, 'failed_result_id', $2::bigint, 'at', now())),
             last_error = 'workflow_failed: ' || $3::text,
             failed_at = now(),
             run_after = null,
             wait_count = 0,
             updated_at = now()
           where result_id = any($1::bigint[]) and status in ('WAITING', 'READY')"#,
    )
    .bind(&doomed)
    .bind(id)
    .bind(WORKFLOW_FAILED_MESSAGE)
    .execute(&mut *tx)
    .await?;
    Ok(failed.rows_affected())
}
