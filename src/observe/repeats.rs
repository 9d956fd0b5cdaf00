//! Repeated warnings, shown once: the first warning of each kind (each `warn!` in the code) is
//! logged in full as the example, later ones of the same kind are only counted, and at the end
//! of a run [`take`] logs one line per kind that repeated, with its count. Every warning, with
//! its fields, goes into the run manifest (`warnings`: per kind, the count and the details).
//! At `--log-level debug` nothing is held back.
//!
//! Real reports have blank cells in most intervals, lists of hundreds of report files, pages
//! of retries: one line per occurrence drowns the one fact a person needs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Target of the summary lines, which are never held back themselves.
const SUMMARY_TARGET: &str = "cxlake::repeats";

/// One kind of warning a run logged, and how often.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WarningCount {
    /// The first one's message.
    pub message: String,
    /// Where in the code it comes from (`src/rollup/job.rs:353`).
    pub source: String,
    /// How many there were.
    pub count: u64,
    /// Each one's message and fields (`key=value`), the first [`MAX_DETAILS`].
    pub details: Vec<String>,
}

/// Details kept per kind of warning (the count stays exact beyond it).
pub const MAX_DETAILS: usize = 1000;

#[derive(Default)]
struct Seen {
    /// Per callsite (file and line): the first message and the count, in order of first sight.
    kinds: BTreeMap<(usize, String), WarningCount>,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);
/// Set when every event is to be shown (debug logging).
static SHOW_ALL: AtomicBool = AtomicBool::new(false);

/// The layer that counts warnings and holds back repeats (installed by [`super::init`]).
pub struct Repeats;

impl Repeats {
    /// A layer that holds back repeated warnings unless `show_all` (debug logging).
    pub fn new(show_all: bool) -> Repeats {
        SHOW_ALL.store(show_all, Ordering::Relaxed);
        Repeats
    }
}

/// An event's message and its other fields as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<String>,
}

impl Fields {
    fn line(&self) -> String {
        std::iter::once(self.message.clone())
            .chain(self.fields.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push(format!("{}={value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for Repeats {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::WARN || meta.target() == SUMMARY_TARGET {
            return true;
        }
        let source = format!(
            "{}:{}",
            meta.file().unwrap_or(meta.target()),
            meta.line().unwrap_or(0)
        );
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kinds = &mut seen.get_or_insert_with(Seen::default).kinds;
        let order = kinds.len();
        if let Some((_, kind)) = kinds.iter_mut().find(|((_, s), _)| *s == source) {
            kind.count += 1;
            if kind.details.len() < MAX_DETAILS {
                kind.details.push(fields.line());
            }
            return SHOW_ALL.load(Ordering::Relaxed);
        }
        kinds.insert(
            (order, source.clone()),
            WarningCount {
                details: vec![fields.line()],
                message: fields.message,
                source,
                count: 1,
            },
        );
        true
    }
}

/// Every kind of warning logged since the last call, in order of first sight, and starts
/// counting afresh. Kinds held back are summed up in one warning each: their message, how
/// many there were, and how to see them all.
pub fn take() -> Vec<WarningCount> {
    let seen = SEEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
        .unwrap_or_default();
    let kinds: Vec<WarningCount> = seen.kinds.into_values().collect();
    if !SHOW_ALL.load(Ordering::Relaxed) {
        for kind in kinds.iter().filter(|k| k.count > 1) {
            tracing::warn!(
                target: SUMMARY_TARGET,
                count = kind.count,
                "{} more like this (one shown above; all with --log-level debug): {}",
                kind.count - 1,
                kind.message
            );
        }
    }
    kinds
}
