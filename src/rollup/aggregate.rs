//! Interval rows of one reporting day → hourly or daily rows per instance and queue/agent, each
//! metric by its [`Rule`]. Pure: Arrow in, Arrow out, deterministic (groups sorted by key).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use arrow::error::ArrowError;

use super::rules::{rule_for, Rule};
use crate::connect::schema::{col, utc_millis, EXPORTED_AT, SOURCE_KEY};
use crate::job::Grain;

const HOUR_MS: i64 = 3_600_000;

/// A metric column of the input and how it rolls up.
struct Metric {
    index: usize,
    name: String,
    data_type: DataType,
    rule: Rule,
    /// Per denominator of a weighted rule, in order: the input indices of its columns;
    /// `None` when one is missing from the input (that denominator is never used).
    weights: Vec<Option<Vec<usize>>>,
}

/// A weighted metric of some roll-up rows that used a fallback denominator (the first one
/// was missing where the metric had values, e.g. a report without `Contacts handled incoming`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackUse {
    /// Metric column.
    pub column: String,
    /// The denominator used, its columns joined by ` + `.
    pub denominator: String,
    /// Roll-up rows that used it.
    pub rows: usize,
}

fn metrics(input: &Schema) -> Vec<Metric> {
    input
        .fields()
        .iter()
        .enumerate()
        .skip(col::FIRST_METRIC)
        .filter(|(_, f)| f.name() != SOURCE_KEY && f.name() != EXPORTED_AT)
        .map(|(index, f)| {
            let rule = rule_for(f.name(), f.data_type());
            let weights = match &rule {
                Rule::Weighted(denominators) => denominators
                    .iter()
                    .map(|names| {
                        names
                            .iter()
                            .map(|n| input.index_of(n).ok())
                            .collect::<Option<Vec<_>>>()
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Metric {
                index,
                name: f.name().clone(),
                data_type: f.data_type().clone(),
                rule,
                weights,
            }
        })
        .collect()
}

/// The output schema for an interval table schema.
pub fn output_schema(input: &Schema, grouping_column: &str, grain: Grain) -> SchemaRef {
    let mut fields = vec![
        Field::new("instance", DataType::Utf8, false),
        Field::new(grouping_column, DataType::Utf8, false),
    ];
    match grain {
        Grain::Hourly => {
            fields.push(Field::new("hour_start", utc_millis(), false));
            fields.push(Field::new(
                "hour_start_local",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ));
        }
        Grain::Daily => fields.push(Field::new("day", DataType::Date32, false)),
    }
    fields.push(Field::new("intervals", DataType::Int64, false));
    for m in metrics(input) {
        let data_type = match m.rule {
            Rule::Weighted(_) => DataType::Float64,
            _ => m.data_type.clone(),
        };
        fields.push(Field::new(&m.name, data_type, true));
    }
    Arc::new(Schema::new(fields))
}

#[derive(Clone)]
enum Acc {
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    MaxInt(Option<i64>),
    MaxFloat(Option<f64>),
    /// Per denominator: (Σ value × weight, Σ weight, intervals it covered); and the
    /// intervals that had a value.
    Weighted {
        sums: Vec<(f64, f64, u32)>,
        valued: u32,
    },
    Last {
        at: i64,
        value: Option<String>,
    },
}

impl Acc {
    fn new(m: &Metric) -> Acc {
        match (&m.rule, &m.data_type) {
            (Rule::Sum, DataType::Int64) => Acc::SumInt(None),
            (Rule::Sum, _) => Acc::SumFloat(None),
            (Rule::Max, DataType::Int64) => Acc::MaxInt(None),
            (Rule::Max, _) => Acc::MaxFloat(None),
            (Rule::Weighted(denominators), _) => Acc::Weighted {
                sums: vec![(0.0, 0.0, 0); denominators.len()],
                valued: 0,
            },
            (Rule::Last, _) => Acc::Last {
                at: i64::MIN,
                value: None,
            },
        }
    }
}

/// A numeric cell as f64 (counts and doubles), `None` for null or text.
fn number(array: &ArrayRef, row: usize) -> Option<f64> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(row) as f64),
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().value(row)),
        _ => None,
    }
}

/// (instance, name, bucket start UTC ms) → (local bucket start ms, interval count, accumulators)
type Groups = BTreeMap<(String, String, i64), (i64, i64, Vec<Acc>)>;

