//! The worker's HTTP side as `reproq worker` sets it up (spec §2.4.4 step 12, §5.6):
//! low-memory mode, the memory logger, and the server with its collector. The
//! environment is read here and nowhere below.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::events::EventBus;
use crate::http::{self, HttpError, HttpState, auth::Access, collector};
use crate::metrics::Metrics;
use crate::runner::memory_log;
use crate::runner::observer::Observer;
use crate::shutdown::Shutdown;

/// `LOW_MEMORY_MODE` and `REPROQ_MEMORY_LOG_INTERVAL`, read once.
#[derive(Debug, Clone, Default)]
pub struct HttpEnv {
    /// `LOW_MEMORY_MODE` is truthy.
    pub low_memory: bool,
    /// Raw `REPROQ_MEMORY_LOG_INTERVAL`.
    pub memory_log_interval: Option<String>,
}

impl HttpEnv {
    /// Reads the two variables.
    pub fn from_env() -> Self {
        HttpEnv {
            low_memory: std::env::var("LOW_MEMORY_MODE")
                .map(|v| is_truthy(&v))
                .unwrap_or(false),
            memory_log_interval: std::env::var("REPROQ_MEMORY_LOG_INTERVAL").ok(),
        }
    }
}

/// `1`, `true`, `yes`, `on` (trimmed, any case).
pub fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// What was started; stop it with [`Services::stop`] after the worker returns.
pub struct Services {
    /// Feeds metrics and events (a no-op without the server).
    pub observer: Observer,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Services {
    /// Starts the memory logger and, unless disabled, the HTTP server and collector.
    ///
    /// # Errors
    /// Invalid allow-list or TLS settings (fatal, as in the Go worker).
    pub async fn start(
        config: &WorkerConfig,
        env: &HttpEnv,
        pool: &sqlx::PgPool,
        shutdown: &Shutdown,
    ) -> Result<Self, HttpError> {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        tasks.extend(memory_log::start_from_env(
            env.memory_log_interval.as_deref(),
            stop.clone(),
        ));
        let mut services = Services {
            observer: Observer::default(),
            stop,
            tasks,
        };
        let Some(addr) = config.metrics.listen.as_deref() else {
            return Ok(services);
        };
        if env.low_memory {
            tracing::warn!(addr, "Skipping metrics server due to low memory mode");
            return Ok(services);
        }
        let access = Access::from_config(&config.metrics)?;
        let tls = http::tls::acceptor(&config.metrics)?;
        if access.is_open() && !http::is_loopback(addr) && config.metrics.tls_client_ca.is_none() {
            tracing::warn!(
                addr,
                "Metrics endpoint has no auth; bind to localhost or set --metrics-auth-token"
            );
        }
        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(EventBus::new());
        services.observer = Observer::new(Some(metrics.clone()), Some(events.clone()));
        // A connection of its own, so a probe never takes one from a task.
        let state = Arc::new(HttpState {
            pool: crate::db::single_connection(pool),
            follows: Some(pool.clone()),
            metrics: metrics.clone(),
            events: Some(events),
            access,
            tls,
            draining: shutdown.stop.clone(),
            events_ping: http::events::PING_INTERVAL,
        });
        // Several workers on one host may share a port: a bind failure is not fatal.
        match http::bind(addr).await {
            Ok(listener) => {
                tracing::info!(addr, "Serving health and metrics");
                let server = http::spawn(listener, state, services.stop.clone());
                services.tasks.push(server);
            }
            Err(error) => tracing::error!(error = %error, addr, "Metrics server error"),
        }
        let collecting = collector::spawn(pool.clone(), metrics, services.stop.clone());
        services.tasks.push(collecting);
        Ok(services)
    }

    /// Stops everything and waits (bounded) for it.
    pub async fn stop(self) {
        self.stop.cancel();
        let bound = http::SHUTDOWN_GRACE + std::time::Duration::from_secs(1);
        for task in self.tasks {
            let _ = tokio::time::timeout(bound, task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthy_values() {
        for yes in ["1", "true", " YES ", "On"] {
            assert!(is_truthy(yes), "{yes}");
        }
        for no in ["", "0", "false", "off", "2"] {
            assert!(!is_truthy(no), "{no}");
        }
    }
}
