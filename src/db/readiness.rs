//! What `reproq migrate` would add to a schema that works without it: the claim-rank
//! index and the wake-on-insert triggers. Tables built by reproq-django
//! (`manage.py migrate` + `manage.py reproq migrate-worker`) lack both, and the worker
//! runs on them, only slower. `reproq worker` warns at start-up, `worker --validate`
//! reports it, and `reproq migrate --check` exits 1 listing it.

use sqlx::PgPool;

/// One thing `reproq migrate` would add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    /// The objects, by name.
    pub what: &'static str,
    /// What running without them costs.
    pub cost: &'static str,
}

/// The objects checked, each with a query that is true when they are present.
const CHECKS: &[(Missing, &str)] = &[
    (
        Missing {
            what: "claim-rank index idx_task_runs_claim_rank",
            cost: "every claim sorts the whole READY backlog",
        },
        r#"select exists (select 1 from pg_index i join pg_class c on c.oid = i.indexrelid
                          where c.relname = 'idx_task_runs_claim_rank' and i.indisvalid
                            and c.relnamespace = current_schema()::regnamespace)"#,
    ),
    (
        Missing {
            what: "wake-on-insert triggers (trg_task_runs_wake_on_insert, trg_task_runs_wake_on_ready, reproq_queue_waiters)",
            cost: "a task inserted without NOTIFY (reproq-django's ORM insert) waits for the next poll, up to poll_max_backoff",
        },
        WAKE_ON_INSERT_PRESENT,
    ),
];

/// True when the wake-on-insert table and both triggers (enabled) are present.
pub const WAKE_ON_INSERT_PRESENT: &str = r#"select to_regclass('reproq_queue_waiters') is not null
      and (select count(*) from pg_trigger
           where tgrelid = to_regclass('task_runs')
             and tgname in ('trg_task_runs_wake_on_insert', 'trg_task_runs_wake_on_ready')
             and tgenabled <> 'D') = 2"#;

/// What `reproq migrate` would add, in a fixed order; empty when nothing.
///
/// # Errors
/// Database errors while reading the catalogue.
pub async fn missing(pool: &PgPool) -> Result<Vec<Missing>, sqlx::Error> {
    let mut missing = Vec::new();
    for (item, present) in CHECKS {
        let present: bool = sqlx::query_scalar(present).fetch_one(pool).await?;
        if !present {
            missing.push(*item);
        }
    }
    Ok(missing)
}

/// The one command that adds everything on a live database (`dsn` as it should be shown).
pub fn fix_command(dsn: &str) -> String {
    format!("reproq migrate --dsn '{dsn}'")
}
