//! Combining rows of one partition: sort by the row key and keep, for each key, the row of the
//! latest export. Old partition contents, new files and re-exports all go through this one rule,
//! so any order of runs converges to the same rows.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{
    concat_batches, lexsort_to_indices, take_record_batch, SortColumn, SortOptions,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};

use super::parquet::ParquetError;

/// Which columns identify a row and which decide the latest version.
#[derive(Debug, Clone)]
pub struct RowKey {
    /// Key columns, in output sort order.
    pub key: Vec<usize>,
    /// Version columns: the greatest value wins.
    pub version: Vec<usize>,
}

/// Concatenates `batches` (already aligned to `schema`), keeps the latest row per key and sorts
/// by key. Returns the rows and how many superseded rows were dropped.
pub fn latest_per_key(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key: &RowKey,
) -> Result<(RecordBatch, usize), ParquetError> {
    let all = concat_batches(schema, batches)?;
    // Last resort for two rows with the same key and version (a file repeating a row): the later wins.
    let position: ArrayRef =
        std::sync::Arc::new(UInt32Array::from_iter_values(0..all.num_rows() as u32));
    let mut sort_columns: Vec<SortColumn> = key
        .key
        .iter()
        .map(|&i| (i, false))
        .chain(key.version.iter().map(|&i| (i, true)))
        .map(|(i, descending)| SortColumn {
            values: all.column(i).clone(),
            options: Some(SortOptions {
                descending,
                nulls_first: true,
            }),
        })
        .collect();
    sort_columns.push(SortColumn {
        values: position,
        options: Some(SortOptions {
            descending: true,
            nulls_first: true,
        }),
    });
    if all.num_rows() == 0 {
        return Ok((all, 0));
    }
    let order = lexsort_to_indices(&sort_columns, None)?;
    let key_columns: Vec<ArrayRef> = key.key.iter().map(|&i| all.column(i).clone()).collect();
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&key_columns)?;
    let mut keep: Vec<u32> = Vec::with_capacity(order.len());
    let mut previous: Option<u32> = None;
    for &index in order.values() {
        let same = previous.is_some_and(|p| rows.row(p as usize) == rows.row(index as usize));
        if !same {
            keep.push(index);
        }
        previous = Some(index);
    }
    let dropped = order.len() - keep.len();
    let merged = take_record_batch(&all, &UInt32Array::from(keep))?;
    Ok((merged, dropped))
}

/// How many distinct keys the rows of `batches` (aligned to one schema) hold: the rows a merge
/// of them must keep.
pub fn distinct_keys(batches: &[RecordBatch], key: &RowKey) -> Result<usize, ParquetError> {
    let Some(first) = batches.first() else {
        return Ok(0);
    };
    let converter = RowConverter::new(
        key.key
            .iter()
            .map(|&i| SortField::new(first.column(i).data_type().clone()))
            .collect(),
    )?;
    let converted = batches
        .iter()
        .map(|b| {
            let columns: Vec<ArrayRef> = key.key.iter().map(|&i| b.column(i).clone()).collect();
            converter.convert_columns(&columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys: std::collections::HashSet<arrow::row::Row<'_>> =
        converted.iter().flat_map(|rows| rows.iter()).collect();
    Ok(keys.len())
}

/// Drops the rows whose `source_column` value is one of `rejected`.
pub fn without_sources(
    batch: &RecordBatch,
    source_column: usize,
    rejected: &[String],
) -> Result<RecordBatch, ParquetError> {
    if rejected.is_empty() {
        return Ok(batch.clone());
    }
    let sources = batch
        .column(source_column)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .expect("source column is Utf8");
    let rejected: std::collections::HashSet<&str> = rejected.iter().map(String::as_str).collect();
    let mask: arrow::array::BooleanArray = (0..sources.len())
        .map(|i| Some(!rejected.contains(sources.value(i))))
        .collect();
    Ok(arrow::compute::filter_record_batch(batch, &mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(rows: &[(&str, i64, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("start", DataType::Int64, false),
            Field::new("exported", DataType::Int64, false),
            Field::new("value", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn latest_export_wins_and_rows_are_sorted() {
        let old = batch(&[("b", 1, 10, 100), ("a", 2, 10, 200), ("a", 1, 10, 300)]);
        let new = batch(&[("a", 2, 20, 999)]);
        let key = RowKey {
            key: vec![0, 1],
            version: vec![2],
        };
        let (merged, dropped) = latest_per_key(&old.schema(), &[new, old.clone()], &key).unwrap();
        assert_eq!(dropped, 1);
        let expected = batch(&[("a", 1, 10, 300), ("a", 2, 20, 999), ("b", 1, 10, 100)]);
        assert_eq!(merged, expected);
        // merging the result again changes nothing
        let (again, dropped) =
            latest_per_key(&old.schema(), &[merged.clone(), merged.clone()], &key).unwrap();
        assert_eq!((again, dropped), (merged, 3));
    }

    #[test]
    fn distinct_keys_count_what_a_merge_keeps() {
        let key = RowKey {
            key: vec![0, 1],
            version: vec![2],
        };
        let one = batch(&[("a", 1, 10, 1), ("a", 2, 10, 2), ("a", 1, 20, 3)]);
        let two = batch(&[("b", 1, 10, 4), ("a", 2, 30, 5)]);
        let batches = [one, two];
        let (merged, _) = latest_per_key(&batches[0].schema(), &batches, &key).unwrap();
        assert_eq!(distinct_keys(&batches, &key).unwrap(), 3);
        assert_eq!(merged.num_rows(), 3);
        assert_eq!(distinct_keys(&[], &key).unwrap(), 0);
    }

    #[test]
    fn rejected_sources_are_filtered() {
        let schema = Arc::new(Schema::new(vec![Field::new("src", DataType::Utf8, false)]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["x", "bad", "y"]))],
        )
        .unwrap();
        let kept = without_sources(&b, 0, &["bad".to_string()]).unwrap();
        assert_eq!(kept.num_rows(), 2);
    }
}
