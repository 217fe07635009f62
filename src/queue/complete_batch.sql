-- Several successes in one statement: the fenced updates (rows that belong to a
-- workflow are left out; they take the one-by-one path with chord bookkeeping) and
-- the release of chain successors. Returns the attempts that were completed.
-- Rows another transaction has locked are skipped, not waited for (the caller writes
-- them one by one), so one locked row never stalls the batch.
-- $1 result ids, $2 worker ids, $3 return JSON texts (NULL: no return key), $4 logs paths,
-- $5 attempts and $6 last_attempted_at as claimed (the attempt fence).
with input as (
    select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[])
        as i(result_id, worker_id, return_json, logs_uri, attempt, claimed_at)
), lockable as (
    select t.result_id
    from task_runs t join input i on t.result_id = i.result_id
    where t.leased_by = i.worker_id and t.status = 'RUNNING' and t.workflow_id is null
      and t.attempts = i.attempt and t.last_attempted_at = i.claimed_at
    for update of t skip locked
), done as (
    update task_runs t set status = 'SUCCESSFUL', finished_at = now(), return_json = i.return_json::jsonb,
        last_error = null, failed_at = null, leased_until = null, leased_by = null,
        logs_uri = coalesce(i.logs_uri, t.logs_uri), updated_at = now()
    from input i join lockable l on l.result_id = i.result_id
    where t.result_id = i.result_id and t.leased_by = i.worker_id and t.status = 'RUNNING'
      and t.workflow_id is null and t.attempts = i.attempt and t.last_attempted_at = i.claimed_at
    returning t.result_id, t.attempts, t.last_attempted_at
), successors as (
{release_successors}
), woken as (
    select pg_notify('reproq_tasks', q.queue_name)
    from (select distinct queue_name from successors where status = 'READY') q
)
select result_id, attempts, last_attempted_at from done where (select count(*) from woken) >= 0
