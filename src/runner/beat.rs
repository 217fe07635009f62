//! The periodic scheduler (spec §7): one pass enqueues every due row, a fixed-rate
//! ticker repeats it, and only the holder of a session-level advisory lock runs passes,
//! so several beats can run for availability: the others stand by and take over
//! within one interval when the leader's session ends. (The Go reference says "run
//! exactly one beat"; SKIP LOCKED already made concurrent passes safe, the lock makes
//! them idle instead of racing.) `--once` never waits for the lock.
//!
//! Fixes of §13.15: a row whose cron is invalid or never fires, or whose payload is
//! malformed, enqueues nothing (checked before the insert, in a savepoint); its error is
//! logged once per change, and the row backs off exponentially instead of failing on
//! every pass.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::{Instant, MissedTickBehavior};

use super::watchdog::{self, Liveness, Supervision};
use crate::beat::cron::Schedule;
use crate::beat::spec;
use crate::queue::periodic::{self, DueRow};
use crate::queue::{leader, savepoint};
use crate::shutdown::Shutdown;
use crate::systemd::Notifier;
use tokio_util::sync::CancellationToken;

/// Longest wait for the leader-lock session to connect (a frozen server accepts the
/// connection and never answers).
const LOCK_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for the systemd supervisor's last words (`STOPPING=1`) on exit.
const SUPERVISOR_EXIT: Duration = Duration::from_secs(1);

/// Longest back-off of a failing row, in passes.
const MAX_BACKOFF_PASSES: u32 = 32;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Tasks inserted.
    pub enqueued: u64,
    /// Rows advanced without an insert (an identical task was still active).
    pub deduplicated: u64,
    /// Rows that failed, with why.
    pub failures: Vec<(String, String)>,
}

/// Runs one pass in one transaction with a savepoint per row, skipping `skip`.
///
/// # Errors
/// Database errors outside a row (locking the rows, committing).
pub async fn run_pass(pool: &PgPool, skip: &[String]) -> Result<PassReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = periodic::lock_due(&mut tx, skip).await?;
    let mut report = PassReport::default();
    for (index, row) in rows.iter().enumerate() {
        let name = format!("periodic_{index}");
        savepoint::create(&mut tx, &name).await?;
        match enqueue_row(&mut tx, row, &name).await {
            Ok(true) => report.enqueued += 1,
            Ok(false) => report.deduplicated += 1,
            Err(message) => {
                savepoint::rollback_to(&mut tx, &name).await?;
                report.failures.push((row.name.clone(), message));
                continue;
            }
        }
        savepoint::release(&mut tx, &name).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// Validates the row, enqueues its task and advances it; `Ok(false)` when deduplicated.
async fn enqueue_row(tx: &mut PgConnection, row: &DueRow, savepoint: &str) -> Result<bool, String> {
    let schedule: Schedule = row
        .cron_expr
        .parse()
        .map_err(|e| format!("invalid cron expr for {}: {e}", row.name))?;
    let next = schedule.next_after(Utc::now()).ok_or_else(|| {
        format!(
            "invalid cron expr for {}: {:?} never fires",
            row.name, row.cron_expr
        )
    })?;
    let spec = spec::build(&row.spec_input(), row.next_run_at)
        .map_err(|e| format!("failed to parse periodic payload for {}: {e}", row.name))?;
    let inserted = match periodic::enqueue(tx, row, &spec).await {
        Ok(inserted) => inserted,
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
            // A concurrent insert of the same slot won: this row is done all the same.
            savepoint::rollback_to(&mut *tx, savepoint)
                .await
                .map_err(|e| e.to_string())?;
            false
        }
        Err(error) => {
            return Err(format!(
                "failed to enqueue periodic task {}: {error}",
                row.name
            ));
        }
    };
    periodic::advance(tx, &row.name, next)
        .await
        .map_err(|e| format!("failed to enqueue periodic task {}: {e}", row.name))?;
    Ok(inserted)
}

#[derive(Debug)]
struct RowTrouble {
    failures: u32,
    retry_at: Instant,
    last_error: String,
}

/// The long-running scheduler.
pub struct Beat {
    /// The database.
    pub pool: PgPool,
    /// How the leader-lock session connects: the DSN's host walk (a direct DSN behind
    /// a transaction-mode pooler, where a session lock would be lost).
    pub lock_connector: crate::db::Connector,
    /// Time between passes.
    pub interval: Duration,
    /// Where readiness, status and watchdog pets go (disabled outside systemd).
    pub systemd: Notifier,
}

