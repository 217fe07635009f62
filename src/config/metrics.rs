//! Settings of the worker's HTTP server (spec/worker.md §2.4.2): the table of the
//! `metrics` section and the typed result.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigFile;
use super::layers::Layers;
use super::table::{Kind, Spec};
use super::{resolve, validate, values};

const POSITIVE: Kind = Kind::Int(values::go_positive);

/// The HTTP server's settings, in `--validate` order. How to add one: see
/// [`super::table`].
pub const METRICS_SETTINGS: &[Spec] = &[
    Spec {
        env: Some("METRICS_ADDR"),
        ..Spec::flag(
            "metrics.addr",
            "metrics_addr",
            Kind::Text,
            "",
            "Listen address host:port for /metrics, /healthz, /events",
        )
    },
    Spec {
        env: Some("METRICS_PORT"),
        ..Spec::flag(
            "metrics.port",
            "metrics_port",
            Kind::Int(values::go_non_negative),
            "0",
            "Listen on all interfaces at this port when no address is given",
        )
    },
    Spec {
        env: Some("METRICS_AUTH_TOKEN"),
        secret: true,
        ..Spec::flag(
            "metrics.auth_token",
            "metrics_auth_token",
            Kind::Text,
            "",
            "Bearer token (and JWT secret) required by the HTTP server",
        )
    },
    Spec {
        env: Some("METRICS_ALLOW_CIDRS"),
        ..Spec::flag(
            "metrics.allow_cidrs",
            "metrics_allow_cidrs",
            Kind::List,
            "",
            "Comma-separated IPs/CIDRs allowed to call the HTTP server",
        )
    },
    Spec {
        env: Some("METRICS_AUTH_LIMIT"),
        ..Spec::flag(
            "metrics.auth_limit",
            "metrics_auth_limit",
            POSITIVE,
            "30",
            "Unauthorized requests allowed per host per window [default: 30]",
        )
    },
    Spec {
        env: Some("METRICS_AUTH_WINDOW"),
        ..Spec::flag(
            "metrics.auth_window",
            "metrics_auth_window",
            Kind::DurationText(values::go_positive_duration),
            "1m",
            "Window of the unauthorized-request limiter (Go duration) [default: 1m]",
        )
    },
    Spec {
        env: Some("METRICS_AUTH_MAX_ENTRIES"),
        ..Spec::flag(
            "metrics.auth_max_entries",
            "metrics_auth_max_entries",
            POSITIVE,
            "1000",
            "Hosts tracked by the limiter [default: 1000]",
        )
    },
    Spec {
        env: Some("METRICS_AUTH_ALLOW_NO_EXP"),
        ..Spec::flag(
            "metrics.auth_allow_no_exp",
            "metrics_auth_allow_no_exp",
            Kind::Bool,
            "false",
            "Accept JWTs that carry no numeric `exp` (the Go worker always did) [default: false]",
        )
    },
    Spec {
        env: Some("METRICS_TLS_CERT"),
        ..Spec::flag(
            "metrics.tls_cert",
            "metrics_tls_cert",
            Kind::Path,
            "",
            "TLS certificate (PEM)",
        )
    },
    Spec {
        env: Some("METRICS_TLS_KEY"),
        ..Spec::flag(
            "metrics.tls_key",
            "metrics_tls_key",
            Kind::Path,
            "",
            "TLS private key (PEM)",
        )
    },
    Spec {
        env: Some("METRICS_TLS_CLIENT_CA"),
        ..Spec::flag(
            "metrics.tls_client_ca",
            "metrics_tls_client_ca",
            Kind::Path,
            "",
            "CA bundle for client certificates (turns on mTLS)",
        )
    },
];

/// A secret that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Validated HTTP server settings.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where to listen; `None` disables the server.
    pub listen: Option<String>,
    /// Bearer token / JWT secret.
    pub auth_token: Option<Secret>,
    /// Allow-list entries, unparsed.
    pub allow_cidrs: Vec<String>,
    /// Unauthorized requests allowed per host per window.
    pub auth_limit: u32,
    /// Limiter window.
    pub auth_window: Duration,
    /// Hosts tracked by the limiter.
    pub auth_max_entries: usize,
    /// Whether a JWT without a numeric `exp` is accepted (off: such tokens never expire).
    pub auth_allow_no_exp: bool,
    /// TLS certificate.
    pub tls_cert: Option<PathBuf>,
    /// TLS key.
    pub tls_key: Option<PathBuf>,
    /// Client CA for mTLS.
    pub tls_client_ca: Option<PathBuf>,
}

impl MetricsConfig {
    /// Resolves the `metrics` table under env and flags; `None` if a problem was recorded.
    pub fn resolve(layers: &mut Layers<'_>, file: Option<&ConfigFile>) -> Option<Self> {
        let section = layers.section(file, "metrics");
        let values = resolve::table(layers, METRICS_SETTINGS, section);
        let before = layers.problems.len();
        let checked = validate::metrics(layers, &values);
        if layers.problems.len() > before {
            return None;
        }
        let checked = checked?;
        let path = |key: &str| {
            let value = values.text(key);
            (!value.is_empty()).then(|| PathBuf::from(value))
        };
        let addr = values.text("metrics.addr");
        let port = values.int("metrics.port");
        let token = values.text("metrics.auth_token");
        Some(MetricsConfig {
            listen: if !addr.is_empty() {
                Some(addr)
            } else if port > 0 {
                Some(format!("0.0.0.0:{port}"))
            } else {
                None
            },
            auth_token: (!token.is_empty()).then_some(Secret(token)),
            allow_cidrs: values.list("metrics.allow_cidrs"),
            auth_limit: checked.auth_limit,
            auth_window: checked.auth_window,
            auth_max_entries: checked.auth_max_entries,
            auth_allow_no_exp: values.boolean("metrics.auth_allow_no_exp"),
            tls_cert: path("metrics.tls_cert"),
            tls_key: path("metrics.tls_key"),
            tls_client_ca: path("metrics.tls_client_ca"),
        })
    }
}
