//! Retry delays (spec §4.8): 30 s · 2^(attempts−1), capped at one hour, saturating.

use std::time::Duration;

/// First retry delay.
pub const BASE: Duration = Duration::from_secs(30);
/// Longest retry delay.
pub const CAP: Duration = Duration::from_secs(3600);
/// Delay before retrying after an infrastructure error (timeout, spawn failure).
pub const INFRA_RETRY_DELAY: Duration = Duration::from_secs(10);

/// The delay before attempt `attempts + 1`, where `attempts` counts the failed ones.
pub fn app_error_delay(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(31);
    BASE.saturating_mul(1_u32 << exponent).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_thirty_seconds_up_to_an_hour() {
        let secs: Vec<u64> = (0..=9).map(|a| app_error_delay(a).as_secs()).collect();
        assert_eq!(secs, [30, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn never_overflows() {
        for attempts in [60, 64, 1000, i32::MAX, -5, i32::MIN] {
            let delay = app_error_delay(attempts);
            assert!(delay >= BASE && delay <= CAP, "{attempts}: {delay:?}");
        }
    }
}
