//! Publishing an object's history files: the `_latest` table merged from them, and the Glue
//! tables of both.

use arrow::datatypes::SchemaRef;

use super::writer::PartWriter;
use super::{latest, latest_key, latest_table, ExportError, ExportJob};
use crate::lake::parquet::ParquetError;

impl ExportJob<'_> {
    /// Rewrites `_latest`: the previous file less the changed records, then the changes.
    pub(super) async fn rewrite_latest(
        &self,
        table: &str,
        changes: &[std::path::PathBuf],
        schema: &SchemaRef,
    ) -> Result<u64, ExportError> {
        let dir = tempfile::Builder::new()
            .prefix("cxlake-latest-")
            .tempdir()
            .map_err(|e| ParquetError::Spill("temporary folder".into(), e))?;
        let previous_path = dir.path().join("previous.parquet");
        let key = latest_key(table);
        let previous = self.lake.get_to_file(&key, &previous_path).await?;
        let mut current = previous.then_some(previous_path);
        // Each pass's output is the next pass's input; the writers keep their files alive.
        let mut outputs = Vec::new();
        let mut rows = 0;
        let passes = latest::passes(changes, latest::CHANGES_PER_PASS)?;
        if passes.len() > 1 {
            tracing::info!(
                table,
                passes = passes.len(),
                "large change set: merging _latest in passes"
            );
        }
        for pass in &passes {
            let mut out = PartWriter::start(schema.clone())?;
            rows = latest::merge(current.as_deref(), pass, schema, &mut out).await?;
            current = Some(out.finish().await?.1);
            outputs.push(out);
        }
        if let Some(file) = current.filter(|_| !outputs.is_empty()) {
            self.lake.put_file(&key, &file).await?;
        }
        Ok(rows)
    }

    /// Creates or updates the history and `_latest` tables; registers the history partitions
    /// `snapshot_dates` when the catalog registers partitions.
    pub(super) async fn sync_catalog(
        &self,
        table: &str,
        schema: &SchemaRef,
        snapshot_dates: &[String],
    ) -> Result<(), ExportError> {
        let Some(catalog) = &self.job.catalog else {
            return Ok(());
        };
        let config = crate::aws::sdk_config(self.job.lake.region.as_deref()).await;
        let glue = crate::aws::glue_client(&config);
        let object = table.trim_start_matches("sf_");
        for (name, partition, description) in [
            (
                table.to_string(),
                Some(catalog.date_partition("snapshot_date")),
                format!("Salesforce {object}: every exported version, by export day (cxlake)"),
            ),
            (
                latest_table(table),
                None,
                format!("Salesforce {object}: current records, deletes removed (cxlake)"),
            ),
        ] {
            let definition = crate::catalog::TableDefinition {
                location: self.lake.url_of(&crate::lake::layout::table_prefix(&name)),
                name,
                description,
                schema: schema.clone(),
                partition,
            };
            crate::catalog::sync_table(&glue, &catalog.database, &definition).await?;
            crate::catalog::register_partitions(
                &glue,
                &catalog.database,
                &definition,
                snapshot_dates,
            )
            .await?;
        }
        Ok(())
    }
}