impl Beat {
    /// Runs passes while holding the leader lock, until `shutdown.stop` fires. A stop
    /// ends the waits (the next tick, connecting, the leader lock) at once and lets a
    /// pass under way finish; `shutdown.abort` (a second signal) abandons that pass too,
    /// rolled back with its transaction.
    pub async fn run(self, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut leader: Option<PgConnection> = None;
        let mut standing_by = false;
        let mut trouble: HashMap<String, RowTrouble> = HashMap::new();
        let (liveness, supervisor_done, supervisor) = self.supervise(&shutdown.stop);
        let _supervisor = supervisor_done.clone().drop_guard();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.stop.cancelled() => break,
                () = liveness.pulse() => continue,
            }
            let leading = tokio::select! {
                leading = liveness.during(self.hold_leadership(&mut leader)) => leading,
                () = shutdown.stop.cancelled() => break,
            };
            liveness.beat(usize::from(leading));
            if !leading {
                if !standing_by {
                    tracing::info!("Another beat holds the leader lock; standing by");
                    standing_by = true;
                }
                continue;
            }
            if standing_by {
                tracing::info!("Took over as the leading beat");
                standing_by = false;
            }
            let now = Instant::now();
            let skip: Vec<String> = trouble
                .iter()
                .filter(|(_, t)| t.retry_at > now)
                .map(|(n, _)| n.clone())
                .collect();
            let pass = tokio::select! {
                pass = liveness.during(run_pass(&self.pool, &skip)) => pass,
                () = shutdown.abort.cancelled() => {
                    tracing::warn!("Abandoning the beat pass under way");
                    break;
                }
            };
            match pass {
                Ok(report) => self.record(report, &mut trouble),
                Err(error) => {
                    tracing::error!(error = %error, enqueued = 0, "Failed to enqueue periodic tasks")
                }
            }
        }
        tracing::info!("Shutting down beat");
        // Let the supervisor say STOPPING=1 before the process exits (a runtime shutting
        // down would drop it unscheduled).
        supervisor_done.cancel();
        let _ = tokio::time::timeout(SUPERVISOR_EXIT, supervisor).await;
    }

    /// Starts the systemd supervisor for this loop; it stops when the token fires.
    fn supervise(
        &self,
        stop: &CancellationToken,
    ) -> (Liveness, CancellationToken, tokio::task::JoinHandle<()>) {
        let liveness = Liveness::default();
        let done = CancellationToken::new();
        let supervision = Supervision {
            notifier: self.systemd.clone(),
            liveness: liveness.clone(),
            describe: Box::new(|leading| {
                if leading == 1 {
                    "leading"
                } else {
                    "standing by"
                }
                .to_owned()
            }),
            stopping: stop.clone(),
        };
        let handle = tokio::spawn(watchdog::supervise(supervision, done.clone()));
        (liveness, done, handle)
    }

    /// Keeps (or takes) the session-level advisory lock; false when another beat has it
    /// or the database cannot be reached.
    async fn hold_leadership(&self, leader: &mut Option<PgConnection>) -> bool {
        if let Some(conn) = leader.as_mut() {
            if leader::still_held(conn).await.is_ok() {
                return true;
            }
            tracing::warn!("Lost the leader-lock session; reconnecting");
            *leader = None;
        }
        let connect = crate::db::connect_one(&self.lock_connector);
        let Ok(Ok(mut conn)) = tokio::time::timeout(LOCK_CONNECT_TIMEOUT, connect).await else {
            return false;
        };
        if leader::try_acquire(&mut conn).await.unwrap_or(false) {
            *leader = Some(conn);
            true
        } else {
            let _ = conn.close().await;
            false
        }
    }

    fn record(&self, report: PassReport, trouble: &mut HashMap<String, RowTrouble>) {
        if report.enqueued > 0 {
            tracing::info!(count = report.enqueued, "Enqueued periodic tasks");
        }
        let failed: Vec<&String> = report.failures.iter().map(|(name, _)| name).collect();
        trouble.retain(|name, _| failed.contains(&name));
        for (name, error) in report.failures {
            let entry = trouble.entry(name.clone()).or_insert(RowTrouble {
                failures: 0,
                retry_at: Instant::now(),
                last_error: String::new(),
            });
            entry.failures += 1;
            let passes = 1_u32 << (entry.failures - 1).min(5);
            entry.retry_at = Instant::now() + self.interval * passes.min(MAX_BACKOFF_PASSES);
            if entry.last_error != error {
                tracing::error!(periodic_name = %name, error = %error, retry_in_passes = passes, "Failed to enqueue periodic tasks");
                entry.last_error = error;
            }
        }
    }
}
