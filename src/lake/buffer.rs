//! Rows waiting to be written, by partition, within a memory budget.
//!
//! Inputs may hold rows of any day in any order, and a day's file can only be written once all
//! its rows are known. Rows stay in memory until the budget is exceeded; then the partition
//! touched longest ago (for time-ordered input: a finished day) is handed back to be compacted
//! into an encoded Parquet part, spilled to a temporary folder. Memory stays bounded whatever the
//! input size; the spill folder is removed when the buffers are dropped.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};

use super::parquet::ParquetError;

/// Small batches are concatenated once a partition holds this many. A day of 30-minute reports
/// is 48 batches: they stay apart until the day is compacted or merged, which concatenates them
/// once (each concatenation costs about as much per column as per row for such small batches).
const COALESCE_BATCHES: usize = 64;

/// An encoded, sorted piece of a partition, spilled to a local file.
#[derive(Debug, Clone)]
pub struct Part {
    /// The spilled Parquet file.
    pub path: PathBuf,
    /// Schema of the rows in the part.
    pub schema: SchemaRef,
    /// True when the part has one row per key, sorted: it can be the partition file as is.
    pub final_form: bool,
}

/// One partition's pending rows.
#[derive(Debug, Default)]
pub struct PartitionRows {
    /// Rows still in memory.
    pub batches: Vec<RecordBatch>,
    /// Compacted parts.
    pub parts: Vec<Part>,
    /// Sources (input URLs) that contributed rows.
    pub sources: HashSet<Arc<str>>,
    memory: usize,
    touched: u64,
}

