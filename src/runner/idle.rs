//! How long an idle claim loop sleeps, and the worker's half of wake-on-insert.
//!
//! Without the wake-on-insert triggers (`migrations/0003_wake_on_insert.sql`) an idle
//! worker sleeps the jittered poll backoff, as the Go worker does. With them, after a
//! claim round finds nothing it:
//!
//! 1. is already LISTENing (`runner/wake.rs`; a queue is marked only under a live
//!    subscription, and again after the subscription was renewed);
//! 2. marks its queues as waited on, unless they are still marked from its last sleep
//!    (a mark lasts until an insert clears it, and that insert's NOTIFY wakes us);
//! 3. lists the transactions writing `task_runs` right now: an insert that looked for
//!    waiters before the mark was committed is among them until it commits, so while
//!    any is left the loop polls again after a few milliseconds (doubling, up to the
//!    poll backoff; the mark already catches every later insert);
//! 4. looks for runnable rows once more (a row committed between the claim and the
//!    mark was not notified), and for the earliest future `run_after`;
//! 5. sleeps until that `run_after`, the poll backoff or a notification.
//!
//! Queries per idle second are today's: a still-valid mark costs nothing, and steps
//! 2–4 run only after a notification, a due timer or while writers are in flight.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use super::wake::ListenState;
use crate::queue::waiters;

/// First re-poll delay while an inserter is in flight.
const IN_FLIGHT_FIRST: Duration = Duration::from_millis(2);
/// Margin added to a `run_after` deadline, so the claim's `now()` has passed it.
const DUE_MARGIN: Duration = Duration::from_millis(1);

/// Why an idle sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The sleep ran out.
    Timer,
    /// A notification (or a renewed subscription) arrived.
    Notified,
    /// Anything else (a finished task, shutdown).
    Other,
}

/// The idle-sleep planner of one claim loop.
#[derive(Debug)]
pub struct Idler {
    pool: PgPool,
    queues: Vec<String>,
    /// `Some` when the triggers are installed and the worker listens.
    listen: Option<Arc<ListenState>>,
    /// The listener generation under which our queues are known to be marked.
    marked: Option<u64>,
    /// Writers of `task_runs` that may have missed the mark and have not committed yet.
    writers: Vec<String>,
    need_check: bool,
    next_due: Option<Instant>,
    in_flight_delay: Duration,
}

impl Idler {
    /// A planner for `queues`; `listen` is `None` when the database has no wake-on-insert
    /// triggers (pure polling).
    pub fn new(pool: PgPool, queues: Vec<String>, listen: Option<Arc<ListenState>>) -> Self {
        Idler {
            pool,
            queues,
            listen,
            marked: None,
            writers: Vec::new(),
            need_check: false,
            next_due: None,
            in_flight_delay: IN_FLIGHT_FIRST,
        }
    }

    /// Called after a claim round found nothing, with the jittered poll `pause`.
    /// Returns how long to sleep, or `None` to claim again at once.
    pub async fn plan(&mut self, pause: Duration) -> Option<Duration> {
        let Some(listen) = &self.listen else {
            return Some(pause);
        };
        let Some(generation) = listen.generation() else {
            self.marked = None;
            return Some(pause);
        };
        let writers = if self.marked != Some(generation) {
            if let Err(error) = waiters::mark(&self.pool, &self.queues).await {
                tracing::debug!(error = %error, "marking queues as waited on failed; polling");
                return Some(pause);
            }
            self.marked = Some(generation);
            self.need_check = true;
            self.in_flight_delay = IN_FLIGHT_FIRST;
            waiters::writers(&self.pool, None).await
        } else if self.writers.is_empty() {
            Ok(Vec::new())
        } else {
            waiters::writers(&self.pool, Some(&self.writers)).await
        };
        match writers {
            Ok(writers) => self.writers = writers,
            Err(error) => {
                tracing::debug!(error = %error, "listing writers failed; polling");
                self.marked = None;
                return Some(pause);
            }
        }
        if !self.writers.is_empty() {
            let delay = self.in_flight_delay.min(pause);
            self.in_flight_delay = (self.in_flight_delay * 2).min(pause);
            return Some(delay);
        }
        if self.need_check {
            self.need_check = false;
            match waiters::due(&self.pool, &self.queues).await {
                Ok(due) => {
                    self.next_due = due.next_in.map(|d| Instant::now() + d + DUE_MARGIN);
                    if due.now {
                        return None;
                    }
                }
                Err(error) => {
                    tracing::debug!(error = %error, "looking for due tasks failed; polling");
                    self.next_due = None;
                }
            }
        }
        let now = Instant::now();
        Some(match self.next_due {
            Some(due) if due.saturating_duration_since(now) < pause => {
                due.saturating_duration_since(now)
            }
            _ => pause,
        })
    }

    /// Records why the sleep that [`Idler::plan`] asked for ended.
    pub fn woken(&mut self, why: Woken) {
        match why {
            // The insert that notified us cleared the mark.
            Woken::Notified => self.marked = None,
            Woken::Timer => {
                if self.next_due.is_some_and(|due| due <= Instant::now()) {
                    self.next_due = None;
                    self.need_check = true;
                }
            }
            Woken::Other => {}
        }
    }
}
