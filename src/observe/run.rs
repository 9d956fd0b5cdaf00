//! What a run did, recorded once and emitted several times: as its manifest in the lake
//! (`_etl/runs/<run-id>.json`), as its rows of the `cxlake_runs` and `cxlake_reconciliation`
//! tables ([`super::run_tables`]) and, off a terminal, as one CloudWatch Embedded Metric Format
//! line on stdout (the awslogs driver turns it into metrics without an agent). All come from the
//! same [`RunRecord`], so the manifest, the tables and the metrics never disagree.

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::last_run::{self, ApiUsage};
use super::reconcile::{Reconciliation, Status};
use super::repeats::WarningCount;
use super::run_tables;
use crate::job::CatalogSettings;
use crate::lake::Location;
use crate::window::Window;

/// How a run ended, in the order of the exit codes that the README and `--help` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// 0: everything done.
    Ok,
    /// 5: a Salesforce export stopped at its API budget: nothing lost (finished objects and
    /// slices are committed), the next run resumes. Any other outcome of the run outranks it.
    Budget,
    /// 1: the run failed: nothing was committed for the failed unit, reconciliation found rows
    /// lost, or a Connect job's fill from the API could not finish (its data landed).
    Failure,
    /// 2: bad usage or job file.
    Usage,
    /// 3: done, but some inputs or records were rejected (see `_etl/rejects/`).
    Partial,
    /// 4: skipped: another run of the job holds its lock.
    Locked,
    /// 143 (128 + SIGTERM, as a shell reports a process the signal ended): told to stop
    /// (SIGTERM or SIGINT), the run abandoned its work in flight, recorded itself as stopped and
    /// released its lock; nothing half-written is visible and the next run converges. Outranks
    /// every other outcome: the jobs after it were not run.
    Stopped,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Partial => 3,
            Exit::Locked => 4,
            Exit::Budget => 5,
            Exit::Stopped => 143,
        }
    }
}

/// The figures a job kind reports for its run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunMetrics {
    /// Input units: report files (Connect), interval days (roll-up, push-back), objects (export).
    pub inputs: u64,
    /// Rows or records processed.
    pub rows: u64,
    /// Parquet bytes written.
    pub bytes: u64,
    /// Rejected inputs or records (or failed objects).
    pub rejects: u64,
    /// Salesforce API calls.
    pub api_calls: u64,
    /// Connect interval jobs: expected intervals that are overdue and that nothing accounts for
    /// (no report, no API fill); `None` for other job kinds.
    pub missing_intervals: Option<u64>,
    /// Objects written (partition keys, history files, target object).
    pub outputs: Vec<String>,
    /// Per unit written (Connect partition, Salesforce object): read, written, rejected, and
    /// whether it adds up.
    pub reconciliation: Vec<Reconciliation>,
    /// The org's daily API usage as the run last saw it (Salesforce export).
    pub api_usage: Option<ApiUsage>,
    /// Each kind of warning the run logged and how often (repeats are logged once).
    pub warnings: Vec<WarningCount>,
}

/// One finished run of one job.
#[derive(Debug, Clone)]
pub struct RunRecord<'a> {
    /// Job name.
    pub job: &'a str,
    /// Job kind (`connect-intervals`, …).
    pub kind: &'a str,
    /// The command line.
    pub command: &'a str,
    /// `--from/--to`.
    pub window: Window,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// Wall time.
    pub seconds: f64,
    /// The exit code the run maps to.
    pub exit_code: u8,
    /// Whether that code means failure.
    pub failed: bool,
    /// The error, cause chain on one line, when the run failed.
    pub error: Option<String>,
    /// What the job kind counted.
    pub metrics: RunMetrics,
}

