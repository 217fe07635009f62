//! `reproq beat`: the periodic scheduler (spec/worker.md §2.5, §7).

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgMatches, Args};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
        telemetry::init(telemetry::format_from_env(), std::io::stdout);
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
    let pool = match db::connect(&config.dsn, 4, db::Plans::Auto).await {
        Ok(pool) => pool,
        Err(error) => {
            tracing::error!(error = %error, "Failed to open database");
            return Err(error).context("opening the database");
        }
    };
    tracing::info!(
        interval = config.interval.as_nanos() as u64,
        once = config.once,
        "Starting reproq beat"
    );
    if config.once {
        let report = run_pass(&pool, &[]).await.context("running a beat pass")?;
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
        return Ok(if report.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let shutdown = Shutdown::new();
    let signals = shutdown
        .listen_for_signals()
        .context("installing signal handlers")?;

    let beat = Beat {
        pool: pool.clone(),
        lock_options: db::connect_options(&config.dsn, db::Plans::Auto)?,
        interval: config.interval,
        systemd: super::systemd_notifier(),
    };
    beat.run(shutdown.stop.clone()).await;
    signals.abort();
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}
