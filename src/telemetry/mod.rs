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

/// Picks the format from `REPROQ_LOG_FORMAT`'s value (`json|text`, read by `cli/`),
/// else JSON unless stdout is a terminal.
pub fn format_for(requested: Option<&str>, stdout_is_terminal: bool) -> LogFormat {
    match requested {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        _ if stdout_is_terminal => LogFormat::Text,
        _ => LogFormat::Json,
    }
}

/// Installs the global subscriber writing to `writer` with [`DEFAULT_FILTER`].
/// Does nothing if a subscriber is already installed (tests install their own).
pub fn init<W>(format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    init_with_filter(format, writer, DEFAULT_FILTER, None);
}

/// Like [`init`] with another default filter, overridden by `directives` (the value of
/// `RUST_LOG`, read by `cli/`) when they parse.
pub fn init_with_filter<W>(
    format: LogFormat,
    writer: W,
    default_filter: &str,
    directives: Option<&str>,
) where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = directives
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer::new(format, writer))
        .try_init();
}
