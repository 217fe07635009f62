//! Readiness, status and the systemd watchdog for a long-running loop (the worker's
//! claim loop, the beat's scheduler loop).
//!
//! The loop owns a [`Liveness`] and calls [`Liveness::beat`] on every iteration;
//! while it legitimately waits (on the database, an idle sleep, busy slots) it keeps
//! beating through [`Liveness::during`] or a [`Liveness::pulse`] arm. [`supervise`]
//! pets the watchdog only while the last beat is recent, so a loop that stops being
//! polled (a blocked thread, a future that never wakes outside the known waits) stops
//! the petting and systemd restarts the service; a database outage does not, because
//! waiting on the database is one of the known waits and the loop rides it out.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::systemd::{Notifier, status};

/// How often a waiting loop still beats.
pub const PULSE: Duration = Duration::from_secs(1);
/// How often the supervisor looks at the loop (more often for a short watchdog).
const TICK: Duration = Duration::from_millis(200);

/// The heartbeat a loop leaves for its supervisor; a cheap clone.
#[derive(Debug, Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last beat.
    last_beat_ms: AtomicU64,
    started: AtomicBool,
    load: AtomicUsize,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                started: AtomicBool::new(false),
                load: AtomicUsize::new(0),
            }),
        }
    }
}

impl Liveness {
    /// One iteration of the loop, with its current load (running tasks; for the beat,
    /// 1 when leading). The first beat means the loop has started (readiness).
    pub fn beat(&self, load: usize) {
        self.inner.load.store(load, Ordering::Relaxed);
        self.inner.started.store(true, Ordering::Release);
        self.touch();
    }

    /// Marks the loop alive without changing its load.
    pub fn touch(&self) {
        let ms = u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Awaits `future`, marking the loop alive every [`PULSE`] while it is pending: for
    /// waits that may legitimately last (a database that does not answer, an idle sleep).
    pub async fn during<F: Future>(&self, future: F) -> F::Output {
        tokio::pin!(future);
        loop {
            self.touch();
            tokio::select! {
                output = &mut future => return output,
                () = tokio::time::sleep(PULSE) => {}
            }
        }
    }

    /// Completes after [`PULSE`], marking the loop alive: a `select!` arm for a loop
    /// that waits on several things at once (it then goes round again).
    pub async fn pulse(&self) {
        tokio::time::sleep(PULSE).await;
        self.touch();
    }

    fn started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    fn load(&self) -> usize {
        self.inner.load.load(Ordering::Relaxed)
    }

    fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
        self.inner.epoch.elapsed().saturating_sub(last)
    }
}

/// What the supervisor reports for a loop.
pub struct Supervision {
    /// Where notifications go.
    pub notifier: Notifier,
    /// The loop's heartbeat.
    pub liveness: Liveness,
    /// The `STATUS=` text for a load while the loop runs.
    pub describe: Box<dyn Fn(usize) -> String + Send + Sync>,
    /// Fires when the loop stops taking work (the drain starts).
    pub stopping: CancellationToken,
}

