//! interval-rollup through the runner: interval partitions → hourly and daily roll-up tables.

use std::fmt;

use super::{failed, DayPlan, Exit, JobError, JobRun, RunOptions, Summary};
use crate::job::{Job, RollupSpec};
use crate::lake::partitions::DayFile;
use crate::observe::progress::Progress;
use crate::observe::run::RunMetrics;
use crate::rollup::job::{table_name, RollupJob, RollupReport};
use crate::window::Window;

/// An interval-rollup job opened for a run or a dry run.
pub(super) struct RollupRun<'a> {
    job: &'a Job,
    spec: &'a RollupSpec,
    rollup: RollupJob<'a>,
    concurrency: usize,
}

impl<'a> RollupRun<'a> {
    pub(super) async fn open(
        job: &'a Job,
        spec: &'a RollupSpec,
        options: &RunOptions,
    ) -> Result<Self, JobError> {
        let rollup = RollupJob::open(job, spec.report, &spec.grains, options.dry_run)
            .await
            .map_err(failed(job, ""))?;
        Ok(RollupRun {
            job,
            spec,
            rollup,
            concurrency: options.concurrency,
        })
    }
}

impl JobRun for RollupRun<'_> {
    type Plan = Vec<DayFile>;
    type Report = RollupSummary;
    const UNIT: &'static str = "days";

    async fn plan(&self, window: Window) -> Result<Vec<DayFile>, JobError> {
        self.rollup
            .plan(&window)
            .await
            .map_err(failed(self.job, "planning"))
    }

    async fn dry_run(&self, plan: &Vec<DayFile>) -> Result<String, JobError> {
        let tables: Vec<String> = self
            .spec
            .grains
            .iter()
            .map(|g| table_name(self.spec.report, *g))
            .collect();
        Ok(DayPlan {
            job: &self.job.name,
            plan,
            target: &tables.join(", "),
        }
        .to_string())
    }

    async fn run(
        &self,
        plan: Vec<DayFile>,
        progress: &Progress,
    ) -> Result<RollupSummary, JobError> {
        let report = self
            .rollup
            .run(&plan, self.concurrency, progress)
            .await
            .map_err(failed(self.job, ""))?;
        Ok(RollupSummary {
            job: self.job.name.clone(),
            report,
        })
    }
}

/// A finished interval-rollup run.
pub(super) struct RollupSummary {
    job: String,
    report: RollupReport,
}

impl Summary for RollupSummary {
    fn log(&self) {
        let report = &self.report;
        tracing::info!(
            job = %self.job,
            days = report.days,
            rows_read = report.rows_read,
            partitions_written = report.written.len(),
            partitions_unchanged = report.unchanged,
            bytes_written = report.bytes_written,
            seconds = report.seconds,
            lake_get = report.lake_requests.0,
            lake_put = report.lake_requests.1,
            "run finished"
        );
    }

    fn exit(&self) -> Exit {
        Exit::Ok
    }

    fn metrics(&self) -> RunMetrics {
        let report = &self.report;
        RunMetrics {
            inputs: report.days as u64,
            rows: report.rows_read as u64,
            bytes: report.bytes_written as u64,
            outputs: report.written.clone(),
            reconciliation: report.reconciliation(),
            ..RunMetrics::default()
        }
    }
}

impl fmt::Display for RollupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        writeln!(
            f,
            "{}: {} days, {} interval rows -> {} partitions written, {} unchanged in {:.2}s",
            self.job,
            report.days,
            report.rows_read,
            report.written.len(),
            report.unchanged,
            report.seconds
        )?;
        for (day, grain, used) in &report.fallbacks {
            writeln!(
                f,
                "  {day} {}: {} weighted by the fallback {} in {} rows (its first denominator is missing)",
                grain.name(),
                used.column,
                used.denominator,
                used.rows
            )?;
        }
        Ok(())
    }
}
