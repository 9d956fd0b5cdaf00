//! Named fault points at the commit boundaries of every job kind, for the crash tests
//! (`tests/integration/test_fault_points.py`).
//!
//! A point is written `fault_point!("connect-after-partition-put")` at the place where a run
//! could be killed between two commits. In a normal build the macro expands to nothing; built
//! with the `failpoints` feature (`make failpoints`, the `cxlake-failpoints` binary), each point
//! is a fail point of the `fail` crate, armed from the environment (`FAILPOINTS=name=panic`,
//! `name=sleep(2000)`, …). An armed point says so on stderr when it is reached, and in that build
//! a panic kills the process with SIGKILL, which is how ECS (or the OOM killer) ends a task:
//! no unwinding, no destructors, no buffered output flushed, no lock released.
//!
//! [`POINTS`] is the one list of points: the tests crash at each of them, and a unit test checks
//! that the list and the `fault_point!` calls in the source are the same names.

/// One fault point: the job kind whose run reaches it, its name, and the boundary it marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPoint {
    /// `connect`, `rollup`, `export` or `pushback`.
    pub kind: &'static str,
    /// The name `FAILPOINTS` arms.
    pub name: &'static str,
    /// What has been committed when the point is reached.
    pub after: &'static str,
}

const fn point(kind: &'static str, name: &'static str, after: &'static str) -> FaultPoint {
    FaultPoint { kind, name, after }
}

/// Every fault point, in the order a run reaches them.
pub const POINTS: &[FaultPoint] = &[
    point(
        "connect",
        "connect-after-partition-put",
        "a partition file was replaced (others may still be in flight)",
    ),
    point(
        "connect",
        "connect-after-reject",
        "a rejected file's copy and reason were written under _etl/rejects/",
    ),
    point(
        "connect",
        "connect-after-table-meta",
        "the table's added columns were saved",
    ),
    point(
        "connect",
        "connect-after-coverage-put",
        "a day's coverage file was written (others may still be in flight)",
    ),
    point(
        "connect",
        "connect-before-state",
        "data, rejects, table metadata and the catalog are committed; the state is not",
    ),
    point(
        "connect",
        "connect-after-state",
        "the state (seen files, watermark) was saved",
    ),
    point(
        "rollup",
        "rollup-after-grain-put",
        "one grain's partition of a day was replaced (the day's other grain may not be)",
    ),
    point(
        "rollup",
        "rollup-before-state",
        "every day's partitions and the catalog are committed; the watermark is not",
    ),
    point("rollup", "rollup-after-state", "the watermark was saved"),
    point(
        "export",
        "export-after-plan",
        "the object's plan of windows was checkpointed in its state",
    ),
    point(
        "export",
        "export-after-replan",
        "a window Bulk failed on was halved (or sent to REST) and the new plan checkpointed",
    ),
    point(
        "export",
        "export-after-history-file",
        "a window's history file was written; its checkpoint was not",
    ),
    point(
        "export",
        "export-after-window-checkpoint",
        "a window's checkpoint was saved (between windows)",
    ),
    point(
        "export",
        "export-after-deletes-file",
        "the deletions (tombstones) file was written",
    ),
    point(
        "export",
        "export-after-latest-file",
        "the _latest file was replaced",
    ),
    point(
        "export",
        "export-after-table-meta",
        "the table's columns were saved",
    ),
    point(
        "export",
        "export-before-watermark",
        "history, _latest, metadata and Glue are committed; the watermark is not",
    ),
    point(
        "export",
        "export-after-watermark",
        "the watermark was saved and the plan cleared",
    ),
    point(
        "pushback",
        "pushback-after-collections-batch",
        "an sObject Collections upsert call (up to 200 records) was answered",
    ),
    point(
        "pushback",
        "pushback-after-bulk-job",
        "a Bulk API 2.0 ingest job finished and its results were read",
    ),
    point(
        "pushback",
        "pushback-before-digests",
        "every record was sent and rejects written; no digest was saved",
    ),
    point(
        "pushback",
        "pushback-after-day-digests",
        "one day's record digests were saved (other days' may not be)",
    ),
    point(
        "pushback",
        "pushback-after-state",
        "the watermark and pending days were saved",
    ),
];

/// Marks a commit boundary in an async function: a no-op unless built with the `failpoints`
/// feature (see [`crate::faults`]). The name must be in [`POINTS`].
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::faults::armed::reach($name).await;
    };
}

/// The points as compiled in, armed through the `fail` crate.
#[cfg(feature = "failpoints")]
pub mod armed {
    /// Evaluates point `name` when it is armed: reports on stderr that it was reached, then does
    /// what `FAILPOINTS` says (`panic` kills the process, see [`crash_on_panic`]). The action runs
    /// on the blocking pool, so a `sleep` holds up this task only, as slow I/O would, and the
    /// runtime goes on (a stop signal is seen while the point sleeps).
    pub async fn reach(name: &'static str) {
        debug_assert!(
            super::POINTS.iter().any(|p| p.name == name),
            "fault point {name} is not in faults::POINTS"
        );
        if !fail::list().iter().any(|(armed, _)| armed == name) {
            return;
        }
        eprintln!("fault point reached: {name}");
        tokio::task::spawn_blocking(move || fail::fail_point!(name))
            .await
            .expect("a fault point's action returns or ends the process");
    }

    /// Makes any panic end the process with SIGKILL, the way a stopped or killed task ends: the
    /// `panic` action of a fail point then models a kill at that point, whichever thread or
    /// task reaches it (a tokio task's panic would otherwise be caught and turned into an error).
    pub fn crash_on_panic() {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("fault point crash: {info}; killing the process (SIGKILL)");
            // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            std::process::abort();
        }));
    }

    /// Arms the points named in `FAILPOINTS` for the process's lifetime (the returned scenario
    /// disarms them when dropped).
    pub fn setup() -> fail::FailScenario<'static> {
        crash_on_panic();
        fail::FailScenario::setup()
    }
}

/// The listing `cxlake fault-points` prints: `kind name  after` per line.
pub fn listing() -> String {
    POINTS
        .iter()
        .map(|p| format!("{}\t{}\t{}\n", p.kind, p.name, p.after))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every `fault_point!("…")` in the source, read from the files (so a point added in code
    /// without a registry entry, or left in the registry after its code went, fails here).
    fn points_in_source() -> BTreeSet<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = BTreeSet::new();
        for entry in walkdir::WalkDir::new(root) {
            let entry = entry.expect("the source tree is readable");
            // This module's docs show the macro; the calls are elsewhere.
            if entry.path().extension().is_none_or(|e| e != "rs")
                || entry.path().ends_with("faults.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("a source file is text");
            let marker = concat!("fault_point", "!(\"");
            for piece in text.split(marker).skip(1) {
                let name = piece.split('"').next().expect("a quoted name");
                found.insert(name.to_string());
            }
        }
        found
    }

    #[test]
    fn the_registry_names_every_point_in_the_source_once() {
        let registry: BTreeSet<String> = POINTS.iter().map(|p| p.name.to_string()).collect();
        assert_eq!(registry.len(), POINTS.len(), "a name is listed twice");
        assert_eq!(points_in_source(), registry);
        for p in POINTS {
            assert!(
                ["connect", "rollup", "export", "pushback"].contains(&p.kind),
                "{}: unknown kind {}",
                p.name,
                p.kind
            );
            assert!(
                p.name.starts_with(p.kind),
                "{} is not named after its kind",
                p.name
            );
        }
    }
}
