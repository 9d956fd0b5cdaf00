//! The `sf_<object>_latest` table: the previous latest file without the records that changed,
//! then the changed records that are not deleted. Streams both files; holds only the set of
//! changed ids in memory (packed: about 20 bytes an Id).

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ids::IdSet;
use super::writer::PartWriter;
use crate::lake::parquet::{align, ParquetError};

/// Reads a local Parquet file batch by batch.
fn batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>, ParquetError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(64 * 1024)
        .build()?)
}

/// Ids of every record in the changes files.
pub fn changed_ids(changes: &[PathBuf]) -> Result<IdSet, ParquetError> {
    let mut rows = 0;
    for path in changes {
        let file = std::fs::File::open(path)
            .map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
        rows += ParquetRecordBatchReaderBuilder::try_new(file)?
            .metadata()
            .file_metadata()
            .num_rows();
    }
    let mut ids = IdSet::with_capacity(usize::try_from(rows).unwrap_or(0));
    for batch in changes
        .iter()
        .map(|c| batches(c))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
    {
        let batch = batch?;
        let column = batch
            .column_by_name("id")
            .expect("every export has an id column");
        let ids_array = column.as_string::<i32>();
        ids.extend(ids_array.iter().flatten());
    }
    ids.seal();
    Ok(ids)
}

fn keep(
    batch: &RecordBatch,
    predicate: impl Fn(usize) -> bool,
) -> Result<RecordBatch, ParquetError> {
    let mask: BooleanArray = (0..batch.num_rows()).map(|i| Some(predicate(i))).collect();
    Ok(filter_record_batch(batch, &mask)?)
}

/// Writes the new latest table into `out`: rows of `previous` whose id is not in `changes`,
/// then rows of `changes` (in order) not flagged deleted. Returns the rows written.
///
/// The changes of one run are its windows, disjoint on the cursor below the run's fixed upper
/// bound, so a record is in at most one of them (a deletions file only names records that
/// are in none).
pub async fn merge(
    previous: Option<&Path>,
    changes: &[PathBuf],
    schema: &SchemaRef,
    out: &mut PartWriter,
) -> Result<u64, ParquetError> {
    let mut rows = 0u64;
    if let Some(previous) = previous {
        let changed = changed_ids(changes)?;
        for batch in batches(previous)? {
            let batch = align(&batch?, schema)?;
            let ids = batch
                .column_by_name("id")
                .expect("every export has an id column")
                .as_string::<i32>()
                .clone();
            let kept = keep(&batch, |i| {
                ids.is_null(i) || !changed.contains(ids.value(i))
            })?;
            rows += kept.num_rows() as u64;
            out.write(kept).await?;
        }
    }
    for batch in changes
        .iter()
        .map(|c| batches(c))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
    {
        let batch = align(&batch?, schema)?;
        let kept = match batch.column_by_name("is_deleted") {
            Some(flags) => {
                let flags = flags.as_boolean().clone();
                keep(&batch, |i| !(flags.is_valid(i) && flags.value(i)))?
            }
            None => batch,
        };
        rows += kept.num_rows() as u64;
        out.write(kept).await?;
    }
    Ok(rows)
}
