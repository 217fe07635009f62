//! The claim loop (spec §5.1): a permit per concurrency slot, claims round-robin across
//! queues, several rows per claim when several slots are free, and an idle sleep
//! (planned by [`super::idle`]) that a wake-up (`Notify`, fed by LISTEN/NOTIFY) or
//! shutdown cuts short.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::idle::{Idler, Woken};
use super::pipeline::{Pipeline, TaskReport};
use super::wake::ListenState;
use super::watchdog::Liveness;
use crate::executor::Executor;
use crate::queue::{ClaimRequest, ClaimedTask, Claimer};

/// Most rows taken in one claim.
pub const MAX_CLAIM_BATCH: usize = 16;
/// Most claimed tasks a worker holds whose outcome is not recorded yet (running, or
/// finished with the write pending), unless the concurrency is larger: while outcome
/// writes are stalled (a frozen or locked database), the worker stops claiming instead
/// of running ever more tasks whose outcomes it cannot record, so a worker killed at
/// such a moment loses at most this many finished outcomes.
pub const MAX_UNRECORDED: usize = 50;
/// How long a claim in flight may hold up a stop.
pub const CLAIM_GRACE: Duration = Duration::from_secs(2);
/// How long a busy worker waits for more free slots before claiming for one.
pub const CLAIM_COALESCE: Duration = Duration::from_millis(2);

/// Why the claim loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A signal (or the caller) asked to stop.
    Requested,
    /// `--max-tasks` tasks were completed.
    MaxTasks,
    /// `--burst` found nothing left to do.
    Drained,
}

/// Counters kept while the loop runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchStats {
    /// Tasks claimed.
    pub claimed: u64,
    /// Tasks whose outcome was recorded.
    pub completed: u64,
    /// Tasks requeued by shutdown.
    pub requeued: u64,
    /// Tasks whose outcome could not be recorded.
    pub abandoned: u64,
}

/// The claim loop.
pub struct Dispatcher<E> {
    /// Runs each claimed task.
    pub pipeline: Arc<Pipeline<E>>,
    /// Claims tasks.
    pub claimer: Claimer,
    /// Wakes the loop early when work may have arrived.
    pub wake: Arc<Notify>,
    /// The loop's heartbeat (readiness, status and the systemd watchdog).
    pub liveness: Liveness,
    /// The LISTEN subscription's state when the database has the wake-on-insert
    /// triggers; `None` for pure polling.
    pub wake_on_insert: Option<Arc<ListenState>>,
}

