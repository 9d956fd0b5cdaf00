//! Filling missing intervals from Amazon Connect's GetMetricDataV2 API: the intervals no report
//! file accounts for are requested (within the API's 3-month reach), grouped by queue or agent,
//! and turned into rows of the interval table with `origin = 'api'` and a `source_key` naming
//! the request. A report file that arrives later replaces them (see the job's merge).

pub mod client;
pub mod mapping;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, SchemaRef};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use self::client::{Answer, ConnectApi};
use self::mapping::ApiMetric;
use super::coverage::{self, ORIGIN_API};
use super::schema::{col, utc_millis, ReportSchema};
use crate::job::ReportKind;
use crate::observe::progress::Progress;

/// Why a fill stopped (the intervals it did not fill stay missing).
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// A Connect API call failed after its retries.
    #[error("Connect API {operation}: {message}")]
    Call {
        /// The operation.
        operation: &'static str,
        /// The error with its cause chain.
        message: String,
    },
}

impl FillError {
    fn call<E: std::error::Error + 'static>(operation: &'static str, error: E) -> FillError {
        FillError::Call {
            operation,
            message: crate::observe::cause_chain(&error),
        }
    }
}

/// What a fill did.
#[derive(Debug, Default)]
pub struct Filled {
    /// Rows by reporting day.
    pub batches: BTreeMap<i32, Vec<RecordBatch>>,
    /// Every interval the API answered for (with or without rows), with its request.
    pub answered: HashMap<i64, String>,
    /// Requests made (pages and listings included).
    pub requests: u64,
    /// Why the fill stopped early, if it did.
    pub error: Option<String>,
}

/// One fill of one job's missing intervals.
pub struct Fill<'a> {
    /// The API client.
    pub api: &'a ConnectApi,
    /// The report table.
    pub report: &'static ReportSchema,
    /// The table's schema (with columns added for unknown headers).
    pub table_schema: SchemaRef,
    /// The job's instance alias (the rows' `instance`).
    pub instance: &'a str,
    /// The Connect instance id (in source keys).
    pub instance_id: &'a str,
    /// The job's time zone.
    pub timezone: Tz,
    /// The report's interval length.
    pub interval_minutes: u32,
}

