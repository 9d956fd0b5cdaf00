//! Bulk API 2.0 query jobs (reference §2): create, poll with backoff, page through results with
//! `Sforce-Locator` until the literal `null`, delete.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;

use super::{Client, SalesforceError};

/// Job info (`GET /jobs/query/{id}`); counters are absent while the job is new.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// Job id (`750…`).
    pub id: String,
    /// `UploadComplete`, `InProgress`, `JobComplete`, `Failed`, `Aborted`.
    pub state: String,
    /// Rows the job produced.
    #[serde(default)]
    pub number_records_processed: Option<u64>,
    /// Why the job failed.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Column delimiter of the results.
    #[serde(default)]
    pub column_delimiter: Option<String>,
}

impl JobInfo {
    /// The results' delimiter byte.
    pub fn delimiter(&self) -> u8 {
        match self.column_delimiter.as_deref() {
            Some("BACKQUOTE") => b'`',
            Some("CARET") => b'^',
            Some("PIPE") => b'|',
            Some("SEMICOLON") => b';',
            Some("TAB") => b'\t',
            _ => b',',
        }
    }
}

/// One page of results, its row count and the next locator (`None` after the last page).
#[derive(Debug)]
pub struct ResultPage {
    /// The CSV page (decompressed), with its own header row.
    pub body: Bytes,
    /// `Sforce-NumberOfRecords`.
    pub records: Option<u64>,
    /// `Sforce-Locator`, unless it is the literal `null` (or absent).
    pub next: Option<String>,
}

/// Which results page to ask for (asked again when its download is cut short).
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// The query job.
    pub job_id: String,
    /// `locator`, none for the first page.
    pub locator: Option<String>,
    /// `maxRecords`.
    pub max_records: u64,
    /// The results path (for messages).
    pub path: String,
}

/// The headers of a results page, read before its body: the next locator is known early so
/// the next request can start while this body downloads. Read the body with
/// [`Client::page_body`](super::Client::page_body), which retries a cut download.
pub struct PendingPage {
    response: reqwest::Response,
    request: PageRequest,
    /// `Sforce-NumberOfRecords`.
    pub records: Option<u64>,
    /// `Sforce-Locator`, unless it is the literal `null` (or absent).
    pub next: Option<String>,
}

impl PendingPage {
    /// What was asked for and the answer whose body is still to read.
    pub fn into_parts(self) -> (PageRequest, reqwest::Response) {
        (self.request, self.response)
    }
}

/// The locator header value meaning "no more pages".
fn next_locator(value: Option<&str>) -> Option<String> {
    match value.map(str::trim) {
        None | Some("") | Some("null") => None,
        Some(locator) => Some(locator.to_string()),
    }
}

impl Client {
    /// Creates a query job (`query`, or `queryAll` for deleted rows too).
    pub async fn create_query_job(
        &self,
        soql: &str,
        all: bool,
    ) -> Result<JobInfo, SalesforceError> {
        let path = self.data_path("/jobs/query");
        let body = serde_json::json!({
            "operation": if all { "queryAll" } else { "query" },
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let response = self.send(Method::POST, &path, |r| r.json(&body)).await?;
        super::client::json_body(response, &path).await
    }

    /// Polls until the job is `JobComplete` (backoff from `first` up to 10 s); a `Failed` or
    /// `Aborted` job is an error carrying its `errorMessage`.
    pub async fn wait_for_query_job(
        &self,
        id: &str,
        object: &str,
        first: Duration,
    ) -> Result<JobInfo, SalesforceError> {
        let path = self.data_path(&format!("/jobs/query/{id}"));
        let mut delay = first;
        loop {
            let info: JobInfo = self.get_json(&path).await?;
            match info.state.as_str() {
                "JobComplete" => return Ok(info),
                "Failed" | "Aborted" => {
                    return Err(SalesforceError::JobFailed {
                        id: id.to_string(),
                        object: object.to_string(),
                        state: info.state,
                        message: info.error_message.unwrap_or_default(),
                    })
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Requests one results page; returns once its headers have arrived.
    pub async fn query_results(
        &self,
        id: &str,
        locator: Option<&str>,
        max_records: u64,
    ) -> Result<PendingPage, SalesforceError> {
        self.query_page(PageRequest {
            job_id: id.to_string(),
            locator: locator.map(str::to_string),
            max_records,
            path: self.data_path(&format!("/jobs/query/{id}/results")),
        })
        .await
    }

    /// Requests the results page `request` names.
    pub async fn query_page(&self, request: PageRequest) -> Result<PendingPage, SalesforceError> {
        let max = request.max_records.to_string();
        let response = self
            .send(Method::GET, &request.path, |r| {
                let r = r.query(&[("maxRecords", max.as_str())]);
                match &request.locator {
                    Some(l) => r.query(&[("locator", l.as_str())]),
                    None => r,
                }
            })
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let records = header("Sforce-NumberOfRecords").and_then(|v| v.trim().parse().ok());
        let next = next_locator(header("Sforce-Locator").as_deref());
        Ok(PendingPage {
            response,
            request,
            records,
            next,
        })
    }

    /// Deletes a finished job and its result data (best effort: results expire after 7 days anyway).
    pub async fn delete_query_job(&self, id: &str) -> Result<(), SalesforceError> {
        let path = self.data_path(&format!("/jobs/query/{id}"));
        self.send(Method::DELETE, &path, |r| r).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literal_null_locator_ends_paging() {
        assert_eq!(next_locator(Some("null")), None);
        assert_eq!(next_locator(None), None);
        assert_eq!(next_locator(Some("MTAwMDA")), Some("MTAwMDA".into()));
    }
}
