//! connect-intervals through the runner: report files → partitions of the interval table.

use std::fmt;

use super::{failed, Exit, JobError, JobRun, RunOptions, Summary};
use crate::connect::job::{ConnectJob, CoverageReport, OpenMode, Plan, RunReport};
use crate::job::{ConnectSource, Job};
use crate::lake::layout;
use crate::observe::progress::Progress;
use crate::observe::run::RunMetrics;
use crate::window::Window;

/// A connect-intervals job opened for a run or a dry run.
pub(super) struct ConnectRun<'a> {
    job: &'a Job,
    source: &'a ConnectSource,
    connect: ConnectJob<'a>,
    shard: Option<(u32, u32)>,
}

impl<'a> ConnectRun<'a> {
    pub(super) async fn open(
        job: &'a Job,
        source: &'a ConnectSource,
        options: &RunOptions,
    ) -> Result<Self, JobError> {
        let mode = if options.dry_run {
            OpenMode::DryRun
        } else {
            OpenMode::Run
        };
        let connect = ConnectJob::open(job, source, mode)
            .await
            .map_err(failed(job, ""))?
            .with_concurrency(options.concurrency);
        Ok(ConnectRun {
            job,
            source,
            connect,
            shard: options.shard,
        })
    }
}

impl JobRun for ConnectRun<'_> {
    type Plan = Plan;
    type Report = ConnectSummary;
    const UNIT: &'static str = "files";

    async fn plan(&self, window: Window) -> Result<Plan, JobError> {
        let mut plan = self
            .connect
            .plan(window)
            .await
            .map_err(failed(self.job, "planning"))?;
        if let Some((index, count)) = self.shard {
            self.connect.shard(&mut plan, index, count);
            tracing::info!(job = %self.job.name, shard = %format!("{index}/{count}"), files = plan.files.len(), "shard of the backfill");
        }
        Ok(plan)
    }

    async fn dry_run(&self, plan: &Plan) -> Result<String, JobError> {
        let mut listing = PlanListing { run: self, plan }.to_string();
        if let Some(fill) = &self.source.fill {
            let preview = self
                .connect
                .preview_fill(plan)
                .await
                .map_err(failed(self.job, "planning the fill"))?;
            let metrics = crate::connect::fill::mapping::for_report(self.source.report).len();
            listing.push_str(&format!(
                "fill from {}: {} missing intervals within the API's 3 months in {} spans: {} GetMetricDataV2 requests per 100 {}s, plus paging and one listing; {} missing intervals are older and stay missing\n",
                fill.instance_arn,
                preview.intervals,
                preview.spans,
                crate::connect::fill::plan::request_count(preview.spans, 1, metrics),
                self.source.report.name(),
                preview.out_of_reach,
            ));
        }
        Ok(listing)
    }

    async fn run(&self, plan: Plan, progress: &Progress) -> Result<ConnectSummary, JobError> {
        for other in &plan.skipped {
            tracing::warn!(job = %self.job.name, object = %other, "skipped: not a report file name");
        }
        let report = self
            .connect
            .run(&plan, progress)
            .await
            .map_err(failed(self.job, ""))?;
        Ok(ConnectSummary {
            job: self.job.name.clone(),
            timezone: self.job.timezone,
            table: self.connect.table().table.clone(),
            source_url: self.connect.source_url().to_string(),
            report,
        })
    }
}

/// What `--dry-run` prints: each file and the partition its name points to.
struct PlanListing<'r, 'a> {
    run: &'r ConnectRun<'a>,
    plan: &'r Plan,
}

