//! The `salesforce-export` job: for each object, describe → SOQL → REST pages or Bulk API 2.0
//! result pages → canonical Arrow → one Parquet file under `sf_<object>/snapshot_date=D/`,
//! then the `sf_<object>_latest` table, Glue, and finally the watermark.
//!
//! Order of commits per object: history file, latest file, table metadata, Glue tables, state.
//! A failure anywhere leaves the watermark where it was, so the next run repeats the work and
//! writes the same keys again (nothing is lost, nothing half-written is visible: each file is
//! replaced with one PUT or a multipart upload that only appears when complete).

pub mod latest;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{FuturesOrdered, StreamExt};

use crate::job::{ApiChoice, ExportMode, Job, ObjectSpec, SalesforceExport, SalesforceSettings};
use crate::lake::parquet::{align, ParquetError};
use crate::lake::{Access, Location, StoreError};
use crate::observe::progress::Progress;
use crate::observe::reconcile::{ObjectCounts, Reconciliation, Refusal};
use crate::salesforce::credentials::{self, CredentialSource};
use crate::salesforce::describe::{self, Column, ObjectDescribe, ValueKind};
use crate::salesforce::{normalize, Client, ClientConfig, SalesforceError};
use crate::state::{self, StateError, StoredColumn, TableMeta};
use crate::window::Window;
use writer::PartWriter;

/// Export errors.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Salesforce refused or failed.
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    /// Lake storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State or table metadata failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Parquet encoding or decoding failed.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    /// Glue failed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The requested fields cannot be exported.
    #[error(transparent)]
    Select(#[from] describe::SelectError),
    /// A column's type changed in describe; columns are never retyped.
    #[error("{table}.{column}: stored as {stored}, describe now says {now}; columns are never retyped silently{}", migration_hint(.stored, .now))]
    Retyped {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// Stored kind.
        stored: String,
        /// New kind.
        now: String,
    },
    /// The API returned another number of records than it announced.
    #[error("{object}: {what}: expected {expected} records, got {got}; nothing was written")]
    Count {
        /// Object.
        object: String,
        /// Which page or total.
        what: String,
        /// Announced.
        expected: u64,
        /// Received.
        got: u64,
    },
    /// A result page is not a whole, well-formed page (a REST page that is not complete JSON).
    #[error("{page}: {reason}; nothing was written")]
    BadPage {
        /// Object and page, e.g. `Account REST page 2`.
        page: String,
        /// What is wrong.
        reason: String,
    },
    /// The window does not apply to this mode.
    #[error("{0}")]
    Usage(String),
}

impl ExportError {
    /// Whether the object's data was refused (a bad page, a row or value that does not fit, a
    /// count that does not add up) rather than a call failing: the run is partial (exit 3).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            ExportError::Salesforce(SalesforceError::Normalize(_))
                | ExportError::Count { .. }
                | ExportError::BadPage { .. }
        )
    }
}

/// A REST page whose body is not the documented JSON is that page's fault, named as such.
fn page_error(page: String) -> impl FnOnce(SalesforceError) -> ExportError {
    move |error| match error {
        SalesforceError::Protocol(reason) => ExportError::BadPage { page, reason },
        other => other.into(),
    }
}

/// Which API served an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// REST query.
    Rest,
    /// Bulk API 2.0 query job.
    Bulk,
}

impl Api {
    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Api::Rest => "rest",
            Api::Bulk => "bulk",
        }
    }
}

