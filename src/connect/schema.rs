//! Table schemas of the interval tables, built from `schemas/connect_metrics.toml`.
//!
//! Column order: instance, name, interval_start, interval_end, interval_start_local, the report's
//! metrics in file order, the lineage columns, then columns added later for unknown headers.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::header::normalize_header;
use crate::job::ReportKind;

/// The embedded header → column map.
pub const METRICS_TOML: &str = include_str!("../../schemas/connect_metrics.toml");

/// How a metric's text is parsed and typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Integer count → Int64.
    Count,
    /// Seconds → Float64.
    Seconds,
    /// Percent 0–100 with an optional `%` → Float64.
    Percent,
    /// Free text → Utf8.
    Text,
}

impl Unit {
    /// The Arrow type of a column of this unit.
    pub fn data_type(self) -> DataType {
        match self {
            Unit::Count => DataType::Int64,
            Unit::Seconds | Unit::Percent => DataType::Float64,
            Unit::Text => DataType::Utf8,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    reserved: Vec<String>,
    units: UnitRanges,
    intervals: IntervalHeaders,
    report: HashMap<String, ReportDef>,
    metric: Vec<MetricDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitRanges {
    count: RangeDef,
    seconds: RangeDef,
    percent: RangeDef,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeDef {
    min: Option<f64>,
    max: Option<f64>,
}

impl RangeDef {
    /// This range with the bounds `over` sets replaced.
    fn overridden_by(self, over: RangeDef) -> Range {
        Range {
            min: over.min.or(self.min).unwrap_or(f64::NEG_INFINITY),
            max: over.max.or(self.max).unwrap_or(f64::INFINITY),
        }
    }
}

/// The inclusive range a metric's values must be in (from `schemas/connect_metrics.toml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
}

impl Range {
    /// Any finite number.
    pub const ANY: Range = Range {
        min: f64::NEG_INFINITY,
        max: f64::INFINITY,
    };

    /// Whether `value` is within the range.
    pub fn contains(&self, value: f64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min.is_finite(), self.max.is_finite()) {
            (true, true) => write!(f, "between {} and {}", self.min, self.max),
            (true, false) => write!(f, "at least {}", self.min),
            (false, true) => write!(f, "at most {}", self.max),
            (false, false) => write!(f, "finite"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalHeaders {
    start: Vec<String>,
    end: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportDef {
    table: String,
    description: String,
    grouping_header: String,
    grouping_column: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricDef {
    header: String,
    column: String,
    unit: Unit,
    reports: Vec<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

/// A metric column of a report table.
#[derive(Debug, Clone)]
pub struct Metric {
    /// The header as Connect writes it (e.g. `Contacts handled`).
    pub header: String,
    /// Column name.
    pub column: String,
    /// Parse rule and type.
    pub unit: Unit,
    /// Allowed values (numbers only; [`Range::ANY`] for text).
    pub range: Range,
}

/// What a normalized header means in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRole {
    /// The queue or agent name.
    Grouping,
    /// `StartInterval`.
    IntervalStart,
    /// `EndInterval`.
    IntervalEnd,
    /// Index into [`ReportSchema::metrics`].
    Metric(usize),
}

/// Everything cxlake knows about one report kind.
#[derive(Debug)]
pub struct ReportSchema {
    /// Which report.
    pub report: ReportKind,
    /// Output table name.
    pub table: String,
    /// Table description for Glue.
    pub description: String,
    /// Header of the grouping column as Connect writes it (`Queue`, `Agent`).
    pub grouping_header: String,
    /// Output name of the grouping column (`queue`, `agent`).
    pub grouping_column: String,
    /// Known metrics, in table order.
    pub metrics: Vec<Metric>,
    headers: HashMap<String, HeaderRole>,
    /// Column names a header may not become → what holds the name (for messages).
    reserved: HashMap<String, String>,
    /// Range of the `seconds` unit, for unknown time columns.
    seconds_range: Range,
    /// Range of the `percent` unit, for unknown cells written with `%`.
    percent_range: Range,
}

/// Index of the fixed columns in every interval table.
pub mod col {
    /// Connect instance alias.
    pub const INSTANCE: usize = 0;
    /// Queue or agent.
    pub const NAME: usize = 1;
    /// Interval start, UTC.
    pub const INTERVAL_START: usize = 2;
    /// Interval end, UTC.
    pub const INTERVAL_END: usize = 3;
    /// Interval start, wall clock in the job's time zone.
    pub const INTERVAL_START_LOCAL: usize = 4;
    /// First metric column.
    pub const FIRST_METRIC: usize = 5;
}

/// Lineage column: the source object the row came from.
pub const SOURCE_KEY: &str = "source_key";
/// Lineage column: the export time from the report's file name.
pub const EXPORTED_AT: &str = "exported_at";
/// Lineage column: where the row came from, `report` or `api` (filled from the Connect API).
pub const ORIGIN: &str = "origin";

/// UTC millisecond timestamps: the only instant type the lake uses (see lake.md §2.2).
pub fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

impl ReportSchema {
    /// The schema for `report`, parsed once from the embedded map.
    pub fn get(report: ReportKind) -> &'static ReportSchema {
        static SCHEMAS: OnceLock<[ReportSchema; 2]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            let file: MetricsFile = toml::from_str(METRICS_TOML)
                .expect("schemas/connect_metrics.toml is valid (checked by tests)");
            [
                ReportSchema::build(&file, ReportKind::Queue),
                ReportSchema::build(&file, ReportKind::Agent),
            ]
        });
        match report {
            ReportKind::Queue => &all[0],
            ReportKind::Agent => &all[1],
        }
    }

    fn build(file: &MetricsFile, report: ReportKind) -> ReportSchema {
        let def = &file.report[report.name()];
        let mut headers = HashMap::new();
        headers.insert(normalize_header(&def.grouping_header), HeaderRole::Grouping);
        for h in &file.intervals.start {
            headers.insert(normalize_header(h), HeaderRole::IntervalStart);
        }
        for h in &file.intervals.end {
            headers.insert(normalize_header(h), HeaderRole::IntervalEnd);
        }
        let unit_range = |unit: Unit| match unit {
            Unit::Count => file.units.count,
            Unit::Seconds => file.units.seconds,
            Unit::Percent => file.units.percent,
            Unit::Text => RangeDef::default(),
        };
        let mut metrics = Vec::new();
        for m in file
            .metric
            .iter()
            .filter(|m| m.reports.iter().any(|r| r == report.name()))
        {
            let role = HeaderRole::Metric(metrics.len());
            for h in std::iter::once(&m.header).chain(&m.aliases) {
                headers.insert(normalize_header(h), role);
            }
            metrics.push(Metric {
                header: m.header.clone(),
                column: m.column.clone(),
                unit: m.unit,
                range: unit_range(m.unit).overridden_by(RangeDef {
                    min: m.min,
                    max: m.max,
                }),
            });
        }
        let mut reserved: HashMap<String, String> = file
            .reserved
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    "reserved for the partition or roll-up tables".into(),
                )
            })
            .collect();
        reserved.insert(
            def.grouping_column.clone(),
            format!("the {} name column", report.name()),
        );
        for (column, what) in [
            ("instance", "the instance column"),
            ("interval_start", "the StartInterval column"),
            ("interval_end", "the EndInterval column"),
            ("interval_start_local", "the local interval start"),
            (SOURCE_KEY, "a lineage column"),
            (EXPORTED_AT, "a lineage column"),
        ] {
            reserved.insert(column.into(), what.into());
        }
        for m in &metrics {
            reserved.insert(m.column.clone(), format!("the known metric {:?}", m.header));
        }
        ReportSchema {
            report,
            table: def.table.clone(),
            description: def.description.clone(),
            grouping_header: def.grouping_header.clone(),
            grouping_column: def.grouping_column.clone(),
            metrics,
            headers,
            reserved,
            seconds_range: file.units.seconds.overridden_by(RangeDef::default()),
            percent_range: file.units.percent.overridden_by(RangeDef::default()),
        }
    }

    /// What already holds column name `column` (a table column or a reserved name), if anything.
    pub fn reserved(&self, column: &str) -> Option<&str> {
        self.reserved.get(column).map(String::as_str)
    }

    /// The range of values of a column added for an unknown header, from its name and the cell.
    pub fn unknown_range(&self, column: &str, percent_cell: bool) -> Range {
        if percent_cell {
            self.percent_range
        } else if column.ends_with("_seconds") {
            self.seconds_range
        } else {
            Range::ANY
        }
    }

    /// The role of a header (already normalized), if it is known.
    pub fn role(&self, normalized_header: &str) -> Option<HeaderRole> {
        self.headers.get(normalized_header).copied()
    }

    /// Index of the first lineage column.
    pub fn source_key_index(&self) -> usize {
        col::FIRST_METRIC + self.metrics.len()
    }

    /// Index of the `origin` lineage column.
    pub fn origin_index(&self) -> usize {
        self.source_key_index() + 2
    }

    /// Number of columns before any added for unknown headers.
    pub fn known_width(&self) -> usize {
        self.source_key_index() + 3
    }

    /// The fields of the known columns, in table order.
    pub fn known_fields(&self) -> Vec<Field> {
        let mut fields = vec![
            Field::new("instance", DataType::Utf8, false),
            Field::new(&self.grouping_column, DataType::Utf8, false),
            Field::new("interval_start", utc_millis(), false),
            Field::new("interval_end", utc_millis(), true),
            Field::new(
                "interval_start_local",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ];
        fields.extend(
            self.metrics
                .iter()
                .map(|m| Field::new(&m.column, m.unit.data_type(), true)),
        );
        fields.push(Field::new(SOURCE_KEY, DataType::Utf8, false));
        fields.push(Field::new(EXPORTED_AT, utc_millis(), false));
        // Nullable: partitions written before the column existed read it as null (a report).
        fields.push(Field::new(ORIGIN, DataType::Utf8, true));
        fields
    }

    /// The table schema: known columns, then `extra_columns` (double) in the order given.
    pub fn table_schema(&self, extra_columns: &[String]) -> SchemaRef {
        let mut fields = self.known_fields();
        fields.extend(
            extra_columns
                .iter()
                .map(|c| Field::new(c, DataType::Float64, true)),
        );
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_file_parses_and_columns_are_unique_snake_case() {
        for report in [ReportKind::Queue, ReportKind::Agent] {
            let schema = ReportSchema::get(report);
            let fields = schema.known_fields();
            let mut names: Vec<_> = fields.iter().map(|f| f.name().clone()).collect();
            for n in &names {
                assert!(
                    n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{n}"
                );
            }
            names.sort();
            names.dedup();
            assert_eq!(names.len(), fields.len(), "duplicate column in {report:?}");
        }
    }

    #[test]
    fn units_are_in_column_names() {
        for report in [ReportKind::Queue, ReportKind::Agent] {
            for m in &ReportSchema::get(report).metrics {
                match m.unit {
                    Unit::Seconds => assert!(m.column.ends_with("_seconds"), "{}", m.column),
                    Unit::Percent => assert!(m.column.ends_with("_pct"), "{}", m.column),
                    // counts may end in "_seconds" ("contacts answered in 20 seconds"), never in "_pct"
                    _ => assert!(!m.column.ends_with("_pct"), "{}", m.column),
                }
            }
        }
    }

    #[test]
    fn covers_the_documented_and_newer_metrics() {
        let queue = ReportSchema::get(ReportKind::Queue);
        let agent = ReportSchema::get(ReportKind::Agent);
        for header in [
            "Contacts handled",
            "Service level 600 seconds",
            "Contacts abandoned in 15 seconds",
            "Adherence",
            "Non-Adherent time",
            "Contacts transferred in by agent",
            "Agent non-response without customer abandons",
            "Contacts handled (connected to the agent timestamp)",
            "Contacts queued (enqueue timestamp)",
            "Abandonment rate",
        ] {
            assert!(
                matches!(
                    queue.role(&normalize_header(header)),
                    Some(HeaderRole::Metric(_))
                ),
                "queue misses {header}"
            );
        }
        for header in [
            "Agent Name",
            "Occupancy",
            "Agent non-response",
            "Contacts missed",
        ] {
            assert!(
                matches!(
                    agent.role(&normalize_header(header)),
                    Some(HeaderRole::Metric(_))
                ),
                "agent misses {header}"
            );
        }
        assert_eq!(queue.role("queue"), Some(HeaderRole::Grouping));
        assert_eq!(agent.role("agent"), Some(HeaderRole::Grouping));
        assert_eq!(queue.role("startinterval"), Some(HeaderRole::IntervalStart));
    }
}