impl fmt::Display for PlanListing<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connect, plan) = (&self.run.connect, self.plan);
        let lookback = plan
            .lookback_from
            .map(|from| {
                format!(
                    " not read yet or changed, named after {from} (lookback {} days before the watermark)",
                    self.run.source.lookback_days
                )
            })
            .unwrap_or_default();
        writeln!(
            f,
            "plan for {} ({} → {}): {} report files{lookback}",
            self.run.job.name,
            self.run.source.url,
            connect
                .lake()
                .url_of(&layout::table_prefix(&connect.table().table)),
            plan.files.len(),
        )?;
        for key in &plan.files {
            let changed = if plan.changed.contains(&key.relative) {
                "  (changed since it was read)"
            } else {
                ""
            };
            writeln!(
                f,
                "  {}  ->  dt={}{changed}",
                key.relative,
                connect.expected_dt(key)
            )?;
        }
        for key in &plan.future {
            writeln!(
                f,
                "  {}  (rejected: the name's time is in the future)",
                key.relative
            )?;
        }
        for other in &plan.skipped {
            writeln!(f, "  {other}  (skipped: not a report file name)")?;
        }
        for entry in &plan.unreadable {
            writeln!(f, "  {}  (skipped: {})", entry.entry, entry.reason)?;
        }
        writeln!(f, "dry run: nothing written (partitions shown are expected from file names; the rows decide)")
    }
}

/// A finished connect-intervals run.
pub(super) struct ConnectSummary {
    job: String,
    timezone: chrono_tz::Tz,
    table: String,
    source_url: String,
    report: RunReport,
}

impl ConnectSummary {
    fn written(&self) -> impl Iterator<Item = &crate::connect::job::PartitionOutcome> {
        self.report.partitions.iter().filter(|p| p.written)
    }
}

impl Summary for ConnectSummary {
    fn log(&self) {
        let (job, report) = (&self.job, &self.report);
        for r in &report.rejected {
            tracing::warn!(
                job = %job,
                source = %r.reason.source_key,
                line = r.reason.line,
                column = r.reason.column.as_deref(),
                column_number = r.reason.column_number,
                reason = %r.reason.reason,
                "file rejected"
            );
        }
        for entry in &report.unreadable {
            tracing::warn!(job = %job, entry = %entry.entry, reason = %entry.reason, "source entry skipped: it cannot be read or named");
        }
        let bytes: usize = self.written().map(|p| p.bytes).sum();
        tracing::info!(
            job = %job,
            table = %self.table,
            files = report.files,
            rows_read = report.rows_read,
            partitions = report.partitions.len(),
            partitions_written = self.written().count(),
            bytes_written = bytes,
            rejected = report.rejected.len(),
            unreadable = report.unreadable.len(),
            added_columns = ?report.added_columns,
            catalog = ?report.catalog,
            seconds = report.seconds,
            source_get = report.source_requests.0,
            source_list_pages = report.source_requests.2,
            lake_get = report.lake_requests.0,
            lake_put = report.lake_requests.1,
            lake_list_pages = report.lake_requests.2,
            missing_intervals = report.coverage.missing(),
            "run finished"
        );
        if let Some(fill) = report.coverage.fill.as_ref().filter(|f| f.error.is_some()) {
            tracing::error!(job = %job, error = fill.error.as_deref(), "filling from the Connect API stopped; the intervals it did not fill stay missing");
        }
    }

    fn exit(&self) -> Exit {
        let fill_failed = (self.report.coverage.fill.as_ref()).is_some_and(|f| f.error.is_some());
        if fill_failed {
            Exit::Failure
        } else if self.report.rejected.is_empty() && self.report.unreadable.is_empty() {
            Exit::Ok
        } else {
            Exit::Partial
        }
    }

    fn metrics(&self) -> RunMetrics {
        let report = &self.report;
        RunMetrics {
            rows: report.rows_read as u64,
            bytes: self.written().map(|p| p.bytes as u64).sum(),
            rejects: (report.rejected.len() + report.unreadable.len()) as u64,
            inputs: report.files as u64,
            missing_intervals: Some(report.coverage.missing()),
            reconciliation: report.reconciliation(),
            ..RunMetrics::default()
        }
    }
}

