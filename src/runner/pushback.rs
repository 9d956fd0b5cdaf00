//! salesforce-pushback through the runner: interval partitions → the CTI adapter's objects.

use std::fmt;

use super::{failed, DayPlan, Exit, JobError, JobRun, RunOptions, Summary};
use crate::job::{Job, SalesforcePushback};
use crate::lake::partitions::DayFile;
use crate::observe::progress::Progress;
use crate::observe::run::RunMetrics;
use crate::pushback::{PushbackError, PushbackJob, PushbackReport, SkippedColumn};
use crate::window::Window;

/// A salesforce-pushback job opened for a run or a dry run.
pub(super) struct PushbackRun<'a> {
    job: &'a Job,
    pushback: PushbackJob<'a>,
}

impl<'a> PushbackRun<'a> {
    pub(super) async fn open(
        job: &'a Job,
        spec: &'a SalesforcePushback,
        options: &RunOptions,
    ) -> Result<Self, JobError> {
        let pushback = PushbackJob::open(
            job,
            &spec.pushback,
            &spec.salesforce,
            options.dry_run,
            options.full,
        )
        .await
        .map_err(failed(job, ""))?;
        Ok(PushbackRun { job, pushback })
    }
}

impl JobRun for PushbackRun<'_> {
    type Plan = Vec<DayFile>;
    type Report = PushbackSummary;
    const UNIT: &'static str = "days read";

    async fn plan(&self, window: Window) -> Result<Vec<DayFile>, JobError> {
        self.pushback
            .plan(&window)
            .await
            .map_err(failed(self.job, "planning"))
    }

    /// The plan, then what the org says of a sample of the keys: would update or create.
    async fn dry_run(&self, plan: &Vec<DayFile>) -> Result<String, JobError> {
        let object = self.pushback.object();
        let mut text = DayPlan {
            job: &self.job.name,
            plan,
            target: &object,
        }
        .to_string();
        let lookup = self
            .pushback
            .lookup(plan)
            .await
            .map_err(failed(self.job, "dry run against the org"))?;
        let mut line = |l: String| {
            text.push_str(&l);
            text.push('\n');
        };
        if let Some(region) = region_line(lookup.region.as_deref()) {
            line(region);
        }
        line(format!(
            "would send {} records ({} unchanged since the last push)",
            lookup.records, lookup.unchanged
        ));
        line(format!(
            "looked up {} of them in {}: would update {}, would create {}",
            lookup.sampled,
            lookup.object,
            lookup.existing,
            lookup.sampled - lookup.existing
        ));
        for (key, exists) in &lookup.examples {
            let what = if *exists { "update" } else { "create" };
            line(format!("  {what} {key}"));
        }
        skipped_lines(&lookup.skipped)
            .into_iter()
            .for_each(&mut line);
        line(format!(
            "requests: salesforce {} token, {} API",
            lookup.calls.0, lookup.calls.1
        ));
        Ok(text)
    }

    async fn run(
        &self,
        plan: Vec<DayFile>,
        progress: &Progress,
    ) -> Result<PushbackSummary, JobError> {
        let report = self.pushback.run(&plan, progress).await.map_err(|e| {
            // A spent API allowance is not a failure of the data: the next run sends it again.
            if matches!(&e, PushbackError::Salesforce(sf) if sf.is_budget_stop()) {
                JobError::with_exit(Exit::Budget, format!("job {}", self.job.name), e)
            } else {
                failed(self.job, "")(e)
            }
        })?;
        Ok(PushbackSummary {
            job: self.job.name.clone(),
            report,
        })
    }
}

/// The region of a push-back's keys and `Region__c`, when there is one.
fn region_line(region: Option<&str>) -> Option<String> {
    region.map(|region| {
        format!("  region: {region} (in Region__c and at the end of Lambda-style keys)")
    })
}

/// Every report column a push-back does not write, with the reason.
fn skipped_lines(skipped: &[SkippedColumn]) -> Vec<String> {
    if skipped.is_empty() {
        return Vec::new();
    }
    std::iter::once("  columns not pushed:".to_string())
        .chain(skipped.iter().map(|column| format!("    {column}")))
        .collect()
}

/// A finished salesforce-pushback run.
pub(super) struct PushbackSummary {
    job: String,
    report: PushbackReport,
}

impl Summary for PushbackSummary {
    fn log(&self) {
        let report = &self.report;
        tracing::info!(
            job = %self.job,
            object = %report.object,
            days = report.days,
            records = report.records,
            unchanged = report.unchanged,
            calls_saved = report.calls_saved,
            created = report.created,
            updated = report.updated,
            rejected = report.rejected,
            bulk_jobs = report.bulk_jobs,
            skipped_columns = ?report.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
            salesforce_api_calls = report.calls.1,
            seconds = report.seconds,
            "run finished"
        );
    }

    fn exit(&self) -> Exit {
        if self.report.rejected > 0 {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }

    fn metrics(&self) -> RunMetrics {
        let report = &self.report;
        RunMetrics {
            inputs: report.days as u64,
            rows: report.records as u64,
            rejects: report.rejected as u64,
            api_calls: report.calls.1,
            outputs: vec![report.object.clone()],
            reconciliation: report.reconciliation(),
            ..RunMetrics::default()
        }
    }
}

impl fmt::Display for PushbackSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        writeln!(
            f,
            "{}: {} records from {} days -> {} ({} created, {} updated, {} rejected) in {:.2}s",
            self.job,
            report.records,
            report.days,
            report.object,
            report.created,
            report.updated,
            report.rejected,
            report.seconds
        )?;
        writeln!(
            f,
            "  unchanged since the last push: {} records not sent (about {} upsert calls saved)",
            report.unchanged, report.calls_saved
        )?;
        if let Some(region) = region_line(report.region.as_deref()) {
            writeln!(f, "{region}")?;
        }
        writeln!(
            f,
            "requests: salesforce {} token, {} API ({} retries, {} re-logins; {} Bulk ingest jobs)",
            report.calls.0, report.calls.1, report.calls.2, report.calls.3, report.bulk_jobs
        )?;
        for line in skipped_lines(&report.skipped) {
            writeln!(f, "{line}")?;
        }
        if report.rejected > 0 {
            writeln!(
                f,
                "  rejected records are in _etl/rejects/{}/ with Salesforce's error; they are sent again next run",
                self.job
            )?;
        }
        Ok(())
    }
}
