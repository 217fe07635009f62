//! `contrib/`: the Grafana dashboard and the alert rules use only metrics a real worker
//! exports; the systemd units and the rules pass their tools' checks where the tools
//! are installed (`systemd-analyze`, `promtool`), and the test says so when skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{NewTask, TestDb, Variant, insert, task, wait_for_status, worker_args};

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

fn on_path(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every `reproq_*` / `process_*` metric name in `text` (PromQL, JSON, YAML alike).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["reproq_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let boundary = text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            if !boundary {
                continue;
            }
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// Names of the samples in a Prometheus text exposition.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a pool-mode worker (one runner, recycled after every task) through a success
/// and a failure and returns its `/metrics` once the recycle and the failure show.
async fn scrape_a_worker_that_did_everything() -> String {
    let db = TestDb::new(Variant::Sql).await;
    let ok = insert(&db.pool, task("tasks.ok", json!({}))).await;
    let fail = insert(
        &db.pool,
        NewTask {
            max_attempts: 1,
            ..task("tasks.fail", json!({}))
        },
    )
    .await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = worker_args(
        &db,
        &[
            "--executor-mode",
            "pool",
            "--pool-max-tasks",
            "1",
            "--concurrency",
            "1",
            "--metrics-addr",
            &addr,
        ],
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .arg("worker")
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_status(&db.pool, ok, "SUCCESSFUL", 60).await;
    wait_for_status(&db.pool, fail, "FAILED", 60).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        // The pool sampler (2 s) and the database collector (5 s) have both run.
        let done = text.contains("reproq_pool_recycles_total{")
            && text.contains(r#"reproq_tasks_completed_total{queue="default",status="failure"} 1"#)
            && text.contains(r#"reproq_tasks_completed_total{queue="default",status="success"} 1"#)
            && text.contains("reproq_workers 1");
        if done {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's metrics never showed a success, a failure and a recycle:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.start_kill().unwrap();
    let _ = child.wait().await;
    text
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let exported = exported_names(&scrape_a_worker_that_did_everything().await);
    for file in ["grafana/reproq-dashboard.json", "prometheus/alerts.yml"] {
        let text = std::fs::read_to_string(contrib(file)).unwrap();
        let used = metric_names(&text);
        assert!(
            used.len() >= 5,
            "{file}: the name scan found too little: {used:?}"
        );
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the worker does not export: {missing:?}\nexported: {exported:?}"
        );
    }
    // The panels the issue asks for are there.
    let dashboard = std::fs::read_to_string(contrib("grafana/reproq-dashboard.json")).unwrap();
    let used = metric_names(&dashboard);
    for name in [
        "reproq_queue_depth",
        "reproq_queue_wait_duration_seconds_bucket",
        "reproq_tasks_completed_total",
        "reproq_exec_duration_seconds_bucket",
        "reproq_tasks_running",
        "reproq_concurrency_limit",
        "reproq_workers",
        "reproq_db_operation_duration_seconds_bucket",
        "reproq_pool_children",
        "reproq_pool_recycles_total",
        "reproq_worker_cpu_usage_percent",
        "reproq_worker_mem_usage_bytes",
    ] {
        assert!(used.contains(name), "the dashboard has no panel on {name}");
    }
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().unwrap().len() > 10);
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum(rate(reproq_tasks_completed_total{status="x"}[5m])) / process_resident_memory_bytes and my_reproq_thing"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "process_resident_memory_bytes",
            "reproq_tasks_completed_total"
        ]
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !on_path("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    for (source, target) in [
        ("reproq-worker@.service", "reproq-worker@default.service"),
        ("reproq-beat.service", "reproq-beat.service"),
    ] {
        let text = std::fs::read_to_string(contrib(&format!("systemd/{source}"))).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/reproq "));
        let text = text.replace("/usr/local/bin/reproq", env!("CARGO_BIN_EXE_reproq"));
        std::fs::write(dir.path().join(target), text).unwrap();
    }
    let output = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("reproq-worker@default.service"))
        .arg(dir.path().join("reproq-beat.service"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd-analyze warned: {said}");
}

#[test]
fn systemd_units_have_the_operational_settings() {
    for unit in ["reproq-worker@.service", "reproq-beat.service"] {
        let text = std::fs::read_to_string(contrib(&format!("systemd/{unit}"))).unwrap();
        for setting in [
            "Type=notify",
            "WatchdogSec=",
            "KillMode=mixed",
            "TimeoutStopSec=",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/log/reproq",
            "EnvironmentFile=",
        ] {
            assert!(text.contains(setting), "{unit} lacks {setting}");
        }
        assert!(
            !text.contains("NotifyAccess"),
            "{unit}: only the main process notifies"
        );
    }
    // The worker's stop timeout covers the default 30 s drain plus 20 s.
    let worker = std::fs::read_to_string(contrib("systemd/reproq-worker@.service")).unwrap();
    let stop: u64 = worker
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .unwrap();
    assert!(stop >= 30 + 20, "TimeoutStopSec={stop}");
}

#[test]
fn alert_rules_pass_promtool() {
    if !on_path("promtool") {
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus)");
        return;
    }
    // The syntax, then the unit tests of the rules (alerts.test.yml).
    for (verb, file) in [
        ("check", "prometheus/alerts.yml"),
        ("test", "prometheus/alerts.test.yml"),
    ] {
        let output = std::process::Command::new("promtool")
            .args([verb, "rules"])
            .arg(contrib(file))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {verb} rules {file}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
