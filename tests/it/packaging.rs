//! Packaging and operator conveniences: shell completions, man pages, progress bars
//! (only on a terminal), and the pip-installable wheel.
//!
//! The wheel test builds a whole binary, minutes on a 2-core machine, so it is
//! `#[ignore]`d in `make test` and run by `make wheel-test` (which builds the release
//! wheel with `make wheel` first and passes its directory in `REPROQ_WHEEL_DIR`).
//! Run alone (`cargo test --test it packaging::wheel -- --ignored`) it builds a debug
//! wheel itself with maturin, and skips with a message when maturin is unavailable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{NewTask, TestDb, Variant, insert, reproq, stderr, stdout, task};

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn completion_scripts_for_every_shell_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = reproq(&["completions", shell], &[], None);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(
            script.contains("worker") && script.contains("--dsn"),
            "{shell}: the script knows the subcommands and flags"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reproq.bash");
    std::fs::write(&path, reproq(&["completions", "bash"], &[], None).stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bad = reproq(&["completions", "tcsh"], &[], None);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_for_every_subcommand_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let output = reproq(&["man", out.to_str().unwrap()], &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut expected = vec!["reproq.1".to_owned()];
    for sub in [
        "worker",
        "beat",
        "migrate",
        "limit",
        "replay",
        "cancel",
        "triage",
        "prune",
        "enqueue",
        "torture",
        "version",
        "completions",
        "man",
        "triage-list",
        "limit-set",
    ] {
        expected.push(format!("reproq-{sub}.1"));
    }
    for page in &expected {
        assert!(out.join(page).is_file(), "{page} was not written");
        assert!(
            stdout(&output).contains(page.as_str()),
            "the written paths are listed"
        );
    }
    let worker = out.join("reproq-worker.1");
    let rendered = if on_path("groff") {
        let result = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww"])
            .arg(&worker)
            .output()
            .unwrap();
        assert!(result.status.success());
        assert!(
            result.stderr.is_empty(),
            "groff warned: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        String::from_utf8_lossy(&result.stdout).into_owned()
    } else if on_path("man") {
        let result = Command::new("man")
            .arg("-l")
            .arg(&worker)
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(result.status.success());
        String::from_utf8_lossy(&result.stdout).into_owned()
    } else {
        eprintln!("SKIPPED rendering: neither groff nor man is installed");
        return;
    };
    // Terminal output emboldens by overstriking (`N\bN`): keep the last character.
    let mut plain = String::new();
    for c in rendered.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    for needle in ["reproq-worker", "NAME", "SYNOPSIS", "dsn", "queues"] {
        assert!(plain.contains(needle), "{needle} not in:\n{plain}");
    }
}

/// Runs the binary on `db` for each long command, stderr a pipe; returns (args, output).
async fn long_commands(db: &TestDb) -> Vec<(Vec<String>, std::process::Output)> {
    insert(
        &db.pool,
        NewTask {
            status: "FAILED".into(),
            ..task("tasks.fail", json!({"n": 1}))
        },
    )
    .await;
    sqlx::query("update task_runs set failed_at = now()")
        .execute(&db.pool)
        .await
        .unwrap();
    let url = db.url.as_str();
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "enqueue",
            "--dsn",
            url,
            "--task-path",
            "tasks.ok",
            "--count",
            "300",
        ],
        vec!["triage", "retry", "--all", "--dsn", url],
        vec!["triage", "list", "--json", "--dsn", url],
        vec!["prune", "expired", "--dsn", url],
        vec!["prune", "successful", "--older-than", "1h", "--dsn", url],
    ];
    commands
        .into_iter()
        .map(|args| {
            let output = reproq(&args, &[], None);
            (args.iter().map(|a| (*a).to_owned()).collect(), output)
        })
        .collect()
}

#[tokio::test]
async fn no_progress_output_without_a_terminal() {
    let db = TestDb::new(Variant::Sql).await;
    for (args, output) in long_commands(&db).await {
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            output.stderr.is_empty(),
            "{args:?} wrote to a piped stderr: {:?}",
            stderr(&output)
        );
    }
    let (_, enqueue) = &long_commands(&db).await[0];
    assert!(
        stdout(enqueue).starts_with("Enqueued 300 task(s) (batch "),
        "stdout is the usual one line: {}",
        stdout(enqueue)
    );
    assert_eq!(stdout(enqueue).lines().count(), 1);
}

#[tokio::test]
async fn progress_bar_on_a_terminal() {
    if !on_path("script") {
        eprintln!("SKIPPED: util-linux `script` (a pseudo-terminal) is not installed");
        return;
    }
    let db = TestDb::new(Variant::Sql).await;
    let command = format!(
        "{} enqueue --dsn '{}' --task-path tasks.ok --count 20000",
        env!("CARGO_BIN_EXE_reproq"),
        db.url
    );
    // `script` gives the command a pseudo-terminal for stdout and stderr.
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains("Enqueuing [") && screen.contains("tasks/s") && screen.contains("ETA"),
        "a bar with a count, a rate and an ETA: {screen}"
    );
    assert!(screen.contains("Enqueued 20000 task(s)"), "{screen}");
}

/// The wheel's directory: `REPROQ_WHEEL_DIR`, or a debug wheel built now.
fn wheel_dir(scratch: &Path) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("REPROQ_WHEEL_DIR") {
        return Some(PathBuf::from(dir));
    }
    let maturin = find_or_install_maturin(scratch)?;
    let out = scratch.join("wheels");
    let status = Command::new(maturin)
        .args(["build", "--profile", "dev", "--out"])
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // A target dir of its own: the one `cargo test` runs from is locked.
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheel"),
        )
        .status()
        .unwrap();
    assert!(status.success(), "maturin build failed");
    Some(out)
}

fn find_or_install_maturin(scratch: &Path) -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-build/bin/maturin");
    if local.is_file() {
        return Some(local);
    }
    if on_path("maturin") {
        return Some(PathBuf::from("maturin"));
    }
    let venv = scratch.join("maturin-venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "maturin>=1.5,<2.0"])
            .status()
            .is_ok_and(|s| s.success());
    if made {
        Some(venv.join("bin/maturin"))
    } else {
        eprintln!("SKIPPED: maturin is not installed and could not be installed from PyPI");
        None
    }
}

#[test]
#[ignore = "builds a whole wheel (minutes); run by `make wheel-test`"]
fn wheel_installs_into_a_venv_and_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(dir) = wheel_dir(scratch.path()) else {
        return;
    };
    let version = env!("CARGO_PKG_VERSION");
    let wheel = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("reproq_worker_rs-{version}-")) && n.ends_with(".whl")
            })
        })
        .unwrap_or_else(|| panic!("no reproq_worker_rs-{version} wheel in {}", dir.display()));
    let name = wheel.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.contains("manylinux"),
        "{name}: a manylinux tag, installable on any recent glibc Linux"
    );
    let venv = scratch.path().join("venv");
    assert!(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
    );
    let install = Command::new(venv.join("bin/pip"))
        .args(["install", "--no-index", "--quiet"])
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "pip install --no-index {name}: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let installed = venv.join("bin/reproq");
    let output = Command::new(&installed).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("reproq-worker version {version}")
    );
    // As reproq-django finds it: `reproq` on the venv's PATH.
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let which = Command::new("sh")
        .args(["-c", "command -v reproq"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&which.stdout).trim(),
        installed.to_str().unwrap()
    );
    eprintln!(
        "wheel {name}: {} bytes",
        std::fs::metadata(&wheel).unwrap().len()
    );
}
