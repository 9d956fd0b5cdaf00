//! `cxlake status`: how each job is doing, from the lake alone. Per job it reads two small
//! objects every run rewrites (`_etl/status/<job>/last-run.json` and `last-success.json`, see
//! [`crate::observe::last_run`]) and, for a Salesforce export, its objects' state (the
//! watermarks), so its cost does not grow with the number of runs the lake holds. A lake
//! written before those objects existed is read from its newest run records instead
//! ([`history`]).

mod history;
mod render;
pub mod verdict;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::export::checkpoint;
use crate::job::{default_late_after_hours, Job, JobKind};
use crate::lake::{layout, Access, Location, StoreError};
use crate::observe::last_run::{self, LastRunError, RunBrief};
use crate::state::StateError;
pub use render::table;
pub use verdict::Verdict;

/// Errors reading a job's status (the lake could not be read; not a verdict).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The lake could not be opened.
    #[error("opening the lake {url}: {source}")]
    Open {
        /// The lake.
        url: String,
        /// Why.
        source: StoreError,
    },
    /// Listing the jobs of a lake failed.
    #[error("listing the jobs recorded in {url}: {source}")]
    List {
        /// The lake.
        url: String,
        /// Why.
        source: StoreError,
    },
    /// A job's run records could not be read.
    #[error("job {job}: reading its last runs: {source}")]
    Runs {
        /// The job.
        job: String,
        /// Why.
        source: LastRunError,
    },
    /// A Salesforce export's object state could not be read.
    #[error("job {job}: reading its objects' watermarks: {source}")]
    State {
        /// The job.
        job: String,
        /// Why.
        source: StateError,
    },
}

/// A job to report on: from a job file, or found in a lake.
#[derive(Debug, Clone)]
pub struct Target {
    /// Job name.
    pub job: String,
    /// Job kind, when a job file says it (else the last run's).
    pub kind: Option<String>,
    /// The job's lake.
    pub lake_url: String,
    /// The lake's region.
    pub region: Option<String>,
    /// The job file's `late_after_hours`, when it sets one.
    pub late_after_hours: Option<u32>,
    /// A Salesforce export's objects, when a job file lists them.
    pub objects: Option<Vec<String>>,
}

impl Target {
    /// The job of a job file.
    pub fn of_job(job: &Job) -> Target {
        Target {
            job: job.name.clone(),
            kind: Some(job.kind.name().to_string()),
            lake_url: job.lake.url.clone(),
            region: job.lake.region.clone(),
            late_after_hours: Some(job.late_after_hours()),
            objects: match &job.kind {
                JobKind::SalesforceExport(spec) => {
                    Some(spec.export.objects.iter().map(|o| o.name.clone()).collect())
                }
                _ => None,
            },
        }
    }
}

/// Settings of one `cxlake status`.
#[derive(Debug, Clone, Copy)]
pub struct StatusOptions {
    /// The instant the ages are measured at (now, or `--now`).
    pub now: DateTime<Utc>,
    /// `--late-after-hours`: overrides every job's own.
    pub late_after_hours: Option<u32>,
}

/// One job's status (also its `--json` document).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    /// Job name.
    pub job: String,
    /// Job kind (`None` for a job that never ran and has no file).
    pub kind: Option<String>,
    /// Its lake.
    pub lake: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one line (empty when ok).
    pub reason: String,
    /// The newest run.
    pub last_run: Option<LastRun>,
    /// When the newest successful run finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Seconds since then.
    pub last_success_age_seconds: Option<i64>,
    /// Seconds without a success before the job is late.
    pub late_after_seconds: i64,
    /// Rows or records the last run processed.
    pub rows: Option<u64>,
    /// Inputs or records the last run rejected.
    pub rejects: Option<u64>,
    /// Rows the last run's reconciliation found lost.
    pub lost_rows: Option<u64>,
    /// Connect intervals the last run found missing (`None`: not recorded).
    pub missing_intervals: Option<u64>,
    /// A Salesforce export's oldest object watermark.
    pub watermark: Option<DateTime<Utc>>,
    /// Seconds between it and now.
    pub watermark_lag_seconds: Option<i64>,
    /// Salesforce API calls of the last run.
    pub api_calls: Option<u64>,
    /// Percent of the org's daily API allowance used, as the last run last saw it.
    pub api_budget_used_pct: Option<f64>,
}

/// The newest run, as `--json` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastRun {
    /// Its id (its manifest is `_etl/runs/<run_id>.json`).
    pub run_id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Its exit code.
    pub exit_code: u8,
    /// The exit code in words (`ok`, `failed`, `partial`, `budget stop`, …).
    pub outcome: &'static str,
    /// Its error, when it failed.
    pub error: Option<String>,
}

/// What `cxlake status` found: every job, and the worst verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The instant ages are measured at.
    pub now: DateTime<Utc>,
    /// The worst verdict (ok with no jobs).
    pub verdict: Verdict,
    /// Per job, in the order given (found in a lake: by name).
    pub jobs: Vec<JobStatus>,
}

/// Every job that has run records in the lake at `url`.
pub async fn targets_in_lake(url: &str, region: Option<&str>) -> Result<Vec<Target>, StatusError> {
    let lake = open(url, region).await?;
    let jobs = last_run::jobs(&lake)
        .await
        .map_err(|source| StatusError::List {
            url: url.to_string(),
            source,
        })?;
    Ok(jobs
        .into_iter()
        .map(|job| Target {
            job,
            kind: None,
            lake_url: url.to_string(),
            region: region.map(str::to_string),
            late_after_hours: None,
            objects: None,
        })
        .collect())
}

