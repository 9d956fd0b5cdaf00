//! REST JSON records and Bulk API 2.0 CSV pages → one canonical Arrow form (reference §0, §8.1).
//!
//! Both APIs go through the same value parsers, so the same record gives identical arrays:
//! `+0000` and `Z` datetimes become UTC milliseconds, an empty cell and JSON `null` are both
//! null (Salesforce has no empty text), `42.0` in an integer field is 42, E-notation doubles
//! parse exactly, `true`/`TRUE`/JSON `true` are one boolean, NUL bytes are stripped from text.
//! Currency, percent and scaled numbers are decimals parsed from the text both APIs send (REST
//! JSON numbers keep their text: serde_json's `arbitrary_precision`), never through f64; digits
//! beyond the scale round half away from zero, a value too large for the precision is an error.
//! A literal `NA`, `N/A`, `null` or `#N/A` stays text: it is never turned into null.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::compute::kernels::cast_utils::parse_decimal as arrow_parse_decimal;
use arrow::datatypes::Decimal128Type;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveTime;

use super::describe::{Column, ValueKind};

/// A value or a page that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// One value does not parse as its field type.
    #[error("{source_name}: record {record}, field {field}: {reason} (value {value:?})")]
    Value {
        /// Which page or response.
        source_name: String,
        /// Record id when known, else the 1-based row.
        record: String,
        /// SOQL path of the field.
        field: String,
        /// The offending text (shortened).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The CSV page itself is malformed or lacks a selected column.
    #[error("{source_name}: {reason}")]
    Page {
        /// Which page.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The Arrow type of a value kind.
pub fn arrow_type(kind: ValueKind) -> DataType {
    match kind {
        ValueKind::Text | ValueKind::Time => DataType::Utf8,
        ValueKind::Boolean => DataType::Boolean,
        ValueKind::Integer => DataType::Int64,
        ValueKind::Double => DataType::Float64,
        ValueKind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ValueKind::Date => DataType::Date32,
        ValueKind::DateTime => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    }
}

/// The table schema of a column list (every column nullable: describe's `nillable` is not trusted).
pub fn schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.kind), true))
            .collect::<Vec<_>>(),
    ))
}

/// Why a text value does not parse (the caller adds where it was).
type Invalid = &'static str;

/// `true`/`false` in any case.
pub fn parse_bool(text: &str) -> Result<bool, Invalid> {
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("expected true or false")
    }
}

/// An integer, also when written as a whole double (`42.0`, `4.2E1`).
pub fn parse_int(text: &str) -> Result<i64, Invalid> {
    if let Ok(v) = text.parse::<i64>() {
        return Ok(v);
    }
    let v = parse_double(text).map_err(|_| "expected an integer")?;
    if v.fract() == 0.0 && v.abs() < 9.2e18 {
        Ok(v as i64)
    } else {
        Err("expected an integer")
    }
}

/// A finite double, including Java's E-notation (`1.2345678E7`).
pub fn parse_double(text: &str) -> Result<f64, Invalid> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err("expected a number"),
    }
}

/// A decimal's text (`1234.5`, Java's `1.2345678E7`) → its unscaled value at `scale`: digits
/// beyond the scale round half away from zero; more integer digits than `precision - scale`
/// is an error.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, Invalid> {
    // arrow's parser trims whitespace; Salesforce never sends any, so a padded value is bad.
    if text.is_empty() || text.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err("expected a decimal number");
    }
    arrow_parse_decimal::<Decimal128Type>(text, precision, scale).map_err(|_| {
        if text.parse::<f64>().is_ok_and(f64::is_finite) {
            "does not fit the field's precision"
        } else {
            "expected a decimal number"
        }
    })
}

/// `yyyy-MM-dd` (a trailing `Z`, seen in older Bulk samples, is accepted) → days since epoch.
pub fn parse_date(text: &str) -> Result<i32, Invalid> {
    const BAD: Invalid = "expected a date yyyy-MM-dd";
    let text = text.strip_suffix('Z').unwrap_or(text);
    let days = civil_days(text.as_bytes()).ok_or(BAD)?;
    if text.len() != 10 {
        return Err(BAD);
    }
    i32::try_from(days).map_err(|_| BAD)
}

