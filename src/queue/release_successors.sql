-- Chain successors of the rows in `done` (a CTE of just-succeeded rows): one fewer
-- parent to wait for, READY when none is left. A fragment: both success statements
-- embed it as their `successors` CTE.
    update task_runs t set
        wait_count = t.wait_count - 1,
        status = case when t.wait_count - 1 <= 0 then 'READY' else 'WAITING' end,
        updated_at = now()
    from done
    where t.parent_id = done.result_id and t.status = 'WAITING'
    returning t.result_id, t.status, t.queue_name