//! The periodic `reproq memory usage` log line (spec §5.6): once at start, then every
//! interval, until told to stop. The caller parses `REPROQ_MEMORY_LOG_INTERVAL`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::duration;
use crate::metrics::process;

/// Parses `REPROQ_MEMORY_LOG_INTERVAL`: a Go duration (`45s`) or bare positive seconds
/// (`120`). `Ok(None)` when unset or blank.
///
/// # Errors
/// Anything else, including zero and negative values; the message says why.
pub fn parse_interval(value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(seconds) = value.parse::<i64>() {
        return u64::try_from(seconds)
            .ok()
            .filter(|s| *s > 0)
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| "interval must be positive".to_owned());
    }
    duration::parse_positive(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Starts the memory logger when `REPROQ_MEMORY_LOG_INTERVAL` (`value`) asks for one;
/// an invalid value is logged (`Invalid REPROQ_MEMORY_LOG_INTERVAL; skipping memory
/// logger`) and nothing starts. Shared by `reproq worker` and `reproq beat`.
pub fn start_from_env(
    value: Option<&str>,
    done: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match parse_interval(value) {
        Ok(Some(interval)) => Some(spawn(interval, done)),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(
                value = value.unwrap_or(""),
                error = %error,
                "Invalid REPROQ_MEMORY_LOG_INTERVAL; skipping memory logger"
            );
            None
        }
    }
}

/// Starts [`run`] in the background.
pub fn spawn(interval: Duration, done: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(tracing::Instrument::instrument(
        run(interval, done),
        tracing::Span::current(),
    ))
}

/// Logs memory use now and every `interval` until `done` fires.
pub async fn run(interval: Duration, done: CancellationToken) {
    loop {
        log_once();
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = done.cancelled() => return,
        }
    }
}

fn log_once() {
    match process::rss_bytes() {
        Some(rss) => tracing::info!(rss_bytes = rss, "reproq memory usage"),
        None => tracing::info!("reproq memory usage"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_go_durations_or_seconds() {
        assert_eq!(parse_interval(None), Ok(None));
        assert_eq!(parse_interval(Some("  ")), Ok(None));
        assert_eq!(
            parse_interval(Some("120")),
            Ok(Some(Duration::from_secs(120)))
        );
        assert_eq!(
            parse_interval(Some("45s")),
            Ok(Some(Duration::from_secs(45)))
        );
        assert_eq!(
            parse_interval(Some("1m30s")),
            Ok(Some(Duration::from_secs(90)))
        );
        for bad in ["0", "-5", "0s", "-1m", "soon"] {
            assert!(parse_interval(Some(bad)).is_err(), "{bad}");
        }
    }
}