/// Digits → number, `None` on anything else.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Days since 1970-01-01 of the `yyyy-MM-dd` at the start of `b` (proleptic Gregorian),
/// validating month and day: a hand-written fast path, this runs once per date cell.
fn civil_days(b: &[u8]) -> Option<i64> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > month_days {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `yyyy-MM-ddTHH:mm:ss[.SSS](Z|+HHmm|+HH:mm)` → UTC milliseconds. REST writes `+0000`, Bulk `Z`.
pub fn parse_datetime(text: &str) -> Result<i64, Invalid> {
    const BAD: Invalid = "expected a datetime yyyy-MM-ddTHH:mm:ss.SSS with Z or +HHmm";
    let b = text.as_bytes();
    if b.len() < 20 || b[10] != b'T' {
        return Err(BAD);
    }
    let days = civil_days(b).ok_or(BAD)?;
    let num = |s: &[u8]| digits(s).ok_or(BAD);
    if b[13] != b':' || b[16] != b':' {
        return Err(BAD);
    }
    let (h, m, s) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if h > 23 || m > 59 || s > 60 {
        return Err(BAD);
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return Err(BAD);
        }
        // Milliseconds from the first three digits (Salesforce writes exactly three).
        let digits = &b[start..end.min(start + 3)];
        millis = num(digits)? * 10i64.pow(3 - digits.len() as u32);
        i = end;
    }
    let offset_minutes = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (oh, om) = match rest {
                [a, b_, b':', c, d] => (num(&[*a, *b_])?, num(&[*c, *d])?),
                [a, b_, c, d] => (num(&[*a, *b_])?, num(&[*c, *d])?),
                _ => return Err(BAD),
            };
            let minutes = oh * 60 + om;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return Err(BAD),
    };
    Ok((days * 86_400 + h * 3600 + m * 60 + s - offset_minutes * 60) * 1000 + millis)
}

/// `HH:mm:ss[.SSS][Z]` → canonical `HH:mm:ss.SSS`.
pub fn parse_time(text: &str) -> Result<String, Invalid> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
        .map_err(|_| "expected a time HH:mm:ss.SSS")?;
    Ok(time.format("%H:%M:%S%.3f").to_string())
}

