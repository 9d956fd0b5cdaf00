//! interval-rollup through the runner: interval partitions → hourly and daily roll-up tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::NaiveDate;

use super::{failed, DayPlan, Exit, JobError, JobRun, RunOptions, Summary};
use crate::job::{Grain, Job, RollupSpec};
use crate::lake::partitions::DayFile;
use crate::observe::progress::Progress;
use crate::observe::run::RunMetrics;
use crate::rollup::aggregate::FallbackUse;
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
        for line in fallback_lines(&report.fallbacks) {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// One line per metric that used a fallback denominator anywhere in the run: which
/// denominators, in how many roll-up rows over how many days, and one day as an example. The
/// per-day figures are warnings of the run (its manifest, and `--log-level debug`).
fn fallback_lines(fallbacks: &[(NaiveDate, Grain, FallbackUse)]) -> Vec<String> {
    /// One metric's fallbacks over the run.
    struct ColumnUse<'a> {
        column: &'a str,
        /// Rows per denominator used.
        denominators: BTreeMap<&'a str, usize>,
        days: BTreeSet<NaiveDate>,
        /// The first (day, grain, rows), shown as the example.
        example: (NaiveDate, Grain, usize),
    }
    // In order of first use.
    let mut columns: Vec<ColumnUse> = Vec::new();
    for (day, grain, used) in fallbacks {
        let at = match columns.iter().position(|c| c.column == used.column) {
            Some(at) => at,
            None => {
                columns.push(ColumnUse {
                    column: &used.column,
                    denominators: BTreeMap::new(),
                    days: BTreeSet::new(),
                    example: (*day, *grain, used.rows),
                });
                columns.len() - 1
            }
        };
        let entry = &mut columns[at];
        *entry.denominators.entry(&used.denominator).or_default() += used.rows;
        entry.days.insert(*day);
    }
    columns
        .into_iter()
        .map(|c| {
            let used: Vec<String> = c
                .denominators
                .iter()
                .map(|(denominator, rows)| format!("{denominator} in {}", rows_text(*rows)))
                .collect();
            let (day, grain, rows) = c.example;
            format!(
                "{} weighted by the fallback {} on {} day{} (its first denominator is missing; e.g. {day} {}: {})",
                c.column,
                used.join(", "),
                c.days.len(),
                if c.days.len() == 1 { "" } else { "s" },
                grain.name(),
                rows_text(rows),
            )
        })
        .collect()
}

fn rows_text(rows: usize) -> String {
    format!("{rows} row{}", if rows == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(column: &str, denominator: &str, rows: usize) -> FallbackUse {
        FallbackUse {
            column: column.into(),
            denominator: denominator.into(),
            rows,
        }
    }

    #[test]
    fn fallbacks_sum_up_to_one_line_per_column() {
        let d1 = NaiveDate::from_ymd_opt(2024, 3, 10).expect("a day");
        let d2 = NaiveDate::from_ymd_opt(2024, 3, 11).expect("a day");
        let lines = fallback_lines(&[
            (d1, Grain::Hourly, used("sl_pct", "contacts_incoming", 8)),
            (d1, Grain::Daily, used("sl_pct", "contacts_incoming", 1)),
            (d2, Grain::Hourly, used("aqat", "contacts_handled", 5)),
            (d2, Grain::Hourly, used("sl_pct", "contacts_incoming", 7)),
            (d2, Grain::Daily, used("sl_pct", "contacts_handled", 1)),
        ]);
        assert_eq!(
            lines,
            [
                "sl_pct weighted by the fallback contacts_handled in 1 row, contacts_incoming in 16 rows on 2 days (its first denominator is missing; e.g. 2024-03-10 hourly: 8 rows)",
                "aqat weighted by the fallback contacts_handled in 5 rows on 1 day (its first denominator is missing; e.g. 2024-03-11 hourly: 5 rows)",
            ]
        );
    }
}
