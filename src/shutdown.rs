//! Two-stage shutdown: `stop` means claim nothing more and let running tasks finish;
//! `abort` means kill what is still running. `stop` is a child of `abort`, so an abort
//! also stops. The first SIGTERM/SIGINT cancels `stop`, a second one `abort`.

use tokio_util::sync::CancellationToken;

/// The pair of tokens every long-lived service watches.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Claim nothing more; drain.
    pub stop: CancellationToken,
    /// Kill running tasks now.
    pub abort: CancellationToken,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A fresh pair.
    pub fn new() -> Self {
        let abort = CancellationToken::new();
        Shutdown {
            stop: abort.child_token(),
            abort,
        }
    }

    /// Maps SIGTERM/SIGINT onto the tokens until `abort` fires.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn listen_for_signals(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = self.clone();
        Ok(tokio::spawn(tracing::Instrument::instrument(
            async move {
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                        () = shutdown.abort.cancelled() => return,
                    }
                    if shutdown.stop.is_cancelled() {
                        tracing::warn!("Second signal received; killing running tasks");
                        shutdown.abort.cancel();
                        return;
                    }
                    tracing::info!("Shutdown requested, waiting for tasks...");
                    shutdown.stop.cancel();
                }
            },
            tracing::Span::current(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_implies_stop_but_not_the_reverse() {
        let shutdown = Shutdown::new();
        shutdown.stop.cancel();
        assert!(!shutdown.abort.is_cancelled());
        let shutdown = Shutdown::new();
        shutdown.abort.cancel();
        assert!(shutdown.stop.is_cancelled());
    }
}
