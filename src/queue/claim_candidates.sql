-- Claim candidates of one queue ($1), in claim order, excluding ids already seen in
-- this claim ($2) and rate-limit keys already found empty ($3), at most $4 rows.
select t.result_id,
       t.lock_key,
       case when coalesce(t.concurrency_key, '') <> '' and t.concurrency_limit > 0
            then t.concurrency_key end as concurrency_key,
       t.concurrency_limit,
       (t.cancel_requested or coalesce(t.expires_at <= now(), false)) as doomed,
       rl.key as limit_key,
       coalesce(rl.tokens_per_second > 0 and rl.burst_size > 0, false) as limit_applies
from task_runs t
left join lateral (
    select r.key, r.tokens_per_second, r.burst_size
    from rate_limits r
    where r.key in ('task:' || coalesce(nullif(t.task_path, ''), t.spec_json->>'task_path'),
                    'queue:' || t.queue_name,
                    'global')
    order by case when r.key = 'global' then 2 when r.key = 'queue:' || t.queue_name then 1 else 0 end
    limit 1
) rl on true
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
  and (rl.key is null or not (rl.key = any($3::text[])))
order by {order_by}
limit $4::bigint
for update of t skip locked
