//! One report file's rows → Arrow record batches, split by reporting day.
//!
//! Pure: bytes in, batches out. The caller supplies the layout (from the header row), the
//! lineage values and the time zone; a row that does not fit fails the whole file with its line
//! and column, because a half-loaded report would silently under-count an interval.

use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;

use super::header::FileLayout;
use super::records::{Record, Records};
use super::schema::{utc_millis, Range, ReportSchema, Unit};
use super::value::{self, ValueError};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A row that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", column.as_ref().map(|c| format!(", column {} {c:?}", column_number.unwrap_or_default())).unwrap_or_default())]
pub struct RowError {
    /// 1-based line in the file.
    pub line: u64,
    /// Header of the offending column (cut short), when one is to blame.
    pub column: Option<String>,
    /// 1-based CSV column of the offending cell.
    pub column_number: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

/// Per-file constants that every row carries.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// The report's table definition.
    pub schema: &'static ReportSchema,
    /// Column positions from the header row.
    pub layout: Arc<FileLayout>,
    /// Connect instance alias.
    pub instance: Arc<str>,
    /// Lineage: where the rows came from.
    pub source_key: Arc<str>,
    /// Lineage: export time from the file name, ms since the epoch.
    pub exported_at_ms: i64,
    /// Time zone of the reporting day.
    pub timezone: Tz,
    /// Known columns followed by this file's unknown-header columns.
    pub batch_schema: SchemaRef,
    /// The report's interval in milliseconds: starts are aligned to it, ends one interval later.
    pub interval_ms: i64,
    /// Partition days (since 1970-01-01) a row may land in: the table's projection range.
    pub days: std::ops::RangeInclusive<i32>,
}

impl FileContext {
    /// Builds the batch schema for `layout`.
    pub fn batch_schema(schema: &ReportSchema, layout: &FileLayout) -> SchemaRef {
        let mut fields = schema.known_fields();
        fields.extend(
            layout
                .unknown
                .iter()
                .map(|(_, name)| Field::new(name, arrow::datatypes::DataType::Float64, true)),
        );
        Arc::new(Schema::new(fields))
    }
}

/// Rows of one reporting day (`dt`, days since 1970-01-01 in the job's time zone).
#[derive(Debug, Clone)]
pub struct DayBatch {
    /// The partition day.
    pub day: i32,
    /// The rows.
    pub batch: RecordBatch,
}

/// A metric column being built; one the file lacks is all nulls and is made at the end.
enum MetricBuilder {
    Count(Int64Builder),
    Float(Float64Builder, Unit),
    Text(StringBuilder),
    Absent(DataType),
}

impl MetricBuilder {
    fn finish(self, rows: usize) -> ArrayRef {
        match self {
            MetricBuilder::Count(mut b) => Arc::new(b.finish()),
            MetricBuilder::Float(mut b, _) => Arc::new(b.finish()),
            MetricBuilder::Text(mut b) => Arc::new(b.finish()),
            MetricBuilder::Absent(data_type) => new_null_array(&data_type, rows),
        }
    }
}

/// Remembers the last interval strings: every row of a 30-minute file has the same ones.
#[derive(Default)]
struct IntervalCache {
    /// Whether `raw`/`utc`/`local` hold a checked start.
    valid: bool,
    raw: Vec<u8>,
    utc: i64,
    local: i64,
    end_raw: Option<Vec<u8>>,
    end_utc: i64,
}

