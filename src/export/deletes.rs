//! Deletions beyond the recycle bin. `queryAll` returns deleted records only while they sit in
//! the recycle bin (15 days, less in a delete-heavy org). Each scheduled run asks the delete log
//! (`getDeleted`) whether it still reaches back to the watermark; when it does not
//! (`earliestDateAvailable` after the watermark, or `INVALID_REPLICATION_DATE`), an Id
//! reconciliation reads the object's live Ids only and every record of `_latest` not among them
//! is marked deleted in the history table and dropped from `_latest` (reference:
//! salesforce-scale.md §4; neither Airbyte nor tap-salesforce does this).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{new_null_array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ids::IdSet;
use super::routing::Route;
use super::{latest_key, ExportError, ExportJob};
use crate::job::{ApiChoice, ObjectSpec};
use crate::lake::parquet::ParquetError;
use crate::salesforce::rest::parse_datetime;
use crate::salesforce::SalesforceError;

/// Records to mark deleted, and how many an Id reconciliation found (`None`: none ran).
#[derive(Debug, Default)]
pub(super) struct Deletions {
    /// Ids in `_latest` that the org no longer has.
    pub ids: Vec<String>,
    /// Set when an Id reconciliation ran.
    pub reconciled: Option<u64>,
}

/// Whether the delete log still covers `(watermark, …]`, from a getDeleted answer.
fn log_covers(
    answer: &Result<crate::salesforce::rest::DeletedRecords, SalesforceError>,
    watermark: DateTime<Utc>,
) -> Option<bool> {
    match answer {
        Ok(log) => Some(
            log.earliest_date_available
                .as_deref()
                .and_then(parse_datetime)
                .is_none_or(|earliest| earliest <= watermark),
        ),
        Err(SalesforceError::Api { code, .. }) if code == "INVALID_REPLICATION_DATE" => Some(false),
        Err(_) => None,
    }
}