impl<E: Executor> Dispatcher<E> {
    /// Claims and starts tasks until `stop` fires (or a run mode says it is done), then
    /// returns with the still-running pipelines in `tasks` for the caller to drain.
    pub async fn run(
        &self,
        stop: &CancellationToken,
        tasks: &mut JoinSet<TaskReport>,
        stats: &mut DispatchStats,
    ) -> StopReason {
        let config = &self.pipeline.config;
        let slots = Arc::new(Semaphore::new(config.concurrency.get()));
        let unrecorded = Arc::new(Semaphore::new(MAX_UNRECORDED.max(config.concurrency.get())));
        let mut next_queue = 0_usize;
        let mut last_claim_found_work = false;
        let mut idler = Idler::new(
            self.pipeline.pool.clone(),
            config.queues.clone(),
            self.wake_on_insert.clone(),
        );
        loop {
            while let Some(done) = tasks.try_join_next() {
                count(stats, done);
            }
            self.liveness.beat(tasks.len());
            if stop.is_cancelled() {
                return StopReason::Requested;
            }
            let remaining = config
                .max_tasks
                .map(|max| max.saturating_sub(stats.claimed));
            if remaining == Some(0) {
                if tasks.is_empty() {
                    return StopReason::MaxTasks;
                }
                tokio::select! {
                    Some(done) = tasks.join_next() => count(stats, done),
                    () = stop.cancelled() => return StopReason::Requested,
                    () = self.liveness.pulse() => {}
                }
                continue;
            }
            if let Some(until) = self.pipeline.executor.ready_at() {
                // The executor cannot take work (no runner starts): claim nothing until it retries.
                tokio::select! {
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = stop.cancelled() => return StopReason::Requested,
                    () = self.liveness.pulse() => {}
                }
                continue;
            }
            let first_unrecorded = tokio::select! {
                permit = unrecorded.clone().acquire_owned() => permit.expect("the backlog semaphore is never closed"),
                Some(done) = tasks.join_next() => { count(stats, done); continue; }
                () = stop.cancelled() => return StopReason::Requested,
            };
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
                Some(done) = tasks.join_next() => { count(stats, done); continue; }
                () = stop.cancelled() => return StopReason::Requested,
                () = self.liveness.pulse() => continue,
            };
            if !tasks.is_empty() && slots.available_permits() == 0 && last_claim_found_work {
                // Busy and only one slot free: give other slots a moment to free up so one
                // claim fills several (fewer statements per task when CPU is the limit).
                tokio::time::sleep(CLAIM_COALESCE).await;
            }
            let mut batch = (1 + slots.available_permits())
                .min(1 + unrecorded.available_permits())
                .min(MAX_CLAIM_BATCH);
            if let Some(remaining) = remaining {
                batch = batch.min(usize::try_from(remaining).unwrap_or(usize::MAX));
            }
            // A claim in flight when a stop comes may finish (its rows then run and
            // drain), but not hold the stop for longer than CLAIM_GRACE: against a
            // frozen database it would never answer (those rows, if the claim landed,
            // are reclaimed once their lease expires).
            let polled = tokio::select! {
                polled = self.liveness.during(self.poll(&mut next_queue, batch)) => polled,
                () = async {
                    stop.cancelled().await;
                    tokio::time::sleep(CLAIM_GRACE).await;
                } => {
                    tracing::warn!("Claim did not answer after the stop; abandoning it");
                    return StopReason::Requested;
                }
            };
            last_claim_found_work = matches!(&polled, Ok(claimed) if !claimed.is_empty());
            match polled {
                Ok(claimed) if !claimed.is_empty() => {
                    stats.claimed += claimed.len() as u64;
                    let mut permits = vec![(first, first_unrecorded)];
                    while permits.len() < claimed.len() {
                        permits.push((
                            slots
                                .clone()
                                .try_acquire_owned()
                                .expect("free slots were counted before the claim"),
                            unrecorded
                                .clone()
                                .try_acquire_owned()
                                .expect("free backlog permits were counted before the claim"),
                        ));
                    }
                    for (task, (permit, backlog)) in claimed.into_iter().zip(permits) {
                        let pipeline = self.pipeline.clone();
                        tasks.spawn(
                            async move {
                                let report = pipeline.run(task, permit).await;
                                drop(backlog);
                                report
                            }
                            .instrument(tracing::Span::current()),
                        );
                    }
                }
                Ok(_) => {
                    drop((first, first_unrecorded));
                    if config.burst && tasks.is_empty() {
                        return StopReason::Drained;
                    }
                    self.liveness
                        .during(self.idle(&mut idler, stop, tasks, stats))
                        .await;
                }
                Err(error) => {
                    drop((first, first_unrecorded));
                    tracing::error!(error = %error, "Polling error");
                    crate::db::pooler::report(&error);
                    self.liveness
                        .during(self.idle(&mut idler, stop, tasks, stats))
                        .await;
                }
            }
        }
    }

    /// Round-robin over the queues; the first that yields tasks wins (spec §5.1).
    async fn poll(
        &self,
        next_queue: &mut usize,
        batch: usize,
    ) -> Result<Vec<ClaimedTask>, sqlx::Error> {
        let config = &self.pipeline.config;
        let queues = &config.queues;
        let start = *next_queue % queues.len();
        for offset in 0..queues.len() {
            let index = (start + offset) % queues.len();
            let request = ClaimRequest {
                queue: &queues[index],
                worker_id: &config.worker_id,
                lease: config.lease,
                limit: batch,
            };
            let started = std::time::Instant::now();
            let claimed = self.claimer.claim(&self.pipeline.pool, &request).await?;
            self.pipeline
                .observer
                .claimed(request.queue, started.elapsed(), &claimed);
            if !claimed.is_empty() {
                *next_queue = index + 1;
                return Ok(claimed);
            }
        }
        *next_queue = start + 1;
        Ok(Vec::new())
    }

    /// Sleeps a random time in [poll_min_backoff, poll_max_backoff) or until the next
    /// delayed task is due (see [`Idler`]), cut short by a wake-up, a finished task in
    /// burst mode, or `stop`.
    async fn idle(
        &self,
        idler: &mut Idler,
        stop: &CancellationToken,
        tasks: &mut JoinSet<TaskReport>,
        stats: &mut DispatchStats,
    ) {
        let config = &self.pipeline.config;
        let (min, max) = (config.poll_min_backoff, config.poll_max_backoff);
        let pause = if max > min {
            rand::thread_rng().gen_range(min..max)
        } else {
            min
        };
        let pause = pause.max(Duration::from_millis(1));
        let Some(pause) = idler.plan(pause).await else {
            return;
        };
        let woken = tokio::select! {
            () = tokio::time::sleep(pause) => Woken::Timer,
            () = self.wake.notified() => Woken::Notified,
            Some(done) = tasks.join_next(), if config.burst => { count(stats, done); Woken::Other }
            () = stop.cancelled() => Woken::Other,
        };
        idler.woken(woken);
    }
}

/// Folds a finished pipeline into the counters.
pub fn count(stats: &mut DispatchStats, done: Result<TaskReport, tokio::task::JoinError>) {
    match done {
        Ok(TaskReport::Recorded) => stats.completed += 1,
        Ok(TaskReport::Requeued) => stats.requeued += 1,
        Ok(TaskReport::Abandoned) => stats.abandoned += 1,
        Err(error) => {
            tracing::error!(error = %error, "task pipeline panicked");
            stats.abandoned += 1;
        }
    }
}
