//! Reading the ledger `tests/python/ledger_executor.py` writes: one line per start and
//! end of each attempt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One ledger line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `start` or `end`.
    pub event: String,
    pub result_id: i64,
    pub attempt: i32,
    pub pid: i32,
    /// `$LEDGER_WORKER` of the worker that ran it.
    pub worker: String,
    /// Unix time.
    pub at: f64,
    /// The pid of the worker process that spawned it.
    pub worker_pid: i32,
}

/// A ledger file in a temporary directory the executor children may write to.
pub struct Ledger {
    _dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
}

impl Ledger {
    pub fn new() -> Ledger {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.txt");
        std::fs::write(&path, "").unwrap();
        Ledger {
            _dir: Some(dir),
            path,
        }
    }

    /// A handle on an existing ledger (for another task of the same test).
    pub fn at(path: &str) -> Ledger {
        Ledger {
            _dir: None,
            path: PathBuf::from(path),
        }
    }

    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    pub fn entries(&self) -> Vec<Entry> {
        read(&self.path)
    }

    /// Waits until `pred` holds for some entry.
    pub async fn wait_for(&self, what: &str, seconds: u64, pred: impl Fn(&Entry) -> bool) -> Entry {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(entry) = self.entries().into_iter().find(|e| pred(e)) {
                return entry;
            }
            assert!(
                Instant::now() < deadline,
                "ledger never showed {what}: {:?}",
                self.entries()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Attempt starts per task.
    pub fn starts(&self) -> HashMap<i64, Vec<Entry>> {
        let mut by_task: HashMap<i64, Vec<Entry>> = HashMap::new();
        for entry in self.entries().into_iter().filter(|e| e.event == "start") {
            by_task.entry(entry.result_id).or_default().push(entry);
        }
        by_task
    }
}

fn read(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            Some(Entry {
                event: f.next()?.to_owned(),
                result_id: f.next()?.parse().ok()?,
                attempt: f.next()?.parse().ok()?,
                pid: f.next()?.parse().ok()?,
                worker: f.next()?.to_owned(),
                at: f.next()?.parse().ok()?,
                worker_pid: f.next()?.parse().ok()?,
            })
        })
        .collect()
}
