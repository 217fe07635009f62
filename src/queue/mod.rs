//! One-shot database operations on the task tables, one file per operation. Nothing
//! here spawns tasks or processes; `runner/` decides when to call these.

pub mod backoff;
pub mod cancel;
pub mod claim;
pub mod claim_order;
pub mod complete;
pub mod enqueue;
pub mod error_object;
pub mod leader;
pub mod lease;
pub mod lock_wait;
pub mod notify;
pub mod periodic;
pub mod prune;
pub mod rate_limit;
pub mod reclaim;
pub mod registry;
pub mod replay;
pub mod savepoint;
pub mod stats;
pub mod task;
pub mod torture;
pub mod triage;
pub mod waiters;
pub mod workflow;

pub use claim::{ClaimRequest, Claimer};
pub use claim_order::ClaimOrder;
pub use complete::{CompleteError, Outcome};
pub use error_object::{ErrorKind, TaskError};
pub use task::{Attempt, ClaimedTask, Lease, TaskId};
