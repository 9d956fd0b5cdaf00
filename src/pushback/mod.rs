//! The `salesforce-pushback` job: interval (or roll-up) partitions → the CTI adapter's metric
//! objects, upserted on an external ID. Fields are checked with describe first (unknown ones
//! reported once and skipped); small sets go through sObject Collections, large ones through
//! Bulk API 2.0 ingest jobs; retryable failures are retried once, the rest land in
//! `_etl/rejects/` with Salesforce's error, and the exit code says "partial".

pub mod map;
pub mod pushed;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::connect::schema::{col, ReportSchema, EXPORTED_AT};
use crate::job::{Job, PushbackSpec, SalesforceSettings};
use crate::lake::parquet::{decode, ParquetError};
use crate::lake::partitions::{changed_days, DayFile};
use crate::lake::{layout, Access, Location, StoreError};
use crate::observe::progress::Progress;
use crate::observe::reconcile::PushCounts;
use crate::salesforce::ingest::{self, RecordResult, Records, WriteValue};
use crate::salesforce::{Client, SalesforceError};
use crate::state::{self, RejectReason, StateError};
use crate::window::Window;
use pushed::PushedDay;

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

/// A report column that is not pushed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedColumn {
    /// Lake column.
    pub column: String,
    /// The Salesforce field it would go to.
    pub field: String,
    /// Why it is not pushed.
    pub reason: String,
}

impl std::fmt::Display for SkippedColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}: {}", self.column, self.field, self.reason)
    }
}

/// What a push-back run did.
#[derive(Debug, Default)]
pub struct PushbackReport {
    /// The job.
    pub job: String,
    /// The lake table read.
    pub table: String,
    /// Target object.
    pub object: String,
    /// Days read.
    pub days: usize,
    /// Records sent.
    pub records: usize,
    /// Records read but not sent: equal to what was last upserted.
    pub unchanged: usize,
    /// Upsert calls the unchanged records would have cost (sObject Collections or Bulk ingest).
    pub calls_saved: u64,
    /// Created.
    pub created: usize,
    /// Updated.
    pub updated: usize,
    /// Rejected by Salesforce (written to `_etl/rejects/`).
    pub rejected: usize,
    /// Report columns not pushed, with the reason.
    pub skipped: Vec<SkippedColumn>,
    /// The region written to `Region__c` (and appended to Lambda-style keys).
    pub region: Option<String>,
    /// Bulk ingest jobs used.
    pub bulk_jobs: usize,
    /// Salesforce calls: (token, api, retries, relogins).
    pub calls: (u64, u64, u64, u64),
    /// Seconds.
    pub seconds: f64,
}

impl PushbackReport {
    /// One row for the target object ([`PushCounts::reconcile`] has the rule).
    pub fn reconciliation(&self) -> Vec<crate::observe::reconcile::Reconciliation> {
        vec![PushCounts {
            table: self.table.clone(),
            object: self.object.clone(),
            read: (self.records + self.unchanged) as u64,
            sent: self.records as u64,
            created: self.created as u64,
            updated: self.updated as u64,
            rejected: self.rejected as u64,
            rejects: layout::reject_key(&self.job, ""),
        }
        .reconcile()]
    }
}

/// What a dry run found in the org for a sample of the keys it would write.
#[derive(Debug, Default)]
pub struct LookupReport {
    /// Target object.
    pub object: String,
    /// Days read.
    pub days: usize,
    /// Records the run would send (new or changed, or all with `--full`).
    pub records: usize,
    /// Records it would leave out as unchanged.
    pub unchanged: usize,
    /// Keys looked up.
    pub sampled: usize,
    /// Of those, keys already in the org (would update).
    pub existing: usize,
    /// A few keys of the sample, each with whether it exists.
    pub examples: Vec<(String, bool)>,
    /// Report columns not pushed, with the reason.
    pub skipped: Vec<SkippedColumn>,
    /// The region written to `Region__c`.
    pub region: Option<String>,
    /// Salesforce calls: (token, api, retries, relogins).
    pub calls: (u64, u64, u64, u64),
}

/// Keys a dry run looks up in the org at most.
pub const LOOKUP_SAMPLE: usize = 200;
/// Keys per SOQL `IN (…)` lookup (keeps the query URL short).
const LOOKUP_CHUNK: usize = 100;

