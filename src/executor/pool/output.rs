//! Reading a task's output back from its runner's files with the same caps as spawn
//! mode: at most `cap + 1` bytes of a file are ever read (the extra byte only tells that
//! the output was cut), on a blocking thread so a slow disk never stalls the runtime.
//! The files are emptied afterwards, so a task that printed 200 MiB does not keep them
//! on disk until its runner's next task.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::child::RunnerIo;
use crate::executor::capture::Captured;

/// The task's stdout and stderr, each within its cap.
pub async fn collect(io: &RunnerIo, stdout_cap: usize, stderr_cap: usize) -> (Captured, Captured) {
    let stdout = io.stdout.clone();
    let stderr = io.stderr.clone();
    tokio::task::spawn_blocking(move || {
        (
            read_and_empty(&stdout, stdout_cap),
            read_and_empty(&stderr, stderr_cap),
        )
    })
    .await
    .unwrap_or_default()
}

fn read_and_empty(path: &PathBuf, cap: usize) -> Captured {
    let captured = read_capped(path, cap);
    if let Ok(file) = OpenOptions::new().write(true).open(path) {
        let _ = file.set_len(0);
    }
    captured
}

/// The first `cap` bytes of `path` and whether there were more; a missing file is empty.
fn read_capped(path: &Path, cap: usize) -> Captured {
    let Ok(file) = File::open(path) else {
        return Captured::default();
    };
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Sized up front so the buffer never doubles past `cap + 1`.
    let capacity = usize::try_from(size.min(limit)).unwrap_or(cap);
    let mut bytes = Vec::with_capacity(capacity);
    let _ = file.take(limit).read_to_end(&mut bytes);
    let truncated = bytes.len() > cap;
    bytes.truncate(cap);
    Captured { bytes, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_cap_and_tells_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        let cut = read_capped(&path, 100);
        assert_eq!((cut.bytes.len(), cut.truncated), (100, true));
        assert!(cut.bytes.capacity() <= 101, "{}", cut.bytes.capacity());
        let exact = read_capped(&path, 10_000);
        assert_eq!((exact.bytes.len(), exact.truncated), (10_000, false));
        let missing = read_capped(&dir.path().join("nothing"), 100);
        assert_eq!(missing, Captured::default());
        let emptied = read_and_empty(&path, 5);
        assert_eq!(
            (emptied.bytes.as_slice(), emptied.truncated),
            (&b"xxxxx"[..], true)
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
