//! Writing to Salesforce (reference §3, §4.4): Bulk API 2.0 ingest upsert jobs (one CSV upload
//! per job, `#N/A` sets null, results fetched per job) and sObject Collections upsert (≤ 200
//! records per call) for small sets.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use super::bulk::JobInfo;
use super::{Client, SalesforceError};

/// Records per sObject Collections call (the API's limit).
pub const COLLECTION_LIMIT: usize = 200;
/// Raw CSV bytes per ingest job (Salesforce allows 150 MB after base64; it advises 100 MB).
pub const INGEST_JOB_BYTES: usize = 100_000_000;

/// One value to write. `Null` clears the field; a field left out of a record is unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteValue {
    /// Set the field to null (`#N/A` in Bulk CSV, JSON null in REST).
    Null,
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// A UTC instant in milliseconds.
    DateTime(i64),
}

impl WriteValue {
    fn csv(&self) -> String {
        match self {
            WriteValue::Null => "#N/A".to_string(),
            WriteValue::Text(t) => t.clone(),
            WriteValue::Number(n) => n.to_string(),
            WriteValue::DateTime(ms) => datetime(*ms),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            WriteValue::Null => serde_json::Value::Null,
            WriteValue::Text(t) => serde_json::Value::from(t.as_str()),
            WriteValue::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            WriteValue::DateTime(ms) => serde_json::Value::from(datetime(*ms)),
        }
    }
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ`.
pub fn datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Records to upsert: one header, rows of values in header order.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Field API names.
    pub fields: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<WriteValue>>,
}

/// The outcome of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordResult {
    /// Index in [`Records::rows`].
    pub row: usize,
    /// Salesforce id when written.
    pub id: Option<String>,
    /// Created (true) or updated (false); `None` when it failed.
    pub created: Option<bool>,
    /// `STATUS_CODE:message` when it failed.
    pub error: Option<String>,
}

impl RecordResult {
    /// Whether a retry can help (row locks, timeouts, unprocessed records).
    pub fn retryable(&self) -> bool {
        self.error.as_deref().is_some_and(|e| {
            [
                "UNABLE_TO_LOCK_ROW",
                "REQUEST_RUNNING_TOO_LONG",
                "UNPROCESSED",
                "SERVER_UNAVAILABLE",
            ]
            .iter()
            .any(|code| e.starts_with(code))
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionResult {
    #[serde(default)]
    id: Option<String>,
    success: bool,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    errors: Vec<CollectionError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionError {
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    message: String,
}

/// Encodes rows as ingest CSV (LF, quotes only where needed, `#N/A` for null).
pub fn ingest_csv(fields: &[String], rows: &[&Vec<WriteValue>]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(fields).expect("writing to memory");
    for row in rows {
        writer
            .write_record(row.iter().map(WriteValue::csv))
            .expect("writing to memory");
    }
    writer.into_inner().expect("writing to memory")
}

/// Splits rows into ingest jobs of at most `limit` bytes of CSV each (use [`INGEST_JOB_BYTES`]).
pub fn split_jobs(records: &Records, limit: usize) -> Vec<Vec<usize>> {
    let mut jobs = vec![Vec::new()];
    let mut size = 0usize;
    for (i, row) in records.rows.iter().enumerate() {
        let row_size: usize = row.iter().map(|v| v.csv().len() + 3).sum();
        if size + row_size > limit && !jobs.last().expect("non-empty").is_empty() {
            jobs.push(Vec::new());
            size = 0;
        }
        size += row_size;
        jobs.last_mut().expect("non-empty").push(i);
    }
    jobs.retain(|j| !j.is_empty());
    jobs
}

impl Client {
    /// Upserts with sObject Collections, 200 records per call, in order.
    pub async fn upsert_collections(
        &self,
        object: &str,
        external_id: &str,
        records: &Records,
        rows: &[usize],
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        let path = self.data_path(&format!("/composite/sobjects/{object}/{external_id}"));
        let mut results = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(COLLECTION_LIMIT) {
            let body_records: Vec<serde_json::Value> = chunk
                .iter()
                .map(|&i| {
                    let mut map = serde_json::Map::new();
                    map.insert("attributes".into(), serde_json::json!({ "type": object }));
                    for (field, value) in records.fields.iter().zip(&records.rows[i]) {
                        map.insert(field.clone(), value.json());
                    }
                    serde_json::Value::Object(map)
                })
                .collect();
            let body = serde_json::json!({ "allOrNone": false, "records": body_records });
            let answers: Vec<CollectionResult> = self
                .send_json(Method::PATCH, &path, |r| r.json(&body))
                .await?;
            if answers.len() != chunk.len() {
                return Err(SalesforceError::Protocol(format!(
                    "{path}: {} results for {} records",
                    answers.len(),
                    chunk.len()
                )));
            }
            for (&row, answer) in chunk.iter().zip(answers) {
                let error = (!answer.success).then(|| {
                    answer
                        .errors
                        .iter()
                        .map(|e| format!("{}:{}", e.status_code, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                results.push(RecordResult {
                    row,
                    id: answer.id,
                    created: answer.success.then_some(answer.created.unwrap_or(false)),
                    error,
                });
            }
        }
        Ok(results)
    }

    /// Upserts `rows` with one Bulk API 2.0 ingest job: create, one upload, close, wait, results.
    pub async fn upsert_bulk_job(
        &self,
        object: &str,
        external_id: &str,
        records: &Records,
        rows: &[usize],
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        let create = self.data_path("/jobs/ingest");
        let body = serde_json::json!({
            "object": object,
            "operation": "upsert",
            "externalIdFieldName": external_id,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        });
        let response = self.send(Method::POST, &create, |r| r.json(&body)).await?;
        let job: JobInfo = super::client::json_body(response, &create).await?;
        let data: Vec<&Vec<WriteValue>> = rows.iter().map(|&i| &records.rows[i]).collect();
        let csv = ingest_csv(&records.fields, &data);
        let batches = self.data_path(&format!("/jobs/ingest/{}/batches", job.id));
        self.send(Method::PUT, &batches, |r| {
            r.header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(csv.clone())
        })
        .await?;
        let job_path = self.data_path(&format!("/jobs/ingest/{}", job.id));
        self.send(Method::PATCH, &job_path, |r| {
            r.json(&serde_json::json!({ "state": "UploadComplete" }))
        })
        .await?;
        let mut delay = Duration::from_millis(200);
        let info: JobInfo = loop {
            let info: JobInfo = self.get_json(&job_path).await?;
            match info.state.as_str() {
                "JobComplete" | "Failed" | "Aborted" => break info,
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        if info.state == "Aborted" {
            return Err(SalesforceError::JobFailed {
                id: job.id,
                object: object.to_string(),
                state: info.state,
                message: info.error_message.unwrap_or_default(),
            });
        }
        // Results come back in any order: match them to rows by the external ID column.
        let key_column = records
            .fields
            .iter()
            .position(|f| f.eq_ignore_ascii_case(external_id))
            .ok_or_else(|| {
                SalesforceError::Config(format!("{external_id} is not among the fields written"))
            })?;
        let row_of: std::collections::HashMap<String, usize> = rows
            .iter()
            .map(|&i| (records.rows[i][key_column].csv(), i))
            .collect();
        let mut results = Vec::with_capacity(rows.len());
        for (kind, resource) in [
            ("success", "successfulResults"),
            ("failed", "failedResults"),
            ("unprocessed", "unprocessedrecords"),
        ] {
            let path = self.data_path(&format!("/jobs/ingest/{}/{resource}/", job.id));
            let body = self.send_read(Method::GET, &path, |r| r).await?;
            results.extend(parse_results(kind, &body, external_id, &row_of, &info)?);
        }
        Ok(results)
    }
}

fn parse_results(
    kind: &str,
    body: &[u8],
    external_id: &str,
    row_of: &std::collections::HashMap<String, usize>,
    info: &JobInfo,
) -> Result<Vec<RecordResult>, SalesforceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut reader = csv::ReaderBuilder::new().from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| SalesforceError::Protocol(format!("{kind} results: {e}")))?
        .clone();
    let at = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let key = at(external_id).ok_or_else(|| {
        SalesforceError::Protocol(format!("{kind} results have no {external_id} column"))
    })?;
    let (id, created, error) = (at("sf__Id"), at("sf__Created"), at("sf__Error"));
    let mut out = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| SalesforceError::Protocol(format!("{kind} results: {e}")))?;
        let Some(&row) = row_of.get(&record[key]) else {
            continue;
        };
        let get = |i: Option<usize>| i.map(|i| record[i].to_string()).filter(|s| !s.is_empty());
        out.push(match kind {
            "success" => RecordResult {
                row,
                id: get(id),
                created: Some(get(created).as_deref() == Some("true")),
                error: None,
            },
            "failed" => RecordResult {
                row,
                id: get(id),
                created: None,
                error: Some(get(error).unwrap_or_else(|| "UNKNOWN:no sf__Error".into())),
            },
            _ => RecordResult {
                row,
                id: None,
                created: None,
                error: Some(format!(
                    "UNPROCESSED:the job ended {} before this record ({})",
                    info.state,
                    info.error_message.clone().unwrap_or_default()
                )),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_writes_null_as_na_and_quotes_only_where_needed() {
        let fields = vec![
            "Name__c".to_string(),
            "N__c".to_string(),
            "At__c".to_string(),
        ];
        let row = vec![
            WriteValue::Text("Sales, \"EU\"".into()),
            WriteValue::Null,
            WriteValue::DateTime(1_710_055_800_000),
        ];
        let row2 = vec![
            WriteValue::Text("x".into()),
            WriteValue::Number(180.5),
            WriteValue::Number(40.0),
        ];
        let text = String::from_utf8(ingest_csv(&fields, &[&row, &row2])).unwrap();
        assert_eq!(
            text,
            "Name__c,N__c,At__c\n\"Sales, \"\"EU\"\"\",#N/A,2024-03-10T07:30:00.000Z\nx,180.5,40\n"
        );
    }

    #[test]
    fn results_match_rows_by_external_id() {
        let info = JobInfo {
            id: "750x".into(),
            state: "Failed".into(),
            number_records_processed: None,
            error_message: Some("timeout".into()),
            column_delimiter: None,
        };
        let rows = std::collections::HashMap::from([("k1".to_string(), 0), ("k2".to_string(), 1)]);
        let ok = parse_results(
            "success",
            b"\"sf__Id\",\"sf__Created\",\"Key__c\"\n\"a01\",\"true\",\"k2\"\n",
            "Key__c",
            &rows,
            &info,
        )
        .unwrap();
        assert_eq!(ok[0].row, 1);
        assert_eq!(ok[0].created, Some(true));
        let failed = parse_results(
            "failed",
            b"sf__Id,sf__Error,Key__c\n,FIELD_CUSTOM_VALIDATION_EXCEPTION:bad:N__c --,k1\n",
            "Key__c",
            &rows,
            &info,
        )
        .unwrap();
        assert_eq!(failed[0].row, 0);
        assert!(failed[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("FIELD_CUSTOM_VALIDATION_EXCEPTION"));
        assert!(!failed[0].retryable());
        let unprocessed =
            parse_results("unprocessed", b"Key__c\nk1\n", "Key__c", &rows, &info).unwrap();
        assert!(unprocessed[0].retryable());
    }

    #[test]
    fn jobs_split_by_size() {
        let records = Records {
            fields: vec!["A".into()],
            rows: (0..10)
                .map(|_| vec![WriteValue::Text("x".repeat(30))])
                .collect(),
        };
        let jobs = split_jobs(&records, 100);
        assert_eq!(jobs.len(), 4);
        assert!(jobs.iter().all(|j| j.len() <= 3));
    }
}