/// Parses the data rows in `chunk` (no header), whose first byte is on line `first_line`.
pub fn parse_rows(
    ctx: &FileContext,
    chunk: &[u8],
    first_line: u64,
) -> Result<Vec<DayBatch>, RowError> {
    let layout = &*ctx.layout;
    let width = layout.headers.len();
    // Every row ends in a newline, so this bounds the row count (quoted newlines only over-count).
    let capacity = memchr::memchr_iter(b'\n', chunk).count() + 1;
    let mut names = StringBuilder::with_capacity(capacity, capacity * 16);
    let mut starts = TimestampMillisecondBuilder::with_capacity(capacity);
    let mut ends = TimestampMillisecondBuilder::with_capacity(capacity);
    let mut locals = TimestampMillisecondBuilder::with_capacity(capacity);
    let mut days: Vec<i32> = Vec::with_capacity(capacity);
    let mut metrics: Vec<MetricBuilder> = ctx
        .schema
        .metrics
        .iter()
        .zip(&layout.metrics)
        .map(|(m, position)| match (m.unit, position) {
            (_, None) => MetricBuilder::Absent(m.unit.data_type()),
            (Unit::Count, Some(_)) => MetricBuilder::Count(Int64Builder::with_capacity(capacity)),
            (Unit::Seconds | Unit::Percent, Some(_)) => {
                MetricBuilder::Float(Float64Builder::with_capacity(capacity), m.unit)
            }
            (Unit::Text, Some(_)) => MetricBuilder::Text(StringBuilder::new()),
        })
        .collect();
    let mut unknown: Vec<Float64Builder> = layout
        .unknown
        .iter()
        .map(|_| Float64Builder::with_capacity(capacity))
        .collect();
    let unknown_ranges: Vec<(Range, Range)> = layout
        .unknown
        .iter()
        .map(|(_, name)| {
            (
                ctx.schema.unknown_range(name, false),
                ctx.schema.unknown_range(name, true),
            )
        })
        .collect();
    let mut cache = IntervalCache::default();

    let mut reader = Records::new(chunk);
    let mut record = Record::default();
    let mut lines = LineCounter::new(chunk, first_line);
    while reader.read(&mut record) {
        let line = lines.line_at(record.position());
        if record.len() == 1 && record[0].trim_ascii().is_empty() {
            continue; // blank line
        }
        if record.len() != width {
            return Err(RowError {
                line,
                column: None,
                column_number: None,
                reason: format!(
                    "row has {} fields but the header has {width} (truncated or extra fields)",
                    record.len()
                ),
            });
        }
        let cell_error = |index: usize, reason: String| RowError {
            line,
            column: Some(layout.headers[index].clone()),
            column_number: Some(index + 1),
            reason,
        };
        let fail = |index: usize, e: ValueError| cell_error(index, e.to_string());
        let missing = |index: usize, what: &str| cell_error(index, format!("{what} is empty"));
        let in_range = |index: usize, value: f64, range: &Range| {
            if range.contains(value) {
                Ok(())
            } else {
                Err(fail(
                    index,
                    ValueError::OutOfRange {
                        value: value::quoted(record[index].trim_ascii()),
                        range: range.to_string(),
                    },
                ))
            }
        };

        let name =
            value::parse_text(&record[layout.grouping]).map_err(|e| fail(layout.grouping, e))?;
        names.append_value(name.ok_or_else(|| missing(layout.grouping, "the name"))?);

        let raw_start = &record[layout.interval_start];
        if !cache.valid || raw_start != cache.raw.as_slice() {
            cache.valid = false;
            let at = layout.interval_start;
            let utc = value::parse_timestamp_millis(raw_start)
                .map_err(|e| fail(at, e))?
                .ok_or_else(|| missing(at, "StartInterval"))?;
            if utc.rem_euclid(ctx.interval_ms) != 0 {
                return Err(cell_error(
                    at,
                    format!(
                        "StartInterval {} is not on the {}-minute grid of the report (source.interval_minutes)",
                        value::quoted(raw_start.trim_ascii()),
                        ctx.interval_ms / 60_000
                    ),
                ));
            }
            let local = local_millis(utc, ctx.timezone);
            let day = local.div_euclid(MILLIS_PER_DAY);
            if !(i64::from(*ctx.days.start())..=i64::from(*ctx.days.end())).contains(&day) {
                return Err(cell_error(
                    at,
                    format!(
                        "StartInterval {} is outside the table's date range {} to {} (catalog.projection_start to tomorrow)",
                        value::quoted(raw_start.trim_ascii()),
                        day_text(*ctx.days.start()),
                        day_text(*ctx.days.end())
                    ),
                ));
            }
            cache.raw.clear();
            cache.raw.extend_from_slice(raw_start);
            cache.utc = utc;
            cache.local = local;
            cache.end_raw = None;
            cache.valid = true;
        }
        starts.append_value(cache.utc);
        locals.append_value(cache.local);
        days.push(cache.local.div_euclid(MILLIS_PER_DAY) as i32);
        match layout.interval_end {
            Some(i) => {
                let raw_end = &record[i];
                if cache.end_raw.as_deref() != Some(raw_end) {
                    let end = value::parse_timestamp_millis(raw_end)
                        .map_err(|e| fail(i, e))?
                        .ok_or_else(|| missing(i, "EndInterval"))?;
                    if end <= cache.utc {
                        return Err(cell_error(
                            i,
                            format!(
                                "EndInterval {} is not after StartInterval {}",
                                value::quoted(raw_end.trim_ascii()),
                                value::quoted(cache.raw.trim_ascii())
                            ),
                        ));
                    }
                    if end - cache.utc != ctx.interval_ms {
                        return Err(cell_error(
                            i,
                            format!(
                                "the interval {} to {} is not {} minutes long (source.interval_minutes)",
                                value::quoted(cache.raw.trim_ascii()),
                                value::quoted(raw_end.trim_ascii()),
                                ctx.interval_ms / 60_000
                            ),
                        ));
                    }
                    cache.end_raw = Some(raw_end.to_vec());
                    cache.end_utc = end;
                }
                ends.append_value(cache.end_utc);
            }
            None => ends.append_null(),
        }

        for ((builder, position), metric) in metrics
            .iter_mut()
            .zip(&layout.metrics)
            .zip(&ctx.schema.metrics)
        {
            let Some(i) = *position else {
                continue;
            };
            let raw = &record[i];
            let err = |e| fail(i, e);
            match builder {
                MetricBuilder::Count(b) => {
                    let v = value::parse_count(raw).map_err(err)?;
                    if let Some(v) = v {
                        in_range(i, v as f64, &metric.range)?;
                    }
                    b.append_option(v)
                }
                MetricBuilder::Float(b, unit) => {
                    let v = match unit {
                        Unit::Percent => value::parse_percent(raw),
                        _ => value::parse_seconds(raw),
                    }
                    .map_err(err)?;
                    if let Some(v) = v {
                        in_range(i, v, &metric.range)?;
                    }
                    b.append_option(v)
                }
                MetricBuilder::Text(b) => b.append_option(value::parse_text(raw).map_err(err)?),
                MetricBuilder::Absent(_) => unreachable!("a metric with a position has a builder"),
            }
        }
        for ((builder, (i, _)), (plain, percent)) in
            unknown.iter_mut().zip(&layout.unknown).zip(&unknown_ranges)
        {
            let raw = &record[*i];
            let v = value::parse_unknown_metric(raw).map_err(|e| fail(*i, e))?;
            if let Some(v) = v {
                let range = if raw.trim_ascii().ends_with(b"%") {
                    percent
                } else {
                    plain
                };
                in_range(*i, v, range)?;
            }
            builder.append_option(v);
        }
    }

    let rows = days.len();
    let utc = utc_millis();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &*ctx.instance,
            rows,
        ))),
        Arc::new(names.finish()),
        Arc::new(starts.finish().with_data_type(utc.clone())),
        Arc::new(ends.finish().with_data_type(utc.clone())),
        Arc::new(locals.finish()),
    ];
    columns.extend(metrics.into_iter().map(|b| b.finish(rows)));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(&*ctx.source_key, rows),
    )));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(vec![ctx.exported_at_ms; rows]).with_data_type(utc),
    ));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(super::coverage::ORIGIN_REPORT, rows),
    )));
    columns.extend(
        unknown
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef),
    );
    let batch = RecordBatch::try_new(ctx.batch_schema.clone(), columns).map_err(|e| RowError {
        line: first_line,
        column: None,
        column_number: None,
        reason: format!("internal: cannot assemble rows: {e}"),
    })?;
    Ok(split_by_day(batch, &days))
}

