//! Deterministic Parquet: the same rows always encode to the same bytes (fixed writer settings,
//! no timestamps in metadata), so reruns can compare bytes and skip unchanged partitions.

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Encoding and decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The Parquet library failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An Arrow operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A spilled part could not be written or read.
    #[error("spill file {0}: {1}")]
    Spill(String, #[source] std::io::Error),
    /// A stored column has another type than the table's.
    #[error("column {column:?} is stored as {stored} but the table says {expected}; columns are never retyped")]
    TypeChanged {
        /// Column name.
        column: String,
        /// Type in the stored file.
        stored: String,
        /// Type in the table schema.
        expected: String,
    },
}

/// The lake's writer settings: ZSTD(3) (arrow-rs writes uncompressed by default), page statistics,
/// up to 1M rows per row group. Dictionary encoding only for strings (names, lineage): numeric
/// metrics rarely repeat enough to pay for the dictionary, and ZSTD compresses them anyway.
pub fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20));
    for field in schema.fields() {
        if !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
            let column = ColumnPath::from(field.name().as_str());
            builder = builder.set_column_dictionary_enabled(column, false);
        }
    }
    builder.build()
}

/// Encodes one batch as a whole Parquet file.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, ParquetError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let props = writer_properties(batch.schema_ref());
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Decodes a whole Parquet file.
pub fn decode(bytes: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Reorders `batch`'s columns to `schema` by name; columns it lacks become nulls (columns are
/// only ever added, so older files simply miss the newer ones).
pub fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ParquetError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(RecordBatch::try_new(
            schema.clone(),
            batch.columns().to_vec(),
        )?);
    }
    // One name → index map per call: looking each field up by name would be quadratic in columns.
    let by_name: std::collections::HashMap<&str, usize> = batch
        .schema_ref()
        .fields()
        .iter()
        .enumerate()
        .rev() // the first of two equal names wins, as `column_by_name` does
        .map(|(i, f)| (f.name().as_str(), i))
        .collect();
    let columns = schema
        .fields()
        .iter()
        .map(
            |field| match by_name.get(field.name().as_str()).map(|&i| batch.column(i)) {
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => Err(ParquetError::TypeChanged {
                    column: field.name().clone(),
                    stored: column.data_type().to_string(),
                    expected: field.data_type().to_string(),
                }),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            },
        )
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}
