//! Reading one query into a history file: REST pages or Bulk API 2.0 result pages, each
//! normalized to the table's canonical Arrow form on the rayon pool while the next downloads.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::stream::{FuturesOrdered, StreamExt};

use super::routing::Route;
use super::writer::PartWriter;
use super::{Api, ExportError, ExportJob};
use crate::job::ApiChoice;
use crate::lake::parquet::align;
use crate::observe::progress::Progress;
use crate::salesforce::describe::Column;
use crate::salesforce::{normalize, SalesforceError};

/// Where an object's records go: a history file, counted on the run's progress.
pub(super) struct Sink<'a> {
    /// The history file being written.
    pub writer: &'a mut PartWriter,
    /// The run's progress.
    pub progress: &'a Progress,
}

/// Rows and deletes counted while streaming, and what the API announced.
#[derive(Default)]
pub(super) struct Streamed {
    /// Records written.
    pub rows: u64,
    /// Of which flagged deleted.
    pub deleted: u64,
    /// REST `totalSize` (0 for Bulk).
    pub rest_total: u64,
}

/// Result pages parsed concurrently (each on the rayon pool) while the next one downloads.
const PARSE_AHEAD: usize = 2;

/// A REST page whose body is not the documented JSON is that page's fault, named as such.
fn page_error(page: String) -> impl FnOnce(SalesforceError) -> ExportError {
    move |error| match error {
        SalesforceError::Protocol(reason) => ExportError::BadPage { page, reason },
        other => other.into(),
    }
}

