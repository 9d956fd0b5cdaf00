//! The `sf_<object>_latest` table: the previous latest file without the records that changed,
//! then the changed records that are not deleted. Streams both files; holds only the set of
//! changed Ids in memory (16 bytes an Id), and at most [`CHANGES_PER_PASS`] of them: a larger
//! change set is merged in several passes of whole row groups, each over the previous pass's
//! output, which gives the same rows in the same order as one pass (the changes of a run are
//! disjoint, so a later pass never removes an earlier pass's rows).

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ids::IdSet;
use super::writer::PartWriter;
use crate::lake::parquet::{align, ParquetError};

/// Changed rows one merge pass takes at most (64 MB of Ids), unless one row group is larger.
pub const CHANGES_PER_PASS: u64 = 4_000_000;

/// Some row groups of a changes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The local Parquet file.
    pub path: PathBuf,
    /// Its row groups in this pass.
    pub row_groups: Vec<usize>,
    /// Their rows.
    pub rows: u64,
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>, ParquetError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?)
}

/// Reads a local Parquet file batch by batch.
fn batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>, ParquetError> {
    Ok(open(path)?.with_batch_size(64 * 1024).build()?)
}

/// Reads some row groups of a changes file batch by batch.
fn change_batches(
    changes: &Changes,
) -> Result<impl Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>, ParquetError> {
    Ok(open(&changes.path)?
        .with_row_groups(changes.row_groups.clone())
        .with_batch_size(64 * 1024)
        .build()?)
}

/// Every batch of the changes, in order.
fn all_batches(
    changes: &[Changes],
) -> Result<impl Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>, ParquetError> {
    Ok(changes
        .iter()
        .map(change_batches)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten())
}

/// The changes files cut into passes of whole row groups, in order, each of at most `limit`
/// rows (or one row group, when a row group alone is larger).
pub fn passes(files: &[PathBuf], limit: u64) -> Result<Vec<Vec<Changes>>, ParquetError> {
    let mut passes: Vec<Vec<Changes>> = vec![Vec::new()];
    let mut in_pass = 0u64;
    for path in files {
        let builder = open(path)?;
        for (index, group) in builder.metadata().row_groups().iter().enumerate() {
            let rows = u64::try_from(group.num_rows()).unwrap_or(0);
            if in_pass > 0 && in_pass + rows > limit {
                passes.push(Vec::new());
                in_pass = 0;
            }
            in_pass += rows;
            let pass = passes.last_mut().expect("never empty");
            match pass.last_mut().filter(|c| &c.path == path) {
                Some(same) => {
                    same.row_groups.push(index);
                    same.rows += rows;
                }
                None => pass.push(Changes {
                    path: path.clone(),
                    row_groups: vec![index],
                    rows,
                }),
            }
        }
    }
    passes.retain(|p| !p.is_empty());
    Ok(passes)
}

/// Ids of every record in the changes.
pub fn changed_ids(changes: &[Changes]) -> Result<IdSet, ParquetError> {
    let rows: u64 = changes.iter().map(|c| c.rows).sum();
    let mut ids = IdSet::with_capacity(usize::try_from(rows).unwrap_or(0));
    for batch in all_batches(changes)? {
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
    changes: &[Changes],
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
    for batch in all_batches(changes)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("is_deleted", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    async fn file(rows: &[(&str, bool, &str)]) -> PartWriter {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ];
        let mut writer = PartWriter::start(schema()).unwrap();
        writer
            .write(RecordBatch::try_new(schema(), columns).unwrap())
            .await
            .unwrap();
        writer.finish().await.unwrap();
        writer
    }

    async fn merged(previous: &Path, passes: &[Vec<Changes>]) -> Vec<u8> {
        let mut current = previous.to_path_buf();
        let mut keep = Vec::new();
        for pass in passes {
            let mut out = PartWriter::start(schema()).unwrap();
            merge(Some(&current), pass, &schema(), &mut out)
                .await
                .unwrap();
            current = out.finish().await.unwrap().1;
            keep.push(out);
        }
        std::fs::read(current).unwrap()
    }

    #[tokio::test]
    async fn several_passes_write_the_bytes_of_one() {
        let previous = file(&[
            ("a", false, "a0"),
            ("b", false, "b0"),
            ("c", false, "c0"),
            ("d", false, "d0"),
        ])
        .await;
        let first = file(&[("b", false, "b1"), ("e", false, "e1")]).await;
        let second = file(&[("c", true, "c1"), ("f", false, "f1"), ("a", false, "a1")]).await;
        let files = vec![first.path().to_path_buf(), second.path().to_path_buf()];
        let one = passes(&files, u64::MAX).unwrap();
        assert_eq!(one.len(), 1);
        let two = passes(&files, 2).unwrap();
        assert_eq!(
            two.len(),
            2,
            "one row group per file, two rows each at most"
        );
        let expected = merged(previous.path(), &one).await;
        assert_eq!(merged(previous.path(), &two).await, expected);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(expected))
            .unwrap()
            .build()
            .unwrap();
        let names: Vec<String> = reader
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(2)
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(names, ["d0", "b1", "e1", "f1", "a1"]);
    }
}
