//! A Parquet file written batch by batch on its own thread into a local temporary file, then
//! uploaded with one PUT (or a multipart upload that becomes visible only when complete).

use std::fs::File;
use std::path::PathBuf;
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
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
                let mut writer = writer(file, schema, props)?;
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

    /// Finishes the file; returns its row count and the local path (valid while `self` lives).
    pub async fn finish(&mut self) -> Result<(u64, PathBuf), ParquetError> {
        let rows = self.join().await?;
        Ok((rows, self.path.clone()))
    }
}
