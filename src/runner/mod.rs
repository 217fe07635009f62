//! The worker's long-lived services and the supervisor that runs them: the claim loop
//! ([`dispatcher`]), one [`pipeline`] per claimed task, the [`lease_keeper`], and the
//! [`maintenance`] chores. Only this module (and `http/` later) spawns long-lived tasks.

pub mod beat;
pub mod completer;
pub mod dispatcher;
pub mod idle;
pub mod lease_keeper;
pub mod maintenance;
pub mod memory_log;
pub mod observer;
pub mod pipeline;
pub mod running;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::executor::Executor;
use crate::executor::process::TERM_GRACE;
use crate::queue::{Claimer, claim_order, registry, waiters};
use crate::shutdown::Shutdown;
use completer::Completer;
use dispatcher::{DispatchStats, Dispatcher, StopReason};
use lease_keeper::LeaseKeeper;
use observer::Observer;
use pipeline::{COMPLETION_DEADLINE, Pipeline};
use running::Running;

/// How a worker run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Why the claim loop stopped.
    pub reason: StopReason,
    /// Task counters.
    pub stats: DispatchStats,
}

/// A configured worker, ready to run.
pub struct Worker<E> {
    config: Arc<WorkerConfig>,
    pool: PgPool,
    executor: Arc<E>,
    claimer: Claimer,
    wake: Arc<Notify>,
    /// Set when the database has the wake-on-insert triggers.
    wake_on_insert: Option<Arc<wake::ListenState>>,
    observer: Observer,
}

impl<E: Executor> Worker<E> {
    /// Inspects the database to pick the claim order, and logs which one it uses.
    ///
    /// # Errors
    /// Database errors while inspecting the catalogue.
    pub async fn new(config: WorkerConfig, pool: PgPool, executor: E) -> Result<Self, sqlx::Error> {
        let order = claim_order::detect(&pool, config.priority_aging_factor).await?;
        tracing::info!(claim_order = %order.describe(), "Claim order selected");
        let wake_on_insert = waiters::installed(&pool).await?;
        tracing::info!(
            wake_on_insert,
            "{}",
            if wake_on_insert {
                "Wake-on-insert triggers found; idle workers are notified of new tasks"
            } else {
                "No wake-on-insert triggers; tasks inserted without NOTIFY are found by polling"
            }
        );
        Ok(Worker {
            config: Arc::new(config),
            pool,
            executor: Arc::new(executor),
            claimer: Claimer::new(order),
            wake: Arc::new(Notify::new()),
            wake_on_insert: wake_on_insert.then(|| Arc::new(wake::ListenState::default())),
            observer: Observer::default(),
        })
    }