impl fmt::Display for ConnectSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        let written = self.written().count();
        writeln!(
            f,
            "{}: {} files, {} rows → {} partitions of {} ({} written, {} unchanged), {} rejected, {:.2}s",
            self.job,
            report.files,
            report.rows_read,
            report.partitions.len(),
            self.table,
            written,
            report.partitions.len() - written,
            report.rejected.len(),
            report.seconds
        )?;
        let (source, lake) = (report.source_requests, report.lake_requests);
        writeln!(
            f,
            "  requests: source {} GET, {} LIST pages; lake {} GET, {} PUT, {} LIST pages",
            source.0, source.2, lake.0, lake.1, lake.2
        )?;
        if let Some(line) = coverage_line(&report.coverage, self.timezone) {
            writeln!(f, "  {line}")?;
        }
        if let Some(fill) = &report.coverage.fill {
            match &fill.error {
                None => writeln!(
                    f,
                    "  filled {} intervals ({} rows) from the Connect API in {} requests",
                    fill.intervals, fill.rows, fill.requests
                )?,
                Some(e) => writeln!(
                    f,
                    "  filling from the Connect API stopped after {} intervals and {} requests: {e}",
                    fill.intervals, fill.requests
                )?,
            }
        }
        for r in &report.rejected {
            let at = match (r.reason.line, r.reason.column_number, &r.reason.column) {
                (Some(l), Some(n), Some(c)) => format!("line {l}, column {n} {c:?}: "),
                (Some(l), None, Some(c)) => format!("line {l}, column {c:?}: "),
                (Some(l), _, None) => format!("line {l}: "),
                _ => String::new(),
            };
            writeln!(
                f,
                "  rejected {}: {at}{}",
                r.reason.source_key, r.reason.reason
            )?;
        }
        for entry in &report.unreadable {
            writeln!(
                f,
                "  skipped {}{}: {}",
                self.source_url, entry.entry, entry.reason
            )?;
        }
        Ok(())
    }
}

/// Most ranges of missing intervals the summary names.
const MISSING_RANGES_SHOWN: usize = 6;

/// One line on the accounted days: intervals by status, and the missing ones as local time
/// ranges (`2024-03-11 20:00–24:00`); `None` when no day was accounted for.
fn coverage_line(coverage: &CoverageReport, tz: chrono_tz::Tz) -> Option<String> {
    use crate::connect::coverage::Status;
    if coverage.days.is_empty() {
        return None;
    }
    let counts = coverage.counts();
    let expected: u64 = counts.values().sum();
    let mut parts: Vec<String> = [
        (Status::Report, "from reports"),
        (Status::Api, "from the API"),
        (Status::Rejected, "rejected"),
        (Status::Pending, "pending"),
    ]
    .iter()
    .filter_map(|(status, label)| counts.get(status).map(|n| format!("{n} {label}")))
    .collect();
    let missing = coverage.missing();
    let mut line = format!(
        "coverage ({}): {} days, {expected} intervals: ",
        crate::connect::coverage::TABLE,
        coverage.days.len()
    );
    if missing == 0 {
        parts.push("none missing".into());
        line.push_str(&parts.join(", "));
        return Some(line);
    }
    parts.push(format!("{missing} MISSING"));
    line.push_str(&parts.join(", "));
    let mut ranges = Vec::new();
    for (_, starts) in coverage.missing_by_day() {
        let step = coverage
            .days
            .values()
            .flatten()
            .next()
            .map_or(1_800_000, |i| i.end - i.start);
        let mut run_start = starts[0];
        let mut previous = starts[0];
        for &start in starts[1..].iter().chain(std::iter::once(&i64::MIN)) {
            if start != previous + step {
                ranges.push(local_range(run_start, previous + step, tz));
                run_start = start;
            }
            previous = start;
        }
    }
    let more = ranges.len().saturating_sub(MISSING_RANGES_SHOWN);
    ranges.truncate(MISSING_RANGES_SHOWN);
    line.push_str(&format!(" ({}", ranges.join(", ")));
    if more > 0 {
        line.push_str(&format!(" and {more} more ranges"));
    }
    line.push(')');
    Some(line)
}

/// `2024-03-11 20:00–24:00` in the job's time zone.
fn local_range(start: i64, end: i64, tz: chrono_tz::Tz) -> String {
    let local = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(crate::connect::parse::local_millis(ms, tz))
            .unwrap_or_default()
            .naive_utc()
    };
    let (from, to) = (local(start), local(end));
    let to_text = if to.date() > from.date() && to.time() == chrono::NaiveTime::MIN {
        "24:00".to_string()
    } else if to.date() > from.date() {
        to.format("%Y-%m-%d %H:%M").to_string()
    } else {
        to.format("%H:%M").to_string()
    };
    format!("{}–{to_text}", from.format("%Y-%m-%d %H:%M"))
}