/// Rolls up the interval rows of one reporting day (`day`: days since epoch).
pub fn rollup(
    batches: &[RecordBatch],
    input: &SchemaRef,
    grouping_column: &str,
    grain: Grain,
    day: i32,
) -> Result<RecordBatch, ArrowError> {
    rollup_noting_fallbacks(batches, input, grouping_column, grain, day).map(|(batch, _)| batch)
}

/// [`rollup`], and the weighted metrics that used a fallback denominator in some rows.
pub fn rollup_noting_fallbacks(
    batches: &[RecordBatch],
    input: &SchemaRef,
    grouping_column: &str,
    grain: Grain,
    day: i32,
) -> Result<(RecordBatch, Vec<FallbackUse>), ArrowError> {
    let metrics = metrics(input);
    let mut groups: Groups = BTreeMap::new();
    for batch in batches {
        let instance = batch.column(col::INSTANCE).as_string::<i32>();
        let name = batch.column(col::NAME).as_string::<i32>();
        let start = batch
            .column(col::INTERVAL_START)
            .as_primitive::<TimestampMillisecondType>();
        let local = batch
            .column(col::INTERVAL_START_LOCAL)
            .as_primitive::<TimestampMillisecondType>();
        for row in 0..batch.num_rows() {
            let (bucket, local_bucket) = match grain {
                // The UTC instant at which the local clock hour began (zones with :30 offsets too).
                Grain::Hourly => {
                    let into_hour = local.value(row).rem_euclid(HOUR_MS);
                    (start.value(row) - into_hour, local.value(row) - into_hour)
                }
                Grain::Daily => (i64::from(day), i64::from(day)),
            };
            let key = (
                instance.value(row).to_string(),
                name.value(row).to_string(),
                bucket,
            );
            let entry = groups
                .entry(key)
                .or_insert_with(|| (local_bucket, 0, metrics.iter().map(Acc::new).collect()));
            entry.1 += 1;
            for (m, acc) in metrics.iter().zip(entry.2.iter_mut()) {
                let array = batch.column(m.index);
                accumulate(acc, m, array, batch, row, start.value(row));
            }
        }
    }
    finish(&groups, &metrics, input, grouping_column, grain)
}

fn accumulate(
    acc: &mut Acc,
    m: &Metric,
    array: &ArrayRef,
    batch: &RecordBatch,
    row: usize,
    at: i64,
) {
    match acc {
        Acc::SumInt(total) if !array.is_null(row) => {
            *total = Some(total.unwrap_or(0) + array.as_primitive::<Int64Type>().value(row))
        }
        Acc::SumFloat(total) => {
            if let Some(v) = number(array, row) {
                *total = Some(total.unwrap_or(0.0) + v);
            }
        }
        Acc::MaxInt(max) if !array.is_null(row) => {
            let v = array.as_primitive::<Int64Type>().value(row);
            *max = Some(max.map_or(v, |m| m.max(v)));
        }
        Acc::MaxFloat(max) => {
            if let Some(v) = number(array, row) {
                *max = Some(max.map_or(v, |m| m.max(v)));
            }
        }
        Acc::Weighted { sums, valued } => {
            let Some(v) = number(array, row) else { return };
            *valued += 1;
            for (indices, (numerator, weight, covered)) in m.weights.iter().zip(sums.iter_mut()) {
                let Some(indices) = indices else { continue };
                let w: Option<f64> = indices.iter().map(|&i| number(batch.column(i), row)).sum();
                if let Some(w) = w {
                    *numerator += v * w;
                    *weight += w;
                    *covered += 1;
                }
            }
        }
        Acc::Last { at: last_at, value } if !array.is_null(row) && at >= *last_at => {
            if let Some(text) = array.as_string_opt::<i32>() {
                *value = Some(text.value(row).to_string());
                *last_at = at;
            }
        }
        _ => {}
    }
}

