//! The org's state: objects, records, sessions, cursors, Bulk jobs, faults and call counts;
//! and the query engine shared by REST and Bulk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::model::{make_id, stamp, FieldDef, ObjectDef};
use super::soql;
use super::wire;

/// Days a deleted record stays in the recycle bin (and in the delete log getDeleted reads).
pub const RECYCLE_BIN_DAYS: i64 = 15;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// A stored record (canonical values).
pub type Record = BTreeMap<String, Value>;

/// An API error: status, `errorCode`, message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Salesforce `errorCode`.
    pub code: String,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Injected failures (`POST /__emulator/faults`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// After this many more data calls every session expires (401 INVALID_SESSION_ID).
    pub expire_tokens_after_calls: Option<u64>,
    /// The next N data calls fail with 403 REQUEST_LIMIT_EXCEEDED `ConcurrentPerOrgLongTxn
    /// Limit exceeded.` (a limit that clears by itself). `limit_exceeded_calls` is accepted as
    /// the old name.
    pub concurrent_limit_calls: u64,
    /// The next N data calls fail with `status` (default 503).
    pub server_error_calls: u64,
    /// Status of injected server errors.
    pub status: Option<u16>,
    /// The next Bulk query job ends Failed with this message.
    pub fail_next_query_job: Option<String>,
    /// While set, every Bulk query job matching more than this many records ends Failed (on the
    /// poll that would complete it) with Salesforce's internal-retry message.
    pub bulk_fail_above_records: Option<u64>,
    /// Bulk jobs stay InProgress for this many more polls.
    pub slow_job_polls: u32,
    /// Ingest rows whose `field` equals `value` fail with `error`.
    pub fail_ingest_rows_matching: Option<RowFault>,
    /// One query result page (REST or Bulk) of an object is served damaged, once.
    pub corrupt_page: Option<PageFault>,
}

/// A damaged result page: the `page`-th page served for `object` from now on.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PageFault {
    /// Object API name.
    pub object: String,
    /// Which page, counted from 1 over the pages served for the object after the fault is set.
    #[serde(default = "first_page")]
    pub page: u32,
    /// `truncate` (the body cut in half), `wide_row` (Bulk: an extra cell in the first row;
    /// REST: the first record lacks `field`), `bad_value` (the first row's `field` holds
    /// text that fits no number, date or boolean), or `drop_record` (the page lacks its last
    /// record while `Sforce-NumberOfRecords`, or REST `totalSize`, still counts it).
    pub kind: String,
    /// The field `wide_row` (REST) and `bad_value` act on.
    #[serde(default)]
    pub field: Option<String>,
}

fn first_page() -> u32 {
    1
}

/// An ingest row failure rule.
#[derive(Debug, Clone, Deserialize)]
pub struct RowFault {
    /// Field name.
    pub field: String,
    /// Value to match.
    pub value: String,
    /// `STATUS_CODE:message`.
    pub error: String,
}

/// The `errorMessage` of a Bulk API 2.0 query job that failed after Salesforce's internal
/// retries (reference §1: Bulk 2.0 retries a query itself and gives up after 15 retries).
pub const RETRIES_EXHAUSTED: &str =
    "Retried more than 15 times. Please see the Bulk API troubleshooting documentation.";

/// A selected column, resolved against describe.
#[derive(Debug, Clone)]
pub enum Selected {
    /// A field of the object.
    Field(FieldDef),
    /// `Relationship.Field`: the reference field, the target object, the target field.
    Related(FieldDef, String, FieldDef),
}

/// A query's object, resolved columns, SELECT paths as written, and matching records.
pub type QueryResult = (ObjectDef, Vec<Selected>, Vec<String>, Vec<Record>);

/// A Bulk API 2.0 job (query or ingest).
#[derive(Debug, Clone)]
pub struct Job {
    /// Id.
    pub id: String,
    /// `query`, `queryAll`, `upsert`, …
    pub operation: String,
    /// Object.
    pub object: String,
    /// State.
    pub state: String,
    /// API version that created it.
    pub version: String,
    /// Created at (ms).
    pub created: i64,
    /// Polls left before it completes.
    pub polls_left: u32,
    /// Error message when Failed.
    pub error: Option<String>,
    /// Query: header names and rendered rows (cells already quoted).
    pub result: Option<(Vec<String>, Vec<Vec<String>>)>,
    /// Query on a canned object: page files.
    pub canned: Option<Vec<(PathBuf, u64)>>,
    /// Ingest: external id field.
    pub external_id: Option<String>,
    /// Ingest: the uploaded CSV.
    pub upload: Option<Vec<u8>>,
    /// Ingest: (successful, failed, unprocessed) result CSVs.
    pub outcome: Option<(String, String, String)>,
    /// Ingest counters: processed, failed.
    pub counts: (u64, u64),
}