/// A history batch marking `ids` deleted: `is_deleted` true, every other column but `id` null.
pub(super) fn tombstone_batch(
    schema: &SchemaRef,
    ids: &[String],
) -> Result<RecordBatch, ParquetError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                "id" => Arc::new(StringArray::from_iter_values(ids)),
                "is_deleted" => Arc::new(BooleanArray::from(vec![true; ids.len()])),
                _ => new_null_array(field.data_type(), ids.len()),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl ExportJob<'_> {
    /// The deletions of `(watermark, until]` that `queryAll` can no longer show.
    pub(super) async fn deletions(
        &self,
        spec: &ObjectSpec,
        route: &Route,
        table: &str,
        watermark: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Deletions, ExportError> {
        // getDeleted needs its start more than a minute before its end.
        let start = watermark.min(until - chrono::Duration::minutes(2));
        let answer = self.client.deleted(&spec.name, start, until).await;
        match (log_covers(&answer, watermark), answer) {
            (Some(false), _) => {}
            (Some(true), _) | (None, Ok(_)) => return Ok(Deletions::default()),
            (None, Err(e)) if e.is_budget_stop() => return Err(e.into()),
            (None, Err(e)) => {
                tracing::warn!(object = %spec.name, error = %e, "could not read the delete log (getDeleted); deletions the recycle bin no longer holds are not checked this run");
                return Ok(Deletions::default());
            }
        }
        tracing::warn!(object = %spec.name, watermark = %watermark, "the delete log no longer reaches back to the watermark: reconciling Ids");
        let live = self.live_ids(spec, route).await?;
        let mut ids = self.latest_ids_not_in(table, &live).await?;
        ids.sort();
        tracing::info!(object = %spec.name, live = live.len(), gone = ids.len(), "Id reconciliation");
        let reconciled = Some(ids.len() as u64);
        Ok(Deletions { ids, reconciled })
    }

    /// Ids of `_latest` (as the lake holds it) that are not in `live`, read a batch at a time.
    async fn latest_ids_not_in(
        &self,
        table: &str,
        live: &IdSet,
    ) -> Result<Vec<String>, ExportError> {
        let dir = tempfile::Builder::new()
            .prefix("cxlake-ids-")
            .tempdir()
            .map_err(|e| ParquetError::Spill("temporary folder".into(), e))?;
        let path = dir.path().join("latest.parquet");
        if !self.lake.get_to_file(&latest_key(table), &path).await? {
            return Ok(Vec::new());
        }
        let file = std::fs::File::open(&path)
            .map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(ParquetError::from)?;
        let id_column = builder
            .schema()
            .index_of("id")
            .map_err(ParquetError::from)?;
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [id_column]);
        let mut ids = Vec::new();
        for batch in builder
            .with_projection(mask)
            .build()
            .map_err(ParquetError::from)?
        {
            let batch = batch.map_err(ParquetError::from)?;
            ids.extend(
                batch
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .filter(|id| !live.contains(id))
                    .map(str::to_string),
            );
        }
        Ok(ids)
    }

    /// The object's live Ids (`SELECT Id`, deleted records excluded): Bulk unless the object is
    /// read over REST.
    async fn live_ids(&self, spec: &ObjectSpec, route: &Route) -> Result<IdSet, ExportError> {
        let filter = spec
            .filter
            .as_deref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default();
        let text = format!("SELECT Id FROM {}{filter}", spec.name);
        let mut ids = IdSet::default();
        let bulk = matches!(
            route,
            Route::AsConfigured(ApiChoice::Bulk) | Route::AsConfigured(ApiChoice::Auto)
        );
        if bulk {
            let _permit = self
                .bulk_jobs
                .acquire()
                .await
                .expect("the Bulk job semaphore is never closed");
            let job = self.client.create_query_job(&text, false).await?;
            let info = self
                .client
                .wait_for_query_job(&job.id, &spec.name, Duration::from_millis(50))
                .await?;
            let mut locator: Option<String> = None;
            loop {
                let page = self
                    .client
                    .query_results(&job.id, locator.as_deref(), self.spec.salesforce.page_size)
                    .await?;
                let next = page.next.clone();
                let body = self.client.page_body(page).await?;
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(info.delimiter())
                    .from_reader(body.as_ref());
                for record in reader.records() {
                    let record = record.map_err(|e| {
                        SalesforceError::Protocol(format!(
                            "{} Id reconciliation page: {e}",
                            spec.name
                        ))
                    })?;
                    if let Some(id) = record.get(0).filter(|id| !id.is_empty()) {
                        ids.insert(id);
                    }
                }
                match next {
                    Some(l) => locator = Some(l),
                    None => break,
                }
            }
            if let Err(e) = self.client.delete_query_job(&job.id).await {
                tracing::warn!(job_id = %job.id, error = %e, "could not delete the finished Bulk job");
            }
        } else {
            let mut page = self.client.query(&text, false).await?;
            loop {
                ids.extend(
                    page.records
                        .iter()
                        .filter_map(|r| r.get("Id").and_then(|v| v.as_str())),
                );
                match page.next_records_url.clone().filter(|_| !page.done) {
                    Some(url) => page = self.client.query_more(&url).await?,
                    None => break,
                }
            }
        }
        ids.seal();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::rest::DeletedRecords;

    fn log(earliest: &str) -> Result<DeletedRecords, SalesforceError> {
        Ok(serde_json::from_value(serde_json::json!({
            "deletedRecords": [],
            "earliestDateAvailable": earliest,
            "latestDateCovered": "2024-03-30T00:00:00.000+0000",
        }))
        .unwrap())
    }

    #[test]
    fn the_log_covers_the_watermark_or_a_reconciliation_is_due() {
        let watermark = parse_datetime("2024-03-10T00:00:00.000+0000").unwrap();
        assert_eq!(
            log_covers(&log("2024-03-01T00:00:00.000+0000"), watermark),
            Some(true)
        );
        assert_eq!(
            log_covers(&log("2024-03-15T00:00:00.000+0000"), watermark),
            Some(false)
        );
        let refused = Err(SalesforceError::Api {
            status: 400,
            url: "u".into(),
            code: "INVALID_REPLICATION_DATE".into(),
            message: "startDate before org replication enabled date".into(),
        });
        assert_eq!(log_covers(&refused, watermark), Some(false));
        let other = Err(SalesforceError::Protocol("x".into()));
        assert_eq!(log_covers(&other, watermark), None);
    }
}