impl RunRecord<'_> {
    /// `<started>-<job>-<pid>`: sorts by time, unique per process.
    pub fn run_id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.started.format("%Y%m%dT%H%M%S%3fZ"),
            self.job,
            std::process::id()
        )
    }

    /// The manifest document.
    pub fn manifest(&self) -> serde_json::Value {
        let m = &self.metrics;
        json!({
            "run_id": self.run_id(),
            "job": self.job,
            "kind": self.kind,
            "command": self.command,
            "window": { "from": self.window.start, "to": self.window.end },
            "started_at": self.started,
            "seconds": self.seconds,
            "exit_code": self.exit_code,
            "error": self.error,
            "inputs": m.inputs,
            "rows": m.rows,
            "bytes_written": m.bytes,
            "rejects": m.rejects,
            "salesforce_api_calls": m.api_calls,
            "salesforce_api_usage": m.api_usage,
            "missing_intervals": m.missing_intervals,
            "outputs": m.outputs,
            "rows_out": run_tables::rows_out(self),
            "reconciliation": m.reconciliation,
            "warnings": m.warnings,
        })
    }

    /// The Embedded Metric Format document (namespace `cxlake`, dimension `Job`).
    pub fn emf(&self, now: DateTime<Utc>) -> serde_json::Value {
        let m = &self.metrics;
        let mut emf = json!({
            "_aws": {
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": "cxlake",
                    "Dimensions": [["Job"]],
                    "Metrics": [
                        { "Name": "Rows", "Unit": "Count" },
                        { "Name": "Bytes", "Unit": "Bytes" },
                        { "Name": "Rejects", "Unit": "Count" },
                        { "Name": "ApiCalls", "Unit": "Count" },
                        { "Name": "DurationSeconds", "Unit": "Seconds" },
                        { "Name": "Failed", "Unit": "Count" },
                        { "Name": "BudgetStopped", "Unit": "Count" }
                    ]
                }]
            },
            "Job": self.job,
            "Kind": self.kind,
            "RunId": self.run_id(),
            "Rows": m.rows,
            "Bytes": m.bytes,
            "Rejects": m.rejects,
            "ApiCalls": m.api_calls,
            "DurationSeconds": self.seconds,
            "Failed": u8::from(self.failed),
            "BudgetStopped": u8::from(self.exit_code == Exit::Budget.code()),
        });
        // Only Connect interval jobs account for intervals: no zero series for other kinds.
        if let Some(missing) = m.missing_intervals {
            emf["MissingIntervals"] = json!(missing);
            if let Some(metrics) = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array_mut() {
                metrics.push(json!({ "Name": "MissingIntervals", "Unit": "Count" }));
            }
        }
        emf
    }

    /// A run whose reconciliation finds rows lost has failed, whatever its own code said.
    fn settle(&mut self) {
        let lost: Vec<&Reconciliation> = self
            .metrics
            .reconciliation
            .iter()
            .filter(|r| r.status == Status::Lost)
            .collect();
        if lost.is_empty() {
            return;
        }
        self.exit_code = Exit::Failure.code();
        self.failed = true;
        if self.error.is_none() {
            let units: Vec<String> = lost.iter().map(|r| unit(r)).collect();
            self.error = Some(format!(
                "reconciliation: rows lost in {} (see {})",
                units.join(", "),
                run_tables::RECONCILIATION_TABLE
            ));
        }
    }

    /// The reconciliation lines of the run summary: a count per status, then each unit that
    /// is not ok (also a warning in the log).
    fn print_reconciliation(&self) {
        let rows = &self.metrics.reconciliation;
        if rows.is_empty() {
            return;
        }
        let counts: Vec<String> = [Status::Ok, Status::Mismatch, Status::Lost]
            .iter()
            .map(|s| {
                let n = rows.iter().filter(|r| r.status == *s).count();
                format!("{n} {}", s.name())
            })
            .collect();
        println!(
            "{}: reconciliation: {} ({})",
            self.job,
            counts.join(", "),
            run_tables::RECONCILIATION_TABLE
        );
        for r in rows.iter().filter(|r| r.status != Status::Ok) {
            println!("  {} {}: {}", r.status.name(), unit(r), r.detail);
            tracing::warn!(
                job = %self.job,
                table = %r.table,
                partition = r.partition.as_deref(),
                object = r.object.as_deref(),
                status = r.status.name(),
                detail = %r.detail,
                "reconciliation {}",
                r.status.name()
            );
        }
    }

    /// Settles the exit code (rows lost fail the run), prints the reconciliation summary,
    /// writes the manifest, the job's last-run pointers ([`last_run`]) and the run's rows of the
    /// run tables to `lake` (and, with a `catalog`, keeps their Glue tables), and prints the EMF
    /// line when [`emf_enabled`]. Writing cannot fail the run: a problem is logged.
    /// Returns the run's exit code.
    pub async fn report(
        mut self,
        lake: &Location,
        catalog: Option<&CatalogSettings>,
        region: Option<&str>,
    ) -> u8 {
        self.settle();
        self.print_reconciliation();
        self.metrics.warnings = super::repeats::take();
        let key = format!("_etl/runs/{}.json", self.run_id());
        let manifest = self.manifest();
        let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        if let Err(e) = lake.put(&key, body.into()).await {
            tracing::warn!(job = %self.job, error = %e, "could not write the run manifest");
        }
        let brief = last_run::brief(&manifest, &self.metrics.reconciliation, Utc::now());
        if let Err(e) = last_run::write(lake, self.job, self.exit_code, &brief).await {
            tracing::warn!(job = %self.job, error = %e, "could not write the job's last-run record (cxlake status reads it)");
        }
        if let Err(e) = run_tables::write(lake, &self).await {
            tracing::warn!(job = %self.job, error = %crate::observe::cause_chain(&e), "could not write the run tables");
        }
        if let Some(catalog) = catalog {
            if let Err(e) = run_tables::sync_catalog(lake, catalog, region, &self).await {
                tracing::warn!(job = %self.job, error = %crate::observe::cause_chain(&e), "could not update the run tables in Glue");
            }
        }
        if emf_enabled() {
            println!("{}", self.emf(Utc::now()));
        }
        self.exit_code
    }
}