/// What one object's export did.
#[derive(Debug, Clone)]
pub struct ObjectReport {
    /// Object API name.
    pub object: String,
    /// History table.
    pub table: String,
    /// The API used.
    pub api: Api,
    /// Records exported.
    pub rows: u64,
    /// Of which flagged deleted.
    pub deleted: u64,
    /// History file written (None when an incremental run found no changes).
    pub history_key: Option<String>,
    /// Size of that file.
    pub history_bytes: u64,
    /// Rows in the latest table after the run.
    pub latest_rows: Option<u64>,
    /// Columns new to the table in this run.
    pub added_columns: Vec<String>,
    /// Fields not exported, with the reason.
    pub skipped_fields: Vec<(String, String)>,
    /// Rows in the history file written, from its Parquet footer (0 when none was written).
    pub rows_written: u64,
    /// Lower SystemModstamp bound of the query.
    pub since: Option<DateTime<Utc>>,
    /// Upper bound of the window.
    pub until: Option<DateTime<Utc>>,
    /// Seconds spent.
    pub seconds: f64,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct ExportReport {
    /// Objects exported.
    pub objects: Vec<ObjectReport>,
    /// Objects that failed, with the error (others still ran).
    pub failed: Vec<(String, String)>,
    /// Objects whose data was refused (bad page, row or value), with the reason: nothing of
    /// them was written and their watermark did not move.
    pub rejected: Vec<(String, String)>,
    /// Salesforce calls: (token, api, retries, relogins).
    pub calls: (u64, u64, u64, u64),
    /// Lake requests: (get, put, list pages).
    pub lake_requests: (u64, u64, u64),
    /// Wall time.
    pub seconds: f64,
    /// Per object, in the job's order (exported, rejected and failed alike): what the source
    /// counted and sent, and what was written.
    pub counts: Vec<ObjectCounts>,
}

impl ExportReport {
    /// One row per object ([`ObjectCounts::reconcile`] has the rules).
    pub fn reconciliation(&self) -> Vec<Reconciliation> {
        self.counts.iter().map(ObjectCounts::reconcile).collect()
    }
}

/// History table name of an object: `sf_` + snake case (`CX_Interaction__c` → `sf_cx_interaction__c`).
pub fn table_name(object: &str) -> String {
    format!("sf_{}", describe::column_name(object))
}

/// The latest table of a history table.
pub fn latest_table(table: &str) -> String {
    format!("{table}_latest")
}

/// `<table>/snapshot_date=D/<part>.parquet`.
pub fn history_key(table: &str, date: chrono::NaiveDate, part: &str) -> String {
    format!(
        "{table}/snapshot_date={}/{part}.parquet",
        date.format("%Y-%m-%d")
    )
}

/// The one file of a latest table.
pub fn latest_key(table: &str) -> String {
    format!("{}/part-00000.parquet", latest_table(table))
}

/// A SOQL datetime literal: whole seconds, UTC, `Z` (SOQL's documented forms; a `+` offset
/// would need URL-encoding as `%2B`).
fn soql_datetime(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The `SystemModstamp` span of one object's query (bounds are whole seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Whether the lower bound is included (`>=`) or not (`>`).
    pub from_inclusive: bool,
    /// Upper bound.
    pub to: Option<DateTime<Utc>>,
    /// Whether the upper bound is included (`<=`) or not (`<`).
    pub to_inclusive: bool,
    /// Whether the object's watermark moves to `to` after the run.
    pub advance: bool,
}

/// What to do about a retyped column: a double that describe now makes an exact decimal has
/// one documented migration (README, "Exact numbers").
fn migration_hint(stored: &str, now: &str) -> &'static str {
    if stored == "double" && now.starts_with("decimal(") {
        " (currency, percent and scaled numbers are now exact decimals: migrate by re-exporting \
         the object into a fresh table, see README \"Exact numbers\")"
    } else {
        " (export it under another name)"
    }
}

/// The SOQL of one export.
pub fn soql(object: &str, fields: &str, filter: Option<&str>, span: &Span) -> String {
    let mut conditions = Vec::new();
    if let Some(from) = span.from {
        let op = if span.from_inclusive { ">=" } else { ">" };
        conditions.push(format!("SystemModstamp {op} {}", soql_datetime(from)));
    }
    if let Some(to) = span.to {
        let op = if span.to_inclusive { "<=" } else { "<" };
        conditions.push(format!("SystemModstamp {op} {}", soql_datetime(to)));
    }
    if let Some(filter) = filter {
        conditions.push(format!("({filter})"));
    }
    let mut text = format!("SELECT {fields} FROM {object}");
    if !conditions.is_empty() {
        text.push_str(" WHERE ");
        text.push_str(&conditions.join(" AND "));
    }
    text
}