/// The org's rolling daily API request allowance (`DailyApiRequests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Allowance {
    /// `DailyApiRequests` Max.
    #[serde(rename = "daily_api_requests")]
    pub max: u64,
    /// Requests counted in the current window.
    pub used: u64,
}

impl Default for Allowance {
    fn default() -> Self {
        Allowance {
            max: 100_000,
            used: 0,
        }
    }
}

/// The whole org.
#[derive(Default)]
pub struct Org {
    /// The daily API request allowance and its use.
    pub allowance: Allowance,
    /// Objects by API name.
    pub objects: BTreeMap<String, ObjectDef>,
    /// Records by object.
    pub records: BTreeMap<String, Vec<Record>>,
    /// Valid access tokens.
    pub tokens: HashSet<String>,
    /// Valid refresh tokens.
    pub refresh_tokens: HashSet<String>,
    /// REST query cursors: rendered records and position.
    pub cursors: HashMap<String, (Vec<String>, usize, String, String)>,
    /// Bulk jobs.
    pub jobs: HashMap<String, Job>,
    /// Faults.
    pub faults: Faults,
    /// API calls by kind.
    pub stats: BTreeMap<String, u64>,
    /// Last modstamp handed out (ms), strictly increasing.
    pub clock: i64,
    /// How far the emulated clock runs ahead of the machine's (ms; `POST /__emulator/clock`).
    pub clock_offset: i64,
    /// When the org came into being (ms): the oldest instant getDeleted can ever cover.
    pub started: i64,
    /// When each deleted record was deleted (ms), by (object, id): the delete log that the
    /// recycle bin purge and getDeleted read.
    pub deleted_at: HashMap<(String, String), i64>,
    /// Id counter.
    pub counter: u64,
    /// Folder where records persist (`--data`).
    pub data_dir: Option<PathBuf>,
    /// Folder of canned Bulk result pages (`--canned`).
    pub data_dir_canned: Option<PathBuf>,
    /// Rows per Bulk query results page without `maxRecords`.
    pub bulk_page_size: usize,
}