/// One lake column → one field.
struct FieldPlan {
    column: String,
    field: String,
}

/// The records of a run, decided before anything is sent.
struct Prepared {
    object: String,
    external_id: String,
    records: Records,
    /// Interval day of each row.
    day_of_row: Vec<i32>,
    /// Digest of each row.
    digests: Vec<String>,
    /// Rows to send.
    send: Vec<usize>,
    /// What was last upserted, per day read.
    pushed: BTreeMap<i32, PushedDay>,
    days_read: Vec<i32>,
    newest: Option<DateTime<Utc>>,
    skipped: Vec<SkippedColumn>,
    region: Option<String>,
}

/// A push-back run.
pub struct PushbackJob<'a> {
    job: &'a Job,
    spec: &'a PushbackSpec,
    lake: Location,
    client: Client,
    /// The region from the job, else from the environment; `None` when `region = ""` or none is set.
    region: Option<String>,
    full: bool,
}

impl<'a> PushbackJob<'a> {
    /// Opens the lake and the Salesforce client, and resolves the region: the job's
    /// `region`, else the AWS region of the environment (aws-config's chain: `AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, profile, instance metadata), like the Lambdas' boto3 session;
    /// `region = ""` means none. `full` re-sends records that did not change.
    pub async fn open(
        job: &'a Job,
        spec: &'a PushbackSpec,
        salesforce: &SalesforceSettings,
        dry_run: bool,
        full: bool,
    ) -> Result<PushbackJob<'a>, PushbackError> {
        let access = if dry_run {
            Access::ReadOnly
        } else {
            Access::Create
        };
        let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), access).await?;
        let client = crate::export::client_for(salesforce).await?;
        let region = match spec.region.as_deref() {
            Some("") => None,
            Some(region) => Some(region.to_string()),
            None => aws_config::meta::region::RegionProviderChain::default_provider()
                .region()
                .await
                .map(|r| r.to_string()),
        };
        Ok(PushbackJob {
            job,
            spec,
            lake,
            client,
            region,
            full,
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

    /// Partitions to push: changed since the last run (or in the window; every one with
    /// `--full` and no window), and the days that still hold records a run did not get into
    /// Salesforce.
    pub async fn plan(&self, window: &Window) -> Result<Vec<DayFile>, PushbackError> {
        let table = &ReportSchema::get(self.spec.report).table;
        let job_state = state::load_job_state(&self.lake, &self.job.name).await?;
        // `--full` without a window re-sends every day of the table.
        let watermark = job_state.watermark.filter(|_| !self.full);
        let mut days =
            changed_days(&self.lake, table, watermark, window, self.job.timezone).await?;
        if !job_state.pending_days.is_empty() {
            let all = changed_days(
                &self.lake,
                table,
                None,
                &Window {
                    start: None,
                    end: None,
                },
                self.job.timezone,
            )
            .await?;
            for file in all {
                if job_state.pending_days.contains(&layout::date_of(file.day))
                    && !days.iter().any(|d| d.day == file.day)
                {
                    days.push(file);
                }
            }
            days.sort();
        }
        Ok(days)
    }

    /// Reads the planned partitions into the records a run would write, and decides which
    /// differ from what was last upserted.
    async fn prepare(
        &self,
        plan: &[DayFile],
        progress: &Progress,
    ) -> Result<Prepared, PushbackError> {
        let schema = ReportSchema::get(self.spec.report);
        let object = self.object();
        let objmap = map::object_map(self.spec.report);
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
        let mut skipped = Vec::new();
        let optional = |column: &str, name: &str, skipped: &mut Vec<SkippedColumn>| {
            let field = exact(&self.field(name));
            if field.is_none() {
                skipped.push(SkippedColumn {
                    column: column.to_string(),
                    field: self.field(name),
                    reason: format!("no such field on {object}"),
                });
            }
            field
        };
        let end_field = optional("interval_end", &objmap.end, &mut skipped);
        let created_field = optional(EXPORTED_AT, &objmap.created, &mut skipped);
        let region_field = exact(&self.field(&objmap.region));
        let region = match (&region_field, &self.region) {
            (Some(_), Some(region)) => Some(region.clone()),
            (Some(field), None) => {
                skipped.push(SkippedColumn {
                    column: "(region)".into(),
                    field: field.clone(),
                    reason: if self.spec.region.is_some() {
                        "region = \"\" in the job".into()
                    } else {
                        "no AWS region in the environment (set AWS_REGION or [pushback] region)"
                            .into()
                    },
                });
                None
            }
            (None, _) => None,
        };
        let mut metrics = Vec::new();
        for m in &schema.metrics {
            let wanted = self.field(&map::field_for_header(&m.header));
            match exact(&wanted) {
                Some(field) => metrics.push(FieldPlan {
                    column: m.column.clone(),
                    field,
                }),
                None => skipped.push(SkippedColumn {
                    column: m.column.clone(),
                    field: wanted,
                    reason: format!("no such field on {object}"),
                }),
            }
        }
        // Columns added by rule for headers cxlake did not know (custom agent statuses such
        // as `Lunch time`, new Connect metrics): pushed when the org has the Lambda's field.
        let meta = state::load_table_meta(&self.lake, &schema.table).await?;
        for column in &meta.extra_columns {
            let candidates: Vec<String> = map::fields_for_added_column(column)
                .iter()
                .map(|f| self.field(f))
                .collect();
            match candidates.iter().find_map(|f| exact(f)) {
                Some(field) if !metrics.iter().any(|m| m.field == field) => {
                    metrics.push(FieldPlan {
                        column: column.clone(),
                        field,
                    })
                }
                Some(field) => skipped.push(SkippedColumn {
                    column: column.clone(),
                    field,
                    reason: "the field already takes another column".into(),
                }),
                None => skipped.push(SkippedColumn {
                    column: column.clone(),
                    field: candidates[0].clone(),
                    reason: format!("no such field on {object}"),
                }),
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(object = %object, columns = ?skipped.iter().map(ToString::to_string).collect::<Vec<_>>(), "columns not pushed");
        }

        let mut fields = vec![external_id.clone(), name_field, start_field];
        fields.extend(end_field.iter().cloned());
        fields.extend(created_field.iter().cloned());
        if region.is_some() {
            fields.extend(region_field.iter().cloned());
        }
        fields.extend(metrics.iter().map(|m| m.field.clone()));
        let mut prepared = Prepared {
            object: object.clone(),
            external_id,
            records: Records {
                fields,
                rows: Vec::new(),
            },
            day_of_row: Vec::new(),
            digests: Vec::new(),
            send: Vec::new(),
            pushed: BTreeMap::new(),
            days_read: Vec::new(),
            newest: None,
            skipped,
            region,
        };
        // Later partitions (and later rows) win when two rows share a key.
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        progress.set_total(plan.len() as u64);
        let shape = RowShape {
            with_end: end_field.is_some(),
            with_created: created_field.is_some(),
            region: prepared.region.clone(),
        };
        for file in plan {
            progress.inc(1);
            let Some(bytes) = self.lake.get(&file.key).await? else {
                continue;
            };
            let batches = decode(bytes).map_err(|source| PushbackError::Parquet {
                key: file.key.clone(),
                source,
            })?;
            prepared.days_read.push(file.day);
            for batch in &batches {
                self.rows(
                    batch,
                    file.day,
                    &metrics,
                    &shape,
                    &mut prepared,
                    &mut by_key,
                );
            }
            let pushed = pushed::load(&self.lake, &self.job.name, file.day).await?;
            prepared.pushed.insert(file.day, pushed);
            prepared.newest = prepared.newest.max(Some(file.modified));
        }
        progress.finish();
        prepared.digests = prepared
            .records
            .rows
            .iter()
            .map(|values| pushed::record_digest(&prepared.records.fields, values))
            .collect();
        prepared.send = (0..prepared.records.rows.len())
            .filter(|&i| {
                self.full
                    || prepared
                        .pushed
                        .get(&prepared.day_of_row[i])
                        .and_then(|p| p.records.get(key_of(&prepared.records, i)))
                        != Some(&prepared.digests[i])
            })
            .collect();
        Ok(prepared)
    }

    /// Pushes the planned partitions; `progress` counts the interval days read.
    pub async fn run(
        &self,
        plan: &[DayFile],
        progress: &Progress,
    ) -> Result<PushbackReport, PushbackError> {
        let started = Instant::now();
        let prepared = self.prepare(plan, progress).await?;
        let object = prepared.object.clone();
        let total = prepared.records.rows.len();
        let mut report = PushbackReport {
            job: self.job.name.clone(),
            table: ReportSchema::get(self.spec.report).table.clone(),
            object: object.clone(),
            days: prepared.days_read.len(),
            records: prepared.send.len(),
            unchanged: total - prepared.send.len(),
            calls_saved: upsert_calls(total, self.spec.bulk_threshold)
                .saturating_sub(upsert_calls(prepared.send.len(), self.spec.bulk_threshold)),
            skipped: prepared.skipped.clone(),
            region: prepared.region.clone(),
            ..Default::default()
        };
        let records = &prepared.records;
        let external_id = &prepared.external_id;
        let mut results = self
            .upsert(&object, external_id, records, &prepared.send, &mut report)
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
                .upsert(&object, external_id, records, &retry, &mut report)
                .await?;
            results.retain(|r| !r.retryable());
            results.extend(again);
        }
        let failed: Vec<&RecordResult> = results.iter().filter(|r| r.error.is_some()).collect();
        report.created = results.iter().filter(|r| r.created == Some(true)).count();
        report.updated = results.iter().filter(|r| r.created == Some(false)).count();
        report.rejected = failed.len();
        if !failed.is_empty() {
            self.write_rejects(&object, records, &failed).await?;
        }
        crate::fault_point!("pushback-before-digests");
        self.remember(&prepared, &results).await?;
        report.calls = self.client.counts().snapshot();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Stores the digests of what Salesforce accepted, the days left pending (a record failed
    /// or went unanswered) and the watermark.
    async fn remember(
        &self,
        prepared: &Prepared,
        results: &[RecordResult],
    ) -> Result<(), PushbackError> {
        let mut pushed = prepared.pushed.clone();
        let mut pending: BTreeSet<i32> = BTreeSet::new();
        let mut answered: BTreeSet<usize> = BTreeSet::new();
        for r in results {
            answered.insert(r.row);
            let day = prepared.day_of_row[r.row];
            let key = key_of(&prepared.records, r.row).to_string();
            let day_state = pushed.entry(day).or_default();
            if r.error.is_some() {
                day_state.records.remove(&key);
                pending.insert(day);
            } else {
                day_state
                    .records
                    .insert(key, prepared.digests[r.row].clone());
            }
        }
        for &row in &prepared.send {
            if !answered.contains(&row) {
                pending.insert(prepared.day_of_row[row]);
            }
        }
        for (day, day_state) in &pushed {
            if prepared.pushed.get(day) != Some(day_state) {
                pushed::save(&self.lake, &self.job.name, *day, day_state).await?;
                crate::fault_point!("pushback-after-day-digests");
            }
        }
        let mut job_state = state::load_job_state(&self.lake, &self.job.name).await?;
        let before = job_state.clone();
        for day in &prepared.days_read {
            let date = layout::date_of(*day);
            if pending.contains(day) {
                job_state.pending_days.insert(date);
            } else {
                job_state.pending_days.remove(&date);
            }
        }
        if let Some(newest) = prepared.newest {
            if job_state.watermark.is_none_or(|w| newest > w) {
                job_state.watermark = Some(newest);
            }
        }
        if job_state != before {
            state::save_job_state(&self.lake, &self.job.name, &job_state).await?;
            crate::fault_point!("pushback-after-state");
        }
        Ok(())
    }

    /// A dry run against the org: describe, the records the run would send, and a SOQL lookup
    /// of a sample of their keys (at most [`LOOKUP_SAMPLE`]) that tells updates from creates.
    pub async fn lookup(&self, plan: &[DayFile]) -> Result<LookupReport, PushbackError> {
        let prepared = self.prepare(plan, &Progress::hidden()).await?;
        let keys: Vec<&str> = prepared
            .send
            .iter()
            .map(|&i| key_of(&prepared.records, i))
            .collect();
        // An even spread over the keys, so every day and queue has a chance to be seen.
        let step = keys.len().div_ceil(LOOKUP_SAMPLE).max(1);
        let sample: Vec<&str> = keys.iter().step_by(step).copied().collect();
        let mut existing = BTreeSet::new();
        for chunk in sample.chunks(LOOKUP_CHUNK) {
            let list = chunk
                .iter()
                .map(|k| soql_string(k))
                .collect::<Vec<_>>()
                .join(", ");
            let soql = format!(
                "SELECT {field} FROM {object} WHERE {field} IN ({list})",
                field = prepared.external_id,
                object = prepared.object
            );
            let mut page = self.client.query(&soql, false).await?;
            loop {
                for record in &page.records {
                    if let Some(key) = record.get(&prepared.external_id).and_then(|v| v.as_str()) {
                        existing.insert(key.to_string());
                    }
                }
                match page.next_records_url.clone().filter(|_| !page.done) {
                    Some(next) => page = self.client.query_more(&next).await?,
                    None => break,
                }
            }
        }
        Ok(LookupReport {
            object: prepared.object.clone(),
            days: prepared.days_read.len(),
            records: prepared.send.len(),
            unchanged: prepared.records.rows.len() - prepared.send.len(),
            sampled: sample.len(),
            existing: sample.iter().filter(|k| existing.contains(**k)).count(),
            examples: sample
                .iter()
                .take(5)
                .map(|k| (k.to_string(), existing.contains(*k)))
                .collect(),
            skipped: prepared.skipped,
            region: prepared.region,
            calls: self.client.counts().snapshot(),
        })
    }

    fn rows(
        &self,
        batch: &RecordBatch,
        day: i32,
        metrics: &[FieldPlan],
        shape: &RowShape,
        prepared: &mut Prepared,
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
        // Older partitions may lack a column added later: its values are null there.
        let columns: Vec<Option<&dyn Array>> = metrics
            .iter()
            .map(|m| batch.column_by_name(&m.column).map(|c| c.as_ref()))
            .collect();
        for row in 0..batch.num_rows() {
            let start = ingest::datetime(starts.value(row));
            let key = map::external_id(
                self.spec.key,
                self.spec.report,
                instance.value(row),
                names.value(row),
                &start,
                shape.region.as_deref(),
            );
            let mut values = vec![
                WriteValue::Text(key.clone()),
                WriteValue::Text(names.value(row).to_string()),
                WriteValue::DateTime(starts.value(row)),
            ];
            if shape.with_end {
                values.push(if ends.is_null(row) {
                    WriteValue::Null
                } else {
                    WriteValue::DateTime(ends.value(row))
                });
            }
            if shape.with_created {
                values.push(match &exported {
                    Some(e) if e.is_valid(row) => WriteValue::DateTime(e.value(row)),
                    _ => WriteValue::Null,
                });
            }
            if let Some(region) = &shape.region {
                values.push(WriteValue::Text(region.clone()));
            }
            for column in &columns {
                values.push(match column {
                    Some(column) if column.is_valid(row) => match column.data_type() {
                        DataType::Int64 => {
                            WriteValue::Number(column.as_primitive::<Int64Type>().value(row) as f64)
                        }
                        DataType::Float64 => {
                            WriteValue::Number(column.as_primitive::<Float64Type>().value(row))
                        }
                        _ => WriteValue::Text(column.as_string::<i32>().value(row).to_string()),
                    },
                    _ => WriteValue::Null,
                });
            }
            match by_key.get(&key) {
                Some(&i) => {
                    prepared.records.rows[i] = values;
                    prepared.day_of_row[i] = day;
                }
                None => {
                    by_key.insert(key, prepared.records.rows.len());
                    prepared.records.rows.push(values);
                    prepared.day_of_row.push(day);
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
            crate::fault_point!("pushback-after-bulk-job");
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

/// How each row is laid out (the optional fixed fields).
struct RowShape {
    with_end: bool,
    with_created: bool,
    region: Option<String>,
}

/// The external ID of a row (always its first value).
fn key_of(records: &Records, row: usize) -> &str {
    match records.rows[row].first() {
        Some(WriteValue::Text(key)) => key,
        _ => "",
    }
}

/// Upsert calls for `records` records: sObject Collections (200 a call) below the Bulk
/// threshold; from it, one Bulk ingest job (create, upload, close, a poll, three result
/// files).
fn upsert_calls(records: usize, bulk_threshold: usize) -> u64 {
    match records {
        0 => 0,
        n if n < bulk_threshold => n.div_ceil(ingest::COLLECTION_LIMIT) as u64,
        _ => 7,
    }
}

/// A SOQL string literal: quotes and backslashes escaped.
fn soql_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
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
