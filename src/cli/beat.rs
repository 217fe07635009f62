//! `reproq beat`: the periodic scheduler (spec/worker.md §2.5, §7).

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgMatches, Args};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::UsageError;
use crate::config::{self, BeatConfig, BeatFlags, ConfigError};
use crate::runner::beat::{Beat, run_pass};
use crate::runner::memory_log;
use crate::shutdown::Shutdown;
use crate::{db, telemetry};

/// `reproq beat`.
#[derive(Debug, Args)]
pub struct BeatArgs {
    #[command(flatten)]
    flags: BeatFlags,
}

impl BeatArgs {
    pub async fn run(self, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
        let file =
            config::load_file(self.flags.config.as_deref(), None).map_err(ConfigError::from)?;
        let config = BeatConfig::resolve(&self.flags, matches, file.as_ref().map(|(f, _)| f))?;
        let role = std::env::var("REPROQ_PROCESS_ROLE")
            .ok()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        let role = role.unwrap_or_else(|| "beat".to_owned());
        super::init_logging(std::io::stdout, telemetry::DEFAULT_FILTER);
        let span = tracing::info_span!("beat", worker_id = %role, role = %role);
        run_beat(config).instrument(span).await
    }
}

async fn run_beat(config: BeatConfig) -> anyhow::Result<ExitCode> {
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "Config file warning");
    }
    // Spec §2.5: beat honours REPROQ_MEMORY_LOG_INTERVAL too (§5.6); the logger stops
    // when this function returns, whichever way.
    let memory_log_stop = CancellationToken::new();
    memory_log::start_from_env(
        std::env::var("REPROQ_MEMORY_LOG_INTERVAL").ok().as_deref(),
        memory_log_stop.clone(),
    );
    let _memory_log = memory_log_stop.drop_guard();
    // Beat's leadership is a session-level advisory lock: it needs a real session, which
    // a transaction-mode pooler does not give. `--once` takes no lock.
    let lock_dsn = match (&config.listen_dsn, config.dsn.transaction_pooling()) {
        (Some(direct), _) => direct,
        (None, false) => &config.dsn,
        (None, true) if config.once => &config.dsn,
        (None, true) => {
            return Err(UsageError(
                "the DSN selects transaction pooling (default_query_exec_mode/statement_cache_capacity), \
                 where beat's leader lock cannot be held: give a direct DSN with --listen-dsn, \
                 REPROQ_LISTEN_DSN or beat.listen_dsn (beat --once needs none)"
                    .into(),
            )
            .into());
        }
    };
    let lock_connector = db::connector(lock_dsn, db::Plans::Auto, db::Limits::default())?;
    if config.once {
        let pool = connect(&config).await?;
        return run_once(&pool, &config).await;
    }
    // Installed before connecting, so a stop is honoured while the server keeps us waiting.
    let shutdown = Shutdown::new();
    let signals = shutdown
        .listen_for_signals()
        .context("installing signal handlers")?;
    let pool = tokio::select! {
        pool = connect(&config) => pool?,
        () = shutdown.stop.cancelled() => {
            tracing::info!("Shutting down beat");
            signals.abort();
            return Ok(ExitCode::SUCCESS);
        }
    };
    tracing::info!(
        interval = config.interval.as_nanos() as u64,
        once = false,
        "Starting reproq beat"
    );
    let beat = Beat {
        pool: pool.clone(),
        lock_connector,
        interval: config.interval,
        systemd: super::systemd_notifier(),
    };
    beat.run(shutdown.clone()).await;
    signals.abort();
    // Connections are closed politely (after pending commits behind a pooler) unless the
    // server keeps us waiting or a second signal asked for an exit at once.
    tokio::select! {
        () = db::close(&pool) => {}
        () = tokio::time::sleep(POOL_CLOSE_TIMEOUT) => {}
        () = shutdown.abort.cancelled() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Longest wait for the pool's connections to close on exit.
const POOL_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn connect(config: &BeatConfig) -> anyhow::Result<sqlx::PgPool> {
    match db::connect(&config.dsn, 4, db::Plans::Auto, db::Limits::default()).await {
        Ok(pool) => Ok(pool),
        Err(error) => {
            tracing::error!(error = %error, "Failed to open database");
            Err(error).context("opening the database")
        }
    }
}

/// `--once`: one pass, its failures on stderr; exit 1 when a row failed.
async fn run_once(pool: &sqlx::PgPool, config: &BeatConfig) -> anyhow::Result<ExitCode> {
    tracing::info!(
        interval = config.interval.as_nanos() as u64,
        once = true,
        "Starting reproq beat"
    );
    let report = run_pass(pool, &[]).await.context("running a beat pass")?;
    if report.enqueued > 0 {
        tracing::info!(count = report.enqueued, "Enqueued periodic tasks");
    }
    for (name, error) in &report.failures {
        tracing::error!(periodic_name = %name, error = %error, "Failed to enqueue periodic tasks");
        eprintln!("reproq beat: periodic task {name:?} failed: {error}");
    }
    tracing::info!(
        once = true,
        failed = report.failures.len(),
        "Beat run complete"
    );
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
