//! Coverage of a Connect interval table: for every reporting day, each interval the report
//! schedule should have exported and what became of it. Connect writes nothing when a scheduled
//! export fails, so an interval nobody accounts for is the only sign of a missing file.
//!
//! The coverage is data: one small Parquet file per job and day under
//! `connect_interval_coverage/dt=D/<job>.parquet` (a table in Glue like the others), rebuilt for the
//! days a run touches from what the interval table holds, what the run rejected and the day's
//! previous coverage. The rules are pure functions here; the job does the reads and writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

use super::schema::utc_millis;
use crate::lake::layout;

/// The coverage table.
pub const TABLE: &str = "connect_interval_coverage";
/// What the coverage table holds, for the catalog.
pub const DESCRIPTION: &str = "Amazon Connect interval coverage: per job, reporting day and expected interval, whether it landed from a report, was filled from the Connect API, was rejected, is missing or still pending";

/// The `origin` of rows read from a report file.
pub const ORIGIN_REPORT: &str = "report";
/// The `origin` of rows filled from the Connect API.
pub const ORIGIN_API: &str = "api";

/// What became of one expected interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// A report file for it loaded (with rows, or empty: no queue or agent was active).
    Report,
    /// Filled from the Connect API (rows, or none when the API found no activity).
    Api,
    /// A report file for it was rejected and nothing replaced it.
    Rejected,
    /// Overdue and nothing arrived.
    Missing,
    /// Not overdue yet: the export may still come.
    Pending,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn name(self) -> &'static str {
        match self {
            Status::Report => "report",
            Status::Api => "api",
            Status::Rejected => "rejected",
            Status::Missing => "missing",
            Status::Pending => "pending",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        [
            Status::Report,
            Status::Api,
            Status::Rejected,
            Status::Missing,
            Status::Pending,
        ]
        .into_iter()
        .find(|s| s.name() == text)
    }
}

/// One expected interval of a day and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalCoverage {
    /// Interval start, UTC epoch milliseconds.
    pub start: i64,
    /// Interval end, UTC epoch milliseconds.
    pub end: i64,
    /// What became of it.
    pub status: Status,
    /// Rows of the interval table in this interval.
    pub rows: i64,
    /// The rejected file, or the API request that filled it.
    pub source_key: Option<String>,
}

/// The local midnight that starts `date` in `tz` (the first instant of the day when a time
/// change skips midnight itself).
fn day_start(date: NaiveDate, tz: Tz) -> i64 {
    let mut local = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    loop {
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.timestamp_millis();
        }
        local += chrono::Duration::minutes(15);
    }
}

/// The intervals of local day `day` (days since 1970-01-01) in `tz`, `minutes` long:
/// `(start, end)` in UTC epoch milliseconds. 48 at 30 minutes, 46 or 50 on a day the clocks
/// change by an hour.
pub fn expected_intervals(day: i32, tz: Tz, minutes: u32) -> Vec<(i64, i64)> {
    let step = i64::from(minutes) * 60_000;
    let from = day_start(layout::date_of(day), tz);
    let to = day_start(layout::date_of(day + 1), tz);
    // Connect's intervals are on the UTC grid of the interval length.
    let first = from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
    (0..)
        .map(|i| first + i * step)
        .take_while(|start| *start < to)
        .map(|start| (start, start + step))
        .collect()
}

/// The reporting day (in `tz`) an interval starting at `start` belongs to.
pub fn day_of(start: i64, tz: Tz) -> i32 {
    let local = super::parse::local_millis(start, tz);
    local.div_euclid(86_400_000) as i32
}

/// What is known about one day's intervals before deciding their status.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    /// Rows of the interval table by interval start, read from reports.
    pub report_rows: HashMap<i64, i64>,
    /// Rows of the interval table by interval start, filled from the API.
    pub api_rows: HashMap<i64, i64>,
    /// Intervals whose report loaded without rows.
    pub empty_reports: Vec<i64>,
    /// Intervals whose report was rejected, with the file.
    pub rejected: HashMap<i64, String>,
    /// Intervals the API answered in this run, with the request.
    pub api_requests: HashMap<i64, String>,
    /// The day's previous coverage, by interval start.
    pub previous: HashMap<i64, IntervalCoverage>,
}

