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

/// A bar counting `unit`s done of the plan, with a message (rows so far), rate and ETA; `None`
/// when stderr is not a terminal.
pub fn bar(unit: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let template = format!(
        "{{spinner}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed_precise}}] {{per_sec}} ETA {{eta}}"
    );
    let style = ProgressStyle::with_template(&template).expect("the template is valid");
    Some(bars().add(ProgressBar::new(0).with_style(style)))
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
