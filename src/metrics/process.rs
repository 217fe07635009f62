//! What this process costs, read from procfs: resident memory and CPU time. Linux
//! only; elsewhere every reading is `None`.

use std::time::Instant;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident set size in bytes (`VmRSS:` of `/proc/self/status`, kB × 1024).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds used so far (`utime` + `stime` of `/proc/self/stat`).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / TICKS_PER_SECOND)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Turns successive CPU-time readings into a usage percentage (100 = one full core).
#[derive(Debug)]
pub struct CpuSampler {
    last: Option<(Instant, f64)>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    /// A sampler whose first reading is taken now.
    pub fn new() -> Self {
        CpuSampler {
            last: cpu_seconds().map(|s| (Instant::now(), s)),
        }
    }

    /// CPU use since the previous sample, in percent; `None` without procfs or
    /// when no time has passed.
    pub fn sample(&mut self) -> Option<f64> {
        let now = (Instant::now(), cpu_seconds()?);
        let previous = self.last.replace(now)?;
        let wall = now.0.duration_since(previous.0).as_secs_f64();
        (wall > 0.0).then(|| ((now.1 - previous.1).max(0.0) / wall) * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\treproq\nVmPeak:\t  9999 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
    }

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
    }

    #[test]
    fn this_process_has_readings() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().unwrap() > 0);
            assert!(cpu_seconds().is_some());
        }
    }
}
