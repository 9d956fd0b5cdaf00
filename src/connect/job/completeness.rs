//! After a run's reports are written: account for every expected interval of the days it
//! touched (the coverage table), and fill the missing ones from the Connect API when the job
//! asks for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::{ConnectJob, Plan, RunError, RunReport};
use crate::connect::coverage::{self, Clock, Evidence, IntervalCoverage, Owner, Status};
use crate::connect::fill::{client::ConnectApi, Fill};
use crate::connect::key::ReportKey;
use crate::lake::buffer::PartitionRows;
use crate::lake::{layout, parquet};
use crate::observe::progress::Progress;
use crate::state::CoverageMarks;

/// Days read at once.
const DAYS_IN_FLIGHT: usize = 8;

/// What the accounting found, for the summary, the run record and the metrics.
#[derive(Debug, Clone, Default)]
pub struct CoverageReport {
    /// Every accounted day's intervals.
    pub days: BTreeMap<i32, Vec<IntervalCoverage>>,
    /// The fill, when the job fills from the API and something was missing.
    pub fill: Option<FillReport>,
}

impl CoverageReport {
    /// Intervals by status over every accounted day.
    pub fn counts(&self) -> BTreeMap<Status, u64> {
        coverage::tally(self.days.values().map(Vec::as_slice))
    }

    /// Intervals still missing.
    pub fn missing(&self) -> u64 {
        self.counts().get(&Status::Missing).copied().unwrap_or(0)
    }

    /// Missing intervals by day (`YYYY-MM-DD`), as interval starts.
    pub fn missing_by_day(&self) -> Vec<(String, Vec<i64>)> {
        self.days
            .iter()
            .filter_map(|(day, intervals)| {
                let starts: Vec<i64> = intervals
                    .iter()
                    .filter(|i| i.status == Status::Missing)
                    .map(|i| i.start)
                    .collect();
                (!starts.is_empty()).then(|| (layout::day_string(*day), starts))
            })
            .collect()
    }
}

/// What a fill did.
#[derive(Debug, Clone, Default)]
pub struct FillReport {
    /// Intervals the API answered for.
    pub intervals: u64,
    /// Rows it gave.
    pub rows: u64,
    /// Requests made (listings and pages included).
    pub requests: u64,
    /// Why it stopped early.
    pub error: Option<String>,
}

/// What a dry run would fill.
#[derive(Debug, Clone, Default)]
pub struct FillPreview {
    /// Missing intervals within the API's reach.
    pub intervals: usize,
    /// Missing intervals beyond it (older than 3 months): they stay missing.
    pub out_of_reach: usize,
    /// Spans requested.
    pub spans: usize,
}

