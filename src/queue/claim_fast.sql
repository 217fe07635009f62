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
{update}
), summary as (
    select (select count(*) from candidates) - (select count(*) from accepted) as deferred
)
select s.deferred, c.*
from summary s
left join claimed c on true