impl ExportJob<'_> {
    /// Streams the query's records into `out`, choosing REST or Bulk per the job's setting.
    /// Streams the query's records into `out` over the API the route and the job's setting
    /// choose (`force_rest`: Bulk failed on this slice and it is too narrow to halve).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stream(
        &self,
        object: &str,
        soql: &str,
        all: bool,
        route: &Route,
        force_rest: bool,
        columns: &Arc<Vec<Column>>,
        schema: &SchemaRef,
        out: &mut Sink<'_>,
    ) -> Result<(Api, Streamed), ExportError> {
        let settings = &self.spec.salesforce;
        let choice = match route {
            _ if force_rest => ApiChoice::Rest,
            Route::RestOnly(_) => ApiChoice::Rest,
            Route::AsConfigured(choice) => *choice,
        };
        // REST, and `auto` too: its first page says how many records match (AppFlow's rule).
        let first = match choice {
            ApiChoice::Bulk => None,
            ApiChoice::Rest | ApiChoice::Auto => Some(
                self.client
                    .query(soql, all)
                    .await
                    .map_err(page_error(format!("{object} REST page 1")))?,
            ),
        };
        match first {
            Some(first)
                if choice == ApiChoice::Rest || first.total_size < settings.bulk_threshold =>
            {
                let streamed = self
                    .stream_rest(object, first, columns, schema, out)
                    .await?;
                Ok((Api::Rest, streamed))
            }
            large => {
                if let Some(first) = large {
                    tracing::info!(
                        object,
                        records = first.total_size,
                        threshold = settings.bulk_threshold,
                        "large result: using Bulk API 2.0"
                    );
                }
                let streamed = self
                    .stream_bulk(object, soql, all, columns, schema, out)
                    .await?;
                Ok((Api::Bulk, streamed))
            }
        }
    }

    pub(super) async fn stream_rest(
        &self,
        object: &str,
        first: crate::salesforce::rest::QueryPage,
        columns: &Arc<Vec<Column>>,
        schema: &SchemaRef,
        out: &mut Sink<'_>,
    ) -> Result<Streamed, ExportError> {
        let total = first.total_size;
        out.progress.restart(total, object);
        self.count(object, |c| {
            c.api = Some(Api::Rest.name().to_string());
            c.announced = Some(c.announced.unwrap_or(0) + total);
        });
        let mut streamed = Streamed {
            rest_total: total,
            ..Streamed::default()
        };
        let mut page = first;
        let mut number = 1u64;
        loop {
            let next = if page.done {
                None
            } else {
                page.next_records_url.clone()
            };
            let records = std::mem::take(&mut page.records);
            let cols = Arc::clone(columns);
            let name = format!("{object} REST page {number}");
            let batch = crate::exec::cpu(move || normalize::rest_records(&cols, &records, &name))
                .await
                .map_err(SalesforceError::from)?;
            self.count(object, |c| c.received += batch.num_rows() as u64);
            self.push(batch, schema, &mut streamed, out).await?;
            match next {
                Some(url) => {
                    number += 1;
                    page = self
                        .client
                        .query_more(&url)
                        .await
                        .map_err(page_error(format!("{object} REST page {number}")))?;
                }
                None => break,
            }
        }
        if streamed.rows != total {
            return Err(ExportError::Count {
                object: object.to_string(),
                what: "REST query totalSize".into(),
                expected: total,
                got: streamed.rows,
            });
        }
        Ok(streamed)
    }

    pub(super) async fn stream_bulk(
        &self,
        object: &str,
        soql: &str,
        all: bool,
        columns: &Arc<Vec<Column>>,
        schema: &SchemaRef,
        out: &mut Sink<'_>,
    ) -> Result<Streamed, ExportError> {
        let client = &self.client;
        // At most MAX_BULK_JOBS query jobs in flight, however many objects run at once.
        let _permit = self
            .bulk_jobs
            .acquire()
            .await
            .expect("the Bulk job semaphore is never closed");
        let job = client.create_query_job(soql, all).await?;
        let info = client
            .wait_for_query_job(&job.id, object, Duration::from_millis(50))
            .await?;
        let delimiter = info.delimiter();
        out.progress
            .restart(info.number_records_processed.unwrap_or(0), object);
        self.count(object, |c| {
            c.api = Some(Api::Bulk.name().to_string());
            c.announced = Some(c.announced.unwrap_or(0));
            c.processed = match (c.processed, info.number_records_processed) {
                (Some(before), Some(now)) => Some(before + now),
                (None, now) => now,
                (before, None) => before,
            };
        });
        let mut streamed = Streamed::default();
        let mut parsing = FuturesOrdered::new();
        let mut locator: Option<String> = None;
        let mut number = 0u64;
        let page_size = self.spec.salesforce.page_size;
        loop {
            number += 1;
            let pending = client
                .query_results(&job.id, locator.as_deref(), page_size)
                .await?;
            let expected = pending.records;
            let next = pending.next.clone();
            let body = client.page_body(pending).await?;
            let cols = Arc::clone(columns);
            let name = format!("{object} Bulk job {} page {number}", job.id);
            parsing.push_back(crate::exec::cpu(move || {
                let batch = normalize::bulk_page(&cols, &body, delimiter, &name);
                (name, expected, batch)
            }));
            while parsing.len() >= PARSE_AHEAD || (next.is_none() && !parsing.is_empty()) {
                let (name, expected, batch) = parsing.next().await.expect("not empty");
                // A page without the header leaves the sum unknown.
                self.count(object, |c| {
                    c.announced = c.announced.zip(expected).map(|(a, e)| a + e)
                });
                let batch = batch.map_err(SalesforceError::from)?;
                self.count(object, |c| c.received += batch.num_rows() as u64);
                if let Some(expected) = expected {
                    if expected != batch.num_rows() as u64 {
                        return Err(ExportError::Count {
                            object: object.to_string(),
                            what: format!("{name} (Sforce-NumberOfRecords)"),
                            expected,
                            got: batch.num_rows() as u64,
                        });
                    }
                }
                self.push(batch, schema, &mut streamed, out).await?;
            }
            match next {
                Some(l) => locator = Some(l),
                None => break,
            }
        }
        if let Some(total) = info.number_records_processed {
            if total != streamed.rows {
                return Err(ExportError::Count {
                    object: object.to_string(),
                    what: format!("Bulk job {} numberRecordsProcessed", job.id),
                    expected: total,
                    got: streamed.rows,
                });
            }
        }
        if let Err(e) = client.delete_query_job(&job.id).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not delete the finished Bulk job (its results expire after 7 days)");
        }
        Ok(streamed)
    }

    pub(super) async fn push(
        &self,
        batch: RecordBatch,
        schema: &SchemaRef,
        streamed: &mut Streamed,
        out: &mut Sink<'_>,
    ) -> Result<(), ExportError> {
        let batch = align(&batch, schema)?;
        streamed.rows += batch.num_rows() as u64;
        out.progress.inc(batch.num_rows() as u64);
        if let Some(flags) = batch.column_by_name("is_deleted") {
            let flags = flags.as_boolean();
            streamed.deleted += (0..flags.len())
                .filter(|&i| flags.is_valid(i) && flags.value(i))
                .count() as u64;
        }
        if batch.num_rows() > 0 {
            out.writer.write(batch).await?;
        }
        Ok(())
    }
}
