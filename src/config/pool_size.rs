//! How many database connections a worker opens (`worker.db_max_connections`,
//! `--db-max-connections`). `0`, the default, sizes the pool from the concurrency:
//! one connection for each of the worker's services, plus one per task slot for the
//! writes a task makes on its own (failures, retries, requeues, a success written
//! alone after its batch failed), capped at [`MAX_TASK_CONNECTIONS`] so that many
//! workers at a high concurrency do not exhaust the server's `max_connections`; a
//! task write past the cap waits for a connection (each takes milliseconds). `/healthz`
//! has a connection of its own, outside the pool, so a probe never takes one from a task.

/// Connections the services hold whatever the concurrency: the claim loop, the lease
/// keeper (renewals and cancellation checks), the completer (batched successes),
/// LISTEN and the `worker_id` identity lock (both held for the life of the process),
/// the reclaimer, the registry heartbeat and the metrics collector.
pub const SERVICE_CONNECTIONS: u32 = 8;

/// Most connections the sizing gives the tasks' own writes.
pub const MAX_TASK_CONNECTIONS: u32 = 32;

/// The smallest pool a worker may be given: LISTEN and the identity lock hold one
/// connection each for good, and everything else needs at least one more.
pub const MIN_CONNECTIONS: u32 = 3;

/// The pool size for `concurrency` task slots when none is configured.
pub fn sized_from_concurrency(concurrency: usize) -> u32 {
    let tasks = u32::try_from(concurrency)
        .unwrap_or(u32::MAX)
        .min(MAX_TASK_CONNECTIONS);
    SERVICE_CONNECTIONS + tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_the_concurrency_up_to_the_cap() {
        assert_eq!(sized_from_concurrency(1), 9);
        assert_eq!(sized_from_concurrency(10), 18);
        assert_eq!(sized_from_concurrency(32), 40);
        assert_eq!(sized_from_concurrency(200), 40);
    }
}
