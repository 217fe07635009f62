-- The common case in one statement: candidates with no lock key, no concurrency key
-- and no applicable rate limit are claimed at once; the others ("deferred") are only
-- counted, and the caller runs the gated, transactional claim for them.
-- $1 queue, $2 ids to skip, $3 empty rate-limit keys, $4 batch size, $5 worker id,
-- $6 lease seconds. Always returns at least one row (carrying `deferred`).
with candidates as (
{candidates}
), accepted as (
    select result_id from candidates
    where lock_key is null and concurrency_key is null and (doomed or not limit_applies)
), claimed as (
    update task_runs t set
        status = 'RUNNING',
        started_at = coalesce(t.started_at, now()),
        last_attempted_at = now(),
        attempts = t.attempts + 1,
        leased_until = now() + make_interval(secs => $6::float8),
        leased_by = $5::text,
        worker_ids = coalesce(t.worker_ids, '[]'::jsonb) || jsonb_build_array($5::text),
        updated_at = now()
    from accepted a
    where t.result_id = a.result_id and t.status = 'READY'
    returning t.result_id,
              t.queue_name,
              t.spec_json::text as spec_json,
              t.spec_hash::text as spec_hash,
              t.task_path,
              t.attempts,
              t.max_attempts,
              t.timeout_seconds,
              t.leased_until,
              t.cancel_requested,
              coalesce(t.expires_at <= now(), false) as expired,
              t.enqueued_at,
              t.expires_at
), summary as (
    select (select count(*) from candidates) - (select count(*) from accepted) as deferred
)
select s.deferred, c.*
from summary s
left join claimed c on true
