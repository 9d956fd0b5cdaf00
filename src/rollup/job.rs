//! Running a roll-up: find the interval partitions that changed since the last run (or those in
//! `--from/--to`), roll each day up per grain, replace a roll-up partition only when its bytes
//! change, update Glue, then move the watermark.

use std::time::Instant;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::aggregate::{output_schema, rollup, Grain};
use crate::connect::schema::ReportSchema;
use crate::job::{Job, ReportKind};
use crate::lake::parquet::{align, decode, encode, ParquetError};
use crate::lake::partitions::{changed_days, DayFile};
use crate::lake::{layout, Access, Location, StoreError};
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
    /// Lake requests: (get, put, list pages).
    pub lake_requests: (u64, u64, u64),
    /// Seconds.
    pub seconds: f64,
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

    /// Rolls up the planned days.
    pub async fn run(&self, plan: &[DayFile]) -> Result<RollupReport, RollupError> {
        let started = Instant::now();
        let schema = ReportSchema::get(self.report);
        let meta = state::load_table_meta(&self.lake, &schema.table).await?;
        let input_schema = schema.table_schema(&meta.extra_columns);
        let mut report = RollupReport::default();
        let mut newest: Option<DateTime<Utc>> = None;
        for DayFile { day, key, modified } in plan {
            let Some(bytes) = self.lake.get(key).await? else {
                continue; // replaced or removed since the listing; the next run sees it
            };
            let batches = decode(bytes)
                .and_then(|b| {
                    b.iter()
                        .map(|b| align(b, &input_schema))
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|source| RollupError::Parquet {
                    key: key.clone(),
                    source,
                })?;
            report.days += 1;
            report.rows_read += batches.iter().map(|b| b.num_rows()).sum::<usize>();
            for &grain in self.grains {
                let out = rollup(
                    &batches,
                    &input_schema,
                    &schema.grouping_column,
                    grain,
                    *day,
                )
                .map_err(|source| RollupError::Arrow {
                    key: key.clone(),
                    source,
                })?;
                let table = table_name(self.report, grain);
                let target = layout::partition_file(&table, *day);
                let encoded = encode(&out).map_err(|source| RollupError::Parquet {
                    key: target.clone(),
                    source,
                })?;
                if self.lake.get(&target).await?.as_deref() == Some(encoded.as_slice()) {
                    report.unchanged += 1;
                } else {
                    self.lake.put(&target, Bytes::from(encoded)).await?;
                    report.written.push(target);
                }
            }
            newest = newest.max(Some(*modified));
        }
        if let Some(catalog) = &self.job.catalog {
            let config = crate::aws::sdk_config(self.job.lake.region.as_deref()).await;
            let glue = aws_sdk_glue::Client::new(&config);
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
                    partition: Some(crate::catalog::DatePartition {
                        column: "dt".into(),
                        start: catalog.projection_start,
                    }),
                };
                crate::catalog::sync_table(&glue, &catalog.database, &definition).await?;
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

    fn output_schema(&self, input: &SchemaRef, grain: Grain) -> SchemaRef {
        output_schema(
            input,
            &ReportSchema::get(self.report).grouping_column,
            grain,
        )
    }
}