/// The table's columns: the stored ones in their order (fields gone from describe stay),
/// then newly selected ones. Returns the columns and the names added.
pub fn table_columns(
    table: &str,
    stored: &[StoredColumn],
    selected: &[Column],
) -> Result<(Vec<Column>, Vec<String>), ExportError> {
    let mut columns: Vec<Column> = Vec::new();
    for s in stored {
        let kind = ValueKind::parse(&s.kind).unwrap_or(ValueKind::Text);
        if let Some(now) = selected.iter().find(|c| c.name == s.name) {
            if now.kind != kind {
                return Err(ExportError::Retyped {
                    table: table.to_string(),
                    column: s.name.clone(),
                    stored: s.kind.clone(),
                    now: now.kind.name().to_string(),
                });
            }
        }
        columns.push(Column {
            path: s.path.clone(),
            name: s.name.clone(),
            kind,
        });
    }
    let mut added = Vec::new();
    for c in selected {
        if !columns.iter().any(|t| t.name == c.name) {
            added.push(c.name.clone());
            columns.push(c.clone());
        }
    }
    Ok((columns, added))
}

/// Each object's history table and schema as the lake's table metadata remembers them (no
/// Salesforce call); `None` for an object never exported to this lake.
pub async fn stored_table_schemas(
    lake: &Location,
    spec: &SalesforceExport,
) -> Result<Vec<(String, Option<SchemaRef>)>, ExportError> {
    let mut out = Vec::new();
    for object in &spec.export.objects {
        let table = table_name(&object.name);
        let meta: TableMeta = state::load_table_meta(lake, &table).await?;
        let schema = (!meta.columns.is_empty()).then(|| {
            let (columns, _) = table_columns(&table, &meta.columns, &[])
                .expect("stored columns alone never conflict");
            normalize::schema(&columns)
        });
        out.push((table, schema));
    }
    Ok(out)
}

/// Opens the Salesforce client of a job's `[salesforce]` settings.
pub async fn client_for(settings: &SalesforceSettings) -> Result<Client, SalesforceError> {
    let mut creds = credentials::load(&settings.credentials).await?;
    if creds.username.is_none() {
        creds.username = settings.username.clone();
    }
    if settings.credentials == CredentialSource::Env && creds.consumer_key.is_none() {
        return Err(SalesforceError::Config(
            "no Salesforce credentials: set SALESFORCE_CONSUMER_KEY and the keys of the chosen flow, \
             or salesforce.credentials = \"file:<path>\" / a Secrets Manager secret ARN"
                .into(),
        ));
    }
    Client::new(
        ClientConfig {
            login_url: settings.login_url.clone(),
            flow: settings.auth,
            api_version: settings.api_version.clone(),
            ca_file: settings.ca_file.clone(),
            compression: settings.compression,
            max_retries: 5,
            backoff: Duration::from_millis(500),
        },
        creds,
    )
}

/// Where an object's records go: its history file, counted on the run's progress.
struct Sink<'a> {
    writer: &'a mut PartWriter,
    progress: &'a Progress,
}

/// A `salesforce-export` run.
pub struct ExportJob<'a> {
    job: &'a Job,
    spec: &'a SalesforceExport,
    lake: Location,
    client: Arc<Client>,
    /// Each object's counts so far, kept when its export fails part-way.
    tally: std::sync::Mutex<BTreeMap<String, ObjectCounts>>,
}

/// Rows and deletes counted while streaming.
#[derive(Default)]
struct Streamed {
    rows: u64,
    deleted: u64,
}

/// Result pages parsed concurrently (each on the rayon pool) while the next one downloads.
const PARSE_AHEAD: usize = 2;

