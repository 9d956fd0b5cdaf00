//! The run record as data: two lake tables next to the data, `cxlake_runs` (one row per run)
//! and `cxlake_reconciliation` (one row per partition or object a run wrote), partitioned by
//! the UTC day the run started (`dt`), one file per run:
//! `cxlake_runs/dt=YYYY-MM-DD/<run-id>.parquet`. With a `[catalog]`, both are Glue tables with
//! partition projection on `dt`, like the data tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};

use super::reconcile::worst;
use super::run::RunRecord;
use crate::catalog::{CatalogError, TableDefinition};
use crate::job::CatalogSettings;
use crate::lake::parquet::ParquetError;
use crate::lake::{layout, Location, StoreError};

/// The runs table.
pub const RUNS_TABLE: &str = "cxlake_runs";
/// The reconciliation table.
pub const RECONCILIATION_TABLE: &str = "cxlake_reconciliation";

/// Errors writing the run tables (they never fail a run: the caller logs them).
#[derive(Debug, thiserror::Error)]
pub enum RunTablesError {
    /// Encoding failed.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    /// The lake refused the file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Glue failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn fields(spec: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        spec.iter()
            .map(|(name, data_type)| Field::new(*name, data_type.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Columns of `cxlake_runs`.
pub fn runs_schema() -> SchemaRef {
    fields(&[
        ("run_id", DataType::Utf8),
        ("job", DataType::Utf8),
        ("kind", DataType::Utf8),
        ("command", DataType::Utf8),
        ("window_from", timestamp()),
        ("window_to", timestamp()),
        ("started_at", timestamp()),
        ("seconds", DataType::Float64),
        ("exit_code", DataType::Int32),
        ("inputs", DataType::Int64),
        ("rows_in", DataType::Int64),
        ("rows_out", DataType::Int64),
        ("rejects", DataType::Int64),
        ("api_calls", DataType::Int64),
        ("bytes_written", DataType::Int64),
        ("reconciliation_status", DataType::Utf8),
        ("error", DataType::Utf8),
        ("missing_intervals", DataType::Int64),
    ])
}

/// Columns of `cxlake_reconciliation`.
pub fn reconciliation_schema() -> SchemaRef {
    fields(&[
        ("run_id", DataType::Utf8),
        ("job", DataType::Utf8),
        ("kind", DataType::Utf8),
        ("started_at", timestamp()),
        ("table_name", DataType::Utf8),
        ("object", DataType::Utf8),
        ("data_partition", DataType::Utf8),
        ("api", DataType::Utf8),
        ("rows_read", DataType::Int64),
        ("keys_read", DataType::Int64),
        ("rows_written", DataType::Int64),
        ("rows_rejected", DataType::Int64),
        ("soql_count", DataType::Int64),
        ("announced_records", DataType::Int64),
        ("processed_records", DataType::Int64),
        ("deleted_records", DataType::Int64),
        ("status", DataType::Utf8),
        ("detail", DataType::Utf8),
    ])
}

/// `<table>/dt=<day the run started, UTC>/<run-id>.parquet`.
pub fn run_file(table: &str, record: &RunRecord<'_>) -> String {
    format!(
        "{table}/dt={}/{}.parquet",
        record.started.format("%Y-%m-%d"),
        record.run_id()
    )
}

fn text<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn count(values: impl IntoIterator<Item = Option<u64>>) -> ArrayRef {
    Arc::new(Int64Array::from_iter(
        values
            .into_iter()
            .map(|v| v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
    ))
}

fn instant(values: impl IntoIterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    Arc::new(
        TimestampMillisecondArray::from_iter(
            values.into_iter().map(|v| v.map(|t| t.timestamp_millis())),
        )
        .with_timezone("UTC"),
    )
}

/// Rows written by the run's units (`None` for a kind that reports none).
pub fn rows_out(record: &RunRecord<'_>) -> Option<u64> {
    let rows = &record.metrics.reconciliation;
    (!rows.is_empty()).then(|| rows.iter().filter_map(|r| r.rows_written).sum())
}

/// The run's row of `cxlake_runs`.
pub fn runs_batch(record: &RunRecord<'_>) -> Result<RecordBatch, ParquetError> {
    let m = &record.metrics;
    let run_id = record.run_id();
    let status = worst(&m.reconciliation).map(|s| s.name());
    let columns: Vec<ArrayRef> = vec![
        text([Some(run_id.as_str())]),
        text([Some(record.job)]),
        text([Some(record.kind)]),
        text([Some(record.command)]),
        instant([record.window.start]),
        instant([record.window.end]),
        instant([Some(record.started)]),
        Arc::new(Float64Array::from(vec![record.seconds])),
        Arc::new(Int32Array::from(vec![i32::from(record.exit_code)])),
        count([Some(m.inputs)]),
        count([Some(m.rows)]),
        count([rows_out(record)]),
        count([Some(m.rejects)]),
        count([Some(m.api_calls)]),
        count([Some(m.bytes)]),
        text([status]),
        text([record.error.as_deref()]),
        count([m.missing_intervals]),
    ];
    Ok(RecordBatch::try_new(runs_schema(), columns)?)
}

/// The run's rows of `cxlake_reconciliation`.
pub fn reconciliation_batch(record: &RunRecord<'_>) -> Result<RecordBatch, ParquetError> {
    let rows = &record.metrics.reconciliation;
    let n = rows.len();
    let run_id = record.run_id();
    let columns: Vec<ArrayRef> = vec![
        text(std::iter::repeat_n(Some(run_id.as_str()), n)),
        text(std::iter::repeat_n(Some(record.job), n)),
        text(std::iter::repeat_n(Some(record.kind), n)),
        instant(std::iter::repeat_n(Some(record.started), n)),
        text(rows.iter().map(|r| Some(r.table.as_str()))),
        text(rows.iter().map(|r| r.object.as_deref())),
        text(rows.iter().map(|r| r.partition.as_deref())),
        text(rows.iter().map(|r| r.api.as_deref())),
        count(rows.iter().map(|r| Some(r.rows_read))),
        count(rows.iter().map(|r| r.keys_read)),
        count(rows.iter().map(|r| r.rows_written)),
        count(rows.iter().map(|r| Some(r.rows_rejected))),
        count(rows.iter().map(|r| r.soql_count)),
        count(rows.iter().map(|r| r.announced_records)),
        count(rows.iter().map(|r| r.processed_records)),
        count(rows.iter().map(|r| r.deleted_records)),
        text(rows.iter().map(|r| Some(r.status.name()))),
        text(rows.iter().map(|r| Some(r.detail.as_str()))),
    ];
    Ok(RecordBatch::try_new(reconciliation_schema(), columns)?)
}

/// Writes the run's file of each table (the reconciliation file only when the run has rows);
/// returns the keys written.
pub async fn write(lake: &Location, record: &RunRecord<'_>) -> Result<Vec<String>, RunTablesError> {
    let mut batches = vec![(RUNS_TABLE, runs_batch(record)?)];
    if !record.metrics.reconciliation.is_empty() {
        batches.push((RECONCILIATION_TABLE, reconciliation_batch(record)?));
    }
    let mut written = Vec::new();
    for (table, batch) in batches {
        let key = run_file(table, record);
        let bytes = crate::lake::parquet::encode(&batch)?;
        lake.put(&key, bytes.into()).await?;
        written.push(key);
    }
    Ok(written)
}

/// The Glue definitions of both tables in `lake`.
pub fn table_definitions(lake: &Location, catalog: &CatalogSettings) -> Vec<TableDefinition> {
    [
        (
            RUNS_TABLE,
            runs_schema(),
            "cxlake: one row per run of every job (window, exit code, rows, rejects, calls, bytes)",
        ),
        (
            RECONCILIATION_TABLE,
            reconciliation_schema(),
            "cxlake: per run, per Connect partition and Salesforce object: rows read, written, \
             rejected, the source's counts, and ok / mismatch / lost",
        ),
    ]
    .into_iter()
    .map(|(name, schema, description)| TableDefinition {
        name: name.to_string(),
        description: description.to_string(),
        schema,
        location: lake.url_of(&layout::table_prefix(name)),
        partition: Some(catalog.date_partition("dt")),
    })
    .collect()
}

/// Creates or updates both Glue tables and registers the run's `dt` when the catalog registers
/// partitions.
pub async fn sync_catalog(
    lake: &Location,
    catalog: &CatalogSettings,
    region: Option<&str>,
    record: &RunRecord<'_>,
) -> Result<(), RunTablesError> {
    let config = crate::aws::sdk_config(region).await;
    let glue = crate::aws::glue_client(&config);
    let day = vec![record.started.format("%Y-%m-%d").to_string()];
    for definition in table_definitions(lake, catalog) {
        crate::catalog::sync_table(&glue, &catalog.database, &definition).await?;
        crate::catalog::register_partitions(&glue, &catalog.database, &definition, &day).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::reconcile::PartitionCounts;
    use crate::observe::run::RunMetrics;

    fn record() -> RunRecord<'static> {
        crate::observe::run::sample_record(
            0,
            RunMetrics {
                inputs: 2,
                rows: 10,
                reconciliation: vec![PartitionCounts {
                    table: "connect_queue_interval".into(),
                    dt: "2023-11-14".into(),
                    rows_read: 10,
                    keys_read: 10,
                    rows_written: Some(12),
                    ..PartitionCounts::default()
                }
                .reconcile()],
                ..RunMetrics::default()
            },
        )
    }

    #[test]
    fn files_are_named_by_start_day_and_run() {
        let r = record();
        assert_eq!(
            run_file(RUNS_TABLE, &r),
            format!("cxlake_runs/dt=2023-11-14/{}.parquet", r.run_id())
        );
    }

    #[test]
    fn every_column_has_a_glue_type() {
        for schema in [runs_schema(), reconciliation_schema()] {
            for field in schema.fields() {
                assert!(
                    crate::catalog::glue_type(field.data_type()).is_some(),
                    "{}",
                    field.name()
                );
            }
        }
    }

    #[test]
    fn rows_out_sums_what_the_units_wrote() {
        let r = record();
        assert_eq!(rows_out(&r), Some(12));
        let batch = reconciliation_batch(&r).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let runs = runs_batch(&r).unwrap();
        assert_eq!(runs.num_rows(), 1);
        let no_units = RunRecord {
            metrics: RunMetrics::default(),
            ..record()
        };
        assert_eq!(rows_out(&no_units), None);
    }
}
