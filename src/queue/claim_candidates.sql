-- Claim candidates of one queue ($1), in claim order, excluding ids already seen in
-- this claim ($2) and rows whose rate-limit key was found empty ($3), at most $4 rows.
-- Gates are checked and rows locked first; the rate-limit key is looked up only for
-- the few rows picked, so an order that must sort the backlog does not also run the
-- lookup for every READY row.
with picked as (
    select t.result_id, t.lock_key, t.concurrency_key, t.concurrency_limit, t.cancel_requested,
           t.expires_at, t.task_path, t.queue_name,
           t.priority, t.enqueued_at
    from task_runs t
    where t.status = 'READY'
      and t.queue_name = $1::text
      and coalesce(t.run_after, '-infinity'::timestamptz) <= now()
      and not exists (select 1 from reproq_queue_controls q where q.queue_name = $1::text and q.paused)
      and (t.lock_key is null
           or not exists (select 1 from task_runs r where r.lock_key = t.lock_key and r.status = 'RUNNING'))
      and (coalesce(t.concurrency_key, '') = '' or t.concurrency_limit <= 0
           or (select count(*) from task_runs r
               where r.concurrency_key = t.concurrency_key and r.status = 'RUNNING') < t.concurrency_limit)
      and not (t.result_id = any($2::bigint[]))
      and (cardinality($3::text[]) = 0
           or not (coalesce(
                  (select r.key from rate_limits r
                   where r.key = 'task:' || coalesce(nullif(t.task_path, ''), t.spec_json->>'task_path')),
                  (select r.key from rate_limits r where r.key = 'queue:' || t.queue_name),
                  (select r.key from rate_limits r where r.key = 'global')) = any($3::text[])))
    order by {order_by}
    limit $4::bigint
    for update of t skip locked
)
select t.result_id,
       t.lock_key,
       case when coalesce(t.concurrency_key, '') <> '' and t.concurrency_limit > 0
            then t.concurrency_key end as concurrency_key,
       t.concurrency_limit,
       (t.cancel_requested or coalesce(t.expires_at <= now(), false)) as doomed,
       rl.key as limit_key,
       coalesce(rl.tokens_per_second > 0 and rl.burst_size > 0, false) as limit_applies
from picked t
left join lateral (
    select r.key, r.tokens_per_second, r.burst_size
    from rate_limits r
    where r.key in ('task:' || coalesce(nullif(t.task_path, ''),
                                        (select s.spec_json->>'task_path' from task_runs s where s.result_id = t.result_id)),
                    'queue:' || t.queue_name,
                    'global')
    order by case when r.key = 'global' then 2 when r.key = 'queue:' || t.queue_name then 1 else 0 end
    limit 1
) rl on true
order by {order_by}
