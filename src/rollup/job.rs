//! Running a roll-up: find the interval partitions that changed since the last run (or those in
//! `--from/--to`), roll each day up per grain, replace a roll-up partition only when its bytes
//! change, update Glue, then move the watermark.

use std::time::Instant;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::aggregate::{output_schema, rollup_noting_fallbacks, FallbackUse};
use crate::connect::schema::ReportSchema;
use crate::job::{Grain, Job, ReportKind};
use crate::lake::parquet::{align, decode, encode, ParquetError};
use crate::lake::partitions::{changed_days, DayFile};
use crate::lake::{layout, Access, Location, StoreError};
use crate::observe::progress::Progress;
use crate::observe::reconcile::{Reconciliation, RollupCounts};
use crate::state::{self, StateError};
use crate::window::Window;

/// Roll-up errors.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// Lake storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Parquet failed.
    #[error("{key}: {source}")]
    Parquet {
        /// The partition.
        key: String,
        /// What failed.
        #[source]
        source: ParquetError,
    },
    /// Arrow failed while aggregating.
    #[error("{key}: {source}")]
    Arrow {
        /// The partition.
        key: String,
        /// What failed.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// Glue failed (data was written; the next run retries).
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// What a roll-up run did.
#[derive(Debug, Default)]
pub struct RollupReport {
    /// Interval days read.
    pub days: usize,
    /// Interval rows read.
    pub rows_read: usize,
    /// Roll-up partitions written (bytes changed).
    pub written: Vec<String>,
    /// Roll-up partitions already up to date.
    pub unchanged: usize,
    /// Parquet bytes written.
    pub bytes_written: usize,
    /// Weighted metrics that used a fallback denominator: (day, grain, what was used).
    pub fallbacks: Vec<(chrono::NaiveDate, Grain, FallbackUse)>,
    /// Lake requests: (get, put, list pages).
    pub lake_requests: (u64, u64, u64),
    /// Seconds.
    pub seconds: f64,
    /// Per roll-up partition (written or unchanged): interval rows read, rows of the partition.
    pub partitions: Vec<RollupCounts>,
}

impl RollupReport {
    /// One row per roll-up partition ([`RollupCounts::reconcile`] has the rule).
    pub fn reconciliation(&self) -> Vec<Reconciliation> {
        self.partitions
            .iter()
            .map(RollupCounts::reconcile)
            .collect()
    }
}

/// The roll-up table of a report and grain: `connect_queue_daily`, `connect_agent_hourly`, …
pub fn table_name(report: ReportKind, grain: Grain) -> String {
    format!("connect_{}_{}", report.name(), grain.name())
}

/// A roll-up run.
pub struct RollupJob<'a> {
    job: &'a Job,
    report: ReportKind,
    grains: &'a [Grain],
    lake: Location,
}

