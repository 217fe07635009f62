-- Success completion in one statement (spec §4.6): the fenced update, the release of
-- chain successors, and the chord bookkeeping (count the member, release the callback
-- when the last member succeeds, mark the workflow done when the callback succeeds).
-- The sub-statements touch disjoint rows, so one snapshot serves them all. Queues that
-- gained runnable rows are notified on channel `reproq_tasks`.
-- $1 result_id, $2 worker_id, $3 return JSON text (NULL: no return key), $4 logs path,
-- $5 attempts and $6 last_attempted_at as claimed (the attempt fence).
with done as (
    update task_runs set status = 'SUCCESSFUL', finished_at = now(), return_json = $3::text::jsonb,
        last_error = null, failed_at = null, leased_until = null, leased_by = null,
        logs_uri = coalesce($4::text, logs_uri), updated_at = now()
    where result_id = $1::bigint and leased_by = $2::text and status = 'RUNNING'
      and attempts = $5::int4 and last_attempted_at = $6::timestamptz
    returning result_id, workflow_id
), successors as (
{release_successors}
), callback_done as (
    update workflow_runs w set status = 'SUCCESSFUL', updated_at = now()
    from done
    where w.workflow_id = done.workflow_id and w.callback_result_id = done.result_id
    returning w.workflow_id
), member as (
    update workflow_runs w set
        success_count = w.success_count + 1,
        status = case when w.success_count + 1 >= w.expected_count and w.failure_count = 0
                      then 'WAITING_CALLBACK' else w.status end,
        updated_at = now()
    from done
    where w.workflow_id = done.workflow_id
      and w.callback_result_id is distinct from done.result_id
      and w.status not in ('FAILED', 'SUCCESSFUL')
    returning case when w.status = 'WAITING_CALLBACK' and w.failure_count = 0
                        and w.success_count >= w.expected_count
                   then w.callback_result_id end as release
), released as (
    update task_runs t set status = 'READY', wait_count = 0, updated_at = now()
    from member
    where t.result_id = member.release and t.status = 'WAITING'
    returning t.result_id, t.queue_name
), woken as (
    -- Wake idle workers of the queues that just got runnable rows (see `runner::wake`).
    select pg_notify('reproq_tasks', q.queue_name)
    from (select queue_name from successors where status = 'READY'
          union
          select queue_name from released) q
)
select (select count(*) from done) as completed,
       (select count(*) from woken) as released