impl<'a> ExportJob<'a> {
    /// Opens the lake and prepares the client (the login happens on the first call).
    pub async fn open(
        job: &'a Job,
        spec: &'a SalesforceExport,
        dry_run: bool,
    ) -> Result<ExportJob<'a>, ExportError> {
        let access = if dry_run {
            Access::ReadOnly
        } else {
            Access::Create
        };
        let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), access).await?;
        let client = Arc::new(client_for(&spec.salesforce).await?);
        Ok(ExportJob {
            job,
            spec,
            lake,
            client,
            tally: Default::default(),
        })
    }

    /// The lake.
    pub fn lake(&self) -> &Location {
        &self.lake
    }

    /// Updates `object`'s counts.
    fn count(&self, object: &str, update: impl FnOnce(&mut ObjectCounts)) {
        let mut tally = self.tally.lock().expect("tally lock is not poisoned");
        update(
            tally
                .entry(object.to_string())
                .or_insert_with(|| ObjectCounts {
                    object: object.to_string(),
                    table: table_name(object),
                    ..ObjectCounts::default()
                }),
        );
    }

    /// `object`'s counts, now final.
    fn take_counts(&self, object: &str) -> ObjectCounts {
        self.count(object, |_| {});
        let mut tally = self.tally.lock().expect("tally lock is not poisoned");
        tally.remove(object).expect("just inserted")
    }

    /// `SELECT COUNT()` with the export's WHERE, for reconciliation. Best effort: a failure is
    /// logged and leaves the count unknown (the export itself reports real errors).
    async fn count_before(&self, object: &str, filter: Option<&str>, span: &Span, all: bool) {
        let text = soql(object, "COUNT()", filter, span);
        match self.client.query(&text, all).await {
            Ok(page) => self.count(object, |c| c.soql_count = Some(page.total_size)),
            Err(e) => {
                tracing::warn!(object, error = %e, "SELECT COUNT() failed; the reconciliation goes without it")
            }
        }
    }

    /// The SystemModstamp span of one object's query.
    fn bounds(
        &self,
        watermark: Option<DateTime<Utc>>,
        window: &Window,
        now: DateTime<Utc>,
    ) -> Result<Span, ExportError> {
        match self.spec.export.mode {
            ExportMode::Snapshot if window.is_open() => Ok(Span::default()),
            ExportMode::Snapshot => Err(ExportError::Usage(
                "--from/--to select changed records and apply to incremental exports only; a snapshot export reads everything".into(),
            )),
            // (watermark, now]: the next run starts where this one ends.
            ExportMode::Incremental if window.is_open() => Ok(Span {
                from: watermark,
                from_inclusive: false,
                to: Some(now),
                to_inclusive: true,
                advance: true,
            }),
            // [from day, to day + 1): a re-export that leaves the watermark alone.
            ExportMode::Incremental => Ok(Span {
                from: window.start,
                from_inclusive: true,
                to: Some(window.end.unwrap_or(now)),
                to_inclusive: window.end.is_none(),
                advance: false,
            }),
        }
    }

    /// Prints what a run would query (logs in and describes; writes nothing).
    pub async fn plan(&self, window: &Window) -> Result<Vec<String>, ExportError> {
        let state = state::load_job_state(&self.lake, &self.job.name).await?;
        let now = now_seconds();
        let mut lines = Vec::new();
        for spec in &self.spec.export.objects {
            let (describe, related) = self.describe(spec).await?;
            let selection = describe::select(&describe, &spec.fields, &related)?;
            let span = self.bounds(state.objects.get(&spec.name).copied(), window, now)?;
            let text = soql(
                &spec.name,
                &selection.soql_fields(),
                spec.filter.as_deref(),
                &span,
            );
            lines.push(format!(
                "{} -> {} ({} columns{}): {text}",
                spec.name,
                table_name(&spec.name),
                selection.columns.len(),
                if selection.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", skipping {}",
                        selection
                            .skipped
                            .iter()
                            .map(|(f, _)| f.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
        Ok(lines)
    }

    /// Each object's history table and schema as the next run writes it: describe (with the
    /// job's field selection) merged with the columns the lake already holds.
    pub async fn table_schemas(&self) -> Result<Vec<(String, SchemaRef)>, ExportError> {
        let mut out = Vec::new();
        for spec in &self.spec.export.objects {
            let (describe, related) = self.describe(spec).await?;
            let selection = describe::select(&describe, &spec.fields, &related)?;
            let table = table_name(&spec.name);
            let meta: TableMeta = state::load_table_meta(&self.lake, &table).await?;
            let (columns, _) = table_columns(&table, &meta.columns, &selection.columns)?;
            out.push((table, normalize::schema(&columns)));
        }
        Ok(out)
    }

    async fn describe(
        &self,
        spec: &ObjectSpec,
    ) -> Result<(ObjectDescribe, BTreeMap<String, ObjectDescribe>), ExportError> {
        let describe = self.client.describe(&spec.name).await?;
        let mut related = BTreeMap::new();
        for target in describe::related_objects(&describe, &spec.fields) {
            let d = self.client.describe(&target).await?;
            related.insert(target, d);
        }
        Ok((describe, related))
    }

    /// Exports every object; one object's failure does not stop the others.
    pub async fn run(
        &self,
        window: &Window,
        progress: &Progress,
    ) -> Result<ExportReport, ExportError> {
        let started = Instant::now();
        let mut report = ExportReport::default();
        let now = now_seconds();
        // Check the window before touching anything.
        self.bounds(None, window, now)?;
        for spec in &self.spec.export.objects {
            let outcome = self.export_object(spec, window, now, progress).await;
            let mut counts = self.take_counts(&spec.name);
            if let Err(e) = &outcome {
                let reason = crate::observe::cause_chain(e);
                counts.refused = Some(if e.is_rejection() {
                    Refusal::Rejected(reason)
                } else {
                    Refusal::Failed(reason)
                });
            }
            report.counts.push(counts);
            match outcome {
                Ok(r) => {
                    tracing::info!(
                        job = %self.job.name,
                        object = %r.object,
                        table = %r.table,
                        api = r.api.name(),
                        rows = r.rows,
                        deleted = r.deleted,
                        latest_rows = r.latest_rows,
                        added_columns = ?r.added_columns,
                        history = r.history_key.as_deref().unwrap_or("-"),
                        seconds = r.seconds,
                        "object exported"
                    );
                    report.objects.push(r);
                }
                Err(e) if e.is_rejection() => {
                    tracing::warn!(job = %self.job.name, object = %spec.name, error = %e, "object rejected: nothing written, its watermark did not move");
                    report
                        .rejected
                        .push((spec.name.clone(), crate::observe::cause_chain(&e)));
                }
                Err(e) => {
                    tracing::error!(job = %self.job.name, object = %spec.name, error = %e, "object failed; its watermark did not move");
                    report
                        .failed
                        .push((spec.name.clone(), crate::observe::cause_chain(&e)));
                }
            }
        }
        progress.finish();
        report.calls = self.client.counts().snapshot();
        report.lake_requests = self.lake.requests().snapshot();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    async fn export_object(
        &self,
        spec: &ObjectSpec,
        window: &Window,
        now: DateTime<Utc>,
        progress: &Progress,
    ) -> Result<ObjectReport, ExportError> {
        let started = Instant::now();
        let table = table_name(&spec.name);
        let (describe, related) = self.describe(spec).await?;
        let selection = describe::select(&describe, &spec.fields, &related)?;
        for (field, reason) in &selection.skipped {
            tracing::info!(object = %spec.name, field = %field, reason = %reason, "field not exported");
        }
        let mut meta: TableMeta = state::load_table_meta(&self.lake, &table).await?;
        let (table_columns, added) = table_columns(&table, &meta.columns, &selection.columns)?;
        let table_schema = normalize::schema(&table_columns);
        let job_state = state::load_job_state(&self.lake, &self.job.name).await?;
        let span = self.bounds(job_state.objects.get(&spec.name).copied(), window, now)?;
        let (since, until) = (span.from, span.to);
        let incremental = self.spec.export.mode == ExportMode::Incremental;
        let text = soql(
            &spec.name,
            &selection.soql_fields(),
            spec.filter.as_deref(),
            &span,
        );
        tracing::debug!(object = %spec.name, soql = %text, "query");
        self.count_before(&spec.name, spec.filter.as_deref(), &span, incremental)
            .await;

        let mut history = PartWriter::start(table_schema.clone())?;
        let columns = Arc::new(selection.columns.clone());
        let (api, streamed) = self
            .stream(
                &spec.name,
                &text,
                incremental,
                &columns,
                &table_schema,
                &mut Sink {
                    writer: &mut history,
                    progress,
                },
            )
            .await?;
        let (rows, history_file) = history.finish().await?;
        debug_assert_eq!(rows, streamed.rows);
        self.count(&spec.name, |c| {
            c.api = Some(api.name().to_string());
            c.deleted = streamed.deleted;
        });

        let day = until
            .unwrap_or(now)
            .with_timezone(&self.job.timezone)
            .date_naive();
        let part = match (self.spec.export.mode, since) {
            (ExportMode::Snapshot, _) => "part-00000".to_string(),
            (ExportMode::Incremental, None) => "part-initial".to_string(),
            (ExportMode::Incremental, Some(s)) => format!("part-{}", s.format("%Y%m%dT%H%M%S%3fZ")),
        };
        let write_history = rows > 0 || !incremental;
        let history_key = write_history.then(|| history_key(&table, day, &part));
        let mut history_bytes = 0;
        let mut rows_written = 0;
        if let Some(key) = &history_key {
            rows_written = file_rows(&history_file)?;
            self.lake.put_file(key, &history_file).await?;
            history_bytes = std::fs::metadata(&history_file).map_or(0, |m| m.len());
        }

        let latest_rows = if !write_history {
            None
        } else if !incremental {
            self.lake
                .copy(
                    history_key.as_deref().expect("written"),
                    &latest_key(&table),
                )
                .await?;
            Some(rows)
        } else {
            Some(
                self.rewrite_latest(&table, &history_file, &table_schema)
                    .await?,
            )
        };

        meta.columns = table_columns
            .iter()
            .map(|c| StoredColumn {
                name: c.name.clone(),
                path: c.path.clone(),
                kind: c.kind.name().to_string(),
            })
            .collect();
        state::save_table_meta(&self.lake, &table, &meta).await?;
        let snapshot_dates: Vec<String> = history_key
            .iter()
            .map(|_| day.format("%Y-%m-%d").to_string())
            .collect();
        self.sync_catalog(&table, &table_schema, &snapshot_dates)
            .await?;
        if span.advance {
            // Re-read: another object of this run may have moved its own watermark.
            let mut job_state = state::load_job_state(&self.lake, &self.job.name).await?;
            job_state.objects.insert(
                spec.name.clone(),
                until.expect("incremental runs have an upper bound"),
            );
            state::save_job_state(&self.lake, &self.job.name, &job_state).await?;
        }
        self.count(&spec.name, |c| {
            c.written = rows_written;
            c.partition = history_key
                .as_ref()
                .map(|_| format!("snapshot_date={}", day.format("%Y-%m-%d")));
        });
        Ok(ObjectReport {
            object: spec.name.clone(),
            table,
            api,
            rows,
            deleted: streamed.deleted,
            history_key,
            history_bytes,
            rows_written,
            latest_rows,
            added_columns: added,
            skipped_fields: selection.skipped,
            since,
            until,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    async fn rewrite_latest(
        &self,
        table: &str,
        changes: &std::path::Path,
        schema: &SchemaRef,
    ) -> Result<u64, ExportError> {
        let dir = tempfile::Builder::new()
            .prefix("cxlake-latest-")
            .tempdir()
            .map_err(|e| ParquetError::Spill("temporary folder".into(), e))?;
        let previous_path = dir.path().join("previous.parquet");
        let key = latest_key(table);
        let previous = self.lake.get_to_file(&key, &previous_path).await?;
        let mut out = PartWriter::start(schema.clone())?;
        let rows = latest::merge(
            previous.then_some(previous_path.as_path()),
            changes,
            schema,
            &mut out,
        )
        .await?;
        let (_, file) = out.finish().await?;
        self.lake.put_file(&key, &file).await?;
        Ok(rows)
    }

    /// Creates or updates the history and `_latest` tables; registers the history partitions
    /// `snapshot_dates` when the catalog registers partitions.
    async fn sync_catalog(
        &self,
        table: &str,
        schema: &SchemaRef,
        snapshot_dates: &[String],
    ) -> Result<(), ExportError> {
        let Some(catalog) = &self.job.catalog else {
            return Ok(());
        };
        let config = crate::aws::sdk_config(self.job.lake.region.as_deref()).await;
        let glue = aws_sdk_glue::Client::new(&config);
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

    /// Streams the query's records into `out`, choosing REST or Bulk per the job's setting.
    async fn stream(
        &self,
        object: &str,
        soql: &str,
        all: bool,
        columns: &Arc<Vec<Column>>,
        schema: &SchemaRef,
        out: &mut Sink<'_>,
    ) -> Result<(Api, Streamed), ExportError> {
        let settings = &self.spec.salesforce;
        match settings.api {
            ApiChoice::Bulk => Ok((
                Api::Bulk,
                self.stream_bulk(object, soql, all, columns, schema, out)
                    .await?,
            )),
            ApiChoice::Rest => {
                let first = self
                    .client
                    .query(soql, all)
                    .await
                    .map_err(page_error(format!("{object} REST page 1")))?;
                Ok((
                    Api::Rest,
                    self.stream_rest(object, first, columns, schema, out)
                        .await?,
                ))
            }
            ApiChoice::Auto => {
                // The first REST page says how many records match (AppFlow's automatic rule).
                let first = self
                    .client
                    .query(soql, all)
                    .await
                    .map_err(page_error(format!("{object} REST page 1")))?;
                if first.total_size >= settings.bulk_threshold {
                    tracing::info!(
                        object,
                        records = first.total_size,
                        threshold = settings.bulk_threshold,
                        "large result: using Bulk API 2.0"
                    );
                    Ok((
                        Api::Bulk,
                        self.stream_bulk(object, soql, all, columns, schema, out)
                            .await?,
                    ))
                } else {
                    Ok((
                        Api::Rest,
                        self.stream_rest(object, first, columns, schema, out)
                            .await?,
                    ))
                }
            }
        }
    }

    async fn stream_rest(
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
            c.announced = Some(total);
            c.processed = None;
        });
        let mut streamed = Streamed::default();
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

    async fn stream_bulk(
        &self,
        object: &str,
        soql: &str,
        all: bool,
        columns: &Arc<Vec<Column>>,
        schema: &SchemaRef,
        out: &mut Sink<'_>,
    ) -> Result<Streamed, ExportError> {
        let client = &self.client;
        let job = client.create_query_job(soql, all).await?;
        let info = client
            .wait_for_query_job(&job.id, object, Duration::from_millis(50))
            .await?;
        let delimiter = info.delimiter();
        out.progress
            .restart(info.number_records_processed.unwrap_or(0), object);
        self.count(object, |c| {
            // An automatic choice counted REST's first page; these are the Bulk job's figures.
            c.api = Some(Api::Bulk.name().to_string());
            c.announced = Some(0);
            c.processed = info.number_records_processed;
            c.received = 0;
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
            let body = pending.body().await?;
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

    async fn push(
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

/// Rows of a Parquet file on disk, from its footer.
fn file_rows(path: &std::path::Path) -> Result<u64, ParquetError> {
    use ::parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path)
        .map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
    let rows = SerializedFileReader::new(file)?
        .metadata()
        .file_metadata()
        .num_rows();
    Ok(u64::try_from(rows).unwrap_or(0))
}

/// Now, truncated to whole seconds (SOQL literals and watermarks stay readable and exact).
fn now_seconds() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_with_watermark_and_filter() {
        let since = DateTime::parse_from_rfc3339("2024-03-10T07:30:00Z")
            .unwrap()
            .to_utc();
        let until = DateTime::parse_from_rfc3339("2024-03-11T00:00:00Z")
            .unwrap()
            .to_utc();
        let span = Span {
            from: Some(since),
            to: Some(until),
            to_inclusive: true,
            ..Span::default()
        };
        assert_eq!(
            soql("Case", "Id, Subject", Some("Origin = 'Phone'"), &span),
            "SELECT Id, Subject FROM Case WHERE SystemModstamp > 2024-03-10T07:30:00Z AND SystemModstamp <= 2024-03-11T00:00:00Z AND (Origin = 'Phone')"
        );
        assert_eq!(
            soql("Account", "Id", None, &Span::default()),
            "SELECT Id FROM Account"
        );
    }

    #[test]
    fn table_columns_are_add_only() {
        let col = |name: &str, kind| Column {
            path: name.into(),
            name: describe::column_name(name),
            kind,
        };
        let stored = vec![
            StoredColumn {
                name: "id".into(),
                path: "Id".into(),
                kind: "text".into(),
            },
            StoredColumn {
                name: "gone__c".into(),
                path: "Gone__c".into(),
                kind: "double".into(),
            },
        ];
        let (columns, added) = table_columns(
            "sf_x",
            &stored,
            &[col("Id", ValueKind::Text), col("New__c", ValueKind::Date)],
        )
        .unwrap();
        let names: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "gone__c", "new__c"]);
        assert_eq!(added, ["new__c"]);
        let err = table_columns("sf_x", &stored, &[col("Gone__c", ValueKind::Text)]).unwrap_err();
        assert!(err.to_string().contains("never retyped"), "{err}");
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(table_name("CX_Interaction__c"), "sf_cx_interaction__c");
        assert_eq!(
            latest_key("sf_account"),
            "sf_account_latest/part-00000.parquet"
        );
        let d = chrono::NaiveDate::from_ymd_opt(2024, 3, 10).unwrap();
        assert_eq!(
            history_key("sf_account", d, "part-00000"),
            "sf_account/snapshot_date=2024-03-10/part-00000.parquet"
        );
    }
}
