//! The `salesforce-export` job: for each object (`export.concurrency` at a time), describe →
//! a plan of windows on its cursor (`plan.rs`, `slicing.rs`) → per window, REST pages or Bulk
//! API 2.0 result pages over the routed API (`windows.rs`, `routing.rs`, `stream.rs`) →
//! canonical Arrow → one Parquet file per window under `sf_<object>/snapshot_date=D/`, then
//! deletions beyond the recycle bin (`deletes.rs`), the `sf_<object>_latest` table and Glue
//! (`publish.rs`), and finally the watermark. Every call spends the run's API budget.
//!
//! Order of commits per object: each window's history file (and its checkpoint in the object's
//! state, `checkpoint.rs`), the deletions file, the latest file, table metadata, Glue tables,
//! the watermark. A failure or stop anywhere leaves the watermark where it was and the plan in
//! the state, so the next run reads only the unfinished windows and writes the same keys
//! (nothing is lost, nothing half-written is visible: each file is replaced with one PUT or a
//! multipart upload that only appears when complete).

pub mod checkpoint;
mod deletes;
pub mod ids;
pub mod latest;
mod plan;
mod publish;
pub mod routing;
pub mod slicing;
mod stream;
mod windows;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::StreamExt;

use crate::job::{
    ExportMode, Job, ObjectSpec, SalesforceExport, SalesforceSettings, MAX_BULK_JOBS,
};
use crate::lake::parquet::ParquetError;
use crate::lake::{Access, Location, StoreError};
use crate::observe::progress::Progress;
use crate::observe::reconcile::{ObjectCounts, Reconciliation, Refusal};
use crate::salesforce::budget::ApiBudget;
use crate::salesforce::credentials::{self, CredentialSource};
use crate::salesforce::describe::{self, Column, ObjectDescribe, ValueKind};
use crate::salesforce::{normalize, Client, ClientConfig, SalesforceError};
use crate::state::{self, StateError, StoredColumn, TableMeta};
use crate::window::Window;
use checkpoint::ObjectState;
use routing::Route;
use windows::ObjectRun;
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
    /// Whether the run stopped at its API budget (nothing lost; the next run resumes).
    pub fn is_budget_stop(&self) -> bool {
        matches!(self, ExportError::Salesforce(e) if e.is_budget_stop())
    }

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
    /// How the API was chosen (the routing decision and its reason).
    pub route: String,
    /// Cursor windows the run read (after halving).
    pub slices: usize,
    /// History files written (none when an incremental run found no changes).
    pub history_keys: Vec<String>,
    /// Their size.
    pub history_bytes: u64,
    /// Records an Id reconciliation found deleted beyond the recycle bin (`None`: none ran).
    pub reconciled: Option<u64>,
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
    /// Objects stopped at the API budget, with the reason: their finished slices are kept and
    /// the next run resumes them.
    pub stopped: Vec<(String, String)>,
    /// Salesforce calls: (token, api, retries, relogins).
    pub calls: (u64, u64, u64, u64),
    /// The org's daily API usage as last seen: (used, max); `None` while never seen.
    pub api_usage: Option<(u64, u64)>,
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

/// The cursor span of one query (bounds are whole seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// Lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Whether the lower bound is included (`>=`) or not (`>`).
    pub from_inclusive: bool,
    /// Upper bound.
    pub to: Option<DateTime<Utc>>,
    /// Whether the upper bound is included (`<=`) or not (`<`).
    pub to_inclusive: bool,
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

/// The SOQL of one export: `span` bounds the `cursor` field. No `ORDER BY`: it disables
/// Bulk API 2.0's own chunking and invites timeouts (reference: salesforce-scale.md §1).
pub fn soql(object: &str, fields: &str, filter: Option<&str>, span: &Span, cursor: &str) -> String {
    let mut conditions = Vec::new();
    if let Some(from) = span.from {
        let op = if span.from_inclusive { ">=" } else { ">" };
        conditions.push(format!("{cursor} {op} {}", soql_datetime(from)));
    }
    if let Some(to) = span.to {
        let op = if span.to_inclusive { "<=" } else { "<" };
        conditions.push(format!("{cursor} {op} {}", soql_datetime(to)));
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
            policy: crate::net::RetryPolicy::current(),
        },
        creds,
    )
}

