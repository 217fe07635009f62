//! `reproq worker`: resolve the configuration, then either report it (`--validate`)
//! or run the worker until it is stopped.

use std::process::ExitCode;

use clap::{ArgMatches, Args};

use anyhow::Context;
use tracing::Instrument;

use super::serve_http::{HttpEnv, Services};
use crate::config::{self, ConfigError, PayloadMode, WorkerConfig, WorkerFlags, values};
use crate::executor::{AnyExecutor, ExecutorConfig};
use crate::runner::Worker;
use crate::shutdown::Shutdown;
use crate::{db, telemetry};
use sqlx::PgPool;

/// `reproq worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    flags: WorkerFlags,
    /// Check the configuration and the database, print the effective settings, and exit
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    validate: Option<bool>,
}

/// Resolves a worker configuration from `reproq worker` arguments (without the
/// program and subcommand names), exactly as the binary does; for embedding and tests.
///
/// # Errors
/// Bad flags or configuration.
pub fn parse_worker_config(args: &[&str]) -> anyhow::Result<WorkerConfig> {
    use clap::{CommandFactory, FromArgMatches};
    let mut full = vec!["reproq", "worker"];
    full.extend_from_slice(args);
    let command = super::argv::go_semantics(super::Cli::command());
    let normalized = super::argv::normalize(&command, full.into_iter().map(Into::into).collect());
    let matches = command
        .try_get_matches_from(normalized)
        .map_err(|e| super::UsageError(e.to_string()))?;
    let worker = matches
        .subcommand_matches("worker")
        .ok_or_else(|| super::UsageError("not a worker command".into()))?;
    let flags = WorkerFlags::from_arg_matches(worker)?;
    let file = config::load_file(flags.config.as_deref(), None).map_err(ConfigError::from)?;
    Ok(WorkerConfig::resolve(
        &flags,
        worker,
        file.as_ref().map(|(f, _)| f),
    )?)
}

/// The executors' settings, with the worker's inherited `PYTHONPATH` (only `cli/`
/// reads the environment).
pub fn executor_config(config: &WorkerConfig) -> ExecutorConfig {
    ExecutorConfig::from_worker(config, std::env::var("PYTHONPATH").ok())
}

impl WorkerArgs {
    pub async fn run(self, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
        let file =
            config::load_file(self.flags.config.as_deref(), None).map_err(ConfigError::from)?;
        let resolved = WorkerConfig::resolve(&self.flags, matches, file.as_ref().map(|(f, _)| f));
        if self.validate.unwrap_or(false) {
            return Ok(validate(resolved).await);
        }
        let config = resolved?;
        run_worker(config).await
    }
}

async fn run_worker(config: WorkerConfig) -> anyhow::Result<ExitCode> {
    super::init_logging(std::io::stdout, telemetry::DEFAULT_FILTER);
    let span = tracing::info_span!("worker", worker_id = %config.worker_id);
    run_in_span(config).instrument(span).await
}

async fn run_in_span(config: WorkerConfig) -> anyhow::Result<ExitCode> {
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "Config file warning");
    }
    let env = HttpEnv::from_env();
    if env.low_memory {
        tracing::warn!(
            env = "LOW_MEMORY_MODE",
            "Low memory mode enabled; metrics/health/events disabled"
        );
    }
    if config.payload_mode == PayloadMode::Inline {
        tracing::warn!(
            payload_mode = "inline",
            "Payload mode inline exposes payload in process args; prefer stdin or file"
        );
    }
    let limits = db::Limits {
        lock_timeout: config.lock_timeout,
        statement_timeout: config.statement_timeout,
    };
    let pool = db::connect(
        &config.dsn,
        config.db_max_connections,
        db::Plans::Generic,
        limits,
    )
    .await
    .context("opening the database")?;
    let listen_pool = listen_pool(&config, &pool).await?;
    warn_about_missing_schema(&pool, &config).await;
    let shutdown = Shutdown::new();
    let signals = shutdown
        .listen_for_signals()
        .context("installing signal handlers")?;
    let services = Services::start(&config, &env, &pool, &shutdown).await?;
    let executor =
        AnyExecutor::for_config(&executor_config(&config)).context("preparing the executor")?;
    let worker = Worker::new(config, pool.clone(), executor)
        .await
        .context("inspecting the schema")?
        .with_observer(services.observer.clone())
        .with_listen_pool(listen_pool)
        .with_systemd(super::systemd_notifier());
    let summary = worker.run(shutdown.clone()).await;
    // Bounded: a frozen database must not keep the process alive (README "Failure modes").
    let bound = std::time::Duration::from_secs(1);
    let _ = tokio::time::timeout(bound, services.stop()).await;
    signals.abort();
    let _ = tokio::time::timeout(bound, db::close(&pool)).await;
    tracing::info!(reason = ?summary.reason, "Exiting");
    Ok(ExitCode::SUCCESS)
}