impl PartitionRows {
    /// Rows that did not go through the buffers (e.g. filled from an API), from `sources`.
    pub fn from_batches(batches: Vec<RecordBatch>, sources: HashSet<Arc<str>>) -> Self {
        PartitionRows {
            memory: batches.iter().map(|b| b.get_array_memory_size()).sum(),
            batches,
            parts: Vec::new(),
            sources,
            touched: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    partitions: BTreeMap<i32, PartitionRows>,
    memory: usize,
    tick: u64,
}

/// Partitions and their pending rows, shared by the tasks that parse inputs.
#[derive(Debug)]
pub struct PartitionBuffers {
    inner: Mutex<Inner>,
    budget: usize,
    spill: tempfile::TempDir,
    spilled: AtomicUsize,
}

/// Rows handed back for compaction.
#[derive(Debug)]
pub struct Evicted {
    /// The partition.
    pub day: i32,
    /// Its in-memory rows.
    pub batches: Vec<RecordBatch>,
}

impl PartitionBuffers {
    /// Buffers that keep at most about `budget` bytes of rows in memory, spilling to a new
    /// folder under the system's temporary directory (`TMPDIR`).
    pub fn new(budget: usize) -> std::io::Result<Self> {
        Ok(PartitionBuffers {
            inner: Mutex::new(Inner::default()),
            budget,
            spill: tempfile::Builder::new().prefix("cxlake-spill-").tempdir()?,
            spilled: AtomicUsize::new(0),
        })
    }

    /// A new file name in the spill folder.
    pub fn spill_path(&self, day: i32) -> PathBuf {
        let n = self.spilled.fetch_add(1, Ordering::Relaxed);
        self.spill.path().join(format!("{day}-{n}.parquet"))
    }

    /// Adds rows of `source` to partition `day`. When the budget is exceeded, returns the least
    /// recently touched partition's rows, which the caller compacts and returns with [`Self::add_part`].
    pub fn add(
        &self,
        day: i32,
        batch: RecordBatch,
        source: &Arc<str>,
    ) -> Result<Option<Evicted>, ParquetError> {
        let mut inner = self.inner.lock().expect("buffer lock is not poisoned");
        inner.tick += 1;
        let tick = inner.tick;
        let size = batch.get_array_memory_size();
        let partition = inner.partitions.entry(day).or_default();
        partition.touched = tick;
        if !partition.sources.contains(source) {
            partition.sources.insert(source.clone());
        }
        partition.batches.push(batch);
        partition.memory += size;
        let mut delta = size as isize;
        if partition.batches.len() >= COALESCE_BATCHES {
            let merged = concat_aligned(&partition.batches)?;
            let merged_size = merged.get_array_memory_size();
            delta += merged_size as isize - partition.memory as isize;
            partition.memory = merged_size;
            partition.batches = vec![merged];
        }
        inner.memory = (inner.memory as isize + delta) as usize;
        if inner.memory <= self.budget {
            return Ok(None);
        }
        let victim = inner
            .partitions
            .iter()
            .filter(|(_, p)| !p.batches.is_empty())
            .min_by_key(|(_, p)| p.touched)
            .map(|(d, _)| *d);
        Ok(victim.map(|day| {
            let partition = inner.partitions.get_mut(&day).expect("victim exists");
            let batches = std::mem::take(&mut partition.batches);
            let freed = std::mem::take(&mut partition.memory);
            inner.memory -= freed;
            Evicted { day, batches }
        }))
    }

    /// Stores a compacted part.
    pub fn add_part(&self, day: i32, part: Part) {
        let mut inner = self.inner.lock().expect("buffer lock is not poisoned");
        inner.partitions.entry(day).or_default().parts.push(part);
    }

    /// All partitions, by day, and the spill folder (removed when dropped).
    pub fn into_partitions(self) -> (BTreeMap<i32, PartitionRows>, tempfile::TempDir) {
        let partitions = self
            .inner
            .into_inner()
            .expect("buffer lock is not poisoned")
            .partitions;
        (partitions, self.spill)
    }
}

/// The union of the batches' schemas: the first batch's fields, then fields only later batches have.
pub fn union_schema<'a>(schemas: impl IntoIterator<Item = &'a SchemaRef>) -> SchemaRef {
    let mut iter = schemas.into_iter();
    let Some(first) = iter.next() else {
        return Arc::new(Schema::empty());
    };
    let mut fields: Vec<Arc<Field>> = first.fields().iter().cloned().collect();
    let mut names: HashSet<String> = fields.iter().map(|f| f.name().clone()).collect();
    let mut changed = false;
    for schema in iter {
        if Arc::ptr_eq(schema, first) {
            continue;
        }
        for field in schema.fields() {
            if names.insert(field.name().clone()) {
                fields.push(field.clone());
                changed = true;
            }
        }
    }
    if changed {
        Arc::new(Schema::new(fields))
    } else {
        first.clone()
    }
}

/// Concatenates batches whose schemas may differ in trailing added columns.
pub fn concat_aligned(batches: &[RecordBatch]) -> Result<RecordBatch, ParquetError> {
    let schema = union_schema(batches.iter().map(|b| b.schema_ref()));
    let aligned = batches
        .iter()
        .map(|b| super::parquet::align(b, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(arrow::compute::concat_batches(&schema, &aligned)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::DataType;

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    #[test]
    fn evicts_the_least_recently_touched_partition_when_over_budget() {
        let one = rows(1000).get_array_memory_size();
        let buffers = PartitionBuffers::new(one * 2 + 1).unwrap();
        let src: Arc<str> = "s".into();
        assert!(buffers.add(1, rows(1000), &src).unwrap().is_none());
        assert!(buffers.add(2, rows(1000), &src).unwrap().is_none());
        let evicted = buffers
            .add(3, rows(1000), &src)
            .unwrap()
            .expect("over budget");
        assert_eq!(evicted.day, 1);
        assert_eq!(evicted.batches.len(), 1);
        // day 1 is now empty in memory; the next eviction picks day 2
        let evicted = buffers
            .add(1, rows(1000), &src)
            .unwrap()
            .expect("over budget");
        assert_eq!(evicted.day, 2);
    }

    #[test]
    fn small_batches_are_coalesced() {
        let buffers = PartitionBuffers::new(usize::MAX).unwrap();
        let src: Arc<str> = "s".into();
        for _ in 0..COALESCE_BATCHES {
            buffers.add(7, rows(2), &src).unwrap();
        }
        let (parts, _spill) = buffers.into_partitions();
        assert_eq!(parts[&7].batches.len(), 1);
        assert_eq!(parts[&7].batches[0].num_rows(), 2 * COALESCE_BATCHES);
    }
}
