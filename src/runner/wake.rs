//! Wake-ups over LISTEN/NOTIFY (a service of the worker; the NOTIFY side is in
//! `queue/complete_*.sql` and the wake-on-insert triggers of
//! `migrations/0003_wake_on_insert.sql`). Polling stays the source of truth; a
//! notification only cuts an idle worker's sleep short. The worker notifies channel
//! [`CHANNEL`] with the queue name when a completion makes rows runnable (chain
//! successors, chord callbacks); anything else that inserts READY rows may do the same:
//! `NOTIFY reproq_tasks, 'default'`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// The notification channel; the payload is a queue name.
pub const CHANNEL: &str = "reproq_tasks";

/// Whether the listener is subscribed, and which subscription: a notification sent while
/// the connection was being replaced is lost, so a queue marked as waited on under an
/// older generation must be marked again (see `runner/idle.rs`).
#[derive(Debug, Default)]
pub struct ListenState {
    listening: AtomicBool,
    generation: AtomicU64,
}

impl ListenState {
    /// The current subscription's generation, or `None` while not listening.
    pub fn generation(&self) -> Option<u64> {
        self.listening
            .load(Ordering::Acquire)
            .then(|| self.generation.load(Ordering::Acquire))
    }

    fn subscribed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.listening.store(true, Ordering::Release);
    }

    fn lost(&self) {
        self.listening.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Calls `wake` whenever one of `queues` is notified (and whenever the subscription is
/// lost or renewed, so an idle worker re-marks its queues), until `done` fires.
/// Reconnects on its own; if listening is impossible it logs once and leaves the worker
/// to polling.
pub async fn listen(
    pool: PgPool,
    queues: Vec<String>,
    state: std::sync::Arc<ListenState>,
    wake: impl Fn() + Send,
    done: CancellationToken,
) {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(error = %error, "LISTEN unavailable; relying on polling");
            return;
        }
    };
    if let Err(error) = listener.listen(CHANNEL).await {
        tracing::warn!(error = %error, "LISTEN unavailable; relying on polling");
        return;
    }
    state.subscribed();
    // A claim loop that went idle before the subscription existed polls; wake it so it
    // marks its queues now.
    wake();
    loop {
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(notification)) if queues.iter().any(|q| q == notification.payload()) => wake(),
                Ok(Some(_)) => {}
                Ok(None) => {
                    // The connection was lost and re-established (eager reconnect):
                    // notifications of the gap are gone.
                    state.lost();
                    state.subscribed();
                    wake();
                }
                Err(error) => {
                    state.lost();
                    wake();
                    tracing::debug!(error = %error, "notification listener interrupted; retrying");
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = done.cancelled() => return,
                        }
                        if listener.listen(CHANNEL).await.is_ok() {
                            state.subscribed();
                            wake();
                            break;
                        }
                    }
                }
            },
            () = done.cancelled() => return,
        }
    }
}
