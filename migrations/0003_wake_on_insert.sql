-- Wake on insert: an idle worker starts a task within milliseconds of a plain INSERT
-- (reproq-django enqueues with the ORM and sends no NOTIFY), without making a busy
-- fleet pay for NOTIFY, which serialises commits on a database-wide lock.
--
-- The protocol (the worker side is `src/runner/idle.rs`):
--
-- * An idle worker LISTENs on `reproq_tasks`, then marks each of its queues as waited
--   on (a row in `reproq_queue_waiters`) in a transaction that also takes
--   `pg_try_advisory_xact_lock(1380995665, hashtext(queue))`, then looks for runnable
--   rows once more, then sleeps until the earliest future `run_after`, the poll
--   backoff, or a notification.
-- * The triggers below call `reproq_wake_waiters(queues)` for READY rows inserted (one
--   call per statement, from the transition table) and rows that become READY (retry,
--   replay, requeue, reclaim) or whose `run_after` moves. It takes the same advisory
--   lock in shared mode, then NOTIFYs each queue that has a waiter row and deletes that
--   row. No waiter, no NOTIFY: a busy fleet never waits on the notify lock.
-- * The lock closes the race between an INSERT that did not see the mark yet and a
--   worker whose re-check could not see the uncommitted row: such an inserter still
--   holds the shared lock, so the worker's try-lock fails and it polls again shortly.
-- * In REPEATABLE READ / SERIALIZABLE transactions (their snapshot may predate the
--   mark) and for statements touching more than 32 queues (bounded lock use), the
--   function notifies unconditionally.
--
-- Everything is additive: the Go worker and reproq-django ignore it, and an insert into
-- a database without it is still found by polling.

CREATE TABLE IF NOT EXISTS reproq_queue_waiters (
    queue_name TEXT PRIMARY KEY,
    marked_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE OR REPLACE FUNCTION reproq_wake_waiters(queues TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    woken BIGINT;
BEGIN
    IF queues IS NULL OR cardinality(queues) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(queues) > 32 OR current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM pg_notify('reproq_tasks', q) FROM unnest(queues) AS q;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1380995665, hashtext(q)) FROM unnest(queues) AS q;
    -- A fresh snapshot (read committed), taken after the lock: a mark committed before
    -- the lock was granted is seen here.
    WITH visible AS (
        SELECT w.queue_name FROM reproq_queue_waiters w WHERE w.queue_name = ANY (queues)
    ), cleared AS (
        DELETE FROM reproq_queue_waiters w
        WHERE w.queue_name IN (
            SELECT v.queue_name FROM reproq_queue_waiters v
            WHERE v.queue_name = ANY (queues)
            FOR UPDATE SKIP LOCKED
        )
        RETURNING w.queue_name
    )
    SELECT count(pg_notify('reproq_tasks', s.queue_name)) INTO woken
    FROM (SELECT queue_name FROM visible UNION SELECT queue_name FROM cleared) s;
END;
$$;

CREATE OR REPLACE FUNCTION reproq_wake_on_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reproq_wake_waiters(ARRAY(
        SELECT DISTINCT n.queue_name FROM reproq_inserted_rows n WHERE n.status = 'READY'
    ));
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION reproq_wake_on_ready() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reproq_wake_waiters(ARRAY[NEW.queue_name]);
    RETURN NULL;
END;
$$;

-- Created only when absent (CREATE TRIGGER locks task_runs against writes for a moment;
-- a re-run takes no lock at all), and with a bounded wait for that lock on a live
-- database: a long transaction makes `reproq migrate` fail and say so, instead of
-- queueing every insert behind it.
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
