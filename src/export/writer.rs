//! A Parquet file written batch by batch on its own thread into a local temporary file, then
//! uploaded with one PUT (or a multipart upload that becomes visible only when complete).

use std::fs::File;
use std::path::PathBuf;
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::lake::parquet::{
    has_nan, hive_compatible_file, writer, writer_properties, ParquetError,
};

/// A Parquet file being written in the background.
pub struct PartWriter {
    sender: Option<mpsc::Sender<RecordBatch>>,
    thread: Option<JoinHandle<Result<u64, ParquetError>>>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Batches queued to the writer thread before `write` waits.
const QUEUE: usize = 4;

impl PartWriter {
    /// Starts a writer for `schema` in a fresh temporary folder.
    pub fn start(schema: SchemaRef) -> Result<PartWriter, ParquetError> {
        let dir = tempfile::Builder::new()
            .prefix("cxlake-part-")
            .tempdir()
            .map_err(|e| ParquetError::Spill("temporary folder".into(), e))?;
        let path = dir.path().join("part.parquet");
        let file =
            File::create(&path).map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
        let (sender, mut receiver) = mpsc::channel::<RecordBatch>(QUEUE);
        let props = writer_properties(&schema);
        let written = path.clone();
        let thread = std::thread::Builder::new()
            .name("parquet-writer".into())
            .spawn(move || -> Result<u64, ParquetError> {
                let mut writer = ColumnParallelWriter::new(file, schema, props)?;
                let mut rows = 0u64;
                while let Some(batch) = receiver.blocking_recv() {
                    // Salesforce numbers are parsed finite; a NaN here would make the
                    // footer's float statistics unsafe for Hive-era readers (lake::parquet).
                    if let Some((field, _)) = batch
                        .schema_ref()
                        .fields()
                        .iter()
                        .zip(batch.columns())
                        .find(|(_, column)| has_nan(column))
                    {
                        return Err(ParquetError::NaN(field.name().clone()));
                    }
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
                writer.close()?;
                let mut file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&written)
                    .map_err(|e| ParquetError::Spill(written.display().to_string(), e))?;
                hive_compatible_file(&mut file)?;
                Ok(rows)
            })
            .map_err(|e| ParquetError::Spill("writer thread".into(), e))?;
        Ok(PartWriter {
            sender: Some(sender),
            thread: Some(thread),
            path,
            _dir: dir,
        })
    }

    /// Queues a batch (waits while the writer is behind).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), ParquetError> {
        let sender = self.sender.as_ref().expect("writer is open");
        if sender.send(batch).await.is_err() {
            // The thread stopped early: its error says why.
            return Err(self.join().await.err().unwrap_or_else(|| {
                ParquetError::Spill("writer thread".into(), std::io::Error::other("stopped"))
            }));
        }
        Ok(())
    }

    async fn join(&mut self) -> Result<u64, ParquetError> {
        self.sender = None;
        let thread = self.thread.take().expect("joined once");
        tokio::task::spawn_blocking(move || thread.join().expect("writer thread does not panic"))
            .await
            .expect("join task completes")
    }

    /// The local file (complete once [`PartWriter::finish`] returned; valid while `self` lives).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Finishes the file; returns its row count and the local path (valid while `self` lives).
    pub async fn finish(&mut self) -> Result<(u64, PathBuf), ParquetError> {
        let rows = self.join().await?;
        Ok((rows, self.path.clone()))
    }
}

/// [`writer`]'s file, with the columns of each batch encoded and compressed in parallel on the
/// rayon pool (the pattern of parquet-rs's `ArrowColumnWriter` docs). The bytes are those of
/// `ArrowWriter`: its own file writer and column writers, fed the same slices, with row groups
/// cut at the same row count.
struct ColumnParallelWriter<W: std::io::Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    max_rows: usize,
    /// The row group being written, and its rows so far.
    group: Option<(Vec<ArrowColumnWriter>, usize)>,
}

impl<W: std::io::Write + Send> ColumnParallelWriter<W> {
    fn new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self, ParquetError> {
        let (file, factory) = writer(out, schema.clone(), props)?.into_serialized_writer()?;
        let props = file.properties();
        // ArrowWriter's other ways of cutting row groups or pages are not reproduced here.
        assert!(
            props.max_row_group_bytes().is_none() && props.content_defined_chunking().is_none(),
            "the lake's writer settings cut row groups by row count only"
        );
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX);
        Ok(ColumnParallelWriter {
            file,
            factory,
            schema,
            max_rows,
            group: None,
        })
    }

    /// Writes `batch`, closing each row group that reaches the row limit.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut remaining = batch.clone();
        while remaining.num_rows() > 0 {
            let (columns, rows) = match &mut self.group {
                Some(group) => group,
                none => none.insert((
                    self.factory
                        .create_column_writers(self.file.flushed_row_groups().len())?,
                    0,
                )),
            };
            let take = remaining.num_rows().min(self.max_rows - *rows);
            let now = remaining.slice(0, take);
            remaining = remaining.slice(take, remaining.num_rows() - take);
            let mut leaves = Vec::with_capacity(columns.len());
            for (field, column) in self.schema.fields().iter().zip(now.columns()) {
                leaves.extend(compute_leaves(field, column)?);
            }
            columns
                .par_iter_mut()
                .zip(leaves)
                .try_for_each(|(column, leaf)| column.write(&leaf))?;
            *rows += take;
            if *rows >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the row group being written, if any.
    fn flush(&mut self) -> Result<(), ParquetError> {
        let Some((columns, _)) = self.group.take() else {
            return Ok(());
        };
        let chunks = columns
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<Vec<_>, _>>()?;
        let mut group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        Ok(())
    }

    /// Writes the last row group and the footer.
    fn close(mut self) -> Result<(), ParquetError> {
        self.flush()?;
        self.file.close()?;
        Ok(())
    }
}
