//! Pure logic of `reproq beat`: cron schedules and the byte-exact periodic spec.
//! The database side is `queue/periodic.rs`; the loop is `runner/beat.rs`.

pub mod cron;
pub mod spec;
