//! Progress bars for long runs on a terminal (a backfill from a laptop). Off a terminal there are
//! none: the JSON logs and the run summary carry the same figures.
//!
//! Bars live in one [`MultiProgress`]; on a terminal the log writer suspends them while it
//! prints, so log lines and bars never garble each other.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// How every job kind reports progress: a bar counting `unit`s done of the plan, with a message
/// (rows so far), rate and ETA, on a terminal; nothing off a terminal (the JSON logs and the run
/// summary carry the same figures). Cloning gives another handle to the same bar.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar counting `unit`s when stderr is a terminal, else [`Progress::hidden`].
    pub fn new(unit: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let template = format!(
            "{{spinner}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed_precise}}] {{per_sec}} ETA {{eta}}"
        );
        let style = ProgressStyle::with_template(&template).expect("the template is valid");
        Progress(Some(bars().add(ProgressBar::new(0).with_style(style))))
    }

    /// No bar (tests, dry runs, logs off a terminal).
    pub fn hidden() -> Self {
        Progress(None)
    }

    /// Restarts the count at 0 of `total`, with `message` (e.g. the object counted).
    pub fn restart(&self, total: u64, message: impl Into<String>) {
        if let Some(bar) = &self.0 {
            bar.reset();
            bar.set_length(total);
            bar.set_message(message.into());
        }
    }

    /// Whether there is a bar (callers skip work that only feeds it).
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    /// Sets the plan's total without restarting.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }

    /// Counts `n` more units done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Replaces the message (e.g. rows so far).
    pub fn message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.into());
        }
    }

    /// Removes the bar when the work is done.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Stderr for log lines on a terminal: each write happens with the bars hidden.
pub(crate) struct SuspendingStderr;

impl Write for SuspendingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
