//! The `salesforce-pushback` job: interval (or roll-up) partitions → the CTI adapter's metric
//! objects, upserted on an external ID. Fields are checked with describe first (unknown ones
//! reported once and skipped); small sets go through sObject Collections, large ones through
//! Bulk API 2.0 ingest jobs; retryable failures are retried once, the rest land in
//! `_etl/rejects/` with Salesforce's error, and the exit code says "partial".

pub mod map;

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::connect::schema::{col, ReportSchema, EXPORTED_AT};
use crate::job::{Job, PushbackSpec, SalesforceSettings};
use crate::lake::parquet::{decode, ParquetError};
use crate::lake::partitions::{changed_days, DayFile};
use crate::lake::{Access, Location, StoreError};
use crate::salesforce::ingest::{self, RecordResult, Records, WriteValue};
use crate::salesforce::{Client, SalesforceError};
use crate::state::{self, RejectReason, StateError};
use crate::window::Window;

/// Push-back errors.
#[derive(Debug, thiserror::Error)]
pub enum PushbackError {
    /// Salesforce failed.
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    /// The lake failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A partition could not be read.
    #[error("{key}: {source}")]
    Parquet {
        /// Partition.
        key: String,
        /// Why.
        #[source]
        source: ParquetError,
    },
    /// The target object lacks a field cxlake cannot do without.
    #[error("{object} has no field {field} (is the CTI adapter installed with namespace {namespace:?}?)")]
    MissingField {
        /// Object.
        object: String,
        /// Field.
        field: String,
        /// Namespace used.
        namespace: String,
    },
}

/// What a push-back run did.
#[derive(Debug, Default)]
pub struct PushbackReport {
    /// Target object.
    pub object: String,
    /// Days read.
    pub days: usize,
    /// Records sent.
    pub records: usize,
    /// Created.
    pub created: usize,
    /// Updated.
    pub updated: usize,
    /// Rejected by Salesforce (written to `_etl/rejects/`).
    pub rejected: usize,
    /// Columns with no field in the org (skipped).
    pub skipped_fields: Vec<String>,
    /// Bulk ingest jobs used.
    pub bulk_jobs: usize,
    /// Salesforce calls: (token, api, retries, relogins).
    pub calls: (u64, u64, u64, u64),
    /// Seconds.
    pub seconds: f64,
}

/// One column → one field.
struct FieldPlan {
    column: usize,
    field: String,
}

/// A push-back run.
pub struct PushbackJob<'a> {
    job: &'a Job,
    spec: &'a PushbackSpec,
    lake: Location,
    client: Client,
}

