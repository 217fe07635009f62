//! systemd `Type=notify` support, against the real binary and a fake `NOTIFY_SOCKET`:
//! READY=1 once the claim loop runs, WATCHDOG=1 while it does (also through a database
//! outage), STOPPING=1 when the drain starts.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream, UnixDatagram};
use tokio::sync::watch;

use crate::support::{TestDb, Variant, worker_args};

/// The fake systemd end: a datagram socket in a temporary directory.
struct FakeSystemd {
    _dir: tempfile::TempDir,
    path: String,
    socket: UnixDatagram,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").to_str().unwrap().to_owned();
        let socket = UnixDatagram::bind(&path).unwrap();
        FakeSystemd {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next message, or a panic naming `what` after `seconds`.
    async fn next(&self, what: &str, seconds: u64) -> String {
        let mut buffer = vec![0_u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(seconds), self.socket.recv(&mut buffer))
            .await
            .unwrap_or_else(|_| {
                panic!("no notification within {seconds}s while waiting for {what}")
            })
            .unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    /// Reads messages until one has the assignment `line`; returns everything read.
    async fn until(&self, line: &str, seconds: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs() + 1;
            let message = self.next(&format!("{line} (seen {seen:?})"), left).await;
            let found = message.lines().any(|l| l == line);
            seen.push(message);
            if found {
                return seen;
            }
            assert!(Instant::now() < deadline, "no {line} in time: {seen:?}");
        }
    }
}

fn spawn_worker(
    args: &[&str],
    notify: &FakeSystemd,
    watchdog_usec: &str,
    stdout: Stdio,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .arg("worker")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", watchdog_usec)
        .env("REPROQ_LOG_FORMAT", "json")
        .stdout(stdout)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn terminate(child: &tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

async fn exit_status(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker exits after SIGTERM")
        .unwrap()
}

#[tokio::test]
async fn ready_then_watchdog_then_stopping_in_order() {
    let db = TestDb::new(Variant::Sql).await;
    let notify = FakeSystemd::new();
    // 1 s: a pet every 500 ms.
    let mut child = spawn_worker(&worker_args(&db, &[]), &notify, "1000000", Stdio::null());
    let first = notify.next("READY=1", 30).await;
    assert!(
        first.starts_with("READY=1\nSTATUS=claiming: 0 running, 10 idle slots"),
        "the first message is the readiness: {first:?}"
    );
    let seen = notify.until("WATCHDOG=1", 10).await;
    assert!(seen.iter().all(|m| !m.contains("STOPPING")), "{seen:?}");
    terminate(&child);
    let seen = notify.until("STOPPING=1", 10).await;
    assert!(seen.last().unwrap().contains("STATUS=draining"), "{seen:?}");
    assert!(exit_status(&mut child).await.success());
}

/// A loopback TCP proxy to Postgres that can play "the database is down": it closes
/// every connection and refuses new ones until brought back.
struct Proxy {
    port: u16,
    down: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (down, watcher) = watch::channel(false);
        let upstream = Arc::new(upstream);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watcher.borrow() {
                    continue; // dropped: the connection is reset at once
                }
                let upstream = upstream.clone();
                let mut watcher = watcher.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        TcpStream::connect((upstream.0.as_str(), upstream.1)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watcher.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Proxy { port, down }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

#[tokio::test]
async fn the_watchdog_is_still_petted_while_the_database_is_down() {
    let db = TestDb::new(Variant::Sql).await;
    let options: PgConnectOptions = db.url.parse().unwrap();
    let proxy = Proxy::start((options.get_host().to_owned(), options.get_port())).await;
    let proxied = options.port(proxy.port).to_url_lossy().to_string();
    let mut args = worker_args(&db, &[]);
    let dsn = args.iter().position(|a| *a == "--dsn").unwrap() + 1;
    args[dsn] = &proxied;

    let notify = FakeSystemd::new();
    // 1 s: a pet every 500 ms; a loop silent for 3 s would no longer be petted.
    let log = tempfile::NamedTempFile::new().unwrap();
    let stdout = Stdio::from(log.reopen().unwrap());
    let mut child = spawn_worker(&args, &notify, "1000000", stdout);
    notify.until("READY=1", 30).await;
    notify.until("WATCHDOG=1", 10).await;

    proxy.set_down(true);
    let down_at = Instant::now();
    // A loop stuck in the outage would be silent for more than 3 s and lose its pets;
    // one riding it out is still petted 5 s in.
    let mut pets = 0;
    loop {
        let message = notify.next("WATCHDOG=1 during the outage", 5).await;
        if message == "WATCHDOG=1" {
            pets += 1;
            if down_at.elapsed() >= Duration::from_secs(5) {
                break;
            }
        }
    }
    assert!(pets >= 5, "pets kept coming through the outage: {pets}");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logs.contains("Polling error"),
        "the worker did see the outage: {logs}"
    );

    proxy.set_down(false);
    terminate(&child);
    notify.until("STOPPING=1", 30).await;
    assert!(exit_status(&mut child).await.success());
}

#[tokio::test]
async fn beat_is_ready_once_leading_and_stops_cleanly() {
    let db = TestDb::new(Variant::Sql).await;
    let notify = FakeSystemd::new();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .args(["beat", "--dsn", &db.url, "--interval", "1s"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let first = notify.next("READY=1", 30).await;
    assert_eq!(first, "READY=1\nSTATUS=leading");
    notify.until("WATCHDOG=1", 10).await;
    terminate(&child);
    notify.until("STOPPING=1", 10).await;
    assert!(exit_status(&mut child).await.success());
}