/// When intervals count as overdue and where coverage starts.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Now, UTC epoch milliseconds.
    pub now: i64,
    /// How long after its end an interval's export may still arrive.
    pub grace_ms: i64,
    /// Intervals before this start are not expected (the job's first interval); `None` expects
    /// every interval of the day.
    pub first_start: Option<i64>,
}

/// Decides each expected interval's status from `evidence`. A report outranks the API, the API
/// outranks a rejected file; an interval without any is missing once its end plus the grace
/// has passed, pending before.
pub fn resolve(
    intervals: &[(i64, i64)],
    evidence: &Evidence,
    clock: Clock,
) -> Vec<IntervalCoverage> {
    intervals
        .iter()
        .filter(|(start, _)| clock.first_start.is_none_or(|first| *start >= first))
        .map(|&(start, end)| {
            let previous = evidence.previous.get(&start);
            let was = |status: Status| previous.is_some_and(|p| p.status == status);
            let (status, rows, source_key) = if let Some(&rows) = evidence.report_rows.get(&start) {
                (Status::Report, rows, None)
            } else if evidence.empty_reports.contains(&start) || was(Status::Report) {
                (Status::Report, 0, None)
            } else if let Some(&rows) = evidence.api_rows.get(&start) {
                let request = evidence
                    .api_requests
                    .get(&start)
                    .cloned()
                    .or_else(|| previous.and_then(|p| p.source_key.clone()));
                (Status::Api, rows, request)
            } else if let Some(request) = evidence.api_requests.get(&start) {
                (Status::Api, 0, Some(request.clone()))
            } else if was(Status::Api) {
                (Status::Api, 0, previous.and_then(|p| p.source_key.clone()))
            } else if let Some(file) = evidence.rejected.get(&start) {
                (Status::Rejected, 0, Some(file.clone()))
            } else if was(Status::Rejected) {
                (
                    Status::Rejected,
                    0,
                    previous.and_then(|p| p.source_key.clone()),
                )
            } else if end + clock.grace_ms <= clock.now {
                (Status::Missing, 0, None)
            } else {
                (Status::Pending, 0, None)
            };
            IntervalCoverage {
                start,
                end,
                status,
                rows,
                source_key,
            }
        })
        .collect()
}

/// Who a coverage file belongs to.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// Job name.
    pub job: &'a str,
    /// Connect instance alias.
    pub instance: &'a str,
    /// `queue` or `agent`.
    pub report: &'a str,
    /// The job's time zone (for `interval_start_local`).
    pub timezone: Tz,
}

/// The coverage table's columns (the `dt` partition column is not in the files).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job", DataType::Utf8, false),
        Field::new("instance", DataType::Utf8, false),
        Field::new("report", DataType::Utf8, false),
        Field::new("interval_start", utc_millis(), false),
        Field::new("interval_end", utc_millis(), false),
        Field::new(
            "interval_start_local",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("source_key", DataType::Utf8, true),
    ]))
}

/// The coverage file of `job` for `day`.
pub fn file_key(job: &str, day: i32) -> String {
    format!("{TABLE}/dt={}/{job}.parquet", layout::day_string(day))
}

/// One day's coverage as a batch.
pub fn to_batch(owner: &Owner, intervals: &[IntervalCoverage]) -> RecordBatch {
    let n = intervals.len();
    let repeat = |v: &str| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)));
    let columns: Vec<ArrayRef> = vec![
        repeat(owner.job),
        repeat(owner.instance),
        repeat(owner.report),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(intervals.iter().map(|i| i.start))
                .with_data_type(utc_millis()),
        ),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(intervals.iter().map(|i| i.end))
                .with_data_type(utc_millis()),
        ),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            intervals
                .iter()
                .map(|i| super::parse::local_millis(i.start, owner.timezone)),
        )),
        Arc::new(StringArray::from_iter_values(
            intervals.iter().map(|i| i.status.name()),
        )),
        Arc::new(Int64Array::from_iter_values(
            intervals.iter().map(|i| i.rows),
        )),
        Arc::new(StringArray::from_iter(
            intervals.iter().map(|i| i.source_key.as_deref()),
        )),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns match the coverage schema")
}