impl<'a> PushbackJob<'a> {
    /// Opens the lake and the Salesforce client.
    pub async fn open(
        job: &'a Job,
        spec: &'a PushbackSpec,
        salesforce: &SalesforceSettings,
        dry_run: bool,
    ) -> Result<PushbackJob<'a>, PushbackError> {
        let access = if dry_run {
            Access::ReadOnly
        } else {
            Access::Create
        };
        let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), access).await?;
        let client = crate::export::client_for(salesforce).await?;
        Ok(PushbackJob {
            job,
            spec,
            lake,
            client,
        })
    }

    /// Target object API name.
    pub fn object(&self) -> String {
        map::with_namespace(
            &self.spec.namespace,
            &map::object_map(self.spec.report).name,
        )
    }

    fn field(&self, name: &str) -> String {
        map::with_namespace(&self.spec.namespace, name)
    }

    /// Partitions to push (changed since the last run, or in the window).
    pub async fn plan(&self, window: &Window) -> Result<Vec<DayFile>, PushbackError> {
        let table = &ReportSchema::get(self.spec.report).table;
        let watermark = state::load_job_state(&self.lake, &self.job.name)
            .await?
            .watermark;
        Ok(changed_days(&self.lake, table, watermark, window, self.job.timezone).await?)
    }

    /// Pushes the planned partitions; `progress` counts the interval days read.
    pub async fn run(
        &self,
        plan: &[DayFile],
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<PushbackReport, PushbackError> {
        let started = Instant::now();
        let schema = ReportSchema::get(self.spec.report);
        let object = self.object();
        let objmap = map::object_map(self.spec.report);
        let mut report = PushbackReport {
            object: object.clone(),
            ..Default::default()
        };
        // Describe once: the org decides which fields exist (case-insensitive → exact name).
        let describe = self.client.describe(&object).await?;
        let exact = |name: &str| describe.field(name).map(|f| f.name.clone());
        let require = |name: &str| {
            exact(&self.field(name)).ok_or_else(|| PushbackError::MissingField {
                object: object.clone(),
                field: self.field(name),
                namespace: self.spec.namespace.clone(),
            })
        };
        let external_id = require(&objmap.external_id)?;
        let name_field = require(&objmap.object_name)?;
        let start_field = require(&objmap.start)?;
        let end_field = exact(&self.field(&objmap.end));
        let created_field = exact(&self.field(&objmap.created));
        let region_field = exact(&self.field(&objmap.region));
        let mut metrics = Vec::new();
        for (i, m) in schema.metrics.iter().enumerate() {
            let wanted = self.field(&map::field_for_header(&m.header));
            match exact(&wanted) {
                Some(field) => metrics.push(FieldPlan {
                    column: col::FIRST_METRIC + i,
                    field,
                }),
                None => report.skipped_fields.push(wanted),
            }
        }
        if !report.skipped_fields.is_empty() {
            tracing::warn!(object = %object, fields = ?report.skipped_fields, "fields not in the org: skipped");
        }
        let region = self
            .spec
            .region
            .as_deref()
            .filter(|_| region_field.is_some());

        let mut fields = vec![external_id.clone(), name_field, start_field];
        fields.extend(end_field.iter().cloned());
        fields.extend(created_field.iter().cloned());
        if region.is_some() {
            fields.extend(region_field.iter().cloned());
        }
        fields.extend(metrics.iter().map(|m| m.field.clone()));
        let mut records = Records {
            fields,
            rows: Vec::new(),
        };
        // Later partitions (and later rows) win when two rows share a key.
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        let mut newest: Option<DateTime<Utc>> = None;
        if let Some(bar) = progress {
            bar.set_length(plan.len() as u64);
        }
        for file in plan {
            if let Some(bar) = progress {
                bar.inc(1);
            }
            let Some(bytes) = self.lake.get(&file.key).await? else {
                continue;
            };
            let batches = decode(bytes).map_err(|source| PushbackError::Parquet {
                key: file.key.clone(),
                source,
            })?;
            report.days += 1;
            for batch in &batches {
                self.rows(
                    batch,
                    &metrics,
                    end_field.is_some(),
                    created_field.is_some(),
                    region,
                    &mut records,
                    &mut by_key,
                );
            }
            newest = newest.max(Some(file.modified));
        }
        report.records = records.rows.len();
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }

        let all: Vec<usize> = (0..records.rows.len()).collect();
        let mut results = self
            .upsert(&object, &external_id, &records, &all, &mut report)
            .await?;
        // One retry for what can succeed on a second try (row locks, unprocessed records).
        let retry: Vec<usize> = results
            .iter()
            .filter(|r| r.retryable())
            .map(|r| r.row)
            .collect();
        if !retry.is_empty() {
            tracing::info!(object = %object, records = retry.len(), "retrying records");
            let again = self
                .upsert(&object, &external_id, &records, &retry, &mut report)
                .await?;
            results.retain(|r| !r.retryable());
            results.extend(again);
        }
        let failed: Vec<&RecordResult> = results.iter().filter(|r| r.error.is_some()).collect();
        report.created = results.iter().filter(|r| r.created == Some(true)).count();
        report.updated = results.iter().filter(|r| r.created == Some(false)).count();
        report.rejected = failed.len();
        if !failed.is_empty() {
            self.write_rejects(&object, &records, &failed).await?;
        }
        if let Some(newest) = newest {
            let mut job_state = state::load_job_state(&self.lake, &self.job.name).await?;
            if job_state.watermark.is_none_or(|w| newest > w) {
                job_state.watermark = Some(newest);
                state::save_job_state(&self.lake, &self.job.name, &job_state).await?;
            }
        }
        report.calls = self.client.counts().snapshot();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn rows(
        &self,
        batch: &RecordBatch,
        metrics: &[FieldPlan],
        with_end: bool,
        with_created: bool,
        region: Option<&str>,
        records: &mut Records,
        by_key: &mut BTreeMap<String, usize>,
    ) {
        let instance = batch.column(col::INSTANCE).as_string::<i32>();
        let names = batch.column(col::NAME).as_string::<i32>();
        let starts = batch
            .column(col::INTERVAL_START)
            .as_primitive::<TimestampMillisecondType>();
        let ends = batch
            .column(col::INTERVAL_END)
            .as_primitive::<TimestampMillisecondType>();
        let exported = batch
            .column_by_name(EXPORTED_AT)
            .map(|c| c.as_primitive::<TimestampMillisecondType>().clone());
        for row in 0..batch.num_rows() {
            let start = ingest::datetime(starts.value(row));
            let key = map::external_id(
                self.spec.key,
                self.spec.report,
                instance.value(row),
                names.value(row),
                &start,
                region,
            );
            let mut values = vec![
                WriteValue::Text(key.clone()),
                WriteValue::Text(names.value(row).to_string()),
                WriteValue::DateTime(starts.value(row)),
            ];
            if with_end {
                values.push(if ends.is_null(row) {
                    WriteValue::Null
                } else {
                    WriteValue::DateTime(ends.value(row))
                });
            }
            if with_created {
                values.push(match &exported {
                    Some(e) if e.is_valid(row) => WriteValue::DateTime(e.value(row)),
                    _ => WriteValue::Null,
                });
            }
            if let Some(region) = region {
                values.push(WriteValue::Text(region.to_string()));
            }
            for m in metrics {
                let column = batch.column(m.column);
                values.push(if column.is_null(row) {
                    WriteValue::Null
                } else {
                    match column.data_type() {
                        DataType::Int64 => {
                            WriteValue::Number(column.as_primitive::<Int64Type>().value(row) as f64)
                        }
                        DataType::Float64 => {
                            WriteValue::Number(column.as_primitive::<Float64Type>().value(row))
                        }
                        _ => WriteValue::Text(column.as_string::<i32>().value(row).to_string()),
                    }
                });
            }
            match by_key.get(&key) {
                Some(&i) => records.rows[i] = values,
                None => {
                    by_key.insert(key, records.rows.len());
                    records.rows.push(values);
                }
            }
        }
    }

    async fn upsert(
        &self,
        object: &str,
        external_id: &str,
        records: &Records,
        rows: &[usize],
        report: &mut PushbackReport,
    ) -> Result<Vec<RecordResult>, PushbackError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if rows.len() < self.spec.bulk_threshold {
            let results = self
                .client
                .upsert_collections(object, external_id, records, rows)
                .await?;
            log_upserted(object, "sObject Collections", &results);
            return Ok(results);
        }
        let subset = Records {
            fields: records.fields.clone(),
            rows: rows.iter().map(|&i| records.rows[i].clone()).collect(),
        };
        let mut results = Vec::new();
        for job in ingest::split_jobs(&subset, ingest::INGEST_JOB_BYTES) {
            let original: Vec<usize> = job.iter().map(|&i| rows[i]).collect();
            report.bulk_jobs += 1;
            let job_results = self
                .client
                .upsert_bulk_job(object, external_id, records, &original)
                .await?;
            log_upserted(object, "Bulk API 2.0 ingest job", &job_results);
            results.extend(job_results);
        }
        Ok(results)
    }

    async fn write_rejects(
        &self,
        object: &str,
        records: &Records,
        failed: &[&RecordResult],
    ) -> Result<(), PushbackError> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["sf__Error".to_string()];
        header.extend(records.fields.iter().cloned());
        writer.write_record(&header).expect("writing to memory");
        for r in failed {
            let mut line = vec![r.error.clone().unwrap_or_default()];
            line.extend(records.rows[r.row].iter().map(|v| match v {
                WriteValue::Null => String::new(),
                WriteValue::Text(t) => t.clone(),
                WriteValue::Number(n) => n.to_string(),
                WriteValue::DateTime(ms) => ingest::datetime(*ms),
            }));
            writer.write_record(&line).expect("writing to memory");
        }
        let content = writer.into_inner().expect("writing to memory");
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        let name = format!("{object}-{stamp}.csv");
        let first = failed
            .first()
            .and_then(|r| r.error.clone())
            .unwrap_or_default();
        let reason = RejectReason {
            source_key: format!("{} upsert into {object}", self.job.name),
            line: None,
            column: None,
            column_number: None,
            reason: format!(
                "{} records rejected by Salesforce; first: {first}",
                failed.len()
            ),
        };
        state::write_reject(
            &self.lake,
            &self.job.name,
            &name,
            Bytes::from(content),
            &reason,
        )
        .await?;
        Ok(())
    }
}

/// One log event per Collections batch or Bulk ingest job: records sent, records that failed.
fn log_upserted(object: &str, via: &str, results: &[RecordResult]) {
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    tracing::info!(
        object,
        via,
        records = results.len(),
        failed,
        "records upserted"
    );
}
