//! One-shot database operations on the task tables, one file per operation. Nothing
//! here spawns tasks or processes; `runner/` decides when to call these.

pub mod rate_limit;
