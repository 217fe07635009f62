//! Per-attempt log files (spec §6.7): `<dir>/task-<id>-attempt-<n>.log`, 0600 in a
//! 0700 directory, byte-exact `STDOUT:` / `STDERR:` sections. Returns the absolute
//! path for `logs_uri` (contract §2.6), or `None` when nothing was written.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Writes the log file if there is anything to write.
pub fn persist(
    dir: &Path,
    result_id: i64,
    attempt: i32,
    stdout: &str,
    stderr: &str,
) -> Option<PathBuf> {
    if stdout.is_empty() && stderr.is_empty() {
        return None;
    }
    if let Err(error) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        tracing::warn!(error = %error, logs_dir = %dir.display(), "Failed to create logs dir");
        return None;
    }
    let path = dir.join(format!("task-{result_id}-attempt-{attempt}.log"));
    let path = std::path::absolute(&path).unwrap_or(path);
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        Err(error) => {
            tracing::warn!(error = %error, path = %path.display(), "Failed to open logs file");
            return None;
        }
    };
    if let Err(error) = file.write_all(render(stdout, stderr).as_bytes()) {
        tracing::warn!(error = %error, path = %path.display(), "Failed to persist task logs");
        return None;
    }
    Some(path)
}

/// The file's content.
pub fn render(stdout: &str, stderr: &str) -> String {
    let newline = |s: &str| if s.ends_with('\n') { "" } else { "\n" };
    format!(
        "STDOUT:\n{stdout}{}STDERR:\n{stderr}{}",
        newline(stdout),
        newline(stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn byte_exact_layout() {
        assert_eq!(render("", "oops"), "STDOUT:\n\nSTDERR:\noops\n");
        assert_eq!(render("a\n", "b\n"), "STDOUT:\na\nSTDERR:\nb\n");
    }

    #[test]
    fn writes_private_files_and_skips_empty_output() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("nested/logs");
        assert_eq!(persist(&logs, 7, 1, "", ""), None);
        let path = persist(&logs, 7, 2, "out", "err").unwrap();
        assert!(path.is_absolute());
        assert_eq!(path.file_name().unwrap(), "task-7-attempt-2.log");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "STDOUT:\nout\nSTDERR:\nerr\n"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&logs).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
