//! The tasks this worker is running right now, and why one was told to die. Keyed by
//! [`Attempt`]: the same task may run twice here at once (it was requeued while its
//! first attempt still ran, and this worker claimed it again), and each attempt has
//! its own kill switch and lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::queue::Attempt;

/// Why the worker killed a running task; decides what is recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// `cancel_requested` was set: FAILED with kind `cancelled`.
    Cancelled,
    /// The lease is gone: write nothing, another worker owns the row now.
    LeaseLost,
    /// Shutdown past its drain timeout: back to READY, attempt refunded.
    Shutdown,
}

/// One running task's kill switch.
#[derive(Debug)]
pub struct RunningTask {
    /// Fires to kill the executor's process group.
    pub kill: CancellationToken,
    reason: Mutex<Option<KillReason>>,
    lease_deadline: Mutex<Instant>,
    renewing_alone: AtomicBool,
}

impl RunningTask {
    /// The first reason given, if the task was killed; an abort without one is a shutdown.
    pub fn reason(&self) -> Option<KillReason> {
        let reason = *self.reason.lock().unwrap_or_else(|e| e.into_inner());
        reason.or_else(|| self.kill.is_cancelled().then_some(KillReason::Shutdown))
    }

    /// Kills the task for `reason` (the first reason sticks).
    pub fn kill(&self, reason: KillReason) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        self.kill.cancel();
    }

    /// The instant (monotonic clock) before which the lease is certainly still ours:
    /// when the last successful claim or renewal was *sent*, plus the lease length.
    /// The database's own `leased_until` is later than this, so acting on it never
    /// depends on the two machines' wall clocks agreeing (spec §13.9, §13.10).
    pub fn lease_deadline(&self) -> Instant {
        *self
            .lease_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a one-row renewal (a row the batch skipped because it was locked) as in
    /// flight; false when one already is.
    pub fn start_renewing_alone(&self) -> bool {
        !self.renewing_alone.swap(true, Ordering::SeqCst)
    }

    /// The one-row renewal has ended.
    pub fn stop_renewing_alone(&self) {
        self.renewing_alone.store(false, Ordering::SeqCst);
    }

    /// Whether a one-row renewal is in flight (it then looks after this lease).
    pub fn renewing_alone(&self) -> bool {
        self.renewing_alone.load(Ordering::SeqCst)
    }

    fn set_lease_deadline(&self, deadline: Instant) {
        *self
            .lease_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = deadline;
    }
}

/// The registry shared by the dispatcher, the pipelines and the lease keeper.
#[derive(Debug, Default)]
pub struct Running {
    tasks: Mutex<HashMap<Attempt, Arc<RunningTask>>>,
}

impl Running {
    /// Registers a task whose kill token is a child of `abort`.
    pub fn insert(
        &self,
        id: Attempt,
        lease_deadline: Instant,
        abort: &CancellationToken,
    ) -> Arc<RunningTask> {
        let task = Arc::new(RunningTask {
            kill: abort.child_token(),
            reason: Mutex::new(None),
            lease_deadline: Mutex::new(lease_deadline),
            renewing_alone: AtomicBool::new(false),
        });
        self.lock().insert(id, task.clone());
        task
    }

    /// Forgets a finished attempt (only that attempt: a later claim of the same task
    /// keeps its entry).
    pub fn remove(&self, id: Attempt) {
        self.lock().remove(&id);
    }

    /// Every running attempt.
    pub fn ids(&self) -> Vec<Attempt> {
        self.lock().keys().copied().collect()
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is running.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The running attempt `id`, if any.
    pub fn get(&self, id: Attempt) -> Option<Arc<RunningTask>> {
        self.lock().get(&id).cloned()
    }

    /// Records a renewed lease (see [`RunningTask::lease_deadline`]).
    pub fn renewed(&self, id: Attempt, lease_deadline: Instant) {
        if let Some(task) = self.get(id) {
            task.set_lease_deadline(lease_deadline);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Attempt, Arc<RunningTask>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}
