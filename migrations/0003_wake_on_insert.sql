-- Wake on insert: an idle worker starts a task within milliseconds of a plain INSERT
-- (reproq-django enqueues with the ORM and sends no NOTIFY), without making a busy
-- fleet pay for NOTIFY, which serialises commits on a database-wide lock.
--
-- The protocol (the worker side is `src/runner/idle.rs`):
--
-- * An idle worker LISTENs on `reproq_tasks`, then marks each of its queues as waited
--   on (a row in the unlogged `reproq_queue_waiters`), then lists the transactions
--   still writing `task_runs` (their ROW EXCLUSIVE locks in `pg_locks`), then, once
--   those have ended, looks for runnable rows once more, then sleeps until the earliest
--   future `run_after`, the poll backoff, or a notification.
-- * The triggers below run for READY rows inserted (once per statement, queues taken
--   from the transition table) and rows that become READY (retry, replay, requeue,
--   reclaim) or whose `run_after` moves. They look for a waiter row first; only when
--   there is one do they NOTIFY its queue and delete the row. No waiter, no NOTIFY: a
--   busy fleet never waits on the database-wide notify lock, and an insert pays one
--   probe of a table that is almost always empty.
-- * An INSERT holds its ROW EXCLUSIVE lock on `task_runs` from before its trigger looks
--   for waiters until after it commits. So an insert that looked before the mark was
--   committed is either over before the worker lists the writers (and the worker's
--   re-check sees its row) or among the writers the worker waits for; any later insert
--   sees the mark. No task waits for the poll because of that race.
-- * REPEATABLE READ / SERIALIZABLE transactions look for waiters with a snapshot that
--   may predate the mark, so they always notify.
--
-- Everything is additive: the Go worker and reproq-django ignore it, and an insert into
-- a database without it is still found by polling.

CREATE UNLOGGED TABLE IF NOT EXISTS reproq_queue_waiters (
    queue_name TEXT PRIMARY KEY,
    marked_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- NOTIFYs each of `queues` that has a waiter and clears its mark. Callers have checked
-- that a waiter row exists (or that their snapshot cannot tell).
CREATE OR REPLACE FUNCTION reproq_wake_waiters(queues TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    woken BIGINT;
BEGIN
    IF queues IS NULL OR cardinality(queues) = 0 THEN
        RETURN;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM pg_notify('reproq_tasks', q) FROM unnest(queues) AS q;
        RETURN;
    END IF;
    -- Only the insert that takes the row notifies: one NOTIFY per mark. An insert that
    -- skips a row another one is deleting is covered by that one's NOTIFY, or, if it
    -- commits later, by the worker's writer list (it holds ROW EXCLUSIVE until then).
    WITH cleared AS (
        DELETE FROM reproq_queue_waiters w
        WHERE w.queue_name IN (
            SELECT v.queue_name FROM reproq_queue_waiters v
            WHERE v.queue_name = ANY (queues)
            FOR UPDATE SKIP LOCKED
        )
        RETURNING w.queue_name
    )
    SELECT count(pg_notify('reproq_tasks', c.queue_name)) INTO woken FROM cleared c;
END;
$$;

CREATE OR REPLACE FUNCTION reproq_wake_on_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM reproq_queue_waiters)
       OR current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM reproq_wake_waiters(ARRAY(
            SELECT DISTINCT n.queue_name FROM reproq_inserted_rows n WHERE n.status = 'READY'
        ));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION reproq_wake_on_ready() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM reproq_queue_waiters)
       OR current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM reproq_wake_waiters(ARRAY[NEW.queue_name]);
    END IF;
    RETURN NULL;
END;
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'trg_task_runs_wake_on_insert' AND tgrelid = 'task_runs'::regclass
    ) THEN
        SET LOCAL lock_timeout = '5s';
        CREATE TRIGGER trg_task_runs_wake_on_insert
            AFTER INSERT ON task_runs
            REFERENCING NEW TABLE AS reproq_inserted_rows
            FOR EACH STATEMENT EXECUTE FUNCTION reproq_wake_on_insert();
    END IF;
END;
$$;

-- Rows becoming READY are few and come from UPDATEs that the worker also runs on its hot
-- path (claims, completions, heartbeats). A statement-level trigger with a transition
-- table would run for every one of those statements; this row trigger's WHEN clause is
-- evaluated without calling any function, so they pay nothing. NOTIFY deduplicates a
-- queue within a transaction, so a bulk replay still sends one notification per queue.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'trg_task_runs_wake_on_ready' AND tgrelid = 'task_runs'::regclass
    ) THEN
        SET LOCAL lock_timeout = '5s';
        CREATE TRIGGER trg_task_runs_wake_on_ready
            AFTER UPDATE OF status, run_after ON task_runs
            FOR EACH ROW
            WHEN (NEW.status = 'READY'
                  AND (OLD.status IS DISTINCT FROM 'READY' OR OLD.run_after IS DISTINCT FROM NEW.run_after))
            EXECUTE FUNCTION reproq_wake_on_ready();
    END IF;
END;
$$;