impl<'a> RollupJob<'a> {
    /// Opens the lake.
    pub async fn open(
        job: &'a Job,
        report: ReportKind,
        grains: &'a [Grain],
        dry_run: bool,
    ) -> Result<RollupJob<'a>, RollupError> {
        let access = if dry_run {
            Access::ReadOnly
        } else {
            Access::Create
        };
        let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), access).await?;
        Ok(RollupJob {
            job,
            report,
            grains,
            lake,
        })
    }

    /// The lake.
    pub fn lake(&self) -> &Location {
        &self.lake
    }

    /// Interval partitions to roll up (changed since the last run, or in the window), by day.
    pub async fn plan(&self, window: &Window) -> Result<Vec<DayFile>, RollupError> {
        let schema = ReportSchema::get(self.report);
        let watermark = state::load_job_state(&self.lake, &self.job.name)
            .await?
            .watermark;
        Ok(changed_days(
            &self.lake,
            &schema.table,
            watermark,
            window,
            self.job.timezone,
        )
        .await?)
    }

    /// Rolls up the planned days, `concurrency` days at a time (lake GETs and PUTs in flight;
    /// decoding, aggregation and encoding run on the blocking pool, off the async workers).
    pub async fn run(
        &self,
        plan: &[DayFile],
        concurrency: usize,
        progress: &Progress,
    ) -> Result<RollupReport, RollupError> {
        let started = Instant::now();
        let schema = ReportSchema::get(self.report);
        let meta = state::load_table_meta(&self.lake, &schema.table).await?;
        let input_schema = schema.table_schema(&meta.extra_columns);
        progress.set_total(plan.len() as u64);
        let days: Vec<Option<DayOutcome>> = futures::stream::iter(plan)
            .map(|day| self.roll_day(day, &input_schema))
            .buffer_unordered(concurrency.max(1))
            .inspect_ok(|_| {
                progress.inc(1);
            })
            .try_collect()
            .await?;
        progress.finish();
        let mut report = RollupReport::default();
        let mut newest: Option<DateTime<Utc>> = None;
        let mut partition_values = Vec::new();
        for day in days.into_iter().flatten() {
            partition_values.push(layout::day_string(day.day));
            report.days += 1;
            report.rows_read += day.rows_read;
            report.unchanged += day.unchanged;
            report.bytes_written += day.bytes_written;
            report.written.extend(day.written);
            report.fallbacks.extend(day.fallbacks);
            for (table, rows) in day.rows_written {
                report.partitions.push(RollupCounts {
                    table,
                    dt: layout::day_string(day.day),
                    rows_read: day.rows_read as u64,
                    rows_written: rows as u64,
                });
            }
            newest = newest.max(Some(day.modified));
        }
        report.written.sort();
        report
            .partitions
            .sort_by(|a, b| (&a.table, &a.dt).cmp(&(&b.table, &b.dt)));
        if let Some(catalog) = &self.job.catalog {
            let config = crate::aws::sdk_config(self.job.lake.region.as_deref()).await;
            let glue = crate::aws::glue_client(&config);
            for &grain in self.grains {
                let name = table_name(self.report, grain);
                let definition = crate::catalog::TableDefinition {
                    location: self.lake.url_of(&layout::table_prefix(&name)),
                    description: format!(
                        "Amazon Connect {} metrics per {} (cxlake roll-up of {}; formulas in schemas/connect_rollups.toml)",
                        self.report.name(),
                        if grain == Grain::Hourly { "hour" } else { "day" },
                        schema.table
                    ),
                    name,
                    schema: self.output_schema(&input_schema, grain),
                    partition: Some(catalog.date_partition("dt")),
                };
                crate::catalog::sync_table(&glue, &catalog.database, &definition).await?;
                crate::catalog::register_partitions(
                    &glue,
                    &catalog.database,
                    &definition,
                    &partition_values,
                )
                .await?;
            }
        }
        if let Some(newest) = newest {
            let mut job_state = state::load_job_state(&self.lake, &self.job.name).await?;
            if job_state.watermark.is_none_or(|w| newest > w) {
                job_state.watermark = Some(newest);
                state::save_job_state(&self.lake, &self.job.name, &job_state).await?;
            }
        }
        report.lake_requests = self.lake.requests().snapshot();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Rolls up one interval day into every grain; `None` when the day's file has gone since
    /// the listing (the next run sees what replaced it).
    async fn roll_day(
        &self,
        day_file: &DayFile,
        input_schema: &SchemaRef,
    ) -> Result<Option<DayOutcome>, RollupError> {
        let DayFile { day, key, modified } = day_file;
        let Some(bytes) = self.lake.get(key).await? else {
            return Ok(None);
        };
        let encoded = {
            let (key, day, input_schema) = (key.clone(), *day, input_schema.clone());
            let (report, grains) = (self.report, self.grains.to_vec());
            tokio::task::spawn_blocking(move || {
                encode_day(bytes, &key, day, &input_schema, report, &grains)
            })
            .await
            .expect("roll-up of a day does not panic")?
        };
        let mut outcome = DayOutcome {
            fallbacks: encoded
                .fallbacks
                .into_iter()
                .map(|(grain, used)| (layout::date_of(*day), grain, used))
                .collect(),
            day: *day,
            rows_read: encoded.rows,
            modified: *modified,
            written: Vec::new(),
            unchanged: 0,
            bytes_written: 0,
            rows_written: Vec::new(),
        };
        for (target, encoded, table, rows) in encoded.partitions {
            outcome.rows_written.push((table, rows));
            let bytes = encoded.len();
            let written = self.lake.get(&target).await?.as_deref() != Some(encoded.as_slice());
            if written {
                self.lake.put(&target, Bytes::from(encoded)).await?;
            }
            tracing::info!(source = %key, partition = %target, bytes, written, "partition");
            if written {
                outcome.bytes_written += bytes;
                outcome.written.push(target);
            } else {
                outcome.unchanged += 1;
            }
        }
        Ok(Some(outcome))
    }

    /// Every roll-up table of this job with its schema: the formulas applied to the interval
    /// table's schema as stored (known columns plus those added for unknown headers).
    pub async fn table_schemas(&self) -> Result<Vec<(String, SchemaRef)>, RollupError> {
        let schema = ReportSchema::get(self.report);
        let meta: state::TableMeta = state::load_table_meta(&self.lake, &schema.table).await?;
        let input = schema.table_schema(&meta.extra_columns);
        Ok(self
            .grains
            .iter()
            .map(|&grain| {
                (
                    table_name(self.report, grain),
                    self.output_schema(&input, grain),
                )
            })
            .collect())
    }

    fn output_schema(&self, input: &SchemaRef, grain: Grain) -> SchemaRef {
        output_schema(
            input,
            &ReportSchema::get(self.report).grouping_column,
            grain,
        )
    }
}

