//! Logging (spec/worker.md §10): one JSON object per line on stdout with the Go
//! worker's keys (`time`, `level`, `msg`, then span and event fields), or a readable
//! line for terminals. Values of secret-looking keys are replaced by `[REDACTED]`
//! everywhere (§10.2). The writer is a parameter so tests can read what was logged.

mod layer;
mod redact;

pub use layer::{LogFormat, LogLayer};
pub use redact::is_redacted_key;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The default filter: our own INFO and up, the driver's warnings only.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Picks the format: `REPROQ_LOG_FORMAT=json|text`, else JSON unless stdout is a terminal.
pub fn format_from_env() -> LogFormat {
    use std::io::IsTerminal;
    match std::env::var("REPROQ_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("text") => LogFormat::Text,
        _ if std::io::stdout().is_terminal() => LogFormat::Text,
        _ => LogFormat::Json,
    }
}

/// Installs the global subscriber writing to `writer`; `RUST_LOG` overrides the filter.
/// Does nothing if a subscriber is already installed (tests install their own).
pub fn init<W>(format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    init_with_default(format, writer, DEFAULT_FILTER);
}

/// Like [`init`] with another default filter (`RUST_LOG` still wins).
pub fn init_with_default<W>(format: LogFormat, writer: W, default_filter: &str)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer::new(format, writer))
        .try_init();
}