/// Reads a coverage file's intervals back (by interval start); rows that do not parse are
/// dropped (the day is rebuilt from the interval table anyway).
pub fn from_batches(batches: &[RecordBatch]) -> HashMap<i64, IntervalCoverage> {
    let mut out = HashMap::new();
    for batch in batches {
        let column = |name: &str| batch.column_by_name(name);
        let (Some(start), Some(end), Some(status), Some(rows), Some(source)) = (
            column("interval_start")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>()),
            column("interval_end")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>()),
            column("status").and_then(|c| c.as_any().downcast_ref::<StringArray>()),
            column("rows").and_then(|c| c.as_any().downcast_ref::<Int64Array>()),
            column("source_key").and_then(|c| c.as_any().downcast_ref::<StringArray>()),
        ) else {
            continue;
        };
        for i in 0..batch.num_rows() {
            let Some(parsed) = Status::parse(status.value(i)) else {
                continue;
            };
            out.insert(
                start.value(i),
                IntervalCoverage {
                    start: start.value(i),
                    end: end.value(i),
                    status: parsed,
                    rows: rows.value(i),
                    source_key: source.is_valid(i).then(|| source.value(i).to_string()),
                },
            );
        }
    }
    out
}

/// Whether row `i` was filled from the API, by its `origin` (rows without one are reports).
pub fn from_api(origin: Option<&StringArray>, i: usize) -> bool {
    origin.is_some_and(|o| o.is_valid(i) && o.value(i) == ORIGIN_API)
}

/// Rows of an interval table partition by interval start, split by origin (rows written before
/// the `origin` column existed came from reports).
pub fn rows_by_origin(batches: &[RecordBatch]) -> IntervalRows {
    let (mut reports, mut api) = (HashMap::new(), HashMap::new());
    for batch in batches {
        let Some(start) = batch
            .column_by_name("interval_start")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        else {
            continue;
        };
        let origin = batch
            .column_by_name(super::schema::ORIGIN)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        for i in 0..batch.num_rows() {
            let counts = if from_api(origin, i) {
                &mut api
            } else {
                &mut reports
            };
            *counts.entry(start.value(i)).or_insert(0) += 1;
        }
    }
    (reports, api)
}

/// Rows by interval start and origin (reports, API) of an interval table partition file,
/// reading only the two columns it needs.
pub fn partition_rows(bytes: Bytes) -> Result<IntervalRows, crate::lake::parquet::ParquetError> {
    let batches =
        crate::lake::parquet::decode_columns(bytes, &["interval_start", super::schema::ORIGIN])?;
    Ok(rows_by_origin(&batches))
}

/// Rows by interval start: from reports, and filled from the API.
pub type IntervalRows = (HashMap<i64, i64>, HashMap<i64, i64>);

