//! The unauthorised-request limiter (spec §9.3): a fixed window per remote host,
//! tracking a bounded number of hosts. Successful requests never touch it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    count: u32,
    window_start: Instant,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    last_cleanup: Option<Instant>,
}

/// Counts failed requests per host; past `limit` in one `window` the host is limited.
#[derive(Debug)]
pub struct Limiter {
    limit: u32,
    window: Duration,
    max_entries: usize,
    table: Mutex<Table>,
}

impl Limiter {
    /// A limiter allowing `limit` failures per `window`, tracking `max_entries` hosts.
    pub fn new(limit: u32, window: Duration, max_entries: usize) -> Self {
        Limiter {
            limit,
            window,
            max_entries,
            table: Mutex::new(Table::default()),
        }
    }

    /// Records a failure from `host`; `false` means it is over the limit (429).
    pub fn allow(&self, host: &str) -> bool {
        self.allow_at(host, Instant::now())
    }

    fn allow_at(&self, host: &str, now: Instant) -> bool {
        let host = if host.is_empty() { "unknown" } else { host };
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        self.cleanup(&mut table, now);
        let entry = table.entries.entry(host.to_owned()).or_insert(Entry {
            count: 0,
            window_start: now,
            last_seen: now,
        });
        if now.duration_since(entry.window_start) >= self.window {
            entry.count = 0;
            entry.window_start = now;
        }
        entry.last_seen = now;
        if entry.count >= self.limit {
            return false;
        }
        entry.count += 1;
        true
    }

    fn cleanup(&self, table: &mut Table, now: Instant) {
        let due = table.entries.len() > self.max_entries
            || table
                .last_cleanup
                .is_none_or(|last| now.duration_since(last) >= self.window);
        if !due {
            return;
        }
        table.last_cleanup = Some(now);
        let stale = self.window * 2;
        table
            .entries
            .retain(|_, e| now.duration_since(e.last_seen) < stale);
        // Still too many: drop arbitrary hosts until the table fits, leaving room for one.
        let excess = (table.entries.len() + 1).saturating_sub(self.max_entries);
        let doomed: Vec<String> = table.entries.keys().take(excess).cloned().collect();
        for key in doomed {
            table.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_n_failures_and_resets_with_the_window() {
        let limiter = Limiter::new(2, Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(limiter.allow_at("a", t0));
        assert!(limiter.allow_at("a", t0));
        assert!(!limiter.allow_at("a", t0));
        assert!(limiter.allow_at("b", t0), "hosts are counted apart");
        assert!(limiter.allow_at("a", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn tracks_at_most_max_entries_hosts() {
        let limiter = Limiter::new(1, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..10 {
            limiter.allow_at(&format!("h{i}"), t0);
        }
        let table = limiter.table.lock().unwrap();
        assert!(table.entries.len() <= 4, "{}", table.entries.len());
    }
}
