//! Batches success completions: pipelines hand their successes to one service, which
//! records everything that arrived meanwhile in a single statement. Under load this
//! turns one write per task into one per batch; when idle, a batch is one task and
//! nothing waits. Tasks in a workflow, and anything the batch did not complete, take
//! the one-by-one path, which also tells a lost lease apart.

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::queue::complete::{self, CompleteError, PendingSuccess};
use crate::queue::{Lease, Outcome};

/// Most successes written by one statement.
pub const MAX_BATCH: usize = 256;

struct Job {
    success: PendingSuccess,
    reply: oneshot::Sender<Result<(), CompleteError>>,
}

/// The handle pipelines use.
#[derive(Debug, Clone)]
pub struct Completer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({})", self.success.lease.id)
    }
}

impl Completer {
    /// Starts the service; it ends once every handle is dropped and the queue is empty.
    pub fn start(pool: PgPool) -> (Completer, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(MAX_BATCH * 4);
        (Completer { jobs }, tokio::spawn(run(pool, queue)))
    }

    /// Records a success (batched with others arriving at the same time).
    ///
    /// # Errors
    /// [`CompleteError::LeaseLost`] when the fence does not match; database errors.
    pub async fn success(&self, success: PendingSuccess) -> Result<(), CompleteError> {
        let (reply, answer) = oneshot::channel();
        let lease = success.lease.clone();
        if self.jobs.send(Job { success, reply }).await.is_err() {
            return Err(CompleteError::LeaseLost(lease.id));
        }
        answer
            .await
            .unwrap_or(Err(CompleteError::LeaseLost(lease.id)))
    }
}

async fn run(pool: PgPool, mut queue: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let pending: Vec<PendingSuccess> = batch.iter().map(|job| job.success.clone()).collect();
        let completed = complete::complete_successes(&pool, &pending)
            .await
            .unwrap_or_default();
        for job in batch.drain(..) {
            if completed.contains(&job.success.lease.id) {
                let _ = job.reply.send(Ok(()));
            } else {
                // A workflow member, a lost lease, or a failed batch: one by one.
                let pool = pool.clone();
                tokio::spawn(async move {
                    let PendingSuccess {
                        lease,
                        return_json,
                        logs_uri,
                    } = job.success;
                    let result = one_by_one(&pool, &lease, return_json, logs_uri.as_deref()).await;
                    let _ = job.reply.send(result);
                });
            }
        }
    }
}

async fn one_by_one(
    pool: &PgPool,
    lease: &Lease,
    return_json: Option<String>,
    logs_uri: Option<&str>,
) -> Result<(), CompleteError> {
    complete::complete(pool, lease, &Outcome::Success { return_json }, logs_uri)
        .await
        .map(|_| ())
}