/// Whether runs print their EMF line: `CXLAKE_EMF=1` always, `CXLAKE_EMF=0` never, otherwise
/// when stdout is not a terminal (a container's log driver reads it; a person does not).
pub fn emf_enabled() -> bool {
    match std::env::var("CXLAKE_EMF").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => !std::io::stdout().is_terminal(),
    }
}

/// A unit as the summary names it: `sf_account (Account)`, `connect_queue_interval dt=…`.
fn unit(r: &Reconciliation) -> String {
    match (&r.object, &r.partition) {
        (Some(object), Some(partition)) => format!("{} {partition} ({object})", r.table),
        (Some(object), None) => format!("{} ({object})", r.table),
        (None, Some(partition)) => format!("{} {partition}", r.table),
        (None, None) => r.table.clone(),
    }
}

/// A run record for tests: one Connect job's run with `exit_code` and `metrics`.
#[cfg(test)]
pub(crate) fn sample_record(exit_code: u8, metrics: RunMetrics) -> RunRecord<'static> {
    RunRecord {
        job: "connect-queue",
        kind: "connect-intervals",
        command: "cxlake run q.toml",
        window: Window {
            start: None,
            end: None,
        },
        started: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
        seconds: 1.5,
        exit_code,
        failed: false,
        error: None,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord<'static> {
        sample_record(
            3,
            RunMetrics {
                inputs: 4,
                rows: 80,
                bytes: 1000,
                rejects: 1,
                api_calls: 0,
                missing_intervals: Some(2),
                outputs: vec!["connect_queue_interval/dt=2023-11-14/x.parquet".into()],
                reconciliation: Vec::new(),
                api_usage: None,
                warnings: Vec::new(),
            },
        )
    }

    #[test]
    fn manifest_and_metrics_carry_the_same_figures() {
        let r = record();
        let (manifest, emf) = (r.manifest(), r.emf(Utc::now()));
        assert_eq!(manifest["run_id"], emf["RunId"]);
        assert_eq!(manifest["rows"], emf["Rows"]);
        assert_eq!(manifest["rejects"], emf["Rejects"]);
        assert_eq!(manifest["bytes_written"], emf["Bytes"]);
        assert_eq!(emf["Failed"], 0);
        assert_eq!(manifest["exit_code"], 3);
    }

    #[test]
    fn every_declared_metric_has_a_value() {
        let emf = record().emf(Utc::now());
        for metric in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("a list")
        {
            let name = metric["Name"].as_str().expect("a name");
            assert!(emf[name].is_number(), "{name} has no value");
        }
    }

    #[test]
    fn rows_lost_fail_the_run() {
        let partition = |keys_read, rows_written| {
            crate::observe::reconcile::PartitionCounts {
                table: "connect_queue_interval".into(),
                dt: "2023-11-14".into(),
                rows_read: keys_read,
                keys_read,
                rows_written: Some(rows_written),
                ..Default::default()
            }
            .reconcile()
        };
        let mut fine = record();
        fine.metrics.reconciliation = vec![partition(4, 4)];
        fine.settle();
        assert_eq!((fine.exit_code, fine.failed), (3, false));

        let mut short = record();
        short.metrics.reconciliation = vec![partition(4, 4), partition(5, 4)];
        short.settle();
        assert_eq!(
            (short.exit_code, short.failed),
            (Exit::Failure.code(), true)
        );
        let error = short.error.clone().expect("an error");
        assert!(
            error.contains("rows lost in connect_queue_interval dt=2023-11-14"),
            "{error}"
        );
        assert_eq!(short.manifest()["exit_code"], 1);
    }

    #[test]
    fn run_ids_sort_by_start_time() {
        let mut later = record();
        later.started += chrono::Duration::seconds(1);
        assert!(record().run_id() < later.run_id());
    }
}
