//! Batches success completions: pipelines hand their successes to one service, which
//! records everything that arrived meanwhile in a single statement. Under load this
//! turns one write per task into one per batch; when idle, a batch is one task and
//! nothing waits. The statement skips rows another session has locked, so a locked
//! row never holds up the batch. Whatever the batch did not record (a workflow
//! member, a locked row, a lost lease, or a failed statement) is answered
//! [`Batched::NotRecorded`], and the pipeline writes it on its own: that write waits on
//! its own row, does the chord bookkeeping, tells a lost lease apart, and is retried.

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::queue::complete::{self, PendingSuccess};

/// Most successes written by one statement.
pub const MAX_BATCH: usize = 256;

/// What the batch did with one success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batched {
    /// Recorded.
    Recorded,
    /// Not recorded: write it one by one.
    NotRecorded,
}

struct Job {
    success: PendingSuccess,
    reply: oneshot::Sender<Batched>,
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

    /// Offers a success to the next batch.
    pub async fn success(&self, success: PendingSuccess) -> Batched {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { success, reply }).await.is_err() {
            return Batched::NotRecorded;
        }
        answer.await.unwrap_or(Batched::NotRecorded)
    }
}

async fn run(pool: PgPool, mut queue: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let pending: Vec<PendingSuccess> = batch.iter().map(|job| job.success.clone()).collect();
        let completed = match complete::complete_successes(&pool, &pending).await {
            Ok(completed) => completed,
            Err(error) => {
                tracing::debug!(error = %error, count = batch.len(), "batched success write failed; writing one by one");
                Vec::new()
            }
        };
        for job in batch.drain(..) {
            let answer = if completed.contains(&job.success.lease.key()) {
                Batched::Recorded
            } else {
                Batched::NotRecorded
            };
            let _ = job.reply.send(answer);
        }
    }
}
