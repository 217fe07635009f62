//! Throwaway PostgreSQL clusters a test may stop, restart, freeze or promote: the chaos
//! and failover tests need a server of their own, which the shared `DATABASE_URL` is not.
//!
//! The server binaries are found on `PATH` or under `/usr/lib/postgresql/*/bin` (newest
//! first). `initdb` refuses to run as root, so as root every server command runs as the
//! `postgres` OS user (created when missing), as `scripts/with-postgres.sh` does. When the
//! binaries are missing, [`Cluster::start`] returns `Err` with the reason, and the test
//! prints it and skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Settings every throwaway cluster gets: fast and small, ready to stream to a standby.
const SERVER_OPTIONS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "max_connections=200",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=on",
    "wal_level=replica",
    "max_wal_senders=5",
    "hot_standby=on",
    "shared_buffers=32MB",
];

/// One running (or stopped) cluster in a temporary directory, removed on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its loopback port.
    pub port: u16,
}

/// How `pg_ctl stop` stops the server.
#[derive(Debug, Clone, Copy)]
pub enum StopMode {
    /// A crash: no shutdown checkpoint, clients see their connections drop.
    Immediate,
}

impl Cluster {
    /// Creates and starts a new primary cluster on a free loopback port.
    pub fn start() -> Result<Cluster, String> {
        let bin = server_bin_dir()?;
        let dir = owned_temp_dir()?;
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
        };
        cluster.run_checked(
            "initdb",
            &[
                "-D",
                &cluster.data_dir_str(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        // Replication connections from loopback, for `pg_basebackup` and standbys.
        let hba = cluster.data_dir().join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).map_err(|e| e.to_string())?;
        rules.push_str("\nhost replication all 127.0.0.1/32 trust\n");
        std::fs::write(&hba, rules).map_err(|e| e.to_string())?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A streaming standby of `self`, built with `pg_basebackup -R` and started on a port
    /// of its own.
    pub fn standby(&self) -> Result<Cluster, String> {
        let dir = owned_temp_dir()?;
        let standby = Cluster {
            bin: self.bin.clone(),
            dir,
            port: free_port(),
        };
        standby.run_checked(
            "pg_basebackup",
            &[
                "-D",
                &standby.data_dir_str(),
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "--no-sync",
                "--checkpoint=fast",
            ],
        )?;
        standby.start_server()?;
        Ok(standby)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server.
    pub fn stop(&self, mode: StopMode) -> Result<(), String> {
        let mode = match mode {
            StopMode::Immediate => "immediate",
        };
        self.run_checked(
            "pg_ctl",
            &["-D", &self.data_dir_str(), "-m", mode, "-w", "stop"],
        )
        .map(|_| ())
    }

    /// Starts a stopped server again on the same port.
    pub fn start_server(&self) -> Result<(), String> {
        let options: String = SERVER_OPTIONS
            .iter()
            .map(|setting| format!("-c {setting} "))
            .collect();
        let options = format!("{options}-p {} -k {}", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log");
        self.run_checked(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir_str(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
        .map(|_| ())
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), String> {
        self.run_checked("pg_ctl", &["-D", &self.data_dir_str(), "-w", "promote"])
            .map(|_| ())
    }

    /// The postmaster and every backend of this cluster (children of the postmaster).
    pub fn server_pids(&self) -> Vec<i32> {
        let Some(postmaster) = self.postmaster_pid() else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        pids
    }

    /// Sends `signal` to every process of the server: SIGSTOP freezes it (connections
    /// stay open, nothing answers), SIGCONT thaws it.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        for pid in self.server_pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The server log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn data_dir_str(&self) -> String {
        self.data_dir().display().to_string()
    }

    fn run_checked(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "{tool} {args:?} failed: {}\n{}\n{}\nserver log:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log()
            ))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.signal_all(nix::sys::signal::Signal::SIGCONT);
        let _ = self.stop(StopMode::Immediate);
    }
}

/// Waits until `url` accepts a connection and answers `select 1`.
pub async fn wait_until_answers(url: &str, deadline: Duration) -> Result<(), String> {
    use sqlx::Connection;
    let start = Instant::now();
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query("select 1").execute(&mut conn).await?;
            conn.close().await
        })
        .await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) if start.elapsed() > deadline => return Err(error.to_string()),
            Err(_) if start.elapsed() > deadline => return Err("timed out".into()),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub fn running_as_root() -> bool {
    // The effective uid, from /proc (nix's `user` feature is not enabled).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn server_bin_dir() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_basebackup").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL server binaries not found (initdb, pg_ctl)".to_string())?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "PostgreSQL server binaries not found (initdb, pg_ctl)".to_string())
}

/// A temporary directory the server's OS user may write to.
fn owned_temp_dir() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("reproq-cluster.")
        .tempdir()
        .map_err(|e| e.to_string())?;
    if running_as_root() {
        let created = Command::new("id")
            .arg("postgres")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !created {
            let _ = Command::new("useradd")
                .args(["--system", "--no-create-home", "postgres"])
                .status();
        }
        let status = Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("chown postgres {} failed", dir.path().display()));
        }
        set_mode(dir.path(), 0o755)?;
    }
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Direct and indirect children of `parent`, read from `/proc`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name is in parentheses and may hold spaces: split after it.
            let after = &stat[stat.rfind(')')? + 2..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![parent];
    while let Some(current) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == current {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_throwaway_cluster_restarts_freezes_and_streams_to_a_promotable_standby() {
    let primary = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let url = primary.url("postgres");
    wait_until_answers(&url, Duration::from_secs(10))
        .await
        .unwrap();
    let standby = primary.standby().unwrap();
    let standby_url = standby.url("postgres");
    wait_until_answers(&standby_url, Duration::from_secs(10))
        .await
        .unwrap();

    let pool = sqlx::PgPool::connect(&standby_url).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(in_recovery, "a fresh standby is in recovery");

    // An immediate restart: the server answers again on the same port.
    primary.stop(StopMode::Immediate).unwrap();
    assert!(
        wait_until_answers(&url, Duration::from_millis(300))
            .await
            .is_err()
    );
    primary.start_server().unwrap();
    wait_until_answers(&url, Duration::from_secs(10))
        .await
        .unwrap();

    // Frozen: a query does not answer; thawed: it does.
    let frozen = sqlx::PgPool::connect(&url).await.unwrap();
    primary.signal_all(nix::sys::signal::Signal::SIGSTOP);
    let stalled = tokio::time::timeout(
        Duration::from_millis(500),
        sqlx::query("select 1").execute(&frozen),
    )
    .await;
    assert!(stalled.is_err(), "a frozen server does not answer");
    primary.signal_all(nix::sys::signal::Signal::SIGCONT);
    sqlx::query("select 1").execute(&frozen).await.unwrap();

    standby.promote().unwrap();
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!in_recovery, "a promoted standby is a primary");
}
