//! Row types shared by the task operations.

use chrono::{DateTime, Utc};

use crate::spec::depth::{self, MAX_DEPTH, TOO_DEEP};

/// `task_runs.result_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct TaskId(pub i64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A task this worker holds the lease on, as the claim returned it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedTask {
    /// Row id.
    #[sqlx(rename = "result_id")]
    pub id: TaskId,
    /// Queue it was claimed from.
    pub queue_name: String,
    /// `spec_json` as the server renders it, handed to the executor byte for byte.
    pub spec_json: String,
    /// Opaque dedup hash (trailing blanks of `char(64)` trimmed).
    pub spec_hash: String,
    /// The `task_path` column (may be empty; the spec's is then used).
    pub task_path: Option<String>,
    /// Attempt number after this claim (1 on the first run).
    pub attempts: i32,
    /// Attempts allowed in all.
    pub max_attempts: i32,
    /// Per-task timeout in seconds; <= 0 means "the worker's exec timeout".
    pub timeout_seconds: i32,
    /// When the lease ends unless renewed (database clock).
    pub leased_until: DateTime<Utc>,
    /// Cancellation was requested before the task started.
    pub cancel_requested: bool,
    /// `expires_at` had passed when the task was claimed.
    pub expired: bool,
    /// When the task was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// `expires_at`, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// `last_attempted_at` as this claim set it: with `attempts`, it tells this attempt
    /// apart from any later claim of the same row (an operator's requeue may reset
    /// `attempts`, so the number alone could repeat).
    pub claimed_at: DateTime<Utc>,
    /// When the claim statement was sent (monotonic clock; set by the claimer). The
    /// lease cannot end before this instant plus the lease length, whatever the wall
    /// clocks of worker and database say.
    #[sqlx(skip)]
    pub claim_sent_at: Option<std::time::Instant>,
}

/// One claim of one task: the key of the running-task registry, and with the worker id
/// the fence of every write after the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// The task.
    pub id: TaskId,
    /// `attempts` as the claim set it.
    pub number: i32,
    /// `last_attempted_at` as the claim set it.
    pub claimed_at: DateTime<Utc>,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (attempt {})", self.id, self.number)
    }
}

impl ClaimedTask {
    /// This claim's [`Attempt`].
    pub fn attempt(&self) -> Attempt {
        Attempt {
            id: self.id,
            number: self.attempts,
            claimed_at: self.claimed_at,
        }
    }

    /// The row's `task_path`, else the spec's (spec §5.2 step 1). A spec nested deeper
    /// than [`MAX_DEPTH`] is invalid whatever its path: the executor's `json.loads` could
    /// not read it (Python stops just below 1000 levels), so it fails once, as
    /// `invalid_spec`, instead of every attempt failing in Python.
    ///
    /// # Errors
    /// Neither names one: why, for the `invalid_spec` error.
    pub fn resolved_task_path(&self) -> Result<String, String> {
        if depth::exceeds(&self.spec_json, MAX_DEPTH) {
            return Err(format!("spec_json has {TOO_DEEP}"));
        }
        if let Some(path) = self.task_path.as_deref().filter(|p| !p.is_empty()) {
            return Ok(path.to_owned());
        }
        if self.spec_json.trim().is_empty() {
            return Err("spec_json is empty".into());
        }
        let spec: serde_json::Value =
            serde_json::from_str(&self.spec_json).map_err(|e| e.to_string())?;
        match spec.get("task_path").and_then(serde_json::Value::as_str) {
            Some(path) if !path.is_empty() => Ok(path.to_owned()),
            _ => Err("spec_json missing task_path".into()),
        }
    }
}

/// Who holds a task: every write after the claim (renew, complete, fail, requeue) is
/// fenced on `leased_by`, `status = 'RUNNING'` and the attempt, so an outdated
/// attempt's write never lands on a later claim of the same row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The task.
    pub id: TaskId,
    /// `leased_by`.
    pub worker_id: String,
    /// `attempts` as claimed.
    pub attempt: i32,
    /// `last_attempted_at` as claimed.
    pub claimed_at: DateTime<Utc>,
}

impl Lease {
    /// The lease of `attempt` held by `worker_id`.
    pub fn new(attempt: Attempt, worker_id: &str) -> Lease {
        Lease {
            id: attempt.id,
            worker_id: worker_id.to_owned(),
            attempt: attempt.number,
            claimed_at: attempt.claimed_at,
        }
    }

    /// The attempt this lease fences.
    pub fn key(&self) -> Attempt {
        Attempt {
            id: self.id,
            number: self.attempt,
            claimed_at: self.claimed_at,
        }
    }
}