async fn open(url: &str, region: Option<&str>) -> Result<Location, StatusError> {
    Location::open(url, region, Access::ReadOnly)
        .await
        .map_err(|source| StatusError::Open {
            url: url.to_string(),
            source,
        })
}

/// The status of every target, each lake opened once and the jobs read at once.
pub async fn collect(targets: &[Target], options: StatusOptions) -> Result<Report, StatusError> {
    let mut lakes: BTreeMap<(String, Option<String>), Location> = BTreeMap::new();
    for target in targets {
        let key = (target.lake_url.clone(), target.region.clone());
        if let std::collections::btree_map::Entry::Vacant(slot) = lakes.entry(key) {
            slot.insert(open(&target.lake_url, target.region.as_deref()).await?);
        }
    }
    let lakes = &lakes;
    let jobs: Vec<JobStatus> = futures::stream::iter(targets)
        .map(|target| async move {
            let lake = &lakes[&(target.lake_url.clone(), target.region.clone())];
            job_status(lake, target, options).await
        })
        .buffered(8)
        .try_collect()
        .await?;
    let verdict = jobs.iter().map(|j| j.verdict).max().unwrap_or(Verdict::Ok);
    Ok(Report {
        now: options.now,
        verdict,
        jobs,
    })
}

async fn job_status(
    lake: &Location,
    target: &Target,
    options: StatusOptions,
) -> Result<JobStatus, StatusError> {
    let runs = |source| StatusError::Runs {
        job: target.job.clone(),
        source,
    };
    let (last_key, success_key) = (
        last_run::last_run_key(&target.job),
        last_run::last_success_key(&target.job),
    );
    let (mut last, mut success) = futures::try_join!(
        last_run::read(lake, &last_key),
        last_run::read(lake, &success_key),
    )
    .map_err(runs)?;
    if last.is_none() {
        // A lake from before the pointers: the history, newest first.
        (last, success) = history::scan(lake, &target.job).await.map_err(runs)?;
    }
    let kind = target
        .kind
        .clone()
        .or_else(|| last.as_ref().and_then(|r| r.kind.clone()));
    let hours = options
        .late_after_hours
        .or(target.late_after_hours)
        .unwrap_or_else(|| default_late_after_hours(kind.as_deref().unwrap_or_default()));
    let late_after = Duration::hours(i64::from(hours));
    let (verdict, reason) =
        verdict::judge(last.as_ref(), success.as_ref(), options.now, late_after);
    let watermark = if kind.as_deref() == Some("salesforce-export") {
        oldest_watermark(lake, target)
            .await
            .map_err(|source| StatusError::State {
                job: target.job.clone(),
                source,
            })?
    } else {
        None
    };
    let from_last = |f: fn(&RunBrief) -> Option<u64>| last.as_ref().and_then(f);
    Ok(JobStatus {
        job: target.job.clone(),
        kind,
        lake: lake.url().to_string(),
        verdict,
        reason,
        last_run: last.as_ref().map(|r| LastRun {
            run_id: r.run_id.clone(),
            started_at: r.started_at,
            finished_at: r.finished(),
            exit_code: r.exit_code,
            outcome: verdict::outcome(r.exit_code),
            error: r.error.clone(),
        }),
        last_success_at: success.as_ref().map(RunBrief::finished),
        last_success_age_seconds: success
            .as_ref()
            .map(|s| (options.now - s.finished()).num_seconds()),
        late_after_seconds: late_after.num_seconds(),
        rows: from_last(|r| r.rows),
        rejects: from_last(|r| r.rejects),
        lost_rows: from_last(|r| r.lost_rows),
        missing_intervals: from_last(|r| r.missing_intervals),
        watermark,
        watermark_lag_seconds: watermark.map(|w| (options.now - w).num_seconds()),
        api_calls: from_last(|r| r.salesforce_api_calls).filter(|_| {
            matches!(
                last.as_ref().and_then(|r| r.kind.as_deref()),
                Some("salesforce-export" | "salesforce-pushback")
            )
        }),
        api_budget_used_pct: last
            .as_ref()
            .and_then(|r| r.salesforce_api_usage)
            .filter(|u| u.max > 0)
            .map(|u| u.used as f64 * 100.0 / u.max as f64),
    })
}

/// The oldest watermark among a Salesforce export's objects (those of its job file, else those
/// with a state object in the lake); `None` when no object has one yet.
async fn oldest_watermark(
    lake: &Location,
    target: &Target,
) -> Result<Option<DateTime<Utc>>, StateError> {
    let objects = match &target.objects {
        Some(objects) => objects.clone(),
        None => {
            let prefix = layout::object_state_key(&target.job, "");
            let prefix = prefix.trim_end_matches(".json");
            lake.list(prefix)
                .await?
                .into_iter()
                .filter_map(|l| {
                    l.relative
                        .strip_prefix(prefix)?
                        .strip_suffix(".json")
                        .map(str::to_string)
                })
                .collect()
        }
    };
    let mut oldest: Option<DateTime<Utc>> = None;
    for object in &objects {
        let state = checkpoint::load(lake, &target.job, object).await?;
        if let Some(mark) = state.watermark {
            oldest = Some(oldest.map_or(mark, |o| o.min(mark)));
        }
    }
    Ok(oldest)
}
