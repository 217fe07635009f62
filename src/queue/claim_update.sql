-- Marks the rows of `accepted` RUNNING under a lease for worker {worker} ending
-- {lease} seconds from now (database clock, so lease expiry is judged on one clock).
-- A fragment: both claim paths wrap it in `with accepted as (...)`.
update task_runs t set
    status = 'RUNNING',
    started_at = coalesce(t.started_at, now()),
    last_attempted_at = now(),
    attempts = t.attempts + 1,
    leased_until = now() + make_interval(secs => {lease}::float8),
    leased_by = {worker}::text,
    worker_ids = coalesce(t.worker_ids, '[]'::jsonb) || jsonb_build_array({worker}::text),
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
          t.expires_at,
          t.last_attempted_at as claimed_at
