//! REST query and describe (reference §4.1–4.3).

use serde::Deserialize;

use super::describe::ObjectDescribe;
use super::{Client, SalesforceError};

/// One page of `/query` or `/queryAll`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage {
    /// Rows the whole query matches.
    pub total_size: u64,
    /// Whether this is the last page.
    pub done: bool,
    /// Path of the next page while `done` is false.
    #[serde(default)]
    pub next_records_url: Option<String>,
    /// Records with their `attributes` envelope.
    pub records: Vec<serde_json::Value>,
}

/// `GET /sobjects/{object}/deleted/` (getDeleted): ids deleted in a window and how far back the
/// delete log reaches.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecords {
    /// Deleted records in the window.
    #[serde(default)]
    pub deleted_records: Vec<DeletedRecord>,
    /// The oldest instant the delete log still covers.
    #[serde(default)]
    pub earliest_date_available: Option<String>,
    /// The newest instant it covers.
    #[serde(default)]
    pub latest_date_covered: Option<String>,
}

/// One entry of [`DeletedRecords`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecord {
    /// Record id.
    pub id: String,
    /// When it was deleted (Salesforce's `2024-03-10T07:30:00.000+0000` form).
    #[serde(default)]
    pub deleted_date: Option<String>,
}

/// A Salesforce datetime (`…+0000`, `…Z`, with or without milliseconds).
pub fn parse_datetime(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|d| d.to_utc())
}

impl Client {
    /// `GET /limits`: `DailyApiRequests` as (used, max).
    pub async fn daily_api_requests(&self) -> Result<(u64, u64), SalesforceError> {
        #[derive(Deserialize)]
        struct Limit {
            #[serde(rename = "Max")]
            max: u64,
            #[serde(rename = "Remaining")]
            remaining: u64,
        }
        #[derive(Deserialize)]
        struct Limits {
            #[serde(rename = "DailyApiRequests")]
            daily: Limit,
        }
        let limits: Limits = self.get_json(&self.data_path("/limits")).await?;
        Ok((
            limits.daily.max.saturating_sub(limits.daily.remaining),
            limits.daily.max,
        ))
    }

    /// getDeleted over `[start, end]` (whole seconds, UTC).
    pub async fn deleted(
        &self,
        object: &str,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<DeletedRecords, SalesforceError> {
        let path = self.data_path(&format!("/sobjects/{object}/deleted/"));
        let format = |at: chrono::DateTime<chrono::Utc>| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let (start, end) = (format(start), format(end));
        self.send_json(reqwest::Method::GET, &path, |r| {
            r.query(&[("start", start.as_str()), ("end", end.as_str())])
        })
        .await
    }

    /// `GET /sobjects/{object}/describe`.
    pub async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError> {
        self.get_json(&self.data_path(&format!("/sobjects/{object}/describe")))
            .await
    }

    /// First page of a SOQL query; `all` uses `queryAll` (deleted and archived rows too).
    pub async fn query(&self, soql: &str, all: bool) -> Result<QueryPage, SalesforceError> {
        let resource = if all { "/queryAll" } else { "/query" };
        let path = self.data_path(resource);
        self.send_json(reqwest::Method::GET, &path, |r| r.query(&[("q", soql)]))
            .await
    }

    /// The page at a `nextRecordsUrl`.
    pub async fn query_more(&self, next_records_url: &str) -> Result<QueryPage, SalesforceError> {
        self.get_json(next_records_url).await
    }
}
