//! `/healthz`: 200 `ok` when the database answers a ping, 503 `unhealthy` when it
//! does not, 503 `draining` once the worker has been asked to stop.

use std::time::Duration;

use hyper::{Response, StatusCode};
use sqlx::Connection;

use super::{Body, HttpState, text};

/// Longest wait for the database ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one health check.
pub async fn handle(state: &HttpState) -> Response<Body> {
    if state.draining.is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    if let Some(worker) = &state.follows {
        state
            .pool
            .set_connect_options((*worker.connect_options()).clone());
    }
    let ping = async {
        let mut conn = state.pool.acquire().await?;
        let pinged = conn.ping().await;
        if pinged.is_err() {
            // A broken connection (a restart, a failover) is not handed out again.
            conn.close_on_drop();
        }
        pinged
    };
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok"),
        Ok(Err(error)) => unhealthy(&error.to_string()),
        Err(_) => unhealthy("database ping timed out"),
    }
}

fn unhealthy(error: &str) -> Response<Body> {
    tracing::warn!(error, "Health check failed");
    text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
}
