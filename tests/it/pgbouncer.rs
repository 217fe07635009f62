//! PgBouncer in transaction mode in front of the test server, configured as Debian's
//! 1.18 ships it (`max_prepared_statements` unset) plus `ignore_startup_parameters =
//! extra_float_digits`: `migrate` runs direct; `enqueue`, `worker` and `beat` run
//! through it with pgx's `default_query_exec_mode=exec`; without that parameter the
//! commands fail with the error that names it.
//!
//! PgBouncer refuses to run as root, so as root it runs as the `postgres` OS user. The
//! test skips (saying so) when no `pgbouncer` binary is installed; `.ci/run` installs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use crate::support::{TestDb, Variant, admin_url, reproq, stderr, stdout};

/// One PgBouncer process on a free loopback port, stopped on drop.
struct Bouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Bouncer {
    /// Starts PgBouncer in front of the server of `DATABASE_URL`, or says why not.
    fn start(ignore_startup_parameters: &str) -> Result<Bouncer, String> {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| which("pgbouncer"))
            .ok_or("no pgbouncer binary (apt-get install pgbouncer)")?;
        let server: PgConnectOptions = admin_url().parse().map_err(|e| format!("{e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ini = format!(
            "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
             pool_mode = transaction\nignore_startup_parameters = {ignore_startup_parameters}\n\
             max_client_conn = 500\ndefault_pool_size = 10\nlogfile = {}\npidfile = {}\n",
            server.get_host(),
            server.get_port(),
            path("userlist.txt"),
            path("pgbouncer.log"),
            path("pgbouncer.pid"),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"{}\" \"\"\n", server.get_username()),
        )
        .map_err(|e| e.to_string())?;
        let root = crate::cluster::running_as_root();
        if root {
            // PgBouncer refuses root: hand the directory to the postgres OS user.
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot chown the PgBouncer directory to postgres".into());
            }
        }
        let mut command = if root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&binary);
            command
        } else {
            Command::new(&binary)
        };
        let child = command
            .arg(path("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let bouncer = Bouncer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("pgbouncer did not listen: {}", bouncer.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(bouncer)
    }

    /// A DSN for database `name` through PgBouncer, with `query` appended.
    fn url(&self, db: &TestDb, query: &str) -> String {
        let options: PgConnectOptions = db.url.parse().unwrap();
        format!(
            "postgres://{}@127.0.0.1:{}/{}{query}",
            options.get_username(),
            self.port,
            options.get_database().unwrap()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // `runuser` forwards SIGTERM to PgBouncer; both are ours.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.exists())
}

fn start_or_skip(ignore_startup_parameters: &str) -> Option<Bouncer> {
    match Bouncer::start(ignore_startup_parameters) {
        Ok(bouncer) => Some(bouncer),
        Err(reason) => {
            eprintln!("skipping the PgBouncer test: {reason}");
            None
        }
    }
}

fn enqueue(dsn: &str, n: usize) -> std::process::Output {
    reproq(
        &[
            "enqueue",
            "--dsn",
            dsn,
            "--task-path",
            "tasks.echo",
            "--kwargs",
            &format!(r#"{{"n": {n}, "nested": {{"json": [1, 2]}}}}"#),
            "--run-after",
            "2020-01-01T00:00:00Z",
        ],
        &[],
        None,
    )
}

#[tokio::test]
async fn exec_mode_runs_enqueue_worker_and_beat_through_transaction_pooling() {
    let Some(bouncer) = start_or_skip("extra_float_digits") else {
        return;
    };
    let db = TestDb::empty().await;
    let migrated = reproq(&["migrate", "--dsn", &db.url], &[], None);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let pooled = bouncer.url(&db, "?default_query_exec_mode=exec");
    let refused = reproq(&["migrate", "--dsn", &pooled], &[], None);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("direct DSN"),
        "{}",
        stderr(&refused)
    );

    // JSON and timestamp parameters, many processes, each a fresh client.
    for n in 0..12 {
        let out = enqueue(&pooled, n);
        assert!(
            out.status.success(),
            "enqueue {n}: {}{}\npgbouncer log:\n{}",
            stdout(&out),
            stderr(&out),
            bouncer.log()
        );
    }

    let worker = reproq(
        &[
            "worker",
            "--dsn",
            &pooled,
            "--executor-module",
            "tests.python.fake_executor",
            "--allowed-task-modules",
            "tasks.",
            "--concurrency",
            "6",
            "--poll-min-backoff",
            "10ms",
            "--poll-max-backoff",
            "50ms",
            "--burst",
        ],
        &[],
        None,
    );
    let log = stdout(&worker);
    assert!(worker.status.success(), "{log}{}", stderr(&worker));
    assert!(
        log.contains("LISTEN/NOTIFY wake-ups are off"),
        "says once that it polls: {log}"
    );
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
    let done: Vec<(String, serde_json::Value)> =
        sqlx::query_as("select status, return_json from task_runs order by result_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(done.len(), 12);
    assert_eq!(
        done[0].1["spec"]["kwargs"]["nested"]["json"],
        serde_json::json!([1, 2]),
        "JSON parameters round-trip in exec mode: {:?}",
        done[0].1
    );
    assert!(
        done.iter().all(|(status, _)| status == "SUCCESSFUL"),
        "{done:?}"
    );

    // With a direct listen_dsn, LISTEN goes there and nothing is said about polling.
    let out = enqueue(&pooled, 100);
    assert!(out.status.success(), "{}", stderr(&out));
    let listening = reproq(
        &[
            "worker",
            "--dsn",
            &pooled,
            "--listen-dsn",
            &db.url,
            "--executor-module",
            "tests.python.fake_executor",
            "--allowed-task-modules",
            "tasks.",
            "--burst",
        ],
        &[],
        None,
    );
    let log = stdout(&listening);
    assert!(listening.status.success(), "{log}{}", stderr(&listening));
    assert!(!log.contains("wake-ups are off"), "{log}");
    let left: i64 =
        sqlx::query_scalar("select count(*) from task_runs where status <> 'SUCCESSFUL'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);

    // beat --once through the pooler: a due periodic row becomes a task.
    sqlx::query(
        r#"insert into periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
               concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled, created_at, updated_at)
           values ('tick', '* * * * *', 'tasks.ok', '{"args": [], "kwargs": {"when": "now"}}'::jsonb, 'default', 0, 3,
                   null, 0, null, now() - interval '1 minute', true, now(), now())"#,
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let once = reproq(&["beat", "--once", "--dsn", &pooled], &[], None);
    assert!(once.status.success(), "{}{}", stdout(&once), stderr(&once));
    let periodic: i64 =
        sqlx::query_scalar("select count(*) from task_runs where task_path = 'tasks.ok'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(periodic, 1);

    // The beat loop needs a direct DSN for its leader lock; without one it says so.
    let refused = reproq(&["beat", "--dsn", &pooled], &[], None);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("listen-dsn"),
        "{}",
        stderr(&refused)
    );
    // A slot of its own: the periodic spec (and its dedup) carries the scheduled time.
    sqlx::query("update periodic_tasks set next_run_at = now() - interval '1 hour'")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut beat = Command::new(env!("CARGO_BIN_EXE_reproq"))
        .args([
            "beat",
            "--interval",
            "200ms",
            "--dsn",
            &pooled,
            "--listen-dsn",
            &db.url,
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::fs::File::create(bouncer.dir.path().join("beat.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: i64 =
            sqlx::query_scalar("select count(*) from task_runs where task_path = 'tasks.ok'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if count >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the beat loop never enqueued: {}",
            std::fs::read_to_string(bouncer.dir.path().join("beat.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(beat.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(beat.wait().unwrap().success());

    // Nothing named was left on PgBouncer's server connections.
    let leftover: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = current_database() and state = 'idle in transaction'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        leftover, 0,
        "no server connection left inside a transaction"
    );
}

#[tokio::test]
async fn without_exec_mode_the_error_names_the_dsn_parameter() {
    // As Debian ships it: our startup `options` (session settings) are refused.
    let Some(bouncer) = start_or_skip("extra_float_digits") else {
        return;
    };
    let db = TestDb::new(Variant::Sql).await;
    let out = enqueue(&bouncer.url(&db, ""), 0);
    let text = stderr(&out);
    assert!(!out.status.success());
    assert!(
        text.contains("unsupported startup parameter")
            && text.contains("default_query_exec_mode=exec"),
        "the error names the DSN parameter: {text}"
    );
    drop(bouncer);

    // Told to ignore `options` too: now the named statements collide (42P05) or go
    // missing (26000) on the shared server connections.
    let Some(bouncer) = start_or_skip("extra_float_digits,options") else {
        return;
    };
    let pooled = bouncer.url(&db, "");
    let mut failure = None;
    for n in 0..6 {
        let out = enqueue(&pooled, n);
        if !out.status.success() {
            failure = Some(stderr(&out));
            break;
        }
    }
    let text = failure.expect("a named statement behind transaction pooling must fail");
    assert!(
        text.contains("prepared statement") && text.contains("default_query_exec_mode=exec"),
        "the error names the DSN parameter: {text}"
    );
}
