//! Settings of the worker's HTTP server (spec/worker.md §2.4.2). The server itself
//! comes later; the flags, env names and file keys are accepted and validated now so
//! that reproq-django's generated command lines work unchanged.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::ConfigFile;
use super::duration;
use super::layers::{Layers, Source, from_file};
use super::values;

/// HTTP server flags of `reproq worker`.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsFlags {
    /// Listen address host:port for /metrics, /healthz, /events
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Listen on all interfaces at this port when no address is given
    #[arg(long, env = "METRICS_PORT", value_parser = values::go_non_negative)]
    pub metrics_port: Option<i64>,
    /// Bearer token (and JWT secret) required by the HTTP server
    #[arg(long, env = "METRICS_AUTH_TOKEN", hide_env_values = true)]
    pub metrics_auth_token: Option<String>,
    /// Comma-separated IPs/CIDRs allowed to call the HTTP server
    #[arg(long, env = "METRICS_ALLOW_CIDRS")]
    pub metrics_allow_cidrs: Option<String>,
    /// Unauthorized requests allowed per host per window [default: 30]
    #[arg(long, env = "METRICS_AUTH_LIMIT", value_parser = values::go_positive)]
    pub metrics_auth_limit: Option<i64>,
    /// Window of the unauthorized-request limiter (Go duration) [default: 1m]
    #[arg(long, env = "METRICS_AUTH_WINDOW", value_parser = values::go_positive_duration)]
    pub metrics_auth_window: Option<Duration>,
    /// Hosts tracked by the limiter [default: 1000]
    #[arg(long, env = "METRICS_AUTH_MAX_ENTRIES", value_parser = values::go_positive)]
    pub metrics_auth_max_entries: Option<i64>,
    /// Accept JWTs that carry no numeric `exp` (the Go worker always did) [default: false]
    #[arg(long, env = "METRICS_AUTH_ALLOW_NO_EXP", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    pub metrics_auth_allow_no_exp: Option<bool>,
    /// TLS certificate (PEM)
    #[arg(long, env = "METRICS_TLS_CERT")]
    pub metrics_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, env = "METRICS_TLS_KEY")]
    pub metrics_tls_key: Option<PathBuf>,
    /// CA bundle for client certificates (turns on mTLS)
    #[arg(long, env = "METRICS_TLS_CLIENT_CA")]
    pub metrics_tls_client_ca: Option<PathBuf>,
}

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
    pub fn resolve(
        flags: &MetricsFlags,
        layers: &mut Layers<'_>,
        file: Option<&ConfigFile>,
    ) -> Option<Self> {
        let section = layers.section(file, "metrics");
        let addr = layers.pick(
            "metrics.addr",
            Some("metrics_addr"),
            flags.metrics_addr.clone(),
            from_file(section, |s| s.string("addr")),
            String::new(),
        );
        let port = layers.pick(
            "metrics.port",
            Some("metrics_port"),
            flags.metrics_port,
            from_file(section, |s| s.int("port")),
            0,
        );
        let token = layers.pick(
            "metrics.auth_token",
            Some("metrics_auth_token"),
            flags.metrics_auth_token.clone(),
            from_file(section, |s| s.string("auth_token")),
            String::new(),
        );
        if !token.is_empty() {
            if let Some(setting) = layers.settings.last_mut() {
                setting.value = "[REDACTED]".into();
            }
        }
        let cidrs_flag = flags
            .metrics_allow_cidrs
            .as_deref()
            .map(super::split_list)
            .filter(|l| !l.is_empty());
        let cidrs_source = layers.flag_source("metrics_allow_cidrs");
        let allow_cidrs = match (cidrs_flag, cidrs_source) {
            (Some(list), Some(source)) => {
                layers.record("metrics.allow_cidrs", list.join(","), source);
                list
            }
            _ => {
                let list = from_file(section, |s| s.list("allow_cidrs")).unwrap_or_else(|e| {
                    layers.problems.push(e.to_string());
                    None
                });
                let source = if list.is_some() {
                    Source::File
                } else {
                    Source::Default
                };
                let list = list.unwrap_or_default();
                layers.record("metrics.allow_cidrs", list.join(","), source);
                list
            }
        };
        let limit = layers.pick(
            "metrics.auth_limit",
            Some("metrics_auth_limit"),
            flags.metrics_auth_limit,
            from_file(section, |s| s.int("auth_limit")),
            30,
        );
        let window = layers.pick(
            "metrics.auth_window",
            Some("metrics_auth_window"),
            flags.metrics_auth_window.map(duration::format),
            from_file(section, |s| s.string("auth_window")),
            "1m".to_owned(),
        );
        let max_entries = layers.pick(
            "metrics.auth_max_entries",
            Some("metrics_auth_max_entries"),
            flags.metrics_auth_max_entries,
            from_file(section, |s| s.int("auth_max_entries")),
            1000,
        );
        let auth_allow_no_exp = layers.pick(
            "metrics.auth_allow_no_exp",
            Some("metrics_auth_allow_no_exp"),
            flags.metrics_auth_allow_no_exp,
            from_file(section, |s| s.boolean("auth_allow_no_exp")),
            false,
        );
        let mut path = |key: &str, id: &str, flag: &Option<PathBuf>, file_key: &str| {
            let value = layers.pick(
                key,
                Some(id),
                flag.as_ref().map(|p| p.display().to_string()),
                from_file(section, |s| s.string(file_key)),
                String::new(),
            );
            (!value.is_empty()).then(|| PathBuf::from(value))
        };
        let tls_cert = path(
            "metrics.tls_cert",
            "metrics_tls_cert",
            &flags.metrics_tls_cert,
            "tls_cert",
        );
        let tls_key = path(
            "metrics.tls_key",
            "metrics_tls_key",
            &flags.metrics_tls_key,
            "tls_key",
        );
        let tls_client_ca = path(
            "metrics.tls_client_ca",
            "metrics_tls_client_ca",
            &flags.metrics_tls_client_ca,
            "tls_client_ca",
        );

        let before = layers.problems.len();
        let auth_window = match duration::parse_positive(&window) {
            Ok(window) => Some(window),
            Err(error) => {
                layers.problem("metrics.auth_window", error);
                None
            }
        };
        let auth_limit = u32::try_from(limit).ok().filter(|l| *l > 0);
        if auth_limit.is_none() {
            layers.problem("metrics.auth_limit", "must be a positive integer");
        }
        let auth_max_entries = usize::try_from(max_entries).ok().filter(|l| *l > 0);
        if auth_max_entries.is_none() {
            layers.problem("metrics.auth_max_entries", "must be a positive integer");
        }
        if port < 0 || port > i64::from(u16::MAX) {
            layers.problem("metrics.port", "must be between 0 and 65535");
        }
        if tls_cert.is_some() != tls_key.is_some() {
            layers.problem(
                "metrics.tls_cert",
                "metrics.tls_cert and metrics.tls_key must be given together",
            );
        }
        let listen = if !addr.is_empty() {
            Some(addr)
        } else if port > 0 {
            Some(format!("0.0.0.0:{port}"))
        } else {
            None
        };
        if layers.problems.len() > before {
            return None;
        }
        Some(MetricsConfig {
            listen,
            auth_token: (!token.is_empty()).then_some(Secret(token)),
            allow_cidrs,
            auth_limit: auth_limit?,
            auth_window: auth_window?,
            auth_max_entries: auth_max_entries?,
            auth_allow_no_exp,
            tls_cert,
            tls_key,
            tls_client_ca,
        })
    }
}