/// Counts of a set of days' coverage by status.
pub fn tally<'a>(days: impl IntoIterator<Item = &'a [IntervalCoverage]>) -> BTreeMap<Status, u64> {
    let mut counts = BTreeMap::new();
    for day in days {
        for interval in day {
            *counts.entry(interval.status).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i32 {
        layout::day_number(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn a_day_has_48_half_hours_and_46_or_50_when_the_clocks_change() {
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(expected_intervals(day(2024, 3, 9), ny, 30).len(), 48);
        assert_eq!(expected_intervals(day(2024, 3, 10), ny, 30).len(), 46);
        assert_eq!(expected_intervals(day(2024, 11, 3), ny, 30).len(), 50);
        assert_eq!(expected_intervals(day(2024, 3, 10), ny, 15).len(), 92);
        assert_eq!(expected_intervals(day(2024, 3, 10), Tz::UTC, 60).len(), 24);
        // 2024-03-10 starts at 05:00 UTC in New York (EST) and ends at 04:00 UTC (EDT).
        let intervals = expected_intervals(day(2024, 3, 10), ny, 30);
        assert_eq!(intervals[0].0, 1_710_046_800_000);
        assert_eq!(intervals.last().unwrap().1, 1_710_129_600_000);
    }

    #[test]
    fn a_half_hour_offset_zone_keeps_the_utc_grid() {
        let india: Tz = "Asia/Kolkata".parse().unwrap();
        let intervals = expected_intervals(day(2024, 3, 10), india, 30);
        assert_eq!(intervals.len(), 48);
        assert!(intervals.iter().all(|(s, _)| s % 1_800_000 == 0));
    }

    #[test]
    fn status_precedence_and_the_grace() {
        let intervals: Vec<(i64, i64)> = (0..6).map(|i| (i * 1000, (i + 1) * 1000)).collect();
        let mut evidence = Evidence::default();
        evidence.report_rows.insert(0, 3);
        evidence.api_rows.insert(0, 2); // a report outranks the API
        evidence.api_rows.insert(1000, 2);
        evidence.rejected.insert(1000, "f".into()); // the API outranks a rejected file
        evidence.rejected.insert(2000, "g".into());
        evidence.empty_reports.push(3000);
        let clock = Clock {
            now: 5500,
            grace_ms: 500,
            first_start: None,
        };
        let got: Vec<(Status, i64)> = resolve(&intervals, &evidence, clock)
            .iter()
            .map(|c| (c.status, c.rows))
            .collect();
        assert_eq!(
            got,
            vec![
                (Status::Report, 3),
                (Status::Api, 2),
                (Status::Rejected, 0),
                (Status::Report, 0),
                (Status::Missing, 0), // ends at 5000, +500 grace = 5500: overdue
                (Status::Pending, 0),
            ]
        );
        let from_first = resolve(
            &intervals,
            &evidence,
            Clock {
                first_start: Some(2000),
                ..clock
            },
        );
        assert_eq!(from_first.len(), 4);
    }

    #[test]
    fn previous_statuses_carry_over_until_something_better_arrives() {
        let intervals = vec![(0, 1000), (1000, 2000), (2000, 3000)];
        let previous: HashMap<i64, IntervalCoverage> = [
            (0, Status::Report, None),
            (1000, Status::Api, Some("req")),
            (2000, Status::Rejected, Some("bad.csv")),
        ]
        .into_iter()
        .map(|(start, status, key)| {
            (
                start,
                IntervalCoverage {
                    start,
                    end: start + 1000,
                    status,
                    rows: 0,
                    source_key: key.map(str::to_string),
                },
            )
        })
        .collect();
        let mut evidence = Evidence {
            previous,
            ..Evidence::default()
        };
        let clock = Clock {
            now: 10_000,
            grace_ms: 0,
            first_start: None,
        };
        let statuses = |e: &Evidence| -> Vec<Status> {
            resolve(&intervals, e, clock)
                .iter()
                .map(|c| c.status)
                .collect()
        };
        assert_eq!(
            statuses(&evidence),
            vec![Status::Report, Status::Api, Status::Rejected]
        );
        evidence.report_rows.insert(1000, 4);
        evidence.report_rows.insert(2000, 1);
        assert_eq!(
            statuses(&evidence),
            vec![Status::Report, Status::Report, Status::Report]
        );
    }

    #[test]
    fn coverage_round_trips_through_a_batch() {
        let owner = Owner {
            job: "j",
            instance: "i",
            report: "queue",
            timezone: Tz::UTC,
        };
        let intervals = vec![
            IntervalCoverage {
                start: 0,
                end: 1_800_000,
                status: Status::Missing,
                rows: 0,
                source_key: None,
            },
            IntervalCoverage {
                start: 1_800_000,
                end: 3_600_000,
                status: Status::Rejected,
                rows: 0,
                source_key: Some("file://x.csv".into()),
            },
        ];
        let batch = to_batch(&owner, &intervals);
        let back = from_batches(&[batch]);
        assert_eq!(back.len(), 2);
        assert_eq!(back[&1_800_000], intervals[1]);
    }
}