fn finish(
    groups: &Groups,
    metrics: &[Metric],
    input: &SchemaRef,
    grouping_column: &str,
    grain: Grain,
) -> Result<(RecordBatch, Vec<FallbackUse>), ArrowError> {
    let schema = output_schema(input, grouping_column, grain);
    // (metric index, denominator index) → rows that used that fallback.
    let mut fallback_rows: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let n = groups.len();
    let mut instance = StringBuilder::with_capacity(n, n * 8);
    let mut name = StringBuilder::with_capacity(n, n * 16);
    let mut hour = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut hour_local = TimestampMillisecondBuilder::with_capacity(n);
    let mut day = Date32Builder::with_capacity(n);
    let mut intervals = Int64Builder::with_capacity(n);
    for ((inst, key, bucket), (local_bucket, count, _)) in groups {
        instance.append_value(inst);
        name.append_value(key);
        match grain {
            Grain::Hourly => {
                hour.append_value(*bucket);
                hour_local.append_value(*local_bucket);
            }
            Grain::Daily => day.append_value(*bucket as i32),
        }
        intervals.append_value(*count);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(instance.finish()), Arc::new(name.finish())];
    match grain {
        Grain::Hourly => {
            columns.push(Arc::new(hour.finish()));
            columns.push(Arc::new(hour_local.finish()));
        }
        Grain::Daily => columns.push(Arc::new(day.finish())),
    }
    columns.push(Arc::new(intervals.finish()));
    for (i, m) in metrics.iter().enumerate() {
        let accs = groups.values().map(|(_, _, accs)| &accs[i]);
        let array: ArrayRef = match Acc::new(m) {
            Acc::SumInt(_) | Acc::MaxInt(_) => {
                let mut b = Int64Builder::with_capacity(n);
                for acc in accs {
                    match acc {
                        Acc::SumInt(v) | Acc::MaxInt(v) => b.append_option(*v),
                        _ => unreachable!("one accumulator kind per column"),
                    }
                }
                Arc::new(b.finish())
            }
            Acc::Last { .. } => {
                let mut b = StringBuilder::with_capacity(n, n * 16);
                for acc in accs {
                    match acc {
                        Acc::Last { value, .. } => b.append_option(value.as_deref()),
                        _ => unreachable!("one accumulator kind per column"),
                    }
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = Float64Builder::with_capacity(n);
                for acc in accs {
                    b.append_option(match acc {
                        Acc::SumFloat(v) | Acc::MaxFloat(v) => *v,
                        Acc::Weighted { sums, valued } => {
                            weighted_value(sums, *valued).and_then(|(k, value)| {
                                if k > 0 {
                                    *fallback_rows.entry((i, k)).or_default() += 1;
                                }
                                value
                            })
                        }
                        _ => unreachable!("one accumulator kind per column"),
                    });
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
    let fallbacks = fallback_rows
        .into_iter()
        .map(|((i, k), rows)| FallbackUse {
            column: metrics[i].name.clone(),
            denominator: match &metrics[i].rule {
                Rule::Weighted(denominators) => denominators[k].join(" + "),
                _ => unreachable!("only weighted rules have denominators"),
            },
            rows,
        })
        .collect();
    Ok((
        RecordBatch::try_new_with_options(schema, columns, &options)?,
        fallbacks,
    ))
}

/// The denominator a weighted metric uses, and its value: the first denominator present in
/// every interval that had a value, else the one present in most (the earlier on a tie).
/// `None` when no interval had a value; a value of `None` when the weights add up to 0.
fn weighted_value(sums: &[(f64, f64, u32)], valued: u32) -> Option<(usize, Option<f64>)> {
    if valued == 0 {
        return None;
    }
    let chosen = sums
        .iter()
        .position(|&(_, _, covered)| covered == valued)
        .or_else(|| {
            let best = sums.iter().map(|s| s.2).max().filter(|&c| c > 0)?;
            sums.iter().position(|s| s.2 == best)
        })?;
    let (numerator, weight, _) = sums[chosen];
    Some((chosen, (weight != 0.0).then(|| numerator / weight)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::schema::ReportSchema;
    use crate::job::ReportKind;
    use arrow::array::new_null_array;

    const MIN: i64 = 60_000;

    fn ms(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    /// Queue interval rows with the given (utc start, local offset minutes, metric values); other metrics null.
    /// (UTC start, local offset in minutes, metric values).
    type Row<'a> = (&'a str, i64, &'a [(&'a str, Option<f64>)]);

    fn intervals(rows: &[Row]) -> (SchemaRef, RecordBatch) {
        let schema = ReportSchema::get(ReportKind::Queue).table_schema(&[]);
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let array: ArrayRef = match i {
                col::INSTANCE => Arc::new(arrow::array::StringArray::from(vec!["demo"; n])),
                col::NAME => Arc::new(arrow::array::StringArray::from(vec!["Sales"; n])),
                col::INTERVAL_START | col::INTERVAL_END | col::INTERVAL_START_LOCAL => {
                    let values: Vec<i64> = rows
                        .iter()
                        .map(|(start, offset, _)| {
                            let utc = ms(start) + if i == col::INTERVAL_END { 30 * MIN } else { 0 };
                            if i == col::INTERVAL_START_LOCAL {
                                utc + offset * MIN
                            } else {
                                utc
                            }
                        })
                        .collect();
                    let a = arrow::array::TimestampMillisecondArray::from(values);
                    if i == col::INTERVAL_START_LOCAL {
                        Arc::new(a)
                    } else {
                        Arc::new(a.with_timezone("UTC"))
                    }
                }
                _ => {
                    let cells: Vec<Option<f64>> = rows
                        .iter()
                        .map(|(_, _, metrics)| {
                            metrics
                                .iter()
                                .find(|(c, _)| c == field.name())
                                .and_then(|(_, v)| *v)
                        })
                        .collect();
                    match field.data_type() {
                        DataType::Int64 => Arc::new(arrow::array::Int64Array::from(
                            cells
                                .iter()
                                .map(|v| v.map(|v| v as i64))
                                .collect::<Vec<_>>(),
                        )),
                        DataType::Float64 => Arc::new(arrow::array::Float64Array::from(cells)),
                        DataType::Utf8 if field.name() == SOURCE_KEY => {
                            Arc::new(arrow::array::StringArray::from(vec!["k"; n]))
                        }
                        DataType::Timestamp(_, _) => Arc::new(
                            arrow::array::TimestampMillisecondArray::from(vec![0; n])
                                .with_timezone("UTC"),
                        ),
                        other => new_null_array(other, n),
                    }
                }
            };
            columns.push(array);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        (schema, batch)
    }

    fn f64_of(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
        let a = batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Float64Type>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect()
    }

    fn i64_of(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
        let a = batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Int64Type>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect()
    }

    /// 2024-03-10 in New York: the clocks jump from 02:00 EST to 03:00 EDT. Hand-computed:
    /// daily AHT = (10×120 + 30×200) ÷ 40 = 180; service level 20 s = (50×12) ÷ 12 = 50 (the
    /// interval with `-` is left out, the one with 0 queued adds nothing); max queued time = 45.
    #[test]
    fn dst_day_with_nulls_rolls_up_by_the_formulas() {
        let (schema, batch) = intervals(&[
            (
                "2024-03-10T06:30:00Z",
                -300,
                &[
                    ("contacts_handled", Some(10.0)),
                    ("average_handle_time_seconds", Some(120.0)),
                    ("contacts_queued", Some(12.0)),
                    ("service_level_20_seconds_pct", Some(50.0)),
                    ("maximum_queued_time_seconds", Some(30.0)),
                ],
            ),
            (
                "2024-03-10T07:00:00Z",
                -240,
                &[
                    ("contacts_handled", Some(30.0)),
                    ("average_handle_time_seconds", Some(200.0)),
                    ("contacts_queued", Some(28.0)),
                    ("service_level_20_seconds_pct", None),
                    ("maximum_queued_time_seconds", Some(45.0)),
                ],
            ),
            (
                "2024-03-10T07:30:00Z",
                -240,
                &[
                    ("contacts_handled", None),
                    ("average_handle_time_seconds", None),
                    ("contacts_queued", Some(0.0)),
                    ("service_level_20_seconds_pct", Some(0.0)),
                    ("maximum_queued_time_seconds", None),
                ],
            ),
        ]);
        let day =
            crate::lake::layout::day_number(chrono::NaiveDate::from_ymd_opt(2024, 3, 10).unwrap());
        let daily = rollup(
            std::slice::from_ref(&batch),
            &schema,
            "queue",
            Grain::Daily,
            day,
        )
        .unwrap();
        assert_eq!(daily.num_rows(), 1);
        assert_eq!(i64_of(&daily, "intervals"), [Some(3)]);
        assert_eq!(i64_of(&daily, "contacts_handled"), [Some(40)]);
        assert_eq!(i64_of(&daily, "contacts_queued"), [Some(40)]);
        assert_eq!(f64_of(&daily, "average_handle_time_seconds"), [Some(180.0)]);
        assert_eq!(f64_of(&daily, "service_level_20_seconds_pct"), [Some(50.0)]);
        assert_eq!(f64_of(&daily, "maximum_queued_time_seconds"), [Some(45.0)]);
        // Nothing reported at all stays null, not 0.
        assert_eq!(i64_of(&daily, "contacts_abandoned"), [None]);
        assert_eq!(f64_of(&daily, "average_queue_abandon_time_seconds"), [None]);

        let hourly = rollup(&[batch], &schema, "queue", Grain::Hourly, day).unwrap();
        let starts = hourly
            .column_by_name("hour_start")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let locals = hourly
            .column_by_name("hour_start_local")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(
            starts.values().to_vec(),
            [ms("2024-03-10T06:00:00Z"), ms("2024-03-10T07:00:00Z")]
        );
        assert_eq!(
            locals.values().to_vec(),
            [ms("2024-03-10T01:00:00Z"), ms("2024-03-10T03:00:00Z")]
        );
        assert_eq!(i64_of(&hourly, "intervals"), [Some(1), Some(2)]);
        assert_eq!(
            f64_of(&hourly, "average_handle_time_seconds"),
            [Some(120.0), Some(200.0)]
        );
        // 03:00 hour: one interval is `-`, the other has 0 contacts queued: Σ weight = 0 → null.
        assert_eq!(
            f64_of(&hourly, "service_level_20_seconds_pct"),
            [Some(50.0), None]
        );
    }

    #[test]
    fn a_missing_first_denominator_falls_back_and_is_noted() {
        // A report without `Contacts handled incoming`: the queue answer time is weighted by
        // contacts handled (Σ 10×2 + 40×1 ÷ 3 = 20); with it, by the incoming contacts.
        let (schema, batch) = intervals(&[
            (
                "2024-03-10T16:00:00Z",
                0,
                &[
                    ("contacts_handled", Some(2.0)),
                    ("average_queue_answer_time_seconds", Some(10.0)),
                ],
            ),
            (
                "2024-03-10T16:30:00Z",
                0,
                &[
                    ("contacts_handled", Some(1.0)),
                    ("average_queue_answer_time_seconds", Some(40.0)),
                ],
            ),
        ]);
        let day =
            crate::lake::layout::day_number(chrono::NaiveDate::from_ymd_opt(2024, 3, 10).unwrap());
        let (daily, used) = rollup_noting_fallbacks(
            std::slice::from_ref(&batch),
            &schema,
            "queue",
            Grain::Daily,
            day,
        )
        .unwrap();
        assert_eq!(
            f64_of(&daily, "average_queue_answer_time_seconds"),
            [Some(20.0)]
        );
        assert_eq!(
            used,
            [FallbackUse {
                column: "average_queue_answer_time_seconds".into(),
                denominator: "contacts_handled".into(),
                rows: 1
            }]
        );

        let (schema, batch) = intervals(&[
            (
                "2024-03-10T16:00:00Z",
                0,
                &[
                    ("contacts_handled", Some(2.0)),
                    ("contacts_handled_incoming", Some(1.0)),
                    ("average_queue_answer_time_seconds", Some(10.0)),
                ],
            ),
            (
                "2024-03-10T16:30:00Z",
                0,
                &[
                    ("contacts_handled", Some(1.0)),
                    ("contacts_handled_incoming", Some(3.0)),
                    ("average_queue_answer_time_seconds", Some(30.0)),
                ],
            ),
        ]);
        let (daily, used) =
            rollup_noting_fallbacks(&[batch], &schema, "queue", Grain::Daily, day).unwrap();
        // Σ 10×1 + 30×3 ÷ 4 = 25.
        assert_eq!(
            f64_of(&daily, "average_queue_answer_time_seconds"),
            [Some(25.0)]
        );
        assert!(used.is_empty());
    }

    #[test]
    fn fall_back_day_keeps_two_one_oclock_hours_apart() {
        // 2024-11-03 in New York: 01:00–02:00 happens twice (EDT, then EST).
        let (schema, batch) = intervals(&[
            (
                "2024-11-03T05:00:00Z",
                -240,
                &[("contacts_handled", Some(1.0))],
            ),
            (
                "2024-11-03T06:00:00Z",
                -300,
                &[("contacts_handled", Some(2.0))],
            ),
        ]);
        let day =
            crate::lake::layout::day_number(chrono::NaiveDate::from_ymd_opt(2024, 11, 3).unwrap());
        let hourly = rollup(&[batch], &schema, "queue", Grain::Hourly, day).unwrap();
        assert_eq!(hourly.num_rows(), 2);
        let locals = hourly
            .column_by_name("hour_start_local")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(locals.value(0), locals.value(1));
        assert_eq!(i64_of(&hourly, "contacts_handled"), [Some(1), Some(2)]);
    }
}