/// Line numbers from byte offsets, counting every newline (quoted ones too, as editors do).
/// A record starting right after a `\r` (csv stops before the `\n` of a CRLF) is on the next line.
struct LineCounter<'a> {
    text: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8], first_line: u64) -> Self {
        LineCounter {
            text,
            counted_to: 0,
            line: first_line,
        }
    }

    /// The line of the byte at `offset`; offsets must not decrease between calls.
    fn line_at(&mut self, offset: usize) -> u64 {
        let mut offset = offset.min(self.text.len());
        while offset < self.text.len() && matches!(self.text[offset], b'\r' | b'\n') {
            offset += 1;
        }
        if offset > self.counted_to {
            self.line +=
                memchr::memchr_iter(b'\n', &self.text[self.counted_to..offset]).count() as u64;
            self.counted_to = offset;
        }
        self.line
    }
}

/// `YYYY-MM-DD` of a day number.
fn day_text(day: i32) -> String {
    crate::lake::layout::day_string(day)
}

/// Wall-clock milliseconds of `utc_ms` in `tz` (the same instant for UTC).
pub fn local_millis(utc_ms: i64, tz: Tz) -> i64 {
    if tz == Tz::UTC {
        return utc_ms;
    }
    match DateTime::from_timestamp_millis(utc_ms) {
        Some(instant) => tz
            .from_utc_datetime(&instant.naive_utc())
            .naive_local()
            .and_utc()
            .timestamp_millis(),
        None => utc_ms,
    }
}

