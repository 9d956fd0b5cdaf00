//! salesforce-export through the runner: Salesforce objects → history and latest tables.

use std::fmt;

use super::{Exit, JobError, JobRun, RunOptions, Summary};
use crate::export::{ExportError, ExportJob, ExportReport};
use crate::job::{Job, SalesforceExport};
use crate::observe::progress::Progress;
use crate::observe::run::RunMetrics;
use crate::window::Window;

/// A salesforce-export job opened for a run or a dry run.
pub(super) struct ExportRun<'a> {
    job: &'a Job,
    spec: &'a SalesforceExport,
    export: ExportJob<'a>,
}

/// An export error of job `job`: a bad window is bad usage, anything else a failure.
fn export_failed(job: &Job) -> impl FnOnce(ExportError) -> JobError + '_ {
    move |e| {
        let exit = match e {
            ExportError::Usage(_) => Exit::Usage,
            _ => Exit::Failure,
        };
        JobError::with_exit(exit, format!("job {}", job.name), e)
    }
}

impl<'a> ExportRun<'a> {
    pub(super) async fn open(
        job: &'a Job,
        spec: &'a SalesforceExport,
        options: &RunOptions,
    ) -> Result<Self, JobError> {
        let export = ExportJob::open(job, spec, options.dry_run, options.shard)
            .await
            .map_err(super::failed(job, ""))?;
        Ok(ExportRun { job, spec, export })
    }
}

impl JobRun for ExportRun<'_> {
    /// The window: an export plans and runs per object.
    type Plan = Window;
    type Report = ExportSummary;
    const UNIT: &'static str = "records";

    async fn plan(&self, window: Window) -> Result<Window, JobError> {
        Ok(window)
    }

    async fn dry_run(&self, window: &Window) -> Result<String, JobError> {
        let lines = self
            .export
            .plan(window)
            .await
            .map_err(export_failed(self.job))?;
        let mut text = format!(
            "plan for {} ({} objects, {:?} mode):\n",
            self.job.name,
            self.export.objects().len(),
            self.spec.export.mode
        );
        for line in lines {
            text.push_str(&format!("  {line}\n"));
        }
        text.push_str("dry run: nothing written\n");
        Ok(text)
    }

    async fn run(&self, window: Window, progress: &Progress) -> Result<ExportSummary, JobError> {
        let report = self
            .export
            .run(&window, progress)
            .await
            .map_err(export_failed(self.job))?;
        Ok(ExportSummary {
            job: self.job.name.clone(),
            report,
        })
    }
}

/// A finished salesforce-export run.
pub(super) struct ExportSummary {
    job: String,
    report: ExportReport,
}

impl ExportSummary {
    fn rows(&self) -> u64 {
        self.report.objects.iter().map(|o| o.rows).sum()
    }
}

impl Summary for ExportSummary {
    fn log(&self) {
        let report = &self.report;
        tracing::info!(
            job = %self.job,
            objects = report.objects.len(),
            failed = report.failed.len(),
            rejected = report.rejected.len(),
            rows = self.rows(),
            seconds = report.seconds,
            salesforce_token_calls = report.calls.0,
            salesforce_api_calls = report.calls.1,
            salesforce_retries = report.calls.2,
            lake_get = report.lake_requests.0,
            lake_put = report.lake_requests.1,
            "run finished"
        );
    }

    fn problems(&self) -> Vec<String> {
        let report = &self.report;
        let rejected = report
            .rejected
            .iter()
            .map(|(object, error)| format!("rejected: {}: {object}: {error}", self.job));
        let failed = report
            .failed
            .iter()
            .map(|(object, error)| format!("error: {}: {object}: {error}", self.job));
        let stopped = report.stopped.iter().map(|(object, error)| {
            format!(
                "stopped: {}: {object}: {error} (finished windows are kept; the next run resumes)",
                self.job
            )
        });
        rejected.chain(failed).chain(stopped).collect()
    }

    fn exit(&self) -> Exit {
        if !self.report.failed.is_empty() {
            Exit::Failure
        } else if !self.report.rejected.is_empty() {
            Exit::Partial
        } else if !self.report.stopped.is_empty() {
            Exit::Budget
        } else {
            Exit::Ok
        }
    }

    fn metrics(&self) -> RunMetrics {
        let report = &self.report;
        RunMetrics {
            inputs: (report.objects.len()
                + report.failed.len()
                + report.rejected.len()
                + report.stopped.len()) as u64,
            rows: self.rows(),
            bytes: report.objects.iter().map(|o| o.history_bytes).sum(),
            rejects: (report.failed.len() + report.rejected.len()) as u64,
            api_calls: report.calls.1,
            outputs: report
                .objects
                .iter()
                .flat_map(|o| o.history_keys.iter().cloned())
                .collect(),
            reconciliation: report.reconciliation(),
            api_usage: report
                .api_usage
                .map(|(used, max)| crate::observe::last_run::ApiUsage { used, max }),
            warnings: Vec::new(),
            missing_intervals: None,
        }
    }
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        let objects: Vec<String> = report
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{} {} rows ({} deleted) via {}{}{}{}{}",
                    o.table,
                    o.rows,
                    o.deleted,
                    o.api.name(),
                    match o.route.strip_prefix("rest: ") {
                        Some(reason) => format!(" (Bulk refuses the object: {reason})"),
                        None => String::new(),
                    },
                    if o.slices > 1 {
                        format!(" in {} windows", o.slices)
                    } else {
                        String::new()
                    },
                    o.reconciled
                        .map(|n| format!(", Id reconciliation: {n} deleted beyond the recycle bin"))
                        .unwrap_or_default(),
                    o.latest_rows
                        .map(|n| format!(", latest {n}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        writeln!(
            f,
            "{}: {} objects{}, {} rows in {:.2}s; {}",
            self.job,
            report.objects.len(),
            if report.stopped.is_empty() {
                String::new()
            } else {
                format!(" ({} stopped at the API budget)", report.stopped.len())
            },
            self.rows(),
            report.seconds,
            if objects.is_empty() {
                "-".to_string()
            } else {
                objects.join("; ")
            }
        )?;
        writeln!(
            f,
            "requests: salesforce {} token, {} API ({} retries, {} re-logins); lake {} GET, {} PUT",
            report.calls.0,
            report.calls.1,
            report.calls.2,
            report.calls.3,
            report.lake_requests.0,
            report.lake_requests.1
        )
    }
}
