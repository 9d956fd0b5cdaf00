//! Each job's newest run and newest successful run, kept as two small objects beside the run
//! manifests: `_etl/status/<job>/last-run.json` and `_etl/status/<job>/last-success.json`.
//! `cxlake status` reads these two (not a year of manifests) to say how a job is doing; every
//! run that records a manifest rewrites them, so they are never older than the manifests.
//!
//! They hold the manifest's figures without its per-unit lists (outputs, reconciliation), plus
//! the rows the reconciliation found lost and when the run finished. A field the manifest gains
//! later (e.g. `missing_intervals`) is carried over as it is.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::reconcile::{Reconciliation, Status};
use crate::lake::{Location, StoreError};

/// Folder of the pointers, one subfolder per job.
pub const STATUS_PREFIX: &str = "_etl/status/";

/// The key of job `job`'s newest run.
pub fn last_run_key(job: &str) -> String {
    format!("{STATUS_PREFIX}{job}/last-run.json")
}

/// The key of job `job`'s newest successful run.
pub fn last_success_key(job: &str) -> String {
    format!("{STATUS_PREFIX}{job}/last-success.json")
}

/// Whether a run that exited with `exit_code` did its work: everything landed (0), everything
/// but rejected inputs landed (3), or a Salesforce export committed what it could before the
/// API budget (5). Failures (1) and bad usage (2) did not.
pub fn is_success(exit_code: u8) -> bool {
    matches!(exit_code, 0 | 3 | 5)
}

/// Rows a unit lost: what the run read or the source counted for it, beyond what the file it
/// wrote holds. Zero unless the unit's status is `lost`.
pub fn lost_rows(row: &Reconciliation) -> u64 {
    if row.status != Status::Lost {
        return 0;
    }
    let expected = [
        Some(row.keys_read.unwrap_or(row.rows_read)),
        row.announced_records,
        row.processed_records,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    expected.saturating_sub(row.rows_written.unwrap_or(0))
}

/// The pointer document: `manifest` without its per-unit lists, with `lost_rows` and
/// `finished_at`.
pub fn brief(
    manifest: &serde_json::Value,
    reconciliation: &[Reconciliation],
    finished: DateTime<Utc>,
) -> serde_json::Value {
    let mut brief = manifest.clone();
    if let Some(fields) = brief.as_object_mut() {
        fields.remove("outputs");
        fields.remove("reconciliation");
        fields.insert(
            "lost_rows".into(),
            reconciliation.iter().map(lost_rows).sum::<u64>().into(),
        );
        fields.insert("finished_at".into(), serde_json::json!(finished));
    }
    brief
}

/// Writes job `job`'s pointers for a run that exited with `exit_code`.
pub async fn write(
    lake: &Location,
    job: &str,
    exit_code: u8,
    brief: &serde_json::Value,
) -> Result<(), StoreError> {
    let body =
        bytes::Bytes::from(serde_json::to_vec_pretty(brief).expect("a JSON value serializes"));
    lake.put(&last_run_key(job), body.clone()).await?;
    if is_success(exit_code) {
        lake.put(&last_success_key(job), body).await?;
    }
    Ok(())
}

/// A run as `cxlake status` reads it back. Every figure is optional, so pointers written by an
/// older or newer cxlake still read.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
pub struct RunBrief {
    /// `<started>-<job>-<pid>`.
    pub run_id: String,
    /// Job name.
    pub job: String,
    /// Job kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished (`started_at` + `seconds` for pointers without it).
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Wall time.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// How it ended.
    pub exit_code: u8,
    /// Its error, when it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Rows or records processed.
    #[serde(default)]
    pub rows: Option<u64>,
    /// Rejected inputs or records.
    #[serde(default)]
    pub rejects: Option<u64>,
    /// Rows the reconciliation found lost.
    #[serde(default)]
    pub lost_rows: Option<u64>,
    /// Connect intervals expected but not landed (recorded by cxlake versions that count them).
    #[serde(default)]
    pub missing_intervals: Option<u64>,
    /// Salesforce API calls of the run.
    #[serde(default)]
    pub salesforce_api_calls: Option<u64>,
    /// The org's daily API usage as last seen by the run.
    #[serde(default)]
    pub salesforce_api_usage: Option<ApiUsage>,
}

/// `Sforce-Limit-Info: api-usage=USED/MAX` as a run last saw it.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct ApiUsage {
    /// Requests the org used today (every integration).
    pub used: u64,
    /// The org's daily allowance.
    pub max: u64,
}

impl RunBrief {
    /// When the run ended.
    pub fn finished(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or_else(|| {
            self.started_at
                + chrono::Duration::milliseconds((self.seconds.unwrap_or(0.0) * 1000.0) as i64)
        })
    }
}

/// Errors reading a pointer.
#[derive(Debug, thiserror::Error)]
pub enum LastRunError {
    /// The lake refused the read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object is not a run brief.
    #[error("{url}: not a run record: {source}")]
    Corrupt {
        /// The pointer.
        url: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// Reads one pointer (`None` when the job has none).
pub async fn read(lake: &Location, key: &str) -> Result<Option<RunBrief>, LastRunError> {
    let Some(bytes) = lake.get(key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| LastRunError::Corrupt {
            url: lake.url_of(key),
            source,
        })
}

/// The jobs that have a pointer in `lake`, sorted.
pub async fn jobs(lake: &Location) -> Result<Vec<String>, StoreError> {
    let mut jobs: Vec<String> = lake
        .list(STATUS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|listed| {
            let rest = listed.relative.strip_prefix(STATUS_PREFIX)?;
            let (job, file) = rest.split_once('/')?;
            (file == "last-run.json").then(|| job.to_string())
        })
        .collect();
    jobs.dedup();
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::reconcile::PartitionCounts;

    fn partition(keys_read: u64, rows_written: Option<u64>) -> Reconciliation {
        PartitionCounts {
            table: "connect_queue_interval".into(),
            dt: "2024-03-10".into(),
            rows_read: keys_read + 2,
            keys_read,
            rows_written,
            ..PartitionCounts::default()
        }
        .reconcile()
    }

    #[test]
    fn lost_rows_count_keys_missing_from_the_file() {
        assert_eq!(lost_rows(&partition(10, Some(10))), 0);
        assert_eq!(lost_rows(&partition(10, Some(7))), 3);
        assert_eq!(lost_rows(&partition(10, None)), 10);
    }

    #[test]
    fn a_brief_drops_the_lists_and_reads_back() {
        let manifest = serde_json::json!({
            "run_id": "20240310T101500000Z-q-1", "job": "q", "kind": "connect-intervals",
            "started_at": "2024-03-10T10:15:00Z", "seconds": 1.5, "exit_code": 3, "error": null,
            "rows": 80, "rejects": 1, "outputs": ["a", "b"], "reconciliation": [],
            "missing_intervals": 4,
        });
        let finished = DateTime::parse_from_rfc3339("2024-03-10T10:15:02Z")
            .unwrap()
            .with_timezone(&Utc);
        let doc = brief(&manifest, &[partition(10, Some(7))], finished);
        assert!(doc.get("outputs").is_none() && doc.get("reconciliation").is_none());
        let read: RunBrief = serde_json::from_value(doc).unwrap();
        assert_eq!(read.lost_rows, Some(3));
        assert_eq!(read.missing_intervals, Some(4));
        assert_eq!(read.finished(), finished);
        assert_eq!((read.exit_code, read.rejects), (3, Some(1)));
    }

    #[test]
    fn failures_are_not_successes() {
        assert!(is_success(0) && is_success(3) && is_success(5));
        assert!(!is_success(1) && !is_success(2));
    }
}
