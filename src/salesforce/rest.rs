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

impl Client {
    /// `GET /sobjects/{object}/describe`.
    pub async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError> {
        self.get_json(&self.data_path(&format!("/sobjects/{object}/describe")))
            .await
    }

    /// First page of a SOQL query; `all` uses `queryAll` (deleted and archived rows too).
    pub async fn query(&self, soql: &str, all: bool) -> Result<QueryPage, SalesforceError> {
        let resource = if all { "/queryAll" } else { "/query" };
        let path = self.data_path(resource);
        let response = self
            .send(reqwest::Method::GET, &path, |r| r.query(&[("q", soql)]))
            .await?;
        super::client::json_body(response, &path).await
    }

    /// The page at a `nextRecordsUrl`.
    pub async fn query_more(&self, next_records_url: &str) -> Result<QueryPage, SalesforceError> {
        self.get_json(next_records_url).await
    }
}
