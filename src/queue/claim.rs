//! Claiming READY tasks: every gate of spec §4.3 in one transaction.
//!
//! 1. Candidates, in claim order, `FOR UPDATE SKIP LOCKED`, already filtered by the
//!    run_after, pause, lock-key and concurrency gates as of the statement's snapshot.
//! 2. Candidates with a lock or concurrency key take transaction-scoped advisory
//!    locks on those keys and re-check the gates in a new snapshot, so two reproq
//!    workers claiming at the same instant cannot exceed a cap (fixes §13.11; a Go
//!    worker in the same fleet does not take these locks).
//! 3. Rate limits: the most specific existing key decides; a token is spent per
//!    claim. A blocked key does not block the rest of the queue (fixes §13.12): the
//!    next candidates under other keys are tried.
//! 4. The accepted rows become RUNNING under a lease computed with the database clock.
//!
//! The statement takes a batch size, so claiming several rows per round trip is a
//! matter of asking for more.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::{FromRow, PgConnection, PgPool, Row};

use super::claim_order::ClaimOrder;
use super::task::ClaimedTask;

/// How many times one claim retries after rate limits rejected every candidate.
const RATE_LIMIT_ROUNDS: usize = 3;

/// What to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// One queue per claim.
    pub queue: &'a str,
    /// `leased_by` for the claimed rows.
    pub worker_id: &'a str,
    /// Lease length from now (database clock).
    pub lease: Duration,
    /// Most rows to claim.
    pub limit: usize,
}

#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    result_id: i64,
    lock_key: Option<String>,
    concurrency_key: Option<String>,
    concurrency_limit: i32,
    doomed: bool,
    limit_key: Option<String>,
    limit_applies: bool,
}

#[derive(Debug, sqlx::FromRow)]
struct GateState {
    id: i64,
    lock_running: i64,
    concurrency_running: i64,
}

/// Claims tasks in a fixed [`ClaimOrder`]; the SQL is built once.
#[derive(Debug, Clone)]
pub struct Claimer {
    order: ClaimOrder,
    candidates_sql: String,
    fast_sql: String,
    update_sql: String,
}

impl Claimer {
    /// A claimer for `order`.
    pub fn new(order: ClaimOrder) -> Self {
        let candidates_sql =
            include_str!("claim_candidates.sql").replace("{order_by}", &order.order_by());
        let update = include_str!("claim_update.sql");
        let fast_sql = include_str!("claim_fast.sql")
            .replace("{candidates}", &candidates_sql)
            .replace(
                "{update}",
                &update.replace("{worker}", "$5").replace("{lease}", "$6"),
            );
        let update_sql = format!(
            "with accepted as (select unnest($1::bigint[]) as result_id)\n{}",
            update.replace("{worker}", "$2").replace("{lease}", "$3")
        );
        Claimer {
            order,
            candidates_sql,
            fast_sql,
            update_sql,
        }
    }

    /// The order in use.
    pub fn order(&self) -> &ClaimOrder {
        &self.order
    }

    /// Claims up to `request.limit` tasks from one queue; an empty result means none
    /// are eligible right now.
    ///
    /// # Errors
    /// Database errors; nothing is claimed then.
    pub async fn claim(
        &self,
        pool: &PgPool,
        request: &ClaimRequest<'_>,
    ) -> Result<Vec<ClaimedTask>, sqlx::Error> {
        let sent = std::time::Instant::now();
        let stamp = |mut tasks: Vec<ClaimedTask>| {
            for task in &mut tasks {
                task.claim_sent_at = Some(sent);
            }
            tasks
        };
        let (claimed, deferred) = self.claim_ungated(pool, request).await?;
        let mut claimed = stamp(claimed);
        if deferred == 0 || claimed.len() >= request.limit {
            return Ok(claimed);
        }
        let rest = ClaimRequest {
            limit: request.limit - claimed.len(),
            ..request.clone()
        };
        claimed.extend(stamp(self.claim_gated(pool, &rest).await?));
        Ok(claimed)
    }