impl Fill<'_> {
    /// Requests every missing interval in `starts` the API can still answer, span by span.
    /// Stops at the first call that fails after its retries, keeping what was answered before.
    pub async fn run(&self, starts: &[i64], now: DateTime<Utc>, progress: &Progress) -> Filled {
        let mut filled = Filled::default();
        let interval_ms = i64::from(self.interval_minutes) * 60_000;
        let spans = plan::spans(
            starts,
            interval_ms,
            plan::reach_start(now),
            now.timestamp_millis(),
        );
        if spans.is_empty() {
            return filled;
        }
        let kind = self.report.report;
        let metrics = mapping::for_report(kind);
        let names = match self.api.entities(kind).await {
            Ok(names) => names,
            Err(e) => {
                filled.error = Some(e.to_string());
                filled.requests = self.api.requests();
                return filled;
            }
        };
        let mut ids: Vec<String> = names.keys().cloned().collect();
        ids.sort();
        progress.restart(
            plan::request_count(spans.len(), ids.len(), metrics.len()) as u64,
            format!("for {} missing intervals", starts.len()),
        );
        for span in &spans {
            let request = self.request_key(kind, span);
            match self.span(kind, &ids, &metrics, span, progress).await {
                Ok(answers) => {
                    let mut step = span.start;
                    while step < span.end {
                        filled.answered.insert(step, request.clone());
                        step += interval_ms;
                    }
                    let exported_at = Utc::now().timestamp_millis();
                    for (day, batch) in self.rows(&answers, &names, &metrics, &request, exported_at)
                    {
                        filled.batches.entry(day).or_default().push(batch);
                    }
                }
                Err(e) => {
                    filled.error = Some(e.to_string());
                    break;
                }
            }
        }
        progress.finish();
        filled.requests = self.api.requests();
        filled
    }

    async fn span(
        &self,
        kind: ReportKind,
        ids: &[String],
        metrics: &[&'static ApiMetric],
        span: &plan::Span,
        progress: &Progress,
    ) -> Result<Vec<Answer>, FillError> {
        let mut merged: BTreeMap<(String, i64), Answer> = BTreeMap::new();
        for id_chunk in ids.chunks(plan::IDS_PER_REQUEST) {
            for (chunk_index, metric_chunk) in metrics.chunks(plan::METRICS_PER_REQUEST).enumerate()
            {
                let offset = chunk_index * plan::METRICS_PER_REQUEST;
                let answers = self
                    .api
                    .metric_data(
                        kind,
                        id_chunk,
                        metric_chunk,
                        self.interval_minutes,
                        span.start,
                        span.end,
                    )
                    .await?;
                progress.inc(1);
                for answer in answers {
                    let entry = merged
                        .entry((answer.id.clone(), answer.start))
                        .or_insert_with(|| Answer {
                            values: Vec::new(),
                            ..answer.clone()
                        });
                    entry
                        .values
                        .extend(answer.values.into_iter().map(|(i, v)| (i + offset, v)));
                }
            }
        }
        Ok(merged.into_values().collect())
    }

    /// Names the request of one span in the rows' `source_key`.
    fn request_key(&self, kind: ReportKind, span: &plan::Span) -> String {
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default()
        };
        format!(
            "connect-api://{}/GetMetricDataV2?grouping={}&interval={}&start={}&end={}",
            self.instance_id,
            client::group_key(kind),
            self.interval_minutes,
            time(span.start),
            time(span.end)
        )
    }

    /// The answers as rows of the interval table, by reporting day.
    fn rows(
        &self,
        answers: &[Answer],
        names: &HashMap<String, String>,
        metrics: &[&ApiMetric],
        request: &str,
        exported_at: i64,
    ) -> Vec<(i32, RecordBatch)> {
        let mut by_day: BTreeMap<i32, Vec<&Answer>> = BTreeMap::new();
        for answer in answers {
            by_day
                .entry(coverage::day_of(answer.start, self.timezone))
                .or_default()
                .push(answer);
        }
        // Column index in the table → index in `metrics`.
        let mapped: HashMap<usize, usize> = metrics
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let k = self
                    .report
                    .metrics
                    .iter()
                    .position(|c| c.column == m.column)?;
                Some((col::FIRST_METRIC + k, i))
            })
            .collect();
        let lineage = self.report.source_key_index();
        by_day
            .into_iter()
            .map(|(day, answers)| {
                let n = answers.len();
                let value_of = |a: &Answer, metric: usize| {
                    a.values
                        .iter()
                        .find(|(i, _)| *i == metric)
                        .and_then(|(_, v)| *v)
                        .filter(|v| v.is_finite())
                };
                let columns: Vec<ArrayRef> = self
                    .table_schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(index, field)| -> ArrayRef {
                        let text = |v: &dyn Fn(&Answer) -> String| -> ArrayRef {
                            Arc::new(StringArray::from_iter_values(answers.iter().map(|a| v(a))))
                        };
                        let time = |v: &dyn Fn(&Answer) -> i64, utc: bool| -> ArrayRef {
                            let array = TimestampMillisecondArray::from_iter_values(
                                answers.iter().map(|a| v(a)),
                            );
                            if utc {
                                Arc::new(array.with_data_type(utc_millis()))
                            } else {
                                Arc::new(array)
                            }
                        };
                        match index {
                            col::INSTANCE => text(&|_| self.instance.to_string()),
                            col::NAME => {
                                text(&|a| names.get(&a.id).cloned().unwrap_or_else(|| a.id.clone()))
                            }
                            col::INTERVAL_START => time(&|a| a.start, true),
                            col::INTERVAL_END => time(&|a| a.end, true),
                            col::INTERVAL_START_LOCAL => time(
                                &|a| super::parse::local_millis(a.start, self.timezone),
                                false,
                            ),
                            i if i == lineage => text(&|_| request.to_string()),
                            i if i == lineage + 1 => time(&|_| exported_at, true),
                            i if i == lineage + 2 => text(&|_| ORIGIN_API.to_string()),
                            i => match (mapped.get(&i), field.data_type()) {
                                (Some(&m), DataType::Int64) => {
                                    let mut b = Int64Builder::with_capacity(n);
                                    for a in &answers {
                                        b.append_option(value_of(a, m).map(|v| v.round() as i64));
                                    }
                                    Arc::new(b.finish())
                                }
                                (Some(&m), DataType::Float64) => {
                                    let mut b = Float64Builder::with_capacity(n);
                                    for a in &answers {
                                        b.append_option(value_of(a, m));
                                    }
                                    Arc::new(b.finish())
                                }
                                _ => arrow::array::new_null_array(field.data_type(), n),
                            },
                        }
                    })
                    .collect();
                let batch = RecordBatch::try_new(self.table_schema.clone(), columns)
                    .expect("columns are built from the table schema");
                (day, batch)
            })
            .collect()
    }
}