impl ConnectJob<'_> {
    /// How many days back a day still missing intervals is accounted for again: while the API
    /// can fill it (when filling), else within the lookback (a late report may still come).
    fn recheck_days(&self) -> i32 {
        if self.source_settings.fill.is_some() {
            92
        } else {
            i32::try_from(self.source_settings.lookback_days).unwrap_or(i32::MAX)
        }
    }

    /// The days the next run accounts for again: the recent ones of `before` this run did not
    /// account for, and those it did that still have missing or pending intervals.
    pub(super) fn days_to_recheck(
        &self,
        before: &BTreeSet<chrono::NaiveDate>,
        coverage: &CoverageReport,
    ) -> BTreeSet<chrono::NaiveDate> {
        let today = coverage::day_of(Utc::now().timestamp_millis(), self.job.timezone);
        let recent = |d: &chrono::NaiveDate| today - layout::day_number(*d) <= self.recheck_days();
        let accounted = |d: &chrono::NaiveDate| coverage.days.contains_key(&layout::day_number(*d));
        let still_missing = coverage
            .days
            .iter()
            .filter(|(_, intervals)| {
                intervals
                    .iter()
                    .any(|i| matches!(i.status, Status::Missing | Status::Pending))
            })
            .map(|(day, _)| layout::date_of(*day));
        before
            .iter()
            .filter(|d| !accounted(d))
            .copied()
            .chain(still_missing)
            .filter(recent)
            .collect()
    }

    /// When intervals are overdue, and the first one expected.
    fn clock(&self, plan: &Plan, now: DateTime<Utc>) -> Clock {
        Clock {
            now: now.timestamp_millis(),
            grace_ms: i64::from(self.source_settings.grace_minutes) * 60_000,
            first_start: self
                .coverage_marks(plan)
                .map(|m| m.first.timestamp_millis()),
        }
    }

    /// One day's expected intervals and what became of them.
    fn resolve_day(&self, day: i32, evidence: &Evidence, clock: Clock) -> Vec<IntervalCoverage> {
        let minutes = self.source_settings.interval_minutes;
        let intervals = coverage::expected_intervals(day, self.job.timezone, minutes);
        coverage::resolve(&intervals, evidence, clock)
    }

    fn interval_ms(&self) -> i64 {
        i64::from(self.source_settings.interval_minutes) * 60_000
    }

    /// The interval a report file covers, from its name (the end of the interval): the start of
    /// the interval before the name's time, on the interval grid.
    pub(super) fn named_interval(&self, key: &ReportKey) -> i64 {
        let step = self.interval_ms();
        let end = key.exported_at.timestamp_millis();
        (end - 1).div_euclid(step) * step
    }

    /// The first and newest intervals accounted for, after `plan`: those of its reports, and
    /// for a `--from/--to` run that fills from the API, the window itself (day-one history: the
    /// intervals before the first report are then expected, and filled).
    pub(super) fn coverage_marks(&self, plan: &Plan) -> Option<CoverageMarks> {
        let from_ms = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let mut candidates: Vec<DateTime<Utc>> = plan
            .files
            .iter()
            .map(|k| from_ms(self.named_interval(k)))
            .collect();
        if self.source_settings.fill.is_some() && !plan.window.is_open() {
            let step = chrono::Duration::milliseconds(self.interval_ms());
            let now = Utc::now();
            candidates.extend(plan.window.start);
            candidates.extend(plan.window.end.map(|end| end.min(now) - step));
        }
        if let Some(marks) = &plan.state.coverage {
            candidates.push(marks.first);
            candidates.push(marks.newest);
        }
        Some(CoverageMarks {
            first: *candidates.iter().min()?,
            newest: *candidates.iter().max()?,
            missing_days: plan
                .state
                .coverage
                .as_ref()
                .map(|m| m.missing_days.clone())
                .unwrap_or_default(),
        })
    }

    /// The days to account for: the window's (a `--from/--to` run) from the first to the newest
    /// interval accounted for, or every day from the newest interval on record before this run
    /// to the newest after it, plus the days this run wrote or rejected files for.
    fn coverage_days(&self, plan: &Plan, report: &RunReport, now: DateTime<Utc>) -> BTreeSet<i32> {
        let mut days = self.all_coverage_days(plan, report, now);
        // Shards write disjoint days: each accounts for its own, so no two write one file.
        if let Some((index, count)) = plan.shard {
            days.retain(|d| d.rem_euclid(count as i32) == index as i32);
        }
        days
    }

    fn all_coverage_days(
        &self,
        plan: &Plan,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> BTreeSet<i32> {
        let tz = self.job.timezone;
        let today = coverage::day_of(now.timestamp_millis(), tz);
        let mut days = BTreeSet::new();
        if !plan.window.is_open() {
            // The window's days between the first and the newest interval accounted for (with
            // filling on, the window itself is accounted for: see `coverage_marks`).
            let Some(marks) = self.coverage_marks(plan) else {
                return days;
            };
            let window = plan.window;
            let first = coverage::day_of(marks.first.timestamp_millis(), tz);
            let newest = coverage::day_of(marks.newest.timestamp_millis(), tz);
            let start = window.start.map_or(first, |s| {
                coverage::day_of(s.timestamp_millis(), tz).max(first)
            });
            let end = window.end.map_or(newest, |e| {
                coverage::day_of(e.timestamp_millis() - 1, tz).min(newest)
            });
            days.extend(start..=end.min(today));
            return days;
        }
        if let Some(after) = self.coverage_marks(plan) {
            let before = plan.state.coverage.as_ref().unwrap_or(&after);
            let from = coverage::day_of(before.newest.timestamp_millis(), tz);
            let to = coverage::day_of(after.newest.timestamp_millis(), tz);
            days.extend(from..=to);
        }
        // Days still missing intervals, so the count stays current (and they are filled).
        if let Some(marks) = &plan.state.coverage {
            days.extend(
                marks
                    .missing_days
                    .iter()
                    .map(|d| layout::day_number(*d))
                    .filter(|d| today - d <= self.recheck_days()),
            );
        }
        let parse_day = |dt: &str| {
            chrono::NaiveDate::parse_from_str(dt, "%Y-%m-%d")
                .ok()
                .map(layout::day_number)
        };
        days.extend(report.partitions.iter().filter_map(|p| parse_day(&p.dt)));
        days.extend(report.rejected.iter().filter_map(|r| parse_day(&r.dt)));
        days.retain(|d| *d <= today);
        days
    }

    /// Reads what the lake holds for `days`: rows by interval and origin (from `written`, the
    /// partitions this run wrote, or read back), and the previous coverage (with its bytes, to
    /// skip rewriting an unchanged file).
    async fn evidence(
        &self,
        days: &BTreeSet<i32>,
        written: &[super::PartitionOutcome],
    ) -> Result<BTreeMap<i32, (Evidence, Option<Bytes>)>, RunError> {
        let table = &self.schema.table;
        let known: HashMap<String, &crate::connect::coverage::IntervalRows> = written
            .iter()
            .map(|p| (p.dt.clone(), &p.interval_rows))
            .collect();
        futures::stream::iter(days.iter().copied())
            .map(|day| {
                let known = known
                    .get(&layout::day_string(day))
                    .map(|rows| (*rows).clone());
                async move {
                    let mut evidence = Evidence::default();
                    let rows = match known {
                        Some(rows) => Some(rows),
                        None => {
                            let key = layout::partition_file(table, day);
                            match self.lake.get(&key).await? {
                                None => None,
                                Some(bytes) => Some(
                                    crate::exec::cpu(move || coverage::partition_rows(bytes))
                                        .await
                                        .map_err(|source| RunError::Data {
                                            context: self.lake.url_of(&key),
                                            source,
                                        })?,
                                ),
                            }
                        }
                    };
                    if let Some((reports, api)) = rows {
                        (evidence.report_rows, evidence.api_rows) = (reports, api);
                    }
                    let previous = self
                        .lake
                        .get(&coverage::file_key(&self.job.name, day))
                        .await?;
                    if let Some(bytes) = &previous {
                        // An unreadable coverage file is rebuilt from the table.
                        if let Ok(batches) = parquet::decode(bytes.clone()) {
                            evidence.previous = coverage::from_batches(&batches);
                        }
                    }
                    Ok::<_, RunError>((day, (evidence, previous)))
                }
            })
            .buffered(DAYS_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Accounts for the intervals of the days `plan` and `report` concern, fills the missing
    /// ones when the job fills (with a bar of its requests on a terminal), and writes the
    /// coverage files. Partitions the fill writes are
    /// added to `report.partitions`.
    pub(super) async fn account(
        &self,
        plan: &Plan,
        report: &mut RunReport,
        empty_reports: &[i64],
        table_schema: &SchemaRef,
    ) -> Result<CoverageReport, RunError> {
        let now = Utc::now();
        let tz = self.job.timezone;
        let days = self.coverage_days(plan, report, now);
        let mut read = self.evidence(&days, &report.partitions).await?;
        for r in &report.rejected {
            if let Some(key) = ReportKey::parse(&r.relative) {
                let start = self.named_interval(&key);
                if let Some((evidence, _)) = read.get_mut(&coverage::day_of(start, tz)) {
                    evidence.rejected.insert(start, r.reason.source_key.clone());
                }
            }
        }
        reports_landed(&mut read, empty_reports.iter().copied(), tz);
        let clock = self.clock(plan, now);
        let resolve_day = |day: i32, evidence: &Evidence| self.resolve_day(day, evidence, clock);
        let mut out = CoverageReport::default();
        for (day, (evidence, _)) in &read {
            out.days.insert(*day, resolve_day(*day, evidence));
        }

        if let Some(settings) = &self.source_settings.fill {
            let missing: Vec<i64> = out
                .days
                .values()
                .flatten()
                .filter(|i| i.status == Status::Missing)
                .map(|i| i.start)
                .collect();
            if !missing.is_empty() {
                let api = ConnectApi::new(settings).await;
                let filled = Fill {
                    api: &api,
                    report: self.schema,
                    table_schema: table_schema.clone(),
                    instance: &self.source_settings.instance,
                    instance_id: &settings.instance_id,
                    timezone: tz,
                    interval_minutes: self.source_settings.interval_minutes,
                }
                .run(&missing, now, &Progress::new("GetMetricDataV2 requests"))
                .await;
                let mut fill_report = FillReport {
                    intervals: filled.answered.len() as u64,
                    requests: filled.requests,
                    error: filled.error.clone(),
                    ..FillReport::default()
                };
                let mut partitions = BTreeMap::new();
                for (day, batches) in filled.batches {
                    let (_, api_rows) = coverage::rows_by_origin(&batches);
                    fill_report.rows += api_rows.values().sum::<i64>() as u64;
                    if let Some((evidence, _)) = read.get_mut(&day) {
                        for (start, rows) in api_rows {
                            *evidence.api_rows.entry(start).or_insert(0) += rows;
                        }
                    }
                    let sources: HashSet<Arc<str>> = batches
                        .iter()
                        .flat_map(|b| sources_of(b, self.schema.source_key_index()))
                        .collect();
                    partitions.insert(day, PartitionRows::from_batches(batches, sources));
                }
                for (start, request) in filled.answered {
                    if let Some((evidence, _)) = read.get_mut(&coverage::day_of(start, tz)) {
                        evidence.api_requests.insert(start, request);
                    }
                }
                let written = self
                    .write_partitions(partitions, table_schema, Arc::new(Vec::new()))
                    .await?;
                for outcome in written {
                    match report.partitions.iter_mut().find(|p| p.dt == outcome.dt) {
                        Some(p) => {
                            p.rows = outcome.rows;
                            p.bytes = outcome.bytes;
                            p.written |= outcome.written;
                        }
                        None => report.partitions.push(outcome),
                    }
                }
                report.partitions.sort_by(|a, b| a.dt.cmp(&b.dt));
                for (day, (evidence, _)) in &read {
                    out.days.insert(*day, resolve_day(*day, evidence));
                }
                out.fill = Some(fill_report);
            }
        }

        let owner = Owner {
            job: &self.job.name,
            instance: &self.source_settings.instance,
            report: self.schema.report.name(),
            timezone: tz,
        };
        let writes: Vec<(String, Bytes)> = out
            .days
            .iter()
            .filter(|(_, intervals)| !intervals.is_empty())
            .map(|(day, intervals)| {
                let key = coverage::file_key(&self.job.name, *day);
                let bytes = parquet::encode(&coverage::to_batch(&owner, intervals))
                    .map(Bytes::from)
                    .map_err(|source| RunError::Data {
                        context: self.lake.url_of(&key),
                        source,
                    })?;
                Ok::<_, RunError>((key, bytes))
            })
            .collect::<Result<_, _>>()?;
        let previous: HashMap<String, Option<Bytes>> = read
            .into_iter()
            .map(|(day, (_, bytes))| (coverage::file_key(&self.job.name, day), bytes))
            .collect();
        futures::stream::iter(writes)
            .filter(|(key, bytes)| {
                let unchanged = previous.get(key).and_then(|p| p.as_ref()) == Some(bytes);
                std::future::ready(!unchanged)
            })
            .map(|(key, bytes)| async move {
                self.lake.put(&key, bytes).await?;
                crate::fault_point!("connect-after-coverage-put");
                Ok::<_, crate::lake::StoreError>(())
            })
            .buffered(DAYS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(out)
    }

    /// What filling would do for `plan` (a dry run): the missing intervals of the days it
    /// concerns, assuming its files land, within and beyond the API's reach.
    pub async fn preview_fill(&self, plan: &Plan) -> Result<FillPreview, RunError> {
        let now = Utc::now();
        let tz = self.job.timezone;
        let report = RunReport::default();
        let mut days = self.coverage_days(plan, &report, now);
        for key in &plan.files {
            days.insert(coverage::day_of(self.named_interval(key), tz));
        }
        let mut read = self.evidence(&days, &[]).await?;
        reports_landed(
            &mut read,
            plan.files.iter().map(|k| self.named_interval(k)),
            tz,
        );
        let clock = self.clock(plan, now);
        let missing: Vec<i64> = read
            .iter()
            .flat_map(|(day, (evidence, _))| self.resolve_day(*day, evidence, clock))
            .filter(|i| i.status == Status::Missing)
            .map(|i| i.start)
            .collect();
        let spans = crate::connect::fill::plan::spans(
            &missing,
            self.interval_ms(),
            crate::connect::fill::plan::reach_start(now),
            now.timestamp_millis(),
        );
        let reachable: usize = spans
            .iter()
            .map(|s| ((s.end - s.start) / self.interval_ms()) as usize)
            .sum();
        Ok(FillPreview {
            intervals: reachable,
            out_of_reach: missing.len() - reachable,
            spans: spans.len(),
        })
    }
}

/// Marks the intervals at `starts` as covered by a report that landed (with or without rows).
fn reports_landed(
    read: &mut BTreeMap<i32, (Evidence, Option<Bytes>)>,
    starts: impl Iterator<Item = i64>,
    tz: chrono_tz::Tz,
) {
    for start in starts {
        if let Some((evidence, _)) = read.get_mut(&coverage::day_of(start, tz)) {
            evidence.empty_reports.push(start);
        }
    }
}

fn sources_of(batch: &arrow::array::RecordBatch, index: usize) -> Vec<Arc<str>> {
    use arrow::array::{Array, StringArray};
    let Some(column) = batch.column(index).as_any().downcast_ref::<StringArray>() else {
        return Vec::new();
    };
    let mut seen: Vec<Arc<str>> = Vec::new();
    for i in 0..column.len() {
        let value = column.value(i);
        if !seen.iter().any(|s| &**s == value) {
            seen.push(value.into());
        }
    }
    seen
}