    /// One autocommit statement: claims the candidates that need no gate and counts
    /// those that do. (A gated candidate may so be claimed just after a lower-ranked
    /// ungated one in the same call.)
    async fn claim_ungated(
        &self,
        pool: &PgPool,
        request: &ClaimRequest<'_>,
    ) -> Result<(Vec<ClaimedTask>, i64), sqlx::Error> {
        let rows = sqlx::query(&self.fast_sql)
            .bind(request.queue)
            .bind(Vec::<i64>::new())
            .bind(Vec::<String>::new())
            .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
            .bind(request.worker_id)
            .bind(request.lease.as_secs_f64())
            .fetch_all(pool)
            .await?;
        let mut deferred = 0;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            deferred = row.try_get("deferred")?;
            if row.try_get::<Option<i64>, _>("result_id")?.is_some() {
                claimed.push(ClaimedTask::from_row(row)?);
            }
        }
        Ok((claimed, deferred))
    }

    /// The transactional claim with advisory locks and rate limits.
    async fn claim_gated(
        &self,
        pool: &PgPool,
        request: &ClaimRequest<'_>,
    ) -> Result<Vec<ClaimedTask>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        let mut accepted: Vec<i64> = Vec::new();
        let mut excluded: Vec<i64> = Vec::new();
        let mut blocked_keys: Vec<String> = Vec::new();
        for _ in 0..RATE_LIMIT_ROUNDS {
            let wanted = request.limit - accepted.len();
            let candidates: Vec<Candidate> = sqlx::query_as(&self.candidates_sql)
                .bind(request.queue)
                .bind(&excluded)
                .bind(&blocked_keys)
                .bind(i64::try_from(wanted).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
            if candidates.is_empty() {
                break;
            }
            excluded.extend(candidates.iter().map(|c| c.result_id));
            let open = pass_key_gates(&mut tx, &candidates).await?;
            let mut rate_blocked = false;
            for candidate in candidates.iter().filter(|c| open.contains(&c.result_id)) {
                if let Some(key) = candidate
                    .limit_key
                    .as_deref()
                    .filter(|_| candidate.limit_applies && !candidate.doomed)
                {
                    if blocked_keys.iter().any(|k| k == key) || !take_token(&mut tx, key).await? {
                        if !blocked_keys.iter().any(|k| k == key) {
                            blocked_keys.push(key.to_owned());
                        }
                        rate_blocked = true;
                        continue;
                    }
                }
                accepted.push(candidate.result_id);
            }
            if accepted.len() >= request.limit || !rate_blocked {
                break;
            }
        }
        if accepted.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let claimed: Vec<ClaimedTask> = sqlx::query_as(&self.update_sql)
            .bind(&accepted)
            .bind(request.worker_id)
            .bind(request.lease.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(claimed)
    }
}

/// Serialises on the candidates' lock and concurrency keys and returns the ids whose
/// gates are still open, counting the batch's own earlier acceptances.
async fn pass_key_gates(
    tx: &mut PgConnection,
    candidates: &[Candidate],
) -> Result<HashSet<i64>, sqlx::Error> {
    let keyed: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.lock_key.is_some() || c.concurrency_key.is_some())
        .collect();
    let mut open: HashSet<i64> = candidates
        .iter()
        .filter(|c| c.lock_key.is_none() && c.concurrency_key.is_none())
        .map(|c| c.result_id)
        .collect();
    if keyed.is_empty() {
        return Ok(open);
    }
    let mut lock_names: Vec<String> = Vec::new();
    for c in &keyed {
        lock_names.extend(c.lock_key.as_ref().map(|k| format!("reproq:lock:{k}")));
        lock_names.extend(
            c.concurrency_key
                .as_ref()
                .map(|k| format!("reproq:concurrency:{k}")),
        );
    }
    sqlx::query(
        r#"select pg_advisory_xact_lock(k)
           from (select distinct hashtextextended(n, 0) as k from unnest($1::text[]) as n order by 1) keys"#,
    )
    .bind(&lock_names)
    .execute(&mut *tx)
    .await?;
    let ids: Vec<i64> = keyed.iter().map(|c| c.result_id).collect();
    let lock_keys: Vec<Option<String>> = keyed.iter().map(|c| c.lock_key.clone()).collect();
    let concurrency_keys: Vec<Option<String>> =
        keyed.iter().map(|c| c.concurrency_key.clone()).collect();
    let states: Vec<GateState> = sqlx::query_as(
        r#"select c.id,
                  (select count(*) from task_runs r where c.lock_key is not null and r.lock_key = c.lock_key and r.status = 'RUNNING') as lock_running,
                  (select count(*) from task_runs r where c.ckey is not null and r.concurrency_key = c.ckey and r.status = 'RUNNING') as concurrency_running
           from unnest($1::bigint[], $2::text[], $3::text[]) as c(id, lock_key, ckey)"#,
    )
    .bind(&ids)
    .bind(&lock_keys)
    .bind(&concurrency_keys)
    .fetch_all(&mut *tx)
    .await?;
    let state_of: HashMap<i64, &GateState> = states.iter().map(|s| (s.id, s)).collect();
    let mut locks_taken: HashSet<&str> = HashSet::new();
    let mut batch_running: HashMap<&str, i64> = HashMap::new();
    for c in keyed {
        let Some(state) = state_of.get(&c.result_id) else {
            continue;
        };
        let lock_free = c
            .lock_key
            .as_deref()
            .is_none_or(|k| state.lock_running == 0 && !locks_taken.contains(k));
        let below_cap = c.concurrency_key.as_deref().is_none_or(|k| {
            state.concurrency_running + batch_running.get(k).copied().unwrap_or(0)
                < i64::from(c.concurrency_limit)
        });
        if lock_free && below_cap {
            locks_taken.extend(c.lock_key.as_deref());
            if let Some(k) = c.concurrency_key.as_deref() {
                *batch_running.entry(k).or_insert(0) += 1;
            }
            open.insert(c.result_id);
        }
    }
    Ok(open)
}

/// Refills the bucket lazily and spends one token; false when it is empty (nothing changes then).
async fn take_token(tx: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query(
        r#"update rate_limits set
             current_tokens = least(burst_size::float8, current_tokens + extract(epoch from (now() - last_refilled_at))::float8 * tokens_per_second) - 1,
             last_refilled_at = now()
           where key = $1::text and tokens_per_second > 0 and burst_size > 0
             and least(burst_size::float8, current_tokens + extract(epoch from (now() - last_refilled_at))::float8 * tokens_per_second) >= 1"#,
    )
    .bind(key)
    .execute(&mut *tx)
    .await?;
    Ok(taken.rows_affected() == 1)
}
