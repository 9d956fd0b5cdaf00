//! Being told to stop: SIGTERM (ECS stopping a task, AWS Batch terminating a job) or SIGINT
//! (Ctrl-C). The run abandons the unit in flight, records itself as stopped, releases its lock
//! and exits [`Exit::Stopped`](super::Exit::Stopped) within [`STOP_DEADLINE`].
//!
//! Abandoning is safe anywhere because every commit of every kind is ordered so that a run killed
//! between any two of them loses nothing and the next run converges (the fault-point tests crash
//! at each boundary); a write in flight either completes whole or is not visible. So a stop does
//! not wait for the unit to finish: an export's Bulk job or a day of a backfill can take far
//! longer than ECS's 30 s between SIGTERM and SIGKILL.

use std::time::Duration;

use tokio::sync::watch;

/// How long a stop may take from the signal to the process's exit: recording the run and
/// releasing the lock take a few requests (well under a second normally, a few seconds when S3
/// retries). Past it the process exits anyway, leaving the lock to expire after `--lock-ttl`.
/// ECS waits 30 s (its default `stopTimeout`) before SIGKILL.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The signal that asked the process to stop, once one has.
#[derive(Debug, Clone)]
pub struct Stop {
    signal: watch::Receiver<Option<&'static str>>,
}

impl Stop {
    /// A stop that never comes (library callers and tests that send no signal).
    pub fn never() -> Self {
        // Without a sender no signal can come; `requested` then waits for ever.
        let (_, signal) = watch::channel(None);
        Stop { signal }
    }

    /// Listens for SIGTERM and SIGINT from now on (must be called inside the tokio runtime).
    /// From the first signal, a watchdog thread ends the process with the stopped exit code
    /// after [`STOP_DEADLINE`], whatever the runtime is doing.
    pub fn listen() -> std::io::Result<Self> {
        let (sender, signal) = watch::channel(None);
        let mut terminate = signals::terminate()?;
        let mut interrupt = signals::interrupt()?;
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::warn!(signal = name, deadline_seconds = STOP_DEADLINE.as_secs(), "stop requested: abandoning the work in flight, recording the run and releasing the lock");
            std::thread::spawn(|| {
                std::thread::sleep(STOP_DEADLINE);
                eprintln!(
                    "error: stopping took longer than {} s; exiting without releasing the job lock (it expires after --lock-ttl)",
                    STOP_DEADLINE.as_secs()
                );
                std::process::exit(i32::from(super::Exit::Stopped.code()));
            });
            // Every receiver keeps the value, also after this task (and the sender) ends.
            let _ = sender.send(Some(name));
        });
        Ok(Stop { signal })
    }

    /// The signal received so far, if any.
    pub fn received(&self) -> Option<&'static str> {
        *self.signal.borrow()
    }

    /// Waits for a signal; returns its name.
    pub async fn requested(&self) -> &'static str {
        let mut signal = self.signal.clone();
        loop {
            if let Some(name) = *signal.borrow_and_update() {
                return name;
            }
            if signal.changed().await.is_err() {
                if let Some(name) = *signal.borrow() {
                    return name;
                }
                // No sender any more: no signal will come.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(unix)]
mod signals {
    use tokio::signal::unix::{signal, Signal, SignalKind};

    pub(super) fn terminate() -> std::io::Result<Signal> {
        signal(SignalKind::terminate())
    }

    pub(super) fn interrupt() -> std::io::Result<Signal> {
        signal(SignalKind::interrupt())
    }
}

#[cfg(not(unix))]
mod signals {
    /// Ctrl-C, the one stop signal outside Unix (standing in for both).
    pub(super) struct CtrlC;

    impl CtrlC {
        pub(super) async fn recv(&mut self) -> Option<()> {
            tokio::signal::ctrl_c().await.ok()
        }
    }

    pub(super) fn terminate() -> std::io::Result<CtrlC> {
        Ok(CtrlC)
    }

    pub(super) fn interrupt() -> std::io::Result<CtrlC> {
        Ok(CtrlC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_that_never_comes_does_not_end_a_wait() {
        let stop = Stop::never();
        assert_eq!(stop.received(), None);
        let waited = tokio::time::timeout(Duration::from_millis(50), stop.requested()).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn a_sent_signal_is_seen_by_every_clone() {
        let (sender, signal) = watch::channel(None);
        let stop = Stop { signal };
        let clone = stop.clone();
        sender.send(Some("SIGTERM")).expect("a receiver");
        assert_eq!(clone.requested().await, "SIGTERM");
        assert_eq!(stop.received(), Some("SIGTERM"));
    }
}
