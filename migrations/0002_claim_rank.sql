-- An index-backed claim order with priority aging (spec §13.14).
--
-- The reference orders READY rows by `priority + age_seconds / factor`, which
-- depends on NOW() and so sorts the whole backlog on every claim. For a fixed
-- factor, `priority * factor - epoch(enqueued_at)` orders rows the same way and
-- does not depend on NOW(), so an expression index can serve it. Both objects
-- are additive: Django-created tables stay valid and the Go worker ignores them.
--
-- The index is built for the default factor, 60. `reproq worker` detects it at
-- start-up and uses it only when its --priority-aging-factor matches; otherwise
-- it falls back to the reference's ordering (and logs which one it uses).

CREATE OR REPLACE FUNCTION reproq_claim_rank(
    priority INTEGER, enqueued_at TIMESTAMPTZ, aging_factor DOUBLE PRECISION
) RETURNS DOUBLE PRECISION
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT priority * aging_factor - EXTRACT(EPOCH FROM enqueued_at)::double precision $$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_task_runs_claim_rank
    ON task_runs (queue_name, reproq_claim_rank(priority, enqueued_at, 60) DESC, enqueued_at ASC)
    WHERE status = 'READY';