/// Sends `READY=1` after the loop's first beat, `STATUS=` when its load changes,
/// `STOPPING=1` when `stopping` fires, and `WATCHDOG=1` every watchdog interval while
/// the loop beats (and unconditionally while draining, which the stop timeout bounds).
/// Returns when `done` fires; does nothing outside systemd.
pub async fn supervise(supervision: Supervision, done: CancellationToken) {
    let Supervision {
        notifier,
        liveness,
        describe,
        stopping,
    } = supervision;
    if !notifier.is_enabled() {
        return;
    }
    let watchdog = notifier.watchdog_interval();
    // A waiting loop beats every PULSE: allow a few before calling it stuck.
    let stale_after = watchdog.map(|w| w.max(PULSE * 3));
    // Look often enough to pet on time even under a very short WatchdogSec.
    let tick = watchdog.map_or(TICK, |w| TICK.min(w / 2).max(Duration::from_millis(5)));
    let mut ready = false;
    let mut draining = false;
    let mut last_status = String::new();
    let mut last_pet: Option<Instant> = None;
    let mut stuck_logged = false;
    loop {
        if !draining && stopping.is_cancelled() {
            draining = true;
            notifier.send(&stopping_message(liveness.load()));
        } else if !draining && liveness.started() {
            let text = status(&describe(liveness.load()));
            if !ready {
                ready = true;
                notifier.send(&format!("READY=1\n{text}"));
                last_status = text;
            } else if text != last_status {
                notifier.send(&text);
                last_status = text;
            }
        }
        if let (Some(interval), Some(stale_after)) = (watchdog, stale_after) {
            if last_pet.is_none_or(|at| at.elapsed() >= interval) {
                let silent = liveness.since_last_beat();
                if draining || (ready && silent < stale_after) {
                    notifier.send("WATCHDOG=1");
                    last_pet = Some(Instant::now());
                    stuck_logged = false;
                } else if ready && !stuck_logged {
                    stuck_logged = true;
                    tracing::error!(
                        silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
                        "The loop has made no progress; no longer petting the systemd watchdog"
                    );
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = done.cancelled() => break,
        }
    }
    if !draining && stopping.is_cancelled() {
        // The loop ended before the next tick noticed (a quick `--burst` run).
        notifier.send(&stopping_message(liveness.load()));
    }
}

fn stopping_message(running: usize) -> String {
    format!(
        "STOPPING=1\n{}",
        status(&format!("draining: {running} running"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::SystemdEnv;
    use std::os::unix::net::UnixDatagram;

    fn listener() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let env = SystemdEnv {
            notify_socket: Some(path.to_str().unwrap().to_owned()),
            // 200 ms: a pet every 100 ms, stale after 3 s (3 pulses).
            watchdog_usec: Some("200000".to_owned()),
            watchdog_pid: None,
        };
        (dir, socket, Notifier::from_env(&env, std::process::id()))
    }

    fn drain(socket: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buffer = [0_u8; 512];
        while let Ok(n) = socket.recv(&mut buffer) {
            out.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        out
    }

    fn supervision(
        notifier: Notifier,
        liveness: &Liveness,
        stopping: &CancellationToken,
    ) -> Supervision {
        Supervision {
            notifier,
            liveness: liveness.clone(),
            describe: Box::new(|load| format!("{load} running")),
            stopping: stopping.clone(),
        }
    }

    #[tokio::test]
    async fn stale_loop_is_not_petted_but_a_draining_one_is() {
        let (_dir, socket, notifier) = listener();
        let liveness = Liveness::default();
        let stopping = CancellationToken::new();
        let done = CancellationToken::new();
        liveness.beat(1);
        let task = tokio::spawn(supervise(
            supervision(notifier, &liveness, &stopping),
            done.clone(),
        ));
        // Beat for a while, then stop beating and wait past the stale limit (3 s).
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            liveness.beat(1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let alive = drain(&socket);
        assert!(alive[0].starts_with("READY=1"), "{alive:?}");
        assert!(alive.contains(&"WATCHDOG=1".to_owned()), "{alive:?}");
        // Read as it comes (the socket queue is short) until the stale limit has passed.
        let until = Instant::now() + Duration::from_millis(3300);
        while Instant::now() < until {
            drain(&socket);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drain(&socket);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let stuck = drain(&socket);
        assert!(
            !stuck.contains(&"WATCHDOG=1".to_owned()),
            "a stuck loop is not petted: {stuck:?}"
        );

        stopping.cancel();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let draining = drain(&socket);
        assert!(
            draining[0].starts_with("STOPPING=1\nSTATUS=draining"),
            "{draining:?}"
        );
        assert!(draining.contains(&"WATCHDOG=1".to_owned()), "{draining:?}");
        done.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn during_keeps_a_long_wait_alive() {
        let liveness = Liveness::default();
        liveness.beat(0);
        liveness
            .during(tokio::time::sleep(PULSE * 2 + Duration::from_millis(300)))
            .await;
        assert!(liveness.since_last_beat() < PULSE + Duration::from_millis(200));
    }
}
