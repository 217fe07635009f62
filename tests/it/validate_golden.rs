//! Pins `reproq worker --validate` (and `--help`, and the problem reports of `worker`
//! and `beat`) byte for byte, so that refactoring how settings are described cannot
//! change what users see. The golden files live in `tests/golden/`; regenerate them
//! with `REPROQ_BLESS=1 cargo test --test it validate_golden` only when a change of
//! output is intended.
//!
//! Host-specific values are normalized before comparing: the DSN of the test server
//! (`<dsn>`) and its `host:port` (`<host:port>`), the default `<hostname>-<pid>` worker
//! id (`<host-pid>`), the scratch directory (`<dir>`). The runs that connect use an
//! empty database of their own, so the schema-readiness warnings are always the same.

use std::path::{Path, PathBuf};

use crate::support::{TestDb, admin_url, reproq, stderr, stdout};

/// The repository root (the example configs live there).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Exit code, stdout and stderr of one run, host-specific values replaced (`dsn`: the
/// test server's DSN the run may print).
fn run(args: &[&str], env: &[(&str, &str)], cwd: &Path, dsn: &str) -> String {
    let output = reproq(args, env, Some(cwd));
    let parsed = dsn.parse::<reproq::config::Dsn>().ok();
    let redacted = parsed.as_ref().map(|d| d.to_string()).unwrap_or_default();
    let endpoints: Vec<String> = parsed
        .and_then(|d| d.endpoints().ok())
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let normalize = |text: String| -> String {
        text.lines()
            .map(|line| {
                let mut line = line
                    .replace(dsn, "<dsn>")
                    .replace(&redacted, "<dsn>")
                    .replace(&cwd.display().to_string(), "<dir>");
                for endpoint in &endpoints {
                    line = line.replace(endpoint.as_str(), "<host:port>");
                }
                if line.starts_with("worker.worker_id") && line.contains("default") {
                    let end = line.rfind("  ").map_or(line.len(), |i| i + 2);
                    format!("{}<host-pid>", &line[..end])
                } else {
                    line
                }
            })
            .map(|line| line + "\n")
            .collect()
    };
    format!(
        "$ reproq {}exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        normalize(args.join(" ")),
        output.status.code(),
        normalize(stdout(&output)),
        normalize(stderr(&output)),
    )
}

/// Compares with (or, under `REPROQ_BLESS=1`, writes) `tests/golden/<name>.txt`.
fn check(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("REPROQ_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with REPROQ_BLESS=1)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: output changed at line {}\n--- expected\n{expected}\n--- actual\n{actual}",
            first + 1
        );
    }
}

/// A scratch directory holding the example configs under their discovered names.
fn examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["yaml", "toml"] {
        std::fs::copy(
            root().join(format!("reproq.example.{ext}")),
            dir.path().join(format!("example.{ext}")),
        )
        .unwrap();
    }
    dir
}

#[tokio::test]
async fn validate_golden_example_configs() {
    let dir = examples();
    let db = TestDb::empty().await;
    for ext in ["yaml", "toml"] {
        let config = format!("example.{ext}");
        let text = run(
            &[
                "worker",
                "--validate",
                "--config",
                &config,
                "--dsn",
                &db.url,
            ],
            &[],
            dir.path(),
            &db.url,
        );
        check(&format!("validate_example_{ext}"), &text);
    }
}

#[tokio::test]
async fn validate_golden_env_and_flags() {
    let dir = examples();
    let db = TestDb::empty().await;
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("WORKER_ID", "env-id"),
        ("QUEUE_NAMES", "high, low,,"),
        ("ALLOWED_TASK_MODULES", ""),
        ("REPROQ_PROCESS_ROLE", " beat-ish "),
        ("PRIORITY_AGING_FACTOR", "1e1"),
        ("REPROQ_EXECUTOR_MODE", "pool"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("METRICS_AUTH_TOKEN", "sekret"),
        ("METRICS_ALLOW_CIDRS", "127.0.0.1/32, ::1/128"),
        ("METRICS_AUTH_WINDOW", "90s"),
        ("METRICS_AUTH_ALLOW_NO_EXP", "true"),
        ("REPROQ_LOGS_DIR", "/tmp/reproq-logs"),
        (
            "REPROQ_LISTEN_DSN",
            "postgres://app:hunter2@db1,db2:6432/app",
        ),
    ];
    let text = run(
        &[
            "worker",
            "-validate",
            "-config=example.toml",
            "-concurrency",
            "0x10",
            "--exec-timeout=90s",
            "--pool-max-rss",
            "1GiB",
            "-lock-timeout",
            "0",
            "--db-max-connections=7",
            "--heartbeat-seconds",
            "-1",
            "--metrics-auth-limit",
            "5",
            "--max-tasks",
            "3",
            "--burst",
        ],
        &env,
        dir.path(),
        &db.url,
    );
    check("validate_env_and_flags", &text);
}

#[test]
fn validate_golden_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reproq.yaml"),
        "colour: blue\nworker:\n  concurency: 4\n  lease_seconds: 30\n  heartbeat_seconds: 30\n  \
         max_stdout_bytes: 0\n  payload_mode: carrier-pigeon\n  exec_timeout: 0s\n  \
         poll_min_backoff: 2s\n  poll_max_backoff: 1s\n  pool_max_rss: lots\n  \
         env_scrub: 7\n  db_max_connections: 1\nmetrics:\n  tls_cert: /x.pem\n  port: 70000\n",
    )
    .unwrap();
    let env = [("REPROQ_EXECUTOR_MODE", "thread")];
    let admin = admin_url();
    let with_dsn = run(
        &[
            "worker",
            "--validate",
            "--dsn",
            "postgres://u@h:notaport/db",
        ],
        &env,
        dir.path(),
        &admin,
    );
    check("validate_problems", &with_dsn);
    let no_dsn = run(&["worker", "--validate"], &env, dir.path(), &admin);
    check("validate_problems_no_dsn", &no_dsn);
    let running = run(&["worker", "-concurrency=0"], &env, dir.path(), &admin);
    check("worker_problems", &running);
}

#[tokio::test]
async fn validate_golden_unknown_keys_warn() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::empty().await;
    let admin = db.url.as_str();
    std::fs::write(
        dir.path().join("reproq.toml"),
        format!(
            "dsn = \"{admin}\"\ncolour = \"blue\"\n[worker]\nconcurency = 4\npool_max_rss = 1048576\n\
             env_scrub = [\"A\", \"B\"]\nlogs_dir = \"\"\n[metrics]\nallow_cidrs = [\"10.0.0.0/8\"]\n\
             auth_allow_no_exp = true\nport = 0\nwhatever = 1\n[beat]\ninterval = \"1m\"\nextra = 2\n"
        ),
    )
    .unwrap();
    check(
        "validate_unknown_keys",
        &run(
            &["worker", "--validate"],
            &[("DATABASE_URL", "")],
            dir.path(),
            admin,
        ),
    );
}

#[test]
fn validate_golden_beat_problems_and_help() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reproq.toml"),
        "dsn = \"not a dsn\"\n[beat]\ninterval = \"soon\"\nbogus = 1\n",
    )
    .unwrap();
    let admin = admin_url();
    let run = |args: &[&str]| run(args, &[], dir.path(), &admin);
    check("beat_problems", &run(&["beat", "--once"]));
    check("worker_help", &run(&["worker", "--help"]));
    check("beat_help", &run(&["beat", "--help"]));
}