/// Where LISTEN/NOTIFY wake-ups come from: `listen_dsn` when given; else the worker's
/// own pool, unless that goes through a transaction-mode pooler, where a LISTEN
/// session cannot live (then polling only, said once here).
async fn listen_pool(config: &WorkerConfig, pool: &PgPool) -> anyhow::Result<Option<PgPool>> {
    match &config.listen_dsn {
        Some(dsn) => Ok(Some(
            db::connect(dsn, 1, db::Plans::Auto, db::Limits::NONE)
                .await
                .context("opening the LISTEN database (listen_dsn)")?,
        )),
        None if config.dsn.transaction_pooling() => {
            tracing::warn!(
                setting = "listen_dsn",
                "The DSN selects transaction pooling (default_query_exec_mode/statement_cache_capacity) \
                 and no listen_dsn is set: LISTEN/NOTIFY wake-ups are off, new tasks are found by polling"
            );
            Ok(None)
        }
        None => Ok(Some(pool.clone())),
    }
}

/// Logs one WARN when the schema lacks what `reproq migrate` adds (the worker runs
/// without it, only slower).
async fn warn_about_missing_schema(pool: &sqlx::PgPool, config: &WorkerConfig) {
    match db::readiness::missing(pool).await {
        Ok(missing) if !missing.is_empty() => {
            let what: Vec<&str> = missing.iter().map(|m| m.what).collect();
            let cost: Vec<&str> = missing.iter().map(|m| m.cost).collect();
            tracing::warn!(
                missing = %what.join("; "),
                cost = %cost.join("; "),
                fix = %db::readiness::fix_command(&config.dsn.to_string()),
                "Schema lacks what `reproq migrate` adds; run the fix command (safe on a live database)"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(error = %error, "could not inspect the schema"),
    }
}

/// Prints every setting with its source and checks that the database answers.
async fn validate(resolved: Result<WorkerConfig, ConfigError>) -> ExitCode {
    let config = match resolved {
        Ok(config) => config,
        Err(error) => {
            println!("configuration has {} problem(s):", error.problems.len());
            for problem in &error.problems {
                println!("  - {problem}");
            }
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    let width = config
        .settings
        .iter()
        .map(|s| s.key.len())
        .max()
        .unwrap_or(0);
    for setting in &config.settings {
        println!(
            "{:width$}  {:<7}  {}",
            setting.key,
            setting.source.to_string(),
            setting.value
        );
    }
    check_http(&config).await;
    match crate::db::connect_reporting(
        &config.dsn,
        1,
        crate::db::Plans::Auto,
        crate::db::Limits::NONE,
    )
    .await
    {
        Ok((pool, answered, connector)) => {
            println!("database: ok ({})", config.dsn);
            for (index, host) in connector.endpoints().enumerate() {
                let mark = if index == answered { "answered" } else { "" };
                println!("  host {}: {host}  {mark}", index + 1);
            }
            println!("  target_session_attrs: {}", connector.attrs());
            match db::readiness::missing(&pool).await {
                Ok(missing) => {
                    for item in &missing {
                        println!("warning: schema lacks the {}: {}", item.what, item.cost);
                    }
                    if !missing.is_empty() {
                        println!(
                            "warning: fix on the live database with: {}",
                            db::readiness::fix_command(&config.dsn.to_string())
                        );
                    }
                }
                Err(error) => println!("warning: could not inspect the schema: {error}"),
            }
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("configuration has 1 problem(s):");
            println!("  - database: {error}");
            ExitCode::from(2)
        }
    }
}

/// Reports (as warnings, never failures) whether the HTTP server could start.
async fn check_http(config: &WorkerConfig) {
    let Some(addr) = config.metrics.listen.as_deref() else {
        return;
    };
    if let Err(error) = crate::http::auth::Access::from_config(&config.metrics) {
        println!("warning: metrics server: {error}");
    }
    if let Err(error) = crate::http::tls::acceptor(&config.metrics) {
        println!("warning: metrics server: {error}");
    }
    match crate::http::bind(addr).await {
        Ok(listener) => {
            drop(listener);
            println!("metrics: {addr} can be bound");
        }
        Err(error) => println!("warning: metrics address {addr} cannot be bound: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, argv};
    use clap::CommandFactory;
    use std::time::Duration;

    /// Parses a `reproq worker …` command line the way `cli::run` does.
    fn resolve(args: &[String]) -> WorkerConfig {
        let mut full = vec!["reproq".to_owned(), "worker".to_owned()];
        full.extend_from_slice(args);
        let command = argv::go_semantics(Cli::command());
        let normalized = argv::normalize(&command, full.into_iter().map(Into::into).collect());
        let matches = command.try_get_matches_from(normalized).unwrap();
        let worker = matches.subcommand_matches("worker").unwrap();
        let flags = WorkerFlags::from_arg_matches(worker).unwrap();
        WorkerConfig::resolve(&flags, worker, None).unwrap()
    }

    use clap::FromArgMatches;

    #[test]
    fn listen_dsn_is_a_redacted_setting_of_its_own() {
        let config = resolve(&[
            "--dsn".into(),
            "postgres://app@bouncer:6432/app?default_query_exec_mode=exec".into(),
            "--listen-dsn".into(),
            "postgres://app:secret@db1,db2/app?target_session_attrs=read-write".into(),
        ]);
        assert!(config.dsn.transaction_pooling());
        let listen = config.listen_dsn.expect("listen_dsn set");
        assert_eq!(listen.endpoints().unwrap().len(), 2);
        let shown = config
            .settings
            .iter()
            .find(|s| s.key == "worker.listen_dsn")
            .expect("listed by --validate");
        assert!(!shown.value.contains("secret"), "{}", shown.value);
        let none = resolve(&["--dsn".into(), "postgres://app@db/app".into()]);
        assert!(none.listen_dsn.is_none() && !none.dsn.transaction_pooling());
    }

    /// Every argument reproq-django passes (contract §9), plus the Go-only ones.
    #[test]
    fn every_contract_flag_lands_in_the_typed_config() {
        for dash in ["-", "--"] {
            let pairs: &[(&str, &str)] = &[
                ("dsn", "postgres://app:secret@:/mydb"),
                ("concurrency", "7"),
                ("queues", "high, default"),
                ("allowed-task-modules", "myapp.tasks.,reproq_django.tasks."),
                ("logs-dir", "/tmp/reproq-logs"),
                ("payload-mode", "file"),
                ("metrics-port", "9100"),
                ("metrics-addr", "127.0.0.1:9090"),
                ("metrics-auth-token", "tok"),
                ("metrics-allow-cidrs", "127.0.0.1/32,::1/128"),
                ("metrics-tls-cert", "/c.pem"),
                ("metrics-tls-key", "/k.pem"),
                ("metrics-tls-client-ca", "/ca.pem"),
                ("metrics-auth-limit", "5"),
                ("metrics-auth-window", "2m"),
                ("metrics-auth-max-entries", "50"),
                ("worker-id", "w-9"),
                ("process-role", "worker"),
                ("lease-seconds", "0x78"),
                ("heartbeat-seconds", "30"),
                ("reclaim-interval-seconds", "0"),
                ("priority-aging-factor", "1e1"),
            ];
            let args: Vec<String> = pairs
                .iter()
                .flat_map(|(k, v)| [format!("{dash}{k}"), (*v).to_owned()])
                .collect();
            let config = resolve(&args);
            assert_eq!(config.dsn.to_string(), "postgres://app:[REDACTED]@/mydb");
            assert_eq!(config.concurrency.get(), 7);
            assert_eq!(config.queues, ["high", "default"]);
            assert_eq!(
                config.allowed_task_modules,
                ["myapp.tasks.", "reproq_django.tasks."]
            );
            assert_eq!(
                config.logs_dir.as_deref(),
                Some(std::path::Path::new("/tmp/reproq-logs"))
            );
            assert_eq!(config.payload_mode, crate::config::PayloadMode::File);
            assert_eq!(
                config.metrics.listen.as_deref(),
                Some("127.0.0.1:9090"),
                "addr wins over port"
            );
            assert_eq!(
                config.metrics.auth_token.as_ref().map(|t| t.expose()),
                Some("tok")
            );
            assert_eq!(config.metrics.allow_cidrs, ["127.0.0.1/32", "::1/128"]);
            assert_eq!(
                config.metrics.tls_cert.as_deref(),
                Some(std::path::Path::new("/c.pem"))
            );
            assert_eq!(
                config.metrics.tls_key.as_deref(),
                Some(std::path::Path::new("/k.pem"))
            );
            assert_eq!(
                config.metrics.tls_client_ca.as_deref(),
                Some(std::path::Path::new("/ca.pem"))
            );
            assert_eq!(config.metrics.auth_limit, 5);
            assert_eq!(config.metrics.auth_window, Duration::from_secs(120));
            assert_eq!(config.metrics.auth_max_entries, 50);
            assert_eq!(config.worker_id, "w-9");
            assert_eq!(config.lease, Duration::from_secs(120));
            assert_eq!(config.heartbeat, Some(Duration::from_secs(30)));
            assert_eq!(config.reclaim_interval, None);
            assert_eq!(config.priority_aging_factor, 10.0);
        }
    }

    #[test]
    fn equals_forms_and_last_one_wins() {
        let config = resolve(&[
            "--dsn=postgres://a@b/c".into(),
            "--queues=a".into(),
            "-queues=b,c".into(),
            "--concurrency=3".into(),
            "--burst".into(),
        ]);
        assert_eq!(config.queues, ["b", "c"]);
        assert_eq!(config.concurrency.get(), 3);
        assert!(config.burst);
    }

    #[test]
    fn metrics_port_alone_listens_on_all_interfaces() {
        let config = resolve(&[
            "--dsn".into(),
            "postgres://a@b/c".into(),
            "--metrics-port".into(),
            "9100".into(),
        ]);
        assert_eq!(config.metrics.listen.as_deref(), Some("0.0.0.0:9100"));
    }
}