/// What rolling up one interval day did.
struct DayOutcome {
    fallbacks: Vec<(chrono::NaiveDate, Grain, FallbackUse)>,
    day: i32,
    rows_read: usize,
    modified: DateTime<Utc>,
    written: Vec<String>,
    unchanged: usize,
    bytes_written: usize,
    /// (roll-up table, rows of its partition) per grain.
    rows_written: Vec<(String, usize)>,
}

/// Decodes one interval day and encodes its roll-up for every grain.
fn encode_day(
    bytes: Bytes,
    key: &str,
    day: i32,
    input_schema: &SchemaRef,
    report: ReportKind,
    grains: &[Grain],
) -> Result<EncodedDay, RollupError> {
    let parquet_error = |key: &str| {
        let key = key.to_string();
        move |source| RollupError::Parquet { key, source }
    };
    let batches = decode(bytes)
        .and_then(|b| {
            b.iter()
                .map(|b| align(b, input_schema))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(parquet_error(key))?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let grouping = &ReportSchema::get(report).grouping_column;
    let mut encoded = Vec::with_capacity(grains.len());
    let mut fallbacks = Vec::new();
    for &grain in grains {
        let (out, used) = rollup_noting_fallbacks(&batches, input_schema, grouping, grain, day)
            .map_err(|source| RollupError::Arrow {
                key: key.to_string(),
                source,
            })?;
        for used in used {
            tracing::warn!(source = %key, grain = grain.name(), column = %used.column, denominator = %used.denominator, rows = used.rows, "weighted by a fallback denominator");
            fallbacks.push((grain, used));
        }
        let table = table_name(report, grain);
        let target = layout::partition_file(&table, day);
        let bytes = encode(&out).map_err(parquet_error(&target))?;
        encoded.push((target, bytes, table, out.num_rows()));
    }
    Ok(EncodedDay {
        rows,
        partitions: encoded,
        fallbacks,
    })
}

/// One interval day rolled up and encoded.
struct EncodedDay {
    /// Interval rows read.
    rows: usize,
    /// (roll-up partition key, Parquet bytes, table, rows) per grain.
    partitions: Vec<(String, Vec<u8>, String, usize)>,
    /// Weighted metrics that used a fallback denominator, per grain.
    fallbacks: Vec<(Grain, FallbackUse)>,
}