/// A `salesforce-export` run.
pub struct ExportJob<'a> {
    job: &'a Job,
    spec: &'a SalesforceExport,
    lake: Location,
    client: Arc<Client>,
    /// Each object's counts so far, kept when its export fails part-way.
    tally: std::sync::Mutex<BTreeMap<String, ObjectCounts>>,
    /// Bulk query jobs in flight.
    bulk_jobs: tokio::sync::Semaphore,
    /// Shard `I` of `N`: every Nth object of the job, from the I-th.
    shard: Option<(u32, u32)>,
}

impl<'a> ExportJob<'a> {
    /// Opens the lake and prepares the client (the login happens on the first call).
    pub async fn open(
        job: &'a Job,
        spec: &'a SalesforceExport,
        dry_run: bool,
        shard: Option<(u32, u32)>,
    ) -> Result<ExportJob<'a>, ExportError> {
        let access = if dry_run {
            Access::ReadOnly
        } else {
            Access::Create
        };
        let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), access).await?;
        let budget = spec.salesforce.budget;
        let client = client_for(&spec.salesforce)
            .await?
            .with_budget(Arc::new(ApiBudget::new(
                budget.run_percent,
                budget.total_percent,
            )));
        Ok(ExportJob {
            job,
            spec,
            lake,
            client: Arc::new(client),
            tally: Default::default(),
            bulk_jobs: tokio::sync::Semaphore::new(MAX_BULK_JOBS),
            shard,
        })
    }

    /// The objects this run exports: all, or this shard's (object `i` belongs to shard `i % N`,
    /// so shards are disjoint, together cover the job, and do not depend on the org).
    pub fn objects(&self) -> Vec<&'a ObjectSpec> {
        let spec: &'a SalesforceExport = self.spec;
        spec.export
            .objects
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                self.shard
                    .is_none_or(|(index, count)| *i as u32 % count == index)
            })
            .map(|(_, o)| o)
            .collect()
    }

    /// Reads the org's daily allowance from `/limits` into the budget. Best effort: without the
    /// "View Setup and Configuration" permission the `Sforce-Limit-Info` headers still count.
    async fn read_limits(&self) {
        match self.client.daily_api_requests().await {
            Ok((used, max)) => {
                if let Some(budget) = self.client.budget() {
                    budget.observe(used, max);
                }
                tracing::info!(used, max, "daily API allowance (DailyApiRequests)");
            }
            Err(e) if e.is_budget_stop() => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read /limits; the budget follows the Sforce-Limit-Info headers")
            }
        }
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
    async fn count_before(
        &self,
        object: &str,
        filter: Option<&str>,
        span: &Span,
        all: bool,
        cursor: &str,
    ) {
        let text = soql(object, "COUNT()", filter, span, cursor);
        match self.client.query(&text, all).await {
            Ok(page) => self.count(object, |c| c.soql_count = Some(page.total_size)),
            Err(e) => {
                tracing::warn!(object, error = %e, "SELECT COUNT() failed; the reconciliation goes without it")
            }
        }
    }

    /// Each object's history table and schema as the next run writes it: describe (with the
    /// job's field selection) merged with the columns the lake already holds.
    pub async fn table_schemas(&self) -> Result<Vec<(String, SchemaRef)>, ExportError> {
        let mut out = Vec::new();
        for spec in &self.spec.export.objects {
            let (describe, related) = self.describe(spec).await?;
            let selection = self.select(spec, &describe, &related)?;
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

    /// Exports every object of the run, `export.concurrency` at a time; one object's failure
    /// does not stop the others. Objects finish in any order but are reported in the job's, and
    /// each writes only its own keys and state, so the lake is the same at any concurrency.
    pub async fn run(
        &self,
        window: &Window,
        progress: &Progress,
    ) -> Result<ExportReport, ExportError> {
        let started = Instant::now();
        let mut report = ExportReport::default();
        let now = now_seconds();
        self.check_window(window)?;
        self.read_limits().await;
        let outcomes: Vec<_> = futures::stream::iter(self.objects())
            .map(|spec| async move {
                let outcome = self.export_object(spec, window, now, progress).await;
                (spec, outcome)
            })
            .buffered(self.spec.export.concurrency)
            .collect()
            .await;
        for (spec, outcome) in outcomes {
            let mut counts = self.take_counts(&spec.name);
            if let Err(e) = &outcome {
                let reason = crate::observe::cause_chain(e);
                counts.refused = Some(if e.is_budget_stop() {
                    Refusal::Stopped(reason)
                } else if e.is_rejection() {
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
                        route = %r.route,
                        slices = r.slices,
                        rows = r.rows,
                        deleted = r.deleted,
                        latest_rows = r.latest_rows,
                        added_columns = ?r.added_columns,
                        history = ?r.history_keys,
                        seconds = r.seconds,
                        "object exported"
                    );
                    report.objects.push(r);
                }
                Err(e) if e.is_budget_stop() => {
                    tracing::warn!(job = %self.job.name, object = %spec.name, error = %e, "object stopped at the API budget: finished windows are kept, the next run resumes it");
                    report
                        .stopped
                        .push((spec.name.clone(), crate::observe::cause_chain(&e)));
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
        report.api_usage = self
            .client
            .budget()
            .map(|budget| budget.usage())
            .filter(|(_, max)| *max > 0);
        report.lake_requests = self.lake.requests().snapshot();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    async fn save_state(
        &self,
        object: &str,
        object_state: &ObjectState,
    ) -> Result<(), ExportError> {
        Ok(checkpoint::save(&self.lake, &self.job.name, object, object_state).await?)
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
        let selection = self.select(spec, &describe, &related)?;
        for (field, reason) in &selection.skipped {
            tracing::info!(object = %spec.name, field = %field, reason = %reason, "field not exported");
        }
        let mut meta: TableMeta = state::load_table_meta(&self.lake, &table).await?;
        let (table_columns, added) = table_columns(&table, &meta.columns, &selection.columns)?;
        let table_schema = normalize::schema(&table_columns);
        let incremental = self.spec.export.mode == ExportMode::Incremental;
        let cursor = slicing::cursor_field(&describe);
        let cursor_name = cursor.unwrap_or("SystemModstamp");
        let mut object_state = checkpoint::load(&self.lake, &self.job.name, &spec.name).await?;
        // Only a scheduled incremental run checkpoints its plan and moves the watermark.
        let persist = incremental && window.is_open() && cursor.is_some();
        let mut route = Route::of(
            &spec.name,
            self.spec.salesforce.api,
            object_state.route.as_ref(),
        );
        let watermark_before = object_state.watermark;
        let mut plan = match object_state.plan.clone().filter(|_| persist) {
            Some(plan) => {
                tracing::warn!(object = %spec.name, done = plan.slices.iter().filter(|s| s.done).count(), windows = plan.slices.len(), until = %plan.until, "resuming the unfinished run of this object (killed or stopped before): only its unfinished windows are read");
                plan
            }
            None => {
                let plan = self.new_plan(cursor, &object_state, window, now).await?;
                if persist {
                    object_state.plan = Some(plan.clone());
                    self.save_state(&spec.name, &object_state).await?;
                    crate::fault_point!("export-after-plan");
                }
                plan
            }
        };
        let overall = plan.pending_span();
        let (since, until) = (overall.from, overall.to.filter(|_| incremental));
        self.count_before(
            &spec.name,
            spec.filter.as_deref(),
            &overall,
            incremental,
            cursor_name,
        )
        .await;

        let windows::WindowsRead {
            mut written,
            deleted,
            rest_total,
            api,
        } = self
            .read_windows(
                &ObjectRun {
                    spec,
                    table: &table,
                    schema: &table_schema,
                    columns: Arc::new(selection.columns.clone()),
                    fields: selection.soql_fields(),
                    cursor,
                    incremental,
                    persist,
                    now,
                },
                &mut plan,
                &mut object_state,
                &mut route,
                progress,
            )
            .await?;
        let any_bulk = plan.slices.iter().any(|s| s.api.as_deref() == Some("bulk"));
        let rows = plan.rows();
        self.count(&spec.name, |c| {
            c.api = Some(api.name().to_string());
            c.deleted = deleted;
            // Bulk's numberRecordsProcessed, with REST's totalSize for windows REST read.
            c.processed = c.processed.filter(|_| any_bulk).map(|p| p + rest_total);
        });

        // Deletions the recycle bin no longer shows (only scheduled runs move the watermark).
        let tombstones = match watermark_before.filter(|_| persist && !plan.full) {
            Some(watermark) => {
                self.deletions(spec, &route, &table, watermark, plan.until)
                    .await?
            }
            None => deletes::Deletions::default(),
        };
        let reconciled = tombstones.reconciled;
        if !tombstones.ids.is_empty() {
            let key = history_key(
                &table,
                plan.day,
                &format!("part-deletes-{}", plan.until.format("%Y%m%dT%H%M%SZ")),
            );
            let mut file = PartWriter::start(table_schema.clone())?;
            file.write(deletes::tombstone_batch(&table_schema, &tombstones.ids)?)
                .await?;
            let (_, path) = file.finish().await?;
            self.lake.put_file(&key, &path).await?;
            crate::fault_point!("export-after-deletes-file");
            written.insert(key, file);
        }

        // Every history file of the plan, in key order (slices of one day sort by their lower
        // bound; the deletions file last), read back from the lake when an earlier run wrote it.
        let mut keys: Vec<String> = plan
            .slices
            .iter()
            .filter(|s| s.rows > 0 || !incremental)
            .map(|s| {
                let part = if incremental {
                    s.part_name()
                } else {
                    "part-00000".to_string()
                };
                history_key(&table, plan.day, &part)
            })
            .collect();
        keys.extend(
            written
                .keys()
                .filter(|k| k.contains("/part-deletes-"))
                .cloned(),
        );
        let scratch = tempfile::Builder::new()
            .prefix("cxlake-history-")
            .tempdir()
            .map_err(|e| ParquetError::Spill("temporary folder".into(), e))?;
        let mut change_files = Vec::new();
        let mut history_bytes = 0;
        let mut rows_written = 0;
        for (n, key) in keys.iter().enumerate() {
            let path = match written.get_mut(key) {
                Some(writer) => writer.path().to_path_buf(),
                None => {
                    let path = scratch.path().join(format!("{n}.parquet"));
                    self.lake.get_to_file(key, &path).await?;
                    path
                }
            };
            history_bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
            // What this run wrote (a resumed plan's earlier windows were counted by their run).
            if written.contains_key(key) && !key.contains("/part-deletes-") {
                rows_written += file_rows(&path)?;
            }
            change_files.push(path);
        }

        let latest_rows = if change_files.is_empty() {
            None
        } else if !incremental {
            self.lake.copy(&keys[0], &latest_key(&table)).await?;
            Some(rows)
        } else {
            Some(
                self.rewrite_latest(&table, &change_files, &table_schema)
                    .await?,
            )
        };
        if latest_rows.is_some() {
            crate::fault_point!("export-after-latest-file");
        }

        meta.columns = table_columns
            .iter()
            .map(|c| StoredColumn {
                name: c.name.clone(),
                path: c.path.clone(),
                kind: c.kind.name().to_string(),
            })
            .collect();
        state::save_table_meta(&self.lake, &table, &meta).await?;
        crate::fault_point!("export-after-table-meta");
        let snapshot_dates: Vec<String> = (!keys.is_empty())
            .then(|| plan.day.format("%Y-%m-%d").to_string())
            .into_iter()
            .collect();
        self.sync_catalog(&table, &table_schema, &snapshot_dates)
            .await?;
        if persist {
            object_state.watermark = Some(plan.until);
            if plan.full {
                object_state.formulas_refreshed = Some(plan.until);
            }
            object_state.plan = None;
            crate::fault_point!("export-before-watermark");
            self.save_state(&spec.name, &object_state).await?;
            crate::fault_point!("export-after-watermark");
        }
        self.count(&spec.name, |c| {
            c.written = rows_written;
            c.partition = (!keys.is_empty())
                .then(|| format!("snapshot_date={}", plan.day.format("%Y-%m-%d")));
            c.route = Some(route.describe());
        });
        Ok(ObjectReport {
            object: spec.name.clone(),
            table,
            api,
            route: route.describe(),
            slices: plan.slices.len(),
            rows,
            deleted,
            history_keys: keys,
            history_bytes,
            rows_written,
            latest_rows,
            reconciled,
            added_columns: added,
            skipped_fields: selection.skipped,
            since,
            until,
            seconds: started.elapsed().as_secs_f64(),
        })
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
            soql("Case", "Id, Subject", Some("Origin = 'Phone'"), &span, "SystemModstamp"),
            "SELECT Id, Subject FROM Case WHERE SystemModstamp > 2024-03-10T07:30:00Z AND SystemModstamp <= 2024-03-11T00:00:00Z AND (Origin = 'Phone')"
        );
        assert_eq!(
            soql("Account", "Id", None, &Span::default(), "CreatedDate"),
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