enum Builder {
    Text(StringBuilder),
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    Double(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    DateTime(TimestampMillisecondBuilder),
}

impl Builder {
    fn new(kind: ValueKind, capacity: usize) -> Builder {
        match kind {
            ValueKind::Text | ValueKind::Time => {
                Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ValueKind::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ValueKind::Integer => Builder::Integer(Int64Builder::with_capacity(capacity)),
            ValueKind::Double => Builder::Double(Float64Builder::with_capacity(capacity)),
            ValueKind::Decimal { precision, scale } => Builder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(precision, scale)
                    .expect("ValueKind::decimal checked precision and scale"),
                precision,
                scale,
            ),
            ValueKind::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            ValueKind::DateTime => Builder::DateTime(
                TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Integer(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
            Builder::Decimal(b, ..) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::DateTime(b) => b.append_null(),
        }
    }

    /// Appends a non-empty text value of `kind`.
    fn text(&mut self, kind: ValueKind, text: &str) -> Result<(), Invalid> {
        match self {
            Builder::Text(b) if kind == ValueKind::Time => b.append_value(parse_time(text)?),
            Builder::Text(b) => {
                if text.contains('\0') {
                    b.append_value(text.replace('\0', ""));
                } else {
                    b.append_value(text);
                }
            }
            Builder::Boolean(b) => b.append_value(parse_bool(text)?),
            Builder::Integer(b) => b.append_value(parse_int(text)?),
            Builder::Double(b) => b.append_value(parse_double(text)?),
            Builder::Decimal(b, precision, scale) => {
                b.append_value(parse_decimal(text, *precision, *scale)?)
            }
            Builder::Date(b) => b.append_value(parse_date(text)?),
            Builder::DateTime(b) => b.append_value(parse_datetime(text)?),
        }
        Ok(())
    }

    /// Appends a REST JSON value of `kind`.
    fn json(&mut self, kind: ValueKind, value: &serde_json::Value) -> Result<(), Invalid> {
        use serde_json::Value as J;
        match (value, &mut *self) {
            (J::Null, _) => self.null(),
            (J::String(s), _) if s.is_empty() => self.null(),
            (J::String(s), _) => self.text(kind, s)?,
            (J::Bool(v), Builder::Boolean(b)) => b.append_value(*v),
            (J::Number(n), Builder::Integer(b)) => match n.as_i64() {
                Some(v) => b.append_value(v),
                None => b.append_value(parse_int(&n.to_string())?),
            },
            (J::Number(n), Builder::Double(b)) => {
                b.append_value(n.as_f64().ok_or("expected a number")?)
            }
            // The number's own text (arbitrary_precision), not its nearest f64.
            (J::Number(n), Builder::Decimal(b, precision, scale)) => {
                b.append_value(parse_decimal(n.as_str(), *precision, *scale)?)
            }
            (J::Bool(_) | J::Number(_), Builder::Text(b)) if kind == ValueKind::Text => {
                b.append_value(value.to_string())
            }
            (J::Object(_) | J::Array(_), Builder::Text(b)) if kind == ValueKind::Text => {
                b.append_value(value.to_string())
            }
            _ => return Err("unexpected JSON type for this field"),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Integer(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Decimal(b, ..) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::DateTime(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Text(b) => b.len(),
            Builder::Boolean(b) => b.len(),
            Builder::Integer(b) => b.len(),
            Builder::Double(b) => b.len(),
            Builder::Decimal(b, ..) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::DateTime(b) => b.len(),
        }
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Builds a batch from REST query records (`records` of one or more query pages).
pub fn rest_records(
    columns: &[Column],
    records: &[serde_json::Value],
    source_name: &str,
) -> Result<RecordBatch, NormalizeError> {
    let mut builders: Vec<Builder> = columns
        .iter()
        .map(|c| Builder::new(c.kind, records.len()))
        .collect();
    let paths: Vec<Vec<&str>> = columns
        .iter()
        .map(|c| c.path.split('.').collect())
        .collect();
    for (row, record) in records.iter().enumerate() {
        let record_name = || {
            record
                .get("Id")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("row {}", row + 1), str::to_string)
        };
        for ((column, path), builder) in columns.iter().zip(&paths).zip(&mut builders) {
            let mut value = record;
            for part in path {
                value = match value {
                    // REST writes every selected field, null or not: a missing key means the
                    // record is not the one the query asked for (the REST form of a short row).
                    serde_json::Value::Object(map) => match map.get(*part) {
                        Some(v) => v,
                        None => {
                            return Err(NormalizeError::Value {
                                source_name: source_name.to_string(),
                                record: record_name(),
                                field: column.path.clone(),
                                value: String::new(),
                                reason: "the field is missing from the record".into(),
                            })
                        }
                    },
                    _ => &serde_json::Value::Null,
                };
            }
            if let Err(reason) = builder.json(column.kind, value) {
                let id = record.get("Id").and_then(|v| v.as_str());
                return Err(NormalizeError::Value {
                    source_name: source_name.to_string(),
                    record: id.map_or_else(|| format!("row {}", row + 1), str::to_string),
                    field: column.path.clone(),
                    value: shorten(&value.to_string()),
                    reason: reason.to_string(),
                });
            }
        }
    }
    finish(columns, &mut builders)
}

fn finish(columns: &[Column], builders: &mut [Builder]) -> Result<RecordBatch, NormalizeError> {
    let rows = builders.first().map_or(0, Builder::len);
    let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(
        RecordBatch::try_new_with_options(schema(columns), arrays, &options)
            .expect("builders match the schema"),
    )
}

/// Builds a batch from one Bulk API 2.0 result page: a complete CSV with its own header row.
/// Headers match the selected paths case-insensitively; an empty cell is null.
pub fn bulk_page(
    columns: &[Column],
    page: &[u8],
    delimiter: u8,
    source_name: &str,
) -> Result<RecordBatch, NormalizeError> {
    let page_err = |reason: String| NormalizeError::Page {
        source_name: source_name.to_string(),
        reason,
    };
    if page.iter().all(|b| b.is_ascii_whitespace()) {
        // An empty result page may have no header at all.
        let mut builders: Vec<Builder> = columns.iter().map(|c| Builder::new(c.kind, 0)).collect();
        return finish(columns, &mut builders);
    }
    // A page cut short can still parse: its last row may end inside a value. Salesforce ends
    // every row with the job's line ending, and doubles quotes inside quoted values.
    if !page.ends_with(b"\n") {
        return Err(page_err(
            "the page is truncated: it does not end with a line break".into(),
        ));
    }
    if memchr::memchr_iter(b'"', page).count() % 2 == 1 {
        return Err(page_err(
            "the page is truncated: it ends inside a quoted value".into(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(page);
    let headers = reader
        .byte_headers()
        .map_err(|e| page_err(format!("bad header row: {e}")))?
        .clone();
    let header_names: Vec<String> = headers
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let positions: Vec<usize> = columns
        .iter()
        .map(|c| {
            header_names
                .iter()
                .position(|h| h.eq_ignore_ascii_case(&c.path))
                .ok_or_else(|| {
                    page_err(format!(
                        "no column {:?} in the header ({})",
                        c.path,
                        header_names.join(",")
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let id_position = header_names
        .iter()
        .position(|h| h.eq_ignore_ascii_case("Id"));
    let estimate = page.len() / 128 + 16;
    let mut builders: Vec<Builder> = columns
        .iter()
        .map(|c| Builder::new(c.kind, estimate))
        .collect();
    // A StringRecord checks UTF-8 once per row, not once per cell.
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = row + 1;
                return Err(match e.kind() {
                    csv::ErrorKind::Utf8 { pos: Some(at), .. } => {
                        let rest = &page[at.byte() as usize..];
                        not_utf8(
                            source_name,
                            rest,
                            delimiter,
                            row,
                            (columns, &positions),
                            id_position,
                        )
                    }
                    _ => page_err(format!("row {row}: {e}")),
                });
            }
        }
        row += 1;
        if record.len() != header_names.len() {
            return Err(page_err(format!(
                "row {row}: {} cells, the header has {}",
                record.len(),
                header_names.len()
            )));
        }
        for ((column, &position), builder) in columns.iter().zip(&positions).zip(&mut builders) {
            let cell = &record[position];
            if cell.is_empty() {
                builder.null();
                continue;
            }
            if let Err(reason) = builder.text(column.kind, cell) {
                let id = id_position.map(|p| &record[p]).filter(|s| !s.is_empty());
                return Err(NormalizeError::Value {
                    source_name: source_name.to_string(),
                    record: id.map_or_else(|| format!("row {row}"), str::to_string),
                    field: column.path.clone(),
                    value: shorten(cell),
                    reason: reason.to_string(),
                });
            }
        }
    }
    finish(columns, &mut builders)
}

/// The error for a Bulk row that is not UTF-8 (`rest` starts at the row): its first selected
/// cell that is not, named by the row's Id like any other bad value.
fn not_utf8(
    source_name: &str,
    rest: &[u8],
    delimiter: u8,
    row: usize,
    (columns, positions): (&[Column], &[usize]),
    id_position: Option<usize>,
) -> NormalizeError {
    let mut record = csv::ByteRecord::new();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(rest);
    // The row was read once already: it parses again, only its text is in doubt.
    let _ = reader.read_byte_record(&mut record);
    let bad = columns.iter().zip(positions).find(|(_, &p)| {
        record
            .get(p)
            .is_some_and(|c| std::str::from_utf8(c).is_err())
    });
    let id = id_position
        .and_then(|p| record.get(p))
        .filter(|id| !id.is_empty());
    NormalizeError::Value {
        source_name: source_name.to_string(),
        record: id.map_or_else(
            || format!("row {row}"),
            |id| String::from_utf8_lossy(id).into_owned(),
        ),
        field: bad.map_or_else(|| "?".to_string(), |(c, _)| c.path.clone()),
        value: bad
            .and_then(|(_, &p)| record.get(p))
            .map_or_else(String::new, |c| shorten(&String::from_utf8_lossy(c))),
        reason: "not UTF-8".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMillisecondType};
    use chrono::Datelike;

    /// Export columns for (SOQL path, kind) pairs, named as describe names them.
    fn columns_of<const N: usize>(pairs: [(&str, ValueKind); N]) -> Vec<Column> {
        pairs
            .into_iter()
            .map(|(path, kind)| Column {
                path: path.into(),
                name: super::super::describe::column_name(path),
                kind,
            })
            .collect()
    }

    fn columns() -> Vec<Column> {
        columns_of([
            ("Id", ValueKind::Text),
            ("Name", ValueKind::Text),
            ("IsActive__c", ValueKind::Boolean),
            ("Seats__c", ValueKind::Integer),
            ("Revenue__c", ValueKind::Double),
            ("Start__c", ValueKind::Date),
            ("SystemModstamp", ValueKind::DateTime),
            ("Opens__c", ValueKind::Time),
            ("Owner.Name", ValueKind::Text),
        ])
    }

    const REST: &str = r#"[
      {"attributes":{"type":"X__c","url":"/services/data/v66.0/sobjects/X__c/a01"},
       "Id":"a01000000000001AAA","Name":"Zoë \"quoted\"\nline two","IsActive__c":true,
       "Seats__c":12,"Revenue__c":1.2345678E7,"Start__c":"2024-03-10",
       "SystemModstamp":"2024-03-10T07:30:00.123+0000","Opens__c":"08:30:00.000Z",
       "Owner":{"attributes":{"type":"User","url":"/x"},"Name":"Ann"}},
      {"attributes":{"type":"X__c","url":"/services/data/v66.0/sobjects/X__c/a02"},
       "Id":"a01000000000002AAA","Name":null,"IsActive__c":false,
       "Seats__c":null,"Revenue__c":-0.5,"Start__c":null,
       "SystemModstamp":"2024-03-10T07:30:00.000+0000","Opens__c":null,"Owner":null}
    ]"#;

    const BULK: &str = "\"Id\",\"Name\",\"IsActive__c\",\"Seats__c\",\"Revenue__c\",\"Start__c\",\"SystemModstamp\",\"Opens__c\",\"Owner.Name\"\n\
\"a01000000000001AAA\",\"Zoë \"\"quoted\"\"\nline two\",\"true\",\"12.0\",\"1.2345678E7\",\"2024-03-10\",\"2024-03-10T07:30:00.123Z\",\"08:30:00.000Z\",\"Ann\"\n\
\"a01000000000002AAA\",\"\",\"false\",\"\",\"-0.5\",\"\",\"2024-03-10T07:30:00.000Z\",\"\",\"\"\n";

    #[test]
    fn rest_and_bulk_give_identical_batches() {
        let records: Vec<serde_json::Value> = serde_json::from_str(REST).unwrap();
        let rest = rest_records(&columns(), &records, "rest").unwrap();
        let bulk = bulk_page(&columns(), BULK.as_bytes(), b',', "page 1").unwrap();
        assert_eq!(rest, bulk);
        assert_eq!(rest.num_rows(), 2);
        assert_eq!(
            rest.column(1).as_string::<i32>().value(0),
            "Zoë \"quoted\"\nline two"
        );
        assert!(rest.column(1).is_null(1));
        assert_eq!(rest.column(3).as_primitive::<Int64Type>().value(0), 12);
        assert_eq!(
            rest.column(4).as_primitive::<Float64Type>().value(0),
            12_345_678.0
        );
        assert_eq!(rest.column(5).as_primitive::<Date32Type>().value(0), 19792);
        assert_eq!(
            rest.column(6)
                .as_primitive::<TimestampMillisecondType>()
                .value(0),
            1_710_055_800_123
        );
        assert_eq!(rest.column(7).as_string::<i32>().value(0), "08:30:00.000");
        assert_eq!(rest.column(8).as_string::<i32>().value(0), "Ann");
        assert!(rest.column(8).is_null(1));
    }

    #[test]
    fn datetimes_in_every_offset_style() {
        let z = parse_datetime("2024-03-10T07:30:00.000Z").unwrap();
        assert_eq!(parse_datetime("2024-03-10T07:30:00.000+0000"), Ok(z));
        assert_eq!(parse_datetime("2024-03-10T09:30:00.000+02:00"), Ok(z));
        assert_eq!(parse_datetime("2024-03-10T02:30:00-0500"), Ok(z));
        assert_eq!(parse_datetime("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert!(parse_datetime("2024-03-10 07:30:00Z").is_err());
        assert!(parse_datetime("2024-03-10T07:30:00.000").is_err());
        assert!(parse_datetime("2023-02-29T07:30:00.000Z").is_err());
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("1900-03-01"), Ok(-25_508));
        assert_eq!(parse_date("2024-03-10Z"), Ok(19_792));
        assert!(parse_date("2024-13-01").is_err());
        assert!(parse_date("2024-03-1").is_err());
        // Every day of four centuries agrees with chrono.
        let mut day = chrono::NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        while day.year() < 2200 {
            let text = day.format("%Y-%m-%d").to_string();
            assert_eq!(
                parse_date(&text),
                Ok(crate::lake::layout::day_number(day)),
                "{text}"
            );
            day = day.succ_opt().unwrap();
        }
    }

    #[test]
    fn numbers_and_literal_na_text() {
        assert_eq!(parse_int("0.0"), Ok(0));
        assert_eq!(parse_int("4.2E1"), Ok(42));
        assert!(parse_int("4.5").is_err());
        assert_eq!(parse_double("9.9213206E7"), Ok(99_213_206.0));
        assert!(parse_double("NaN").is_err());
        assert_eq!(parse_bool("TRUE"), Ok(true));
        let cols = &columns()[..2];
        let page = "\"Id\",\"Name\"\n\"a1\",\"N/A\"\n\"a2\",\"#N/A\"\n\"a3\",\"null\"\n";
        let batch = bulk_page(cols, page.as_bytes(), b',', "p").unwrap();
        let names = batch.column(1).as_string::<i32>();
        assert_eq!(
            (0..3).map(|i| names.value(i)).collect::<Vec<_>>(),
            ["N/A", "#N/A", "null"]
        );
    }

    fn money_columns() -> Vec<Column> {
        let decimal = |precision, scale| ValueKind::Decimal { precision, scale };
        columns_of([
            ("Id", ValueKind::Text),
            ("Cost__c", decimal(18, 2)),
            ("Share__c", decimal(5, 2)),
            ("Revenue", decimal(18, 0)),
        ])
    }

    #[test]
    fn money_is_exact_from_rest_and_bulk() {
        use arrow::datatypes::Decimal128Type;
        // 17 significant digits: no f64 holds 1234567890123456.78 (nearest: …456.75).
        let rest = r#"[
          {"Id":"a1","Cost__c":1234567890123456.78,"Share__c":12.5,"Revenue":9.9213206E7},
          {"Id":"a2","Cost__c":0.005,"Share__c":-0.125,"Revenue":null},
          {"Id":"a3","Cost__c":"19.99","Share__c":100,"Revenue":1.0E17}
        ]"#;
        let bulk = "\"Id\",\"Cost__c\",\"Share__c\",\"Revenue\"\n\
\"a1\",\"1234567890123456.78\",\"12.5\",\"9.9213206E7\"\n\
\"a2\",\"0.005\",\"-0.125\",\"\"\n\
\"a3\",\"19.99\",\"100\",\"1.0E17\"\n";
        let records: Vec<serde_json::Value> = serde_json::from_str(rest).unwrap();
        let from_rest = rest_records(&money_columns(), &records, "rest").unwrap();
        let from_bulk = bulk_page(&money_columns(), bulk.as_bytes(), b',', "page").unwrap();
        assert_eq!(from_rest, from_bulk);
        assert_eq!(
            from_rest.schema().field(1).data_type(),
            &DataType::Decimal128(18, 2)
        );
        let cost = from_rest.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(cost.value(0), 123_456_789_012_345_678);
        // More decimals than the scale round half away from zero.
        assert_eq!(cost.value(1), 1);
        assert_eq!(cost.value(2), 1999);
        let share = from_rest.column(2).as_primitive::<Decimal128Type>();
        assert_eq!(
            [share.value(0), share.value(1), share.value(2)],
            [1250, -13, 10_000]
        );
        let revenue = from_rest.column(3).as_primitive::<Decimal128Type>();
        assert_eq!(revenue.value(0), 99_213_206);
        assert!(revenue.is_null(1));
        assert_eq!(revenue.value(2), 100_000_000_000_000_000);
        assert_eq!(cost.value_as_string(0), "1234567890123456.78");
    }

    #[test]
    fn a_decimal_too_large_for_its_precision_names_the_record() {
        let page = "\"Id\",\"Cost__c\",\"Share__c\",\"Revenue\"\n\"a9\",\"1\",\"1234.5\",\"\"\n";
        let err = bulk_page(&money_columns(), page.as_bytes(), b',', "page 2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "page 2: record a9, field Share__c: does not fit the field's precision (value \"1234.5\")"
        );
        assert_eq!(parse_decimal("1,5", 5, 2), Err("expected a decimal number"));
        assert_eq!(parse_decimal(" 1", 5, 2), Err("expected a decimal number"));
        assert_eq!(parse_decimal("NaN", 5, 2), Err("expected a decimal number"));
        assert_eq!(parse_decimal("-1.5E-1", 5, 2), Ok(-15));
    }

    #[test]
    fn a_cell_that_is_not_utf8_names_the_record_and_field() {
        let mut page = b"\"Id\",\"Name\",\"IsActive__c\",\"Seats__c\",\"Revenue__c\",\"Start__c\",\"SystemModstamp\",\"Opens__c\",\"Owner.Name\"\n\
\"a01\",\"fine\",\"true\",\"1\",\"1\",\"\",\"\",\"\",\"\"\n"
            .to_vec();
        page.extend_from_slice(b"\"a02\",\"caf\xe9\",\"true\",\"1\",\"1\",\"\",\"\",\"\",\"\"\n");
        let err = bulk_page(&columns(), &page, b',', "Account page 4").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Account page 4: record a02, field Name: not UTF-8 (value \"caf\u{fffd}\")"
        );
    }

    #[test]
    fn bad_values_name_the_record_and_field() {
        let page = "\"Id\",\"Name\",\"IsActive__c\",\"Seats__c\",\"Revenue__c\",\"Start__c\",\"SystemModstamp\",\"Opens__c\",\"Owner.Name\"\n\
\"a01\",\"x\",\"maybe\",\"1\",\"1\",\"\",\"\",\"\",\"\"\n";
        let err = bulk_page(&columns(), page.as_bytes(), b',', "Account page 3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Account page 3: record a01, field IsActive__c: expected true or false (value \"maybe\")"
        );
        let missing = bulk_page(&columns(), b"\"Id\"\n\"a\"\n", b',', "p").unwrap_err();
        assert!(
            missing.to_string().contains("no column \"Name\""),
            "{missing}"
        );
        let empty = bulk_page(&columns(), b"", b',', "p").unwrap();
        assert_eq!(empty.num_rows(), 0);
    }

    #[test]
    fn truncated_pages_and_short_records_are_errors() {
        let cols = &columns()[..2];
        let whole = "\"Id\",\"Name\"\n\"a1\",\"Ann\"\n\"a2\",\"Bob\nline two\"\n";
        assert_eq!(
            bulk_page(cols, whole.as_bytes(), b',', "p")
                .unwrap()
                .num_rows(),
            2
        );
        for cut in [
            whole.len() - 1,
            whole.len() - 3,
            whole.find("line").unwrap(),
        ] {
            let err = bulk_page(
                cols,
                &whole.as_bytes()[..cut],
                b',',
                "Account Bulk job 750x page 2",
            )
            .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("Account Bulk job 750x page 2: the page is truncated"),
                "{err}"
            );
        }
        let wide = "\"Id\",\"Name\"\n\"a1\",\"Ann\",\"extra\"\n";
        let err = bulk_page(cols, wide.as_bytes(), b',', "p").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "p: row 1: CSV error: record 1 (line: 2, byte: 12): found record with 3 fields"
            ),
            "{err}"
        );
        let records: Vec<serde_json::Value> =
            serde_json::from_str(r#"[{"Id":"a1","Name":"Ann"},{"Id":"a2"}]"#).unwrap();
        let err = rest_records(cols, &records, "Account REST page 3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Account REST page 3: record a2, field Name: the field is missing from the record (value \"\")"
        );
    }
}
