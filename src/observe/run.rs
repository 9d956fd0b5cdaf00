//! What a run did, recorded once and emitted twice: as its manifest in the lake
//! (`_etl/runs/<run-id>.json`) and, off a terminal, as one CloudWatch Embedded Metric Format line
//! on stdout (the awslogs driver turns it into metrics without an agent). Both come from the same
//! [`RunRecord`], so the manifest and the metrics never disagree.

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::lake::Location;
use crate::window::Window;

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
    /// Objects written (partition keys, history files, target object).
    pub outputs: Vec<String>,
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
            "outputs": m.outputs,
        })
    }

    /// The Embedded Metric Format document (namespace `cxlake`, dimension `Job`).
    pub fn emf(&self, now: DateTime<Utc>) -> serde_json::Value {
        let m = &self.metrics;
        json!({
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
                        { "Name": "Failed", "Unit": "Count" }
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
        })
    }

    /// Writes the manifest to `lake` and, when stdout is not a terminal (or `CXLAKE_EMF=1`),
    /// prints the EMF line. Neither can fail the run: a problem is logged.
    pub async fn report(&self, lake: &Location) {
        let key = format!("_etl/runs/{}.json", self.run_id());
        let body = serde_json::to_vec_pretty(&self.manifest()).expect("a manifest serializes");
        if let Err(e) = lake.put(&key, body.into()).await {
            tracing::warn!(job = %self.job, error = %e, "could not write the run manifest");
        }
        if !std::io::stdout().is_terminal() || std::env::var("CXLAKE_EMF").is_ok_and(|v| v == "1") {
            println!("{}", self.emf(Utc::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord<'static> {
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
            exit_code: 3,
            failed: false,
            error: None,
            metrics: RunMetrics {
                inputs: 4,
                rows: 80,
                bytes: 1000,
                rejects: 1,
                api_calls: 0,
                outputs: vec!["connect_queue_interval/dt=2023-11-14/x.parquet".into()],
            },
        }
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
    fn run_ids_sort_by_start_time() {
        let mut later = record();
        later.started += chrono::Duration::seconds(1);
        assert!(record().run_id() < later.run_id());
    }
}
