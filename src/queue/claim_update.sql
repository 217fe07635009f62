-- Marks the accepted candidates ($1) RUNNING under a lease for worker $2 that ends
-- $3 seconds from now (database clock, so lease expiry is judged on one clock).
update task_runs t set
    status = 'RUNNING',
    started_at = coalesce(t.started_at, now()),
    last_attempted_at = now(),
    attempts = t.attempts + 1,
    leased_until = now() + make_interval(secs => $3::float8),
    leased_by = $2::text,
    worker_ids = coalesce(t.worker_ids, '[]'::jsonb) || jsonb_build_array($2::text),
    updated_at = now()
where t.result_id = any($1::bigint[]) and t.status = 'READY'
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
