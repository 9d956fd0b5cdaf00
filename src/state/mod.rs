//! What cxlake remembers between runs, under `_etl/` in the lake: job watermarks, the columns
//! a table gained from unknown headers, and rejected inputs with their reasons.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::layout;
use crate::lake::{Location, StoreError};

/// State errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A state object is not valid JSON of the expected shape.
    #[error("{url}: corrupt state object: {source}")]
    Corrupt {
        /// The object.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Per-job state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The export time of the newest input processed (never a time in the future). Connect
    /// jobs re-list the lookback window before it; roll-ups and push-back read changes after it.
    pub watermark: Option<DateTime<Utc>>,
    /// Connect report objects processed (loaded or rejected) within the lookback window, by key
    /// relative to the source: a key not here, or whose ETag or size differs, is read again.
    /// State files written before this field existed read as empty.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub seen: std::collections::BTreeMap<String, SeenObject>,
    /// Per-object watermarks of an incremental Salesforce export: rows with a `SystemModstamp`
    /// up to this instant are in the lake.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub objects: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// Interval days with records a push-back did not get into Salesforce (failed or
    /// unprocessed): the next run reads them again, whatever its plan.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub pending_days: std::collections::BTreeSet<chrono::NaiveDate>,
    /// Connect jobs: the first and newest intervals a report arrived for, which bound the days
    /// whose coverage is accounted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageMarks>,
}

/// The intervals that bound a Connect job's coverage (interval starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageMarks {
    /// The first interval a report arrived for: earlier intervals are not expected.
    pub first: DateTime<Utc>,
    /// The newest interval a report arrived for.
    pub newest: DateTime<Utc>,
}

/// One processed source object, as it was listed when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenObject {
    /// The report time from its name.
    pub exported_at: DateTime<Utc>,
    /// Size in bytes.
    pub size: u64,
    /// The store's ETag (S3) or local version tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Per-table metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableMeta {
    /// Columns added for unknown headers, in the order they were added (always appended).
    #[serde(default)]
    pub extra_columns: Vec<String>,
    /// Every column of a table whose schema comes from the source (Salesforce describe), in
    /// table order: new fields are appended, fields gone from describe stay (as nulls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<StoredColumn>,
}

/// A column remembered in [`TableMeta::columns`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredColumn {
    /// Lake column name.
    pub name: String,
    /// Where its values come from (a SOQL path).
    pub path: String,
    /// Value kind, e.g. `integer` (one Arrow type each).
    pub kind: String,
}

/// Why an input was rejected, stored next to the copy of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectReason {
    /// The input's URL.
    pub source_key: String,
    /// 1-based line, when a row is to blame.
    pub line: Option<u64>,
    /// The column header, when a column is to blame.
    pub column: Option<String>,
    /// The 1-based CSV column, when a column is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_number: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Reads a JSON state object (the default when absent).
pub async fn read_json<T: for<'de> Deserialize<'de> + Default>(
    lake: &Location,
    key: &str,
) -> Result<T, StateError> {
    match lake.get(key).await? {
        None => Ok(T::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            url: lake.url_of(key),
            source,
        }),
    }
}

/// Writes a JSON state object (pretty, one PUT).
pub async fn write_json<T: Serialize>(
    lake: &Location,
    key: &str,
    value: &T,
) -> Result<(), StateError> {
    let mut text = serde_json::to_vec_pretty(value).expect("state serializes");
    text.push(b'\n');
    Ok(lake.put(key, Bytes::from(text)).await?)
}

/// Reads a job's state (default when none is stored).
pub async fn load_job_state(lake: &Location, job: &str) -> Result<JobState, StateError> {
    read_json(lake, &layout::state_key(job)).await
}

/// Stores a job's state.
pub async fn save_job_state(
    lake: &Location,
    job: &str,
    state: &JobState,
) -> Result<(), StateError> {
    write_json(lake, &layout::state_key(job), state).await
}

/// Reads a table's metadata (default when none is stored).
pub async fn load_table_meta(lake: &Location, table: &str) -> Result<TableMeta, StateError> {
    read_json(lake, &layout::table_meta_key(table)).await
}

/// Stores a table's metadata.
pub async fn save_table_meta(
    lake: &Location,
    table: &str,
    meta: &TableMeta,
) -> Result<(), StateError> {
    write_json(lake, &layout::table_meta_key(table), meta).await
}

/// Copies a rejected input to `_etl/rejects/<job>/<relative source path>` with
/// `<relative source path>.error.json` beside it.
pub async fn write_reject(
    lake: &Location,
    job: &str,
    relative: &str,
    content: Bytes,
    reason: &RejectReason,
) -> Result<(), StateError> {
    let key = layout::reject_key(job, relative);
    lake.put(&key, content).await?;
    write_json(lake, &format!("{key}.error.json"), reason).await
}
