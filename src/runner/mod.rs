//! The worker's long-lived services and the supervisor that runs them: the claim loop
//! ([`dispatcher`]), one [`pipeline`] per claimed task, the [`lease_keeper`], and the
//! [`maintenance`] chores. Only this module (and `http/` later) spawns long-lived tasks.

pub mod beat;
pub mod completer;
pub mod dispatcher;
pub mod identity;
pub mod idle;
pub mod lease_keeper;
pub mod maintenance;
pub mod memory_log;
pub mod observer;
pub mod pipeline;
pub mod record;
pub mod running;
pub mod stall;
pub mod wake;
pub mod watchdog;

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
use pipeline::Pipeline;
use running::Running;
use watchdog::{Liveness, Supervision};

use crate::systemd::Notifier;

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
    listen_pool: Option<PgPool>,
    systemd: Notifier,
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
            listen_pool: Some(pool.clone()),
            pool,
            executor: Arc::new(executor),
            claimer: Claimer::new(order),
            wake: Arc::new(Notify::new()),
            wake_on_insert: wake_on_insert.then(|| Arc::new(wake::ListenState::default())),
            observer: Observer::default(),
            systemd: Notifier::disabled(),
        })
    }

    /// The same worker, reporting metrics and events through `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = observer;
        self
    }

    /// The same worker, taking LISTEN/NOTIFY wake-ups through `listen_pool` (a direct
    /// DSN behind a transaction-mode pooler), or polling only when `None`.
    pub fn with_listen_pool(mut self, listen_pool: Option<PgPool>) -> Self {
        self.listen_pool = listen_pool;
        self
    }

    /// The same worker, notifying systemd (readiness, status, watchdog).
    pub fn with_systemd(mut self, notifier: Notifier) -> Self {
        self.systemd = notifier;
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
        if let Some(listen_pool) = self.listen_pool.clone() {
            let wake = self.wake.clone();
            background.spawn(wake::listen(
                listen_pool,
                config.queues.clone(),
                self.wake_on_insert.clone().unwrap_or_default(),
                move || wake.notify_one(),
                services.clone(),
            ));
        }

        if self.executor.pool_stats().is_some() {
            background.spawn(sample_pool(
                self.executor.clone(),
                observer.clone(),
                services.clone(),
            ));
        }
        let (completer, completer_task) = Completer::start(self.pool.clone());
        let give_up = CancellationToken::new();
        let pipeline = Arc::new(Pipeline {
            config: config.clone(),
            pool: self.pool.clone(),
            executor: self.executor.clone(),
            running: running.clone(),
            abort: shutdown.abort.clone(),
            give_up: give_up.clone(),
            completer,
            observer,
        });
        let liveness = Liveness::default();
        let draining = shutdown.stop.child_token();
        background.spawn(watchdog::supervise(
            worker_supervision(
                &self.systemd,
                &liveness,
                &draining,
                config.concurrency.get(),
            ),
            services.clone(),
        ));
        let dispatcher = Dispatcher {
            pipeline,
            claimer: self.claimer.clone(),
            wake: self.wake.clone(),
            liveness,
            // Without a LISTEN session (a transaction pooler and no listen_dsn) nothing
            // would hear the triggers' notifications: poll instead of marking queues.
            wake_on_insert: self.listen_pool.as_ref().and(self.wake_on_insert.clone()),
        };
        let mut tasks = JoinSet::new();
        let mut stats = DispatchStats::default();
        let reason = dispatcher.run(&shutdown.stop, &mut tasks, &mut stats).await;
        draining.cancel();
        let hard_deadline = drain(
            &mut tasks,
            &mut stats,
            &shutdown,
            &give_up,
            config.shutdown_timeout,
        )
        .await;
        // From here on everything is bounded by `hard_deadline`, a frozen database included.
        drop(tasks);
        drop(dispatcher);
        if tokio::time::timeout_at(hard_deadline, completer_task)
            .await
            .is_err()
        {
            tracing::warn!("Success batcher did not finish before the shutdown deadline");
        }
        services.cancel();
        if tokio::time::timeout_at(hard_deadline, async {
            while background.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            background.abort_all();
        }
        if tokio::time::timeout_at(hard_deadline, self.executor.close())
            .await
            .is_err()
        {
            tracing::warn!("Executor did not close before the shutdown deadline");
        }
        let registered_at = *registered_at.borrow();
        if let Some(started_at) = registered_at {
            // The heartbeat has stopped, so nothing re-creates the row after this.
            let deadline = hard_deadline.max(tokio::time::Instant::now() + DEREGISTER_TIMEOUT);
            match tokio::time::timeout_at(
                deadline,
                registry::deregister(&self.pool, &config.worker_id, started_at),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(error = %error, "Failed to deregister worker"),
                Err(_) => tracing::warn!(
                    error = "the database did not answer in time",
                    "Failed to deregister worker"
                ),
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
        let identity = identity::take(&self.pool, &config.worker_id).await;
        if let Ok(Some(twin)) = registry::live_twin(&self.pool, &config.worker_id, 90.0).await {
            let same_host = twin.hostname.as_deref() == Some(info.hostname.as_str());
            if identity.free == Some(true) && same_host {
                // Seen lately, but its session (and lock) is gone: our own predecessor.
                tracing::info!(
                    worker_id = %config.worker_id, last_seen_at = %twin.last_seen_at,
                    "Taking over the registration of this worker_id's previous process, which has stopped"
                );
            } else {
                tracing::warn!(
                    worker_id = %config.worker_id, other_hostname = twin.hostname.as_deref().unwrap_or(""),
                    last_seen_at = %twin.last_seen_at,
                    "Another live worker uses this worker_id; lease fencing cannot tell them apart"
                );
            }
        }
        background.spawn(identity::keep(
            self.pool.clone(),
            config.worker_id.clone(),
            identity,
            services.clone(),
        ));
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

/// The worker's systemd status: running tasks and idle slots of the claim loop.
fn worker_supervision(
    notifier: &Notifier,
    liveness: &Liveness,
    draining: &CancellationToken,
    concurrency: usize,
) -> Supervision {
    Supervision {
        notifier: notifier.clone(),
        liveness: liveness.clone(),
        describe: Box::new(move |running| {
            let idle = concurrency.saturating_sub(running);
            format!("claiming: {running} running, {idle} idle slots")
        }),
        stopping: draining.clone(),
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

/// How long after the drain ends (shutdown timeout reached, or a second signal) the
/// killed tasks' requeues, unrecorded outcomes and the services' own stops may take in
/// all; past it they are abandoned (and logged), so a worker whose database is frozen
/// still exits within `shutdown_timeout` + 15 s: a claim in flight
/// ([`dispatcher::CLAIM_GRACE`]) + this + [`DEREGISTER_TIMEOUT`] + the command's own
/// bounded stops (HTTP services, pool close, runtime: 1 s each).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// After a second signal: kill, requeue where the database answers at once, exit.
pub const ABORT_GRACE: Duration = Duration::from_secs(2);
/// Longest wait for the clean stop's deregistration.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(1);

/// Lets running tasks finish for up to `timeout`, then aborts them (their pipelines
/// requeue them with the attempt refunded) and waits for those writes until a hard
/// deadline, which it returns (outcome writes still retrying are told to `give_up`
/// there). A second signal (`abort`) ends the wait at once and shortens the deadline.
async fn drain(
    tasks: &mut JoinSet<pipeline::TaskReport>,
    stats: &mut DispatchStats,
    shutdown: &Shutdown,
    give_up: &CancellationToken,
    timeout: Duration,
) -> tokio::time::Instant {
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
    let forced = shutdown.abort.is_cancelled();
    let grace = if forced {
        TERM_GRACE + ABORT_GRACE
    } else {
        SHUTDOWN_GRACE
    };
    let hard_deadline = tokio::time::Instant::now() + grace;
    if in_time {
        return hard_deadline;
    }
    if !tasks.is_empty() {
        tracing::warn!(
            running = tasks.len(),
            "Shutdown timeout reached; killing running tasks and requeueing them"
        );
    }
    shutdown.abort.cancel();
    // Outcome writes stop retrying a little before the hard deadline, so their
    // pipelines can still report.
    let give_up_at = hard_deadline - Duration::from_secs(1);
    if join_until(tasks, stats, give_up_at).await {
        return hard_deadline;
    }
    give_up.cancel();
    if !join_until(tasks, stats, hard_deadline).await {
        tracing::error!(
            pending = tasks.len(),
            "Shutdown deadline reached; abandoning tasks that could not be recorded"
        );
        tasks.abort_all();
    }
    hard_deadline
}

/// Collects finished pipelines until none is left (true) or `deadline` (false).
async fn join_until(
    tasks: &mut JoinSet<pipeline::TaskReport>,
    stats: &mut DispatchStats,
    deadline: tokio::time::Instant,
) -> bool {
    tokio::time::timeout_at(deadline, async {
        while let Some(done) = tasks.join_next().await {
            dispatcher::count(stats, done);
        }
    })
    .await
    .is_ok()
}
