//! Wake-ups over LISTEN/NOTIFY (a service of the worker; the NOTIFY side is in
//! `queue/complete_*.sql`). Polling stays the source of truth; a notification only
//! cuts an idle worker's sleep short. The worker notifies channel [`CHANNEL`] with the
//! queue name when a completion makes rows runnable (chain successors, chord callbacks);
//! anything else that inserts READY rows may do the same: `NOTIFY reproq_tasks, 'default'`.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// The notification channel; the payload is a queue name.
pub const CHANNEL: &str = "reproq_tasks";

/// Calls `wake` whenever one of `queues` is notified, until `done` fires. Reconnects on
/// its own; if listening is impossible it logs once and leaves the worker to polling.
pub async fn listen(
    pool: PgPool,
    queues: Vec<String>,
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
    loop {
        tokio::select! {
            received = listener.recv() => match received {
                Ok(notification) if queues.iter().any(|q| q == notification.payload()) => wake(),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(error = %error, "notification listener interrupted; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = done.cancelled() => return,
                    }
                }
            },
            () = done.cancelled() => return,
        }
    }
}