impl Org {
    /// An object by name, case-insensitively.
    pub fn object(&self, name: &str) -> Result<&ObjectDef, ApiError> {
        self.objects
            .values()
            .find(|o| o.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "INVALID_TYPE",
                    format!("sObject type '{name}' is not supported."),
                )
            })
    }

    /// The emulated now (ms): the machine's clock plus the offset the admin API set.
    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.clock_offset
    }

    /// The next modstamp: the emulated now, or 1 ms after the previous one.
    pub fn tick(&mut self) -> i64 {
        let now = self.now();
        self.clock = now.max(self.clock + 1);
        self.clock
    }

    /// Marks a record deleted at `at` (IsDeleted, modstamps, the delete log).
    pub fn mark_deleted(&mut self, object: &str, index: usize, at: i64) {
        let Some(record) = self
            .records
            .get_mut(object)
            .and_then(|rs| rs.get_mut(index))
        else {
            return;
        };
        record.insert("IsDeleted".into(), Value::Bool(true));
        record.insert("SystemModstamp".into(), Value::from(stamp(at)));
        record.insert("LastModifiedDate".into(), Value::from(stamp(at)));
        if let Some(id) = record.get("Id").and_then(Value::as_str) {
            self.deleted_at
                .insert((object.to_string(), id.to_string()), at);
        }
    }

    /// Logs every deleted record not yet in the delete log as deleted at `at` (records loaded
    /// deleted: seeded, `--data`, or written deleted through the admin API).
    pub fn log_unlogged_deletions(&mut self, at: i64) {
        for (object, records) in &self.records {
            for record in records {
                if record.get("IsDeleted") != Some(&Value::Bool(true)) {
                    continue;
                }
                if let Some(id) = record.get("Id").and_then(Value::as_str) {
                    self.deleted_at
                        .entry((object.clone(), id.to_string()))
                        .or_insert(at);
                }
            }
        }
    }

    /// Empties the recycle bin of records deleted more than [`RECYCLE_BIN_DAYS`] before the
    /// emulated now: they disappear entirely (queryAll and getDeleted no longer see them).
    pub fn purge_recycle_bin(&mut self) {
        let cutoff = self.now() - RECYCLE_BIN_DAYS * DAY_MS;
        let mut purged: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        self.deleted_at.retain(|(object, id), at| {
            if *at < cutoff {
                purged.entry(object.clone()).or_default().insert(id.clone());
                false
            } else {
                true
            }
        });
        for (object, ids) in purged {
            if let Some(records) = self.records.get_mut(&object) {
                records.retain(|r| {
                    r.get("IsDeleted") != Some(&Value::Bool(true))
                        || !r
                            .get("Id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| ids.contains(id))
                });
            }
            self.persist(&object);
        }
    }

    /// REST getDeleted (`GET …/sobjects/{object}/deleted/?start=…&end=…`, reference §4): the
    /// records deleted in `[start, min(end, latestDateCovered))`, with `earliestDateAvailable`
    /// (the org's start or now − 15 days, whichever is later, to the minute) and
    /// `latestDateCovered` (now, to the minute).
    pub fn get_deleted(
        &self,
        object: &str,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Value, ApiError> {
        let def = self.object(object)?;
        let invalid = |m: &str| ApiError::new(400, "INVALID_REPLICATION_DATE", m);
        // A `+` written unescaped in the query string arrives as a space.
        let parse = |text: Option<&str>| {
            text.and_then(|t| wire::parse_datetime(&t.trim().replace(' ', "+")))
        };
        let start =
            parse(start).ok_or_else(|| invalid("startDate is missing or not a valid dateTime"))?;
        let end =
            parse(end).ok_or_else(|| invalid("endDate is missing or not a valid dateTime"))?;
        if start >= end {
            return Err(invalid("EndDate must chronologically succeed startDate"));
        }
        let minute = |ms: i64| ms.div_euclid(60_000) * 60_000;
        let now = self.now();
        let earliest = minute(self.started.max(now - RECYCLE_BIN_DAYS * DAY_MS));
        let latest = minute(now);
        if start < earliest {
            return Err(invalid("startDate before org replication enabled date"));
        }
        let until = end.min(latest);
        let mut deleted: Vec<(i64, String)> = self
            .records
            .get(&def.name)
            .into_iter()
            .flatten()
            .filter(|r| r.get("IsDeleted") == Some(&Value::Bool(true)))
            .filter_map(|r| {
                let id = r.get("Id")?.as_str()?.to_string();
                let at = self
                    .deleted_at
                    .get(&(def.name.clone(), id.clone()))
                    .copied()
                    .or_else(|| {
                        r.get("SystemModstamp")?
                            .as_str()
                            .and_then(wire::parse_datetime)
                    })?;
                (start <= at && at < until).then_some((at, id))
            })
            .collect();
        deleted.sort();
        let sf = |ms: i64| wire::rest_datetime(&stamp(ms));
        Ok(serde_json::json!({
            "deletedRecords": deleted
                .into_iter()
                .map(|(at, id)| serde_json::json!({ "id": id, "deletedDate": sf(at) }))
                .collect::<Vec<_>>(),
            "earliestDateAvailable": sf(earliest),
            "latestDateCovered": sf(latest),
        }))
    }

    /// Sets fields of one record from the admin API; `touch` false leaves SystemModstamp and
    /// LastModifiedDate as they are (a value that changes without a modstamp, as formula
    /// values do).
    pub fn patch_admin(
        &mut self,
        object: &str,
        id: &str,
        values: Record,
        touch: bool,
    ) -> Result<(), ApiError> {
        let def = self.object(object)?.clone();
        let mut named = Vec::new();
        for (key, value) in values {
            let field = def.field(&key).ok_or_else(|| {
                ApiError::new(
                    400,
                    "INVALID_FIELD",
                    format!("No such column '{key}' on entity '{}'", def.name),
                )
            })?;
            named.push((field.name.clone(), value));
        }
        let index = self
            .records
            .get(&def.name)
            .and_then(|rs| {
                rs.iter()
                    .position(|r| r.get("Id").and_then(Value::as_str) == Some(id))
            })
            .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("no record {id}")))?;
        let at = self.tick();
        let record = &mut self.records.get_mut(&def.name).expect("found")[index];
        for (name, value) in named {
            record.insert(name, value);
        }
        if touch {
            record.insert("SystemModstamp".into(), Value::from(stamp(at)));
            record.insert("LastModifiedDate".into(), Value::from(stamp(at)));
        }
        self.log_unlogged_deletions(at);
        self.persist(&def.name);
        Ok(())
    }

    /// A fresh id for an object.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        make_id(prefix, 0x100000 + self.counter)
    }

    /// Counts one call.
    pub fn count(&mut self, kind: &str) {
        *self.stats.entry(kind.to_string()).or_default() += 1;
        *self.stats.entry("total".to_string()).or_default() += 1;
    }

    /// Resolves the SELECT list.
    pub fn resolve(
        &self,
        object: &ObjectDef,
        fields: &[String],
    ) -> Result<Vec<Selected>, ApiError> {
        let invalid = |f: &str| {
            ApiError::new(
                400,
                "INVALID_FIELD",
                format!("No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.", object.name),
            )
        };
        fields
            .iter()
            .map(|path| match path.split_once('.') {
                None => object
                    .field(path)
                    .cloned()
                    .map(Selected::Field)
                    .ok_or_else(|| invalid(path)),
                Some((rel, name)) => {
                    let reference = object.relationship(rel).ok_or_else(|| invalid(path))?;
                    let target = self
                        .object(&reference.reference_to[0])
                        .map_err(|_| invalid(path))?;
                    let field = target.field(name).ok_or_else(|| invalid(path))?;
                    Ok(Selected::Related(
                        reference.clone(),
                        target.name.clone(),
                        field.clone(),
                    ))
                }
            })
            .collect()
    }

    /// Runs a query: the object, resolved columns and matching records (a snapshot).
    pub fn run_query(&self, text: &str, all: bool) -> Result<QueryResult, ApiError> {
        let query = soql::parse(text).map_err(|m| ApiError::new(400, "MALFORMED_QUERY", m))?;
        let object = self.object(&query.object)?.clone();
        let selected = self.resolve(&object, &query.fields)?;
        let rows = self.records.get(&object.name).cloned().unwrap_or_default();
        let get = |record: &Record, path: &str| -> Value {
            match path.split_once('.') {
                None => object
                    .field(path)
                    .and_then(|f| record.get(&f.name).cloned())
                    .unwrap_or(Value::Null),
                Some((rel, name)) => self.related(&object, record, rel, name),
            }
        };
        if let Some(filter) = &query.filter {
            // Check field names in the filter once.
            fn names(c: &soql::Cond, out: &mut Vec<String>) {
                match c {
                    soql::Cond::Cmp(f, _, _) | soql::Cond::In(f, _) => out.push(f.clone()),
                    soql::Cond::And(a, b) | soql::Cond::Or(a, b) => {
                        names(a, out);
                        names(b, out)
                    }
                    soql::Cond::Not(a) => names(a, out),
                }
            }
            let mut used = Vec::new();
            names(filter, &mut used);
            self.resolve(&object, &used)?;
        }
        let mut out: Vec<Record> = rows
            .into_iter()
            .filter(|r| all || r.get("IsDeleted") != Some(&Value::Bool(true)))
            .filter(|r| {
                query
                    .filter
                    .as_ref()
                    .is_none_or(|c| soql::matches(c, &|p| get(r, p)))
            })
            .collect();
        let (order, desc) = query.order.clone().unwrap_or(("Id".into(), false));
        out.sort_by(|a, b| {
            let (x, y) = (get(a, &order), get(b, &order));
            let ord = match (&x, &y) {
                (Value::Number(m), Value::Number(n)) => m
                    .as_f64()
                    .partial_cmp(&n.as_f64())
                    .unwrap_or(std::cmp::Ordering::Equal),
                _ => x.to_string().cmp(&y.to_string()),
            };
            if desc {
                ord.reverse()
            } else {
                ord
            }
        });
        if let Some(limit) = query.limit {
            out.truncate(limit);
        }
        Ok((object, selected, query.fields, out))
    }

    /// The value of `rel.name` for a record (null without a parent).
    pub fn related(&self, object: &ObjectDef, record: &Record, rel: &str, name: &str) -> Value {
        let Some(reference) = object.relationship(rel) else {
            return Value::Null;
        };
        let Some(Value::String(parent_id)) = record.get(&reference.name) else {
            return Value::Null;
        };
        self.parent(&reference.reference_to[0], parent_id)
            .and_then(|(target, parent)| {
                target
                    .field(name)
                    .and_then(|f| parent.get(&f.name).cloned())
            })
            .unwrap_or(Value::Null)
    }

    /// A parent record by object and id.
    pub fn parent(&self, object: &str, id: &str) -> Option<(&ObjectDef, &Record)> {
        let def = self.object(object).ok()?;
        let record = self
            .records
            .get(&def.name)?
            .iter()
            .find(|r| r.get("Id").and_then(Value::as_str) == Some(id))?;
        Some((def, record))
    }

    /// Converts a written text value to the stored form of `field` (`Err`: the Bulk
    /// `sf__Error` text, `STATUS_CODE:message:fields --`).
    pub fn convert(field: &FieldDef, text: &str) -> Result<Value, String> {
        wire::parse_value(field, text).map_err(|_| {
            format!(
                "INVALID_TYPE_ON_FIELD_IN_RECORD:{}: value not of required type: {text}:{} --",
                field.name, field.name
            )
        })
    }

    /// Writes records to `--data` (when set).
    pub fn persist(&self, object: &str) {
        if let (Some(dir), Some(records)) = (&self.data_dir, self.records.get(object)) {
            let path = dir.join(format!("{object}.records.json"));
            if let Ok(text) = serde_json::to_vec_pretty(records) {
                if let Err(e) = std::fs::write(&path, text) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot persist records");
                }
            }
        }
    }

    /// Inserts or updates (by `Id`) records given in canonical JSON; bumps modstamps.
    pub fn upsert_admin(
        &mut self,
        object: &str,
        rows: Vec<Record>,
        replace: bool,
    ) -> Result<usize, ApiError> {
        let def = self.object(object)?.clone();
        for row in &rows {
            for key in row.keys() {
                if def.field(key).is_none() {
                    return Err(ApiError::new(
                        400,
                        "INVALID_FIELD",
                        format!("No such column '{key}' on entity '{}'", def.name),
                    ));
                }
            }
        }
        if replace {
            self.records.insert(def.name.clone(), Vec::new());
        }
        let n = rows.len();
        for row in rows {
            let at = self.tick();
            let id = row.get("Id").and_then(Value::as_str).map(str::to_string);
            let existing = id.as_ref().and_then(|id| {
                self.records.get(&def.name).and_then(|rs| {
                    rs.iter()
                        .position(|r| r.get("Id").and_then(Value::as_str) == Some(id))
                })
            });
            let list = self.records.entry(def.name.clone()).or_default();
            match existing {
                Some(i) => {
                    for (k, v) in row {
                        let name = def.field(&k).expect("checked").name.clone();
                        list[i].insert(name, v);
                    }
                    list[i].insert("SystemModstamp".into(), Value::from(stamp(at)));
                    list[i].insert("LastModifiedDate".into(), Value::from(stamp(at)));
                }
                None => {
                    let mut record: Record = def
                        .fields
                        .iter()
                        .filter(|f| !matches!(f.ftype.as_str(), "address" | "location"))
                        .map(|f| (f.name.clone(), Value::Null))
                        .collect();
                    for (k, v) in row {
                        let name = def.field(&k).expect("checked").name.clone();
                        record.insert(name, v);
                    }
                    if record.get("Id").is_none_or(Value::is_null) {
                        self.counter += 1;
                        record.insert(
                            "Id".into(),
                            Value::from(make_id(&def.key_prefix, 0x200000 + self.counter)),
                        );
                    }
                    if record.get("IsDeleted").is_none_or(Value::is_null) {
                        record.insert("IsDeleted".into(), Value::Bool(false));
                    }
                    for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
                        record.insert(f.into(), Value::from(stamp(at)));
                    }
                    self.records
                        .entry(def.name.clone())
                        .or_default()
                        .push(record);
                }
            }
        }
        let now = self.now();
        self.log_unlogged_deletions(now);
        self.persist(&def.name);
        Ok(n)
    }
}