fn split_by_day(batch: RecordBatch, days: &[i32]) -> Vec<DayBatch> {
    let Some(&first) = days.first() else {
        return Vec::new();
    };
    if days.iter().all(|&d| d == first) {
        return vec![DayBatch { day: first, batch }];
    }
    let mut distinct: Vec<i32> = days.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|day| {
            let indices: UInt32Array = days
                .iter()
                .enumerate()
                .filter(|(_, d)| **d == day)
                .map(|(i, _)| i as u32)
                .collect();
            let batch =
                arrow::compute::take_record_batch(&batch, &indices).expect("indices are in bounds");
            DayBatch { day, batch }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::header::FileLayout;
    use crate::job::ReportKind;
    use arrow::array::{Array, Float64Array, Int64Array};
    use arrow::datatypes::DataType;

    fn context(headers: &[&str], tz: Tz) -> FileContext {
        let schema = ReportSchema::get(ReportKind::Queue);
        let layout = FileLayout::from_headers(schema, headers.iter().copied()).unwrap();
        FileContext {
            schema,
            batch_schema: FileContext::batch_schema(schema, &layout),
            layout: Arc::new(layout),
            instance: "demo".into(),
            source_key: "file://r/q-2024-03-10T16:30:00Z.csv".into(),
            exported_at_ms: 1_710_088_200_000,
            timezone: tz,
            interval_ms: 30 * 60_000,
            days: 17_167..=40_000, // 2017-01-01 ..= 2079
        }
    }

    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<T>()
            .unwrap()
    }

    const HEADERS: &[&str] = &[
        "Queue",
        "StartInterval",
        "EndInterval",
        "Contacts handled",
        "Average handle time",
        "Service level 20 seconds",
        "Coffee break time",
    ];

    #[test]
    fn parses_typed_values_and_nulls() {
        let ctx = context(HEADERS, Tz::UTC);
        let rows = b"\"Sales, EU\",2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,12,30.3,87.50%,60\nK\xc3\xb6ln,2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,-,,-,-\n";
        let out = parse_rows(&ctx, rows, 2).unwrap();
        assert_eq!(out.len(), 1);
        let b = &out[0].batch;
        assert_eq!(out[0].day, 19792); // 2024-03-10
        let names = column::<StringArray>(b, "queue");
        assert_eq!(names.value(0), "Sales, EU");
        assert_eq!(names.value(1), "Köln");
        let handled = column::<Int64Array>(b, "contacts_handled");
        assert_eq!((handled.value(0), handled.is_null(1)), (12, true));
        let aht = column::<Float64Array>(b, "average_handle_time_seconds");
        assert_eq!((aht.value(0), aht.is_null(1)), (30.3, true));
        let sl = column::<Float64Array>(b, "service_level_20_seconds_pct");
        assert_eq!((sl.value(0), sl.is_null(1)), (87.5, true));
        let coffee = column::<Float64Array>(b, "coffee_break_time_seconds");
        assert_eq!(coffee.value(0), 60.0);
        assert_eq!(
            b.schema().field(b.num_columns() - 1).name(),
            "coffee_break_time_seconds"
        );
        // absent metrics are null, lineage is filled
        assert_eq!(column::<Int64Array>(b, "contacts_queued").null_count(), 2);
        assert_eq!(
            column::<StringArray>(b, "source_key").value(1),
            "file://r/q-2024-03-10T16:30:00Z.csv"
        );
        assert_eq!(
            b.schema()
                .field_with_name("interval_start")
                .unwrap()
                .data_type(),
            &utc_millis()
        );
        assert_eq!(
            b.schema()
                .field_with_name("interval_start_local")
                .unwrap()
                .data_type(),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None)
        );
    }

    #[test]
    fn truncated_row_names_its_line() {
        let ctx = context(HEADERS, Tz::UTC);
        let rows = b"A,2024-03-10T16:00:00Z,2024-03-10T16:30:00Z,1,2,3%,4\nB,2024-03-10T16:00:00Z,2024-03-10T16:30:00Z,1\n";
        let err = parse_rows(&ctx, rows, 2).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("truncated"), "{}", err.reason);
    }

    #[test]
    fn bad_value_names_line_and_column() {
        let ctx = context(HEADERS, Tz::UTC);
        let rows = b"A,2024-03-10T16:00:00Z,2024-03-10T16:30:00Z,abc,2,3%,4\n";
        let err = parse_rows(&ctx, rows, 7).unwrap_err();
        assert_eq!(
            (err.line, err.column.as_deref()),
            (7, Some("Contacts handled"))
        );
        assert!(err.reason.contains("abc"));
    }

    #[test]
    fn crlf_rows_report_the_right_line() {
        let ctx = context(&["Queue", "StartInterval"], Tz::UTC);
        let rows = b"A,2024-03-10T16:00:00Z\r\nB,2024-03-10T16:00:00Z\r\nC,oops\r\n";
        assert_eq!(parse_rows(&ctx, rows, 2).unwrap_err().line, 4);
        // a chunk may start with the '\n' of a CRLF split by the header reader
        let rows = b"\nA,2024-03-10T16:00:00Z\r\nC,oops\r\n";
        assert_eq!(parse_rows(&ctx, rows, 1).unwrap_err().line, 3);
    }

    #[test]
    fn quoted_newline_keeps_line_numbers_right() {
        let ctx = context(&["Queue", "StartInterval"], Tz::UTC);
        let rows = b"\"two\nlines\",2024-03-10T16:00:00Z\nB,not-a-time\n";
        let err = parse_rows(&ctx, rows, 2).unwrap_err();
        assert_eq!(err.line, 4);
    }

    #[test]
    fn dst_day_partitions_by_local_day() {
        // America/New_York springs forward on 2024-03-10: 05:00Z is local midnight (EST, -5).
        let ctx = context(
            &["Queue", "StartInterval"],
            "America/New_York".parse().unwrap(),
        );
        let rows = b"A,2024-03-10T04:30:00Z\nA,2024-03-10T05:00:00Z\nA,2024-03-10T07:00:00Z\nA,2024-03-11T03:30:00Z\n";
        let out = parse_rows(&ctx, rows, 2).unwrap();
        let days: Vec<(i32, usize)> = out.iter().map(|d| (d.day, d.batch.num_rows())).collect();
        assert_eq!(days, vec![(19791, 1), (19792, 3)]);
        let locals = column::<TimestampMillisecondArray>(&out[1].batch, "interval_start_local");
        // 05:00Z = 00:00 EST; 07:00Z = 03:00 EDT (02:00-03:00 does not exist); 03:30Z next day = 23:30 EDT
        let wall = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap()
                .naive_utc()
                .to_string()
        };
        assert_eq!(wall(locals.value(0)), "2024-03-10 00:00:00");
        assert_eq!(wall(locals.value(1)), "2024-03-10 03:00:00");
        assert_eq!(wall(locals.value(2)), "2024-03-10 23:30:00");
    }

    fn reject_reason(headers: &[&str], rows: &[u8]) -> RowError {
        parse_rows(&context(headers, Tz::UTC), rows, 2).unwrap_err()
    }

    #[test]
    fn empty_start_interval_in_the_first_row_is_rejected() {
        let err = reject_reason(&["Queue", "StartInterval"], b"A,\nB,2024-03-10T16:00:00Z\n");
        assert_eq!((err.line, err.column_number), (2, Some(2)));
        assert!(
            err.reason.contains("StartInterval is empty"),
            "{}",
            err.reason
        );
        let err = reject_reason(&["Queue", "StartInterval"], b"A,-\n");
        assert!(err.reason.contains("empty"), "{}", err.reason);
    }

    #[test]
    fn intervals_follow_the_report_grid() {
        let h = &["Queue", "StartInterval", "EndInterval"];
        for (row, words) in [
            ("A,2024-03-10T16:10:00Z,2024-03-10T16:40:00Z\n", "grid"),
            ("A,2024-03-10T16:00:00.001Z,2024-03-10T16:30:00Z\n", "grid"),
            ("A,2024-03-10T16:00:00Z,2024-03-10T15:30:00Z\n", "not after"),
            ("A,2024-03-10T16:00:00Z,2024-03-10T16:00:00Z\n", "not after"),
            (
                "A,2024-03-10T16:00:00Z,2024-03-10T21:00:00Z\n",
                "not 30 minutes",
            ),
            ("A,2024-03-10T16:00:00Z,-\n", "EndInterval is empty"),
            (
                "A,0000-01-01T00:00:00Z,0000-01-01T00:30:00Z\n",
                "date range",
            ),
            (
                "A,2016-12-31T23:30:00Z,2017-01-01T00:00:00Z\n",
                "date range",
            ),
            (
                "A,9999-12-31T23:00:00Z,9999-12-31T23:30:00Z\n",
                "date range",
            ),
        ] {
            let err = reject_reason(h, row.as_bytes());
            assert!(err.reason.contains(words), "{row:?}: {}", err.reason);
            assert!(err.column_number.is_some(), "{err}");
        }
        // 15-minute reports
        let mut ctx = context(h, Tz::UTC);
        ctx.interval_ms = 15 * 60_000;
        assert!(parse_rows(&ctx, b"A,2024-03-10T16:15:00Z,2024-03-10T16:30:00Z\n", 2).is_ok());
        assert!(parse_rows(&ctx, b"A,2024-03-10T16:00:00Z,2024-03-10T16:30:00Z\n", 2).is_err());
    }

    #[test]
    fn values_outside_their_unit_range_name_the_cell() {
        let s = "2024-03-10T16:00:00Z,2024-03-10T16:30:00Z";
        for (row, column) in [
            (format!("A,{s},-1,2,3%,4"), "Contacts handled"),
            (format!("A,{s},1,-0.5,3%,4"), "Average handle time"),
            (format!("A,{s},1,2,100.01%,4"), "Service level 20 seconds"),
            (format!("A,{s},1,2,-1%,4"), "Service level 20 seconds"),
            (format!("A,{s},1,2,3%,-4"), "Coffee break time"),
            (format!("A,{s},1,2,3%,1e400"), "Coffee break time"),
        ] {
            let err = reject_reason(HEADERS, format!("{row}\n").as_bytes());
            assert_eq!(err.column.as_deref(), Some(column), "{row}: {err}");
            assert_eq!(err.line, 2);
        }
        let err = reject_reason(HEADERS, format!("A,{s},-1,2,3%,4\n").as_bytes());
        assert!(
            err.reason.contains("\"-1\"") && err.reason.contains("at least 0"),
            "{}",
            err.reason
        );
        // an unknown plain number may be negative; an unknown percentage may not leave 0-100
        let ctx = context(&["Queue", "StartInterval", "Frobnication ratio"], Tz::UTC);
        assert!(parse_rows(&ctx, b"A,2024-03-10T16:00:00Z,-0.5\n", 2).is_ok());
        assert!(parse_rows(&ctx, b"A,2024-03-10T16:00:00Z,101%\n", 2).is_err());
    }
}