    /// The same worker, reporting metrics and events through `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = observer;
        self
    }

    /// A handle that wakes an idle claim loop at once (for LISTEN/NOTIFY and tests).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown.stop` (drain) or a run mode ends the loop; returns after
    /// every task is recorded or requeued.
    pub async fn run(self, shutdown: Shutdown) -> RunSummary {
        let config = self.config.clone();
        tracing::info!(concurrency = config.concurrency.get(), queues = ?config.queues, "Starting reproq worker");
        let observer = self
            .observer
            .clone()
            .with_identity(&config.worker_id, &config.process_role);
        let services = CancellationToken::new();
        let mut background = JoinSet::new();
        let registered_at = self.register(&services, &mut background).await;
        if let Some(interval) = config.reclaim_interval {
            maintenance::reclaim_once(&self.pool, config.max_attempts_default, &observer).await;
            background.spawn(maintenance::run_reclaimer(
                self.pool.clone(),
                interval,
                config.max_attempts_default,
                observer.clone(),
                services.clone(),
            ));
        }
        let running = Arc::new(Running::default());
        let keeper = LeaseKeeper {
            pool: self.pool.clone(),
            running: running.clone(),
            worker_id: config.worker_id.clone(),
            lease: config.lease,
            heartbeat: config.heartbeat,
            observer: observer.clone(),
        };
        background.spawn(keeper.run(services.clone()));
        let wake = self.wake.clone();
        background.spawn(wake::listen(
            self.pool.clone(),
            config.queues.clone(),
            self.wake_on_insert.clone().unwrap_or_default(),
            move || wake.notify_one(),
            services.clone(),
        ));

        if self.executor.pool_stats().is_some() {
            background.spawn(sample_pool(
                self.executor.clone(),
                observer.clone(),
                services.clone(),
            ));
        }
        let (completer, completer_task) = Completer::start(self.pool.clone());
        let pipeline = Arc::new(Pipeline {
            config: config.clone(),
            pool: self.pool.clone(),
            executor: self.executor.clone(),
            running: running.clone(),
            abort: shutdown.abort.clone(),
            completer,
            observer,
        });
        let dispatcher = Dispatcher {
            pipeline,
            claimer: self.claimer.clone(),
            wake: self.wake.clone(),
            wake_on_insert: self.wake_on_insert.clone(),
        };
        let mut tasks = JoinSet::new();
        let mut stats = DispatchStats::default();
        let reason = dispatcher.run(&shutdown.stop, &mut tasks, &mut stats).await;
        drain(&mut tasks, &mut stats, &shutdown, config.shutdown_timeout).await;
        // Drop the last completer handles (pipelines still running past the drain bound are
        // aborted): the completer then finishes its queue and ends.
        drop(tasks);
        drop(dispatcher);
        let _ = completer_task.await;
        services.cancel();
        while background.join_next().await.is_some() {}
        self.executor.close().await;
        let registered_at = *registered_at.borrow();
        if let Some(started_at) = registered_at {
            // The heartbeat has stopped, so nothing re-creates the row after this.
            if let Err(error) =
                registry::deregister(&self.pool, &config.worker_id, started_at).await
            {
                tracing::warn!(error = %error, "Failed to deregister worker");
            }
        }
        tracing::info!(
            reason = ?reason, completed = stats.completed, requeued = stats.requeued, abandoned = stats.abandoned,
            "Worker stopped"
        );
        RunSummary { reason, stats }
    }

    /// Registers in `reproq_workers` and starts the registry heartbeat; the returned
    /// channel holds the registration's current `started_at` (`None` until a write
    /// succeeded), which the clean stop uses to remove exactly this row.
    async fn register(
        &self,
        services: &CancellationToken,
        background: &mut JoinSet<()>,
    ) -> tokio::sync::watch::Receiver<Option<chrono::DateTime<chrono::Utc>>> {
        let config = &self.config;
        let info = registry::WorkerInfo {
            worker_id: config.worker_id.clone(),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            concurrency: i32::try_from(config.concurrency.get()).unwrap_or(i32::MAX),
            queues: config.queues.clone(),
            version: crate::VERSION.to_owned(),
        };
        if let Ok(Some(twin)) = registry::live_twin(&self.pool, &config.worker_id, 90.0).await {
            tracing::warn!(
                worker_id = %config.worker_id, other_hostname = twin.hostname.as_deref().unwrap_or(""),
                last_seen_at = %twin.last_seen_at,
                "Another live worker uses this worker_id; lease fencing cannot tell them apart"
            );
        }
        let started_at = match registry::upsert(&self.pool, &info, true).await {
            Ok(started_at) => Some(started_at),
            Err(error) => {
                tracing::warn!(error = %error, "Failed to register worker");
                None
            }
        };
        let (registration, registered_at) = tokio::sync::watch::channel(started_at);
        background.spawn(maintenance::run_registry_heartbeat(
            self.pool.clone(),
            info,
            registration,
            services.clone(),
        ));
        registered_at
    }
}

/// Copies the warm pool's figures into the metrics every few seconds.
async fn sample_pool<E: Executor>(executor: Arc<E>, observer: Observer, done: CancellationToken) {
    let mut seen = [0_u64; 4];
    loop {
        if let Some(stats) = executor.pool_stats() {
            observer.pool(stats, &mut seen);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = done.cancelled() => return,
        }
    }
}

/// Lets running tasks finish for up to `timeout`, then aborts them (their pipelines
/// requeue them with the attempt refunded) and waits for those writes.
async fn drain(
    tasks: &mut JoinSet<pipeline::TaskReport>,
    stats: &mut DispatchStats,
    shutdown: &Shutdown,
    timeout: Duration,
) {
    let finish_all = async {
        while let Some(done) = tasks.join_next().await {
            dispatcher::count(stats, done);
        }
    };
    let in_time = tokio::select! {
        () = finish_all => true,
        () = tokio::time::sleep(timeout) => false,
        () = shutdown.abort.cancelled() => false,
    };
    if in_time {
        return;
    }
    if !tasks.is_empty() {
        tracing::warn!(
            running = tasks.len(),
            "Shutdown timeout reached; killing running tasks and requeueing them"
        );
    }
    shutdown.abort.cancel();
    let bound = TERM_GRACE + COMPLETION_DEADLINE + Duration::from_secs(5);
    let _ = tokio::time::timeout(bound, async {
        while let Some(done) = tasks.join_next().await {
            dispatcher::count(stats, done);
        }
    })
    .await;
}
