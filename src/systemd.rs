//! systemd's notification protocol (`sd_notify(3)`), spoken directly: one Unix datagram
//! per message to `$NOTIFY_SOCKET`, a filesystem path or, with a leading `@`, an
//! abstract socket. No libsystemd: the protocol is a few lines of text.
//!
//! The values come from the environment, which only `cli/` reads; this module gets
//! them in a [`SystemdEnv`]. Without `NOTIFY_SOCKET` the [`Notifier`] is disabled and
//! every call is a no-op, so nothing changes outside systemd. The watchdog is armed
//! only when `WATCHDOG_USEC` is set and `WATCHDOG_PID` is unset or names this process
//! (systemd sets it to the main pid; a child that inherited the variables must not pet
//! on its parent's behalf).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The environment variables systemd passes to a `Type=notify` service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdEnv {
    /// `NOTIFY_SOCKET`: where to send notifications.
    pub notify_socket: Option<String>,
    /// `WATCHDOG_USEC`: the watchdog timeout in microseconds.
    pub watchdog_usec: Option<String>,
    /// `WATCHDOG_PID`: the process the watchdog applies to.
    pub watchdog_pid: Option<String>,
}

/// Sends notifications to systemd; a cheap clone, disabled outside systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    channel: Option<Arc<Channel>>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Channel {
    socket: UnixDatagram,
    address: SocketAddr,
    warned: AtomicBool,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Builds the notifier `env` describes for process `own_pid`. A malformed value
    /// disables the part it configures and is logged as a warning; it never stops
    /// the program.
    pub fn from_env(env: &SystemdEnv, own_pid: u32) -> Self {
        let Some(path) = env.notify_socket.as_deref().filter(|p| !p.is_empty()) else {
            return Notifier::disabled();
        };
        let channel = match open(path) {
            Ok(channel) => channel,
            Err(error) => {
                tracing::warn!(notify_socket = %path, error = %error, "Cannot use NOTIFY_SOCKET; systemd notifications disabled");
                return Notifier::disabled();
            }
        };
        Notifier {
            channel: Some(Arc::new(channel)),
            watchdog: watchdog_interval(env, own_pid),
        }
    }

    /// True when notifications go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.channel.is_some()
    }

    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`), when armed.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.is_enabled())
    }

    /// Sends `state` (newline-separated `KEY=value` assignments). A failure is logged
    /// once as a warning and otherwise ignored: systemd going away must not stop work.
    pub fn send(&self, state: &str) {
        let Some(channel) = &self.channel else {
            return;
        };
        if let Err(error) = channel
            .socket
            .send_to_addr(state.as_bytes(), &channel.address)
        {
            if !channel.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %error, "Failed to notify systemd");
            }
        }
    }
}

/// A one-line `STATUS=` value: newlines would start a new assignment.
pub fn status(text: &str) -> String {
    format!("STATUS={}", text.replace('\n', " "))
}

fn open(path: &str) -> std::io::Result<Channel> {
    let address = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an absolute path or an @abstract name",
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    // Never block the runtime on a full receive queue: a lost pet is better than a hang.
    socket.set_nonblocking(true)?;
    Ok(Channel {
        socket,
        address,
        warned: AtomicBool::new(false),
    })
}

fn watchdog_interval(env: &SystemdEnv, own_pid: u32) -> Option<Duration> {
    let usec = env.watchdog_usec.as_deref().filter(|v| !v.is_empty())?;
    if let Some(pid) = env.watchdog_pid.as_deref().filter(|v| !v.is_empty()) {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(usec) if usec > 0 => Some(Duration::from_micros(usec) / 2),
        _ => {
            tracing::warn!(watchdog_usec = %usec, "Ignoring a malformed WATCHDOG_USEC");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(socket: &str, usec: Option<&str>, pid: Option<&str>) -> SystemdEnv {
        SystemdEnv {
            notify_socket: Some(socket.to_owned()),
            watchdog_usec: usec.map(str::to_owned),
            watchdog_pid: pid.map(str::to_owned),
        }
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0_u8; 512];
        let n = socket.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::from_env(&env(path.to_str().unwrap(), None, None), 1);
        assert!(notifier.is_enabled());
        notifier.send("READY=1");
        assert_eq!(receive(&listener), "READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("reproq-test-{}-{}", std::process::id(), line!());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::from_env(&env(&format!("@{name}"), None, None), 1);
        notifier.send("STOPPING=1");
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn disabled_without_a_socket_or_with_a_relative_one() {
        assert!(!Notifier::from_env(&SystemdEnv::default(), 1).is_enabled());
        assert!(!Notifier::from_env(&env("", None, None), 1).is_enabled());
        assert!(!Notifier::from_env(&env("relative/path", Some("10"), None), 1).is_enabled());
        Notifier::disabled().send("READY=1"); // a no-op, not a panic
    }

    #[test]
    fn watchdog_is_half_the_timeout_and_only_for_the_named_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let path = path.to_str().unwrap();
        let interval =
            |usec, pid| Notifier::from_env(&env(path, usec, pid), 42).watchdog_interval();
        assert_eq!(
            interval(Some("30000000"), None),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval(Some("30000000"), Some("42")),
            Some(Duration::from_secs(15))
        );
        assert_eq!(interval(Some("30000000"), Some("43")), None);
        assert_eq!(interval(Some("0"), None), None);
        assert_eq!(interval(Some("soon"), None), None);
        assert_eq!(interval(None, None), None);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status("a\nb"), "STATUS=a b");
    }
}
