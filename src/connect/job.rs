//! The `connect-intervals` job: discover report files, parse them in parallel, merge each
//! affected day with what the lake already holds (latest export wins), write changed partitions
//! with one PUT each, then catalog and state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};

use super::header::{FileLayout, HeaderError, HEADER_CHARS};
use super::key::ReportKey;
use super::parse::{self, FileContext, RowError};
use super::records::{Record, Records};
use super::schema::{col, ReportSchema};
use super::split::{Chunk, RecordChunker};
use super::value::bounded;
use crate::exec::cpu;
use crate::job::{ConnectSource, Job};
use crate::lake::buffer::{concat_aligned, Evicted, Part, PartitionBuffers, PartitionRows};
use crate::lake::merge::{distinct_keys, latest_per_key, without_sources, RowKey};
use crate::lake::parquet::{self, ParquetError};
use crate::lake::store::Unreadable;
use crate::lake::{layout, Access, Location, StoreError};
use crate::observe::progress::Progress;
use crate::observe::reconcile::{PartitionCounts, Reconciliation};
use crate::state::{self, JobState, RejectReason, SeenObject, StateError, TableMeta};
use crate::window::Window;

mod completeness;

pub use completeness::{CoverageReport, FillPreview, FillReport};

/// Record-aligned chunks of this size are parsed in parallel.
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks of one file parsed at the same time.
const CHUNKS_IN_FLIGHT: usize = 3;
/// Report files fetched and parsed at the same time.
const FILES_IN_FLIGHT: usize = 32;
/// Partitions merged and written at the same time.
const PARTITIONS_IN_FLIGHT: usize = 4;
/// Rows kept in memory before the oldest partitions are compacted.
const MEMORY_BUDGET: usize = 32 << 20;
/// Partitions compacted at the same time.
const COMPACTIONS_IN_FLIGHT: usize = 2;

/// Errors that stop a run (bad inputs do not: they are rejected).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// Encoding failed, or stored data does not fit the table.
    #[error("{context}: {source}")]
    Data {
        /// The partition or object.
        context: String,
        /// The cause.
        #[source]
        source: ParquetError,
    },
    /// The catalog could not be updated (data was written; the next run retries).
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The local spill folder could not be used.
    #[error("spill folder (set TMPDIR to move it): {0}")]
    Spill(#[from] std::io::Error),
}

/// Longest reject reason kept (stdout, logs, `.error.json`); values inside it are cut shorter.
const MAX_REASON_CHARS: usize = 300;

/// Compacts evicted partitions in the background, at most `COMPACTIONS_IN_FLIGHT` at a time.
struct Compactor {
    buffers: Arc<PartitionBuffers>,
    permits: Arc<tokio::sync::Semaphore>,
    tasks: std::sync::Mutex<tokio::task::JoinSet<Result<(), RunError>>>,
    report: &'static ReportSchema,
}

impl Compactor {
    async fn submit(&self, evicted: Evicted) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let buffers = self.buffers.clone();
        let report = self.report;
        let path = buffers.spill_path(evicted.day);
        let day = evicted.day;
        self.tasks
            .lock()
            .expect("task lock is not poisoned")
            .spawn(async move {
                let part = cpu(move || compact(evicted, report, path))
                    .await
                    .map_err(|source| RunError::Data {
                        context: format!("compacting dt={}", layout::day_string(day)),
                        source,
                    })?;
                buffers.add_part(day, part);
                drop(permit);
                Ok(())
            });
    }

    async fn finish(&self) -> Result<(), RunError> {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("task lock is not poisoned"));
        while let Some(done) = tasks.join_next().await {
            done.expect("compaction task does not panic")?;
        }
        Ok(())
    }
}

/// The files a run will read, and the partitions they are expected to land in.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Selected report files, oldest export first.
    pub files: Vec<ReportKey>,
    /// Of those, the ones read before whose ETag or size changed since (re-exports).
    pub changed: BTreeSet<String>,
    /// Report names whose time is after now + one interval: rejected, never loaded, and they
    /// never move the watermark (a name cannot be trusted that far).
    pub future: Vec<ReportKey>,
    /// Objects under the source that are not report files.
    pub skipped: Vec<String>,
    /// Directory entries that cannot be read or named (skipped, reported once).
    pub unreadable: Vec<Unreadable>,
    /// Runs without a window: report names after this time were considered (the watermark
    /// minus the lookback); `None` on the first run, which reads everything.
    pub lookback_from: Option<DateTime<Utc>>,
    /// The job's state when the plan was made (a watermark in the future already dropped).
    pub state: JobState,
    /// The state on record differs from `state` and is rewritten even if no file is read.
    pub state_repaired: bool,
    /// How each selected file was listed (recorded in the state once it is processed).
    pub listed: BTreeMap<String, SeenObject>,
    /// Leave the state where it is (a shard of a backfill: several shards run at once).
    pub hold_watermark: bool,
    /// The run's window (open for a scheduled run).
    pub window: Window,
    /// The shard of a backfill this plan is (`index`, `count`): it accounts only for its days.
    pub shard: Option<(u32, u32)>,
}

/// What happened to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// `YYYY-MM-DD`.
    pub dt: String,
    /// Rows in the partition after the run (counted from the file's Parquet footer).
    pub rows: usize,
    /// Bytes of the file.
    pub bytes: usize,
    /// False when the file already held exactly these bytes (nothing was written).
    pub written: bool,
    /// Data rows this run read into the partition (from files that loaded).
    pub rows_read: usize,
    /// Distinct row keys among them: each must be in the file.
    pub keys_read: usize,
    /// The file's rows by interval start and origin (for the coverage).
    pub interval_rows: super::coverage::IntervalRows,
}

/// A rejected input.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The input's file name.
    pub file_name: String,
    /// Its key relative to the source root (names its copy under `_etl/rejects/<job>/`).
    pub relative: String,
    /// Why.
    pub reason: RejectReason,
    /// The partition its name points to (`YYYY-MM-DD`).
    pub dt: String,
    /// Its CSV records after the header row (the rows that did not land).
    pub rows: u64,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The job.
    pub job: String,
    /// The table written.
    pub table: String,
    /// Files read.
    pub files: usize,
    /// Data rows read (before merging).
    pub rows_read: usize,
    /// Partitions touched.
    pub partitions: Vec<PartitionOutcome>,
    /// Rejected files.
    pub rejected: Vec<Rejected>,
    /// Directory entries of the source that cannot be read or named (skipped).
    pub unreadable: Vec<Unreadable>,
    /// Columns added for unknown headers.
    pub added_columns: Vec<String>,
    /// Catalog outcome, when a catalog is configured.
    pub catalog: Option<crate::catalog::SyncOutcome>,
    /// Seconds the run took.
    pub seconds: f64,
    /// Source requests: (GET, PUT, LIST pages).
    pub source_requests: (u64, u64, u64),
    /// Lake requests: (GET, PUT, LIST pages).
    pub lake_requests: (u64, u64, u64),
    /// Every expected interval of the days the run concerns, and the fill.
    pub coverage: CoverageReport,
}

impl RunReport {
    /// One row per partition the run touched or a rejected file's name points to: rows read
    /// (and their distinct keys), rows in the partition file, rows of rejected files
    /// ([`PartitionCounts::reconcile`] has the rules).
    pub fn reconciliation(&self) -> Vec<Reconciliation> {
        let mut days: BTreeMap<&str, PartitionCounts> = BTreeMap::new();
        let blank = |dt: &str| PartitionCounts {
            table: self.table.clone(),
            dt: dt.to_string(),
            rejects: layout::reject_key(&self.job, ""),
            ..PartitionCounts::default()
        };
        for p in &self.partitions {
            let day = days.entry(&p.dt).or_insert_with(|| blank(&p.dt));
            day.rows_read = p.rows_read as u64;
            day.keys_read = p.keys_read as u64;
            day.rows_written = Some(p.rows as u64);
        }
        for r in &self.rejected {
            let day = days.entry(&r.dt).or_insert_with(|| blank(&r.dt));
            day.rows_rejected += r.rows;
            day.files_rejected += 1;
        }
        days.values().map(PartitionCounts::reconcile).collect()
    }
}

/// Distinct header rows whose mapping a run keeps (a deployment's reports share one or two).
const KNOWN_HEADERS: usize = 64;

/// What a header row maps to: its layout and the batch schema of its files.
type KnownHeader = (Arc<FileLayout>, SchemaRef);

/// Everything a run of one job needs.
pub struct ConnectJob<'a> {
    job: &'a Job,
    source_settings: &'a ConnectSource,
    schema: &'static ReportSchema,
    source: Location,
    lake: Location,
    chunk_bytes: usize,
    files_in_flight: usize,
    /// Header rows seen in this run (raw bytes) and what they map to.
    layouts: std::sync::Mutex<HashMap<Box<[u8]>, KnownHeader>>,
    /// Partition days rows may land in: the projection range, `projection_start` to tomorrow.
    days: std::ops::RangeInclusive<i32>,
}

/// What a [`ConnectJob`] is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read the source and write the lake (a missing `file://` lake folder is created).
    Run,
    /// Plan only: read the source, never create or write the lake.
    DryRun,
    /// Schema and catalog commands: neither folder needs to exist.
    Inspect,
}

impl<'a> ConnectJob<'a> {
    /// How long one report file covers (the job's interval); the name's time is the end of it.
    fn report_span(&self) -> Duration {
        Duration::minutes(i64::from(self.source_settings.interval_minutes))
    }

    /// Opens the source and the lake for `mode`.
    pub async fn open(
        job: &'a Job,
        source: &'a ConnectSource,
        mode: OpenMode,
    ) -> Result<Self, RunError> {
        let (source_access, lake_access) = match mode {
            OpenMode::Run => (Access::MustExist, Access::Create),
            OpenMode::DryRun => (Access::MustExist, Access::ReadOnly),
            OpenMode::Inspect => (Access::ReadOnly, Access::ReadOnly),
        };
        let src = Location::open(&source.url, source.region.as_deref(), source_access).await?;
        let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), lake_access).await?;

        Ok(ConnectJob {
            job,
            source_settings: source,
            schema: ReportSchema::get(source.report),
            source: src,
            lake,
            chunk_bytes: CHUNK_BYTES,
            files_in_flight: FILES_IN_FLIGHT,
            layouts: Default::default(),
            days: projection_days(job, Utc::now()),
        })
    }

    /// Sets how many report files are fetched and parsed at once (S3 GETs in flight).
    pub fn with_concurrency(mut self, files: usize) -> Self {
        self.files_in_flight = files.max(1);
        self
    }

    /// Sets the size of the record-aligned chunks parsed in parallel (tests use tiny ones).
    pub fn with_chunk_bytes(mut self, chunk_bytes: usize) -> Self {
        self.chunk_bytes = chunk_bytes.max(1);
        self
    }

    /// The table this job writes.
    pub fn table(&self) -> &'static ReportSchema {
        self.schema
    }

    /// The lake.
    pub fn lake(&self) -> &Location {
        &self.lake
    }

    /// The source's URL, ending in `/`.
    pub fn source_url(&self) -> &str {
        self.source.url()
    }

    /// Lists the source and selects the files of `window`; without a window, every report in
    /// the lookback window before the watermark that was not processed yet or changed since.
    pub async fn plan(&self, window: Window) -> Result<Plan, RunError> {
        let mut job_state = state::load_job_state(&self.lake, &self.job.name).await?;
        let now = Utc::now();
        let latest_plausible = now + self.report_span();
        let mut state_repaired = false;
        if let Some(mark) = job_state.watermark.filter(|w| *w > latest_plausible) {
            // Written by a version that trusted file names: a name in the future would
            // otherwise hide every real file until then. Read everything once instead.
            tracing::warn!(job = %self.job.name, watermark = %mark, "the stored watermark is in the future (a file name set it); it is dropped and the source is read again");
            job_state.watermark = None;
            job_state.seen.clear();
            state_repaired = true;
        }
        let lookback = Duration::days(i64::from(self.source_settings.lookback_days));
        let lookback_from = job_state
            .watermark
            .filter(|_| window.is_open())
            .map(|mark| mark - lookback);
        // Names at or before this time are not selected: the listing may jump over them for
        // every schedule the state knows (on S3 this saves the pages of older history).
        let not_before = if window.is_open() {
            lookback_from
        } else {
            window.start
        };
        let skip: Vec<(String, String)> = match not_before {
            None => Vec::new(),
            Some(until) => {
                let ranges: BTreeSet<(String, String)> = job_state
                    .seen
                    .keys()
                    .filter_map(|k| ReportKey::parse(k)?.older_names(until))
                    .collect();
                // A range holding another schedule's names would hide them: keep the inner one.
                ranges
                    .iter()
                    .filter(|(from, to)| {
                        !ranges
                            .iter()
                            .any(|(other, _)| other != from && from < other && other <= to)
                    })
                    .cloned()
                    .collect()
            }
        };
        let listing = self.source.list_source(&skip).await?;
        let mut plan = Plan {
            files: Vec::new(),
            changed: BTreeSet::new(),
            future: Vec::new(),
            skipped: Vec::new(),
            unreadable: listing.unreadable,
            lookback_from,
            state: JobState::default(),
            state_repaired,
            listed: BTreeMap::new(),
            hold_watermark: false,
            window,
            shard: None,
        };
        for object in listing.objects {
            let Some(key) = ReportKey::parse(&object.relative) else {
                plan.skipped.push(object.relative);
                continue;
            };
            if key.exported_at > latest_plausible {
                plan.future.push(key);
                continue;
            }
            let version = SeenObject {
                exported_at: key.exported_at,
                size: object.size,
                etag: object.e_tag,
            };
            let selected = if window.is_open() {
                let previous = job_state.seen.get(&key.relative);
                let changed =
                    previous.is_some_and(|p| p.size != version.size || p.etag != version.etag);
                let in_window = lookback_from.is_none_or(|from| key.exported_at > from);
                if in_window && changed {
                    plan.changed.insert(key.relative.clone());
                }
                in_window && (previous.is_none() || changed)
            } else {
                // The file covers [t - interval, t): select it when that overlaps the window.
                let covered_start = key.exported_at - self.report_span();
                window.start.is_none_or(|s| key.exported_at > s)
                    && window.end.is_none_or(|e| covered_start < e)
            };
            if selected {
                plan.listed.insert(key.relative.clone(), version);
                plan.files.push(key);
            }
        }
        plan.files.sort();
        plan.future.sort();
        plan.state = job_state;
        Ok(plan)
    }

    /// Keeps the files of shard `index` of `count`: those whose expected partition day, counted
    /// from 1970-01-01, is `index` modulo `count`. Shards write disjoint partitions and leave the
    /// watermark alone, so they can run at once.
    pub fn shard(&self, plan: &mut Plan, index: u32, count: u32) {
        let in_shard = |key: &ReportKey| {
            let day = chrono::NaiveDate::parse_from_str(&self.expected_dt(key), "%Y-%m-%d")
                .map(layout::day_number)
                .unwrap_or(0);
            day.rem_euclid(count as i32) == index as i32
        };
        plan.files.retain(in_shard);
        // A future name is rejected by one shard only (its reject copy has one writer).
        plan.future.retain(in_shard);
        plan.hold_watermark = true;
        plan.shard = Some((index, count));
    }

    /// The partition a file is expected to land in, from its name (rows decide in the end).
    pub fn expected_dt(&self, key: &ReportKey) -> String {
        let covered = (key.exported_at - self.report_span()).timestamp_millis();
        let local = parse::local_millis(covered, self.job.timezone);
        layout::day_string(local.div_euclid(86_400_000) as i32)
    }

    /// Runs the plan: parse, merge, write, catalog, state; `progress` counts files (and rows).
    pub async fn run(&self, plan: &Plan, progress: &Progress) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let buffers = Arc::new(PartitionBuffers::new(MEMORY_BUDGET)?);
        let compactor = Compactor {
            buffers: buffers.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(COMPACTIONS_IN_FLIGHT)),
            tasks: Default::default(),
            report: self.schema,
        };
        progress.set_total(plan.files.len() as u64);
        let mut rows_so_far = 0usize;
        let results: Vec<FileOutcome> = futures::stream::iter(plan.files.iter().cloned())
            .map(|key| self.load_file(key, &compactor))
            .buffer_unordered(self.files_in_flight)
            .inspect_ok(|outcome| {
                if let (FileOutcome::Loaded { rows, .. }, true) = (outcome, progress.is_shown()) {
                    rows_so_far += rows;
                    progress.message(format!("{rows_so_far} rows"));
                }
                progress.inc(1);
            })
            .try_collect()
            .await?;
        progress.finish();
        compactor.finish().await?;
        drop(compactor);

        let mut report = RunReport {
            job: self.job.name.clone(),
            table: self.schema.table.clone(),
            files: plan.files.len(),
            unreadable: plan.unreadable.clone(),
            ..Default::default()
        };
        for key in &plan.future {
            report.rejected.push(Rejected {
                file_name: key.file_name().to_string(),
                relative: key.relative.clone(),
                reason: RejectReason {
                    source_key: self.source_key(key),
                    line: None,
                    column: None,
                    column_number: None,
                    reason: format!(
                        "the time in the file name, {}, is more than one interval in the future; the file is not loaded and does not move the watermark",
                        key.exported_at.format("%Y-%m-%dT%H:%M:%SZ")
                    ),
                },
                dt: self.expected_dt(key),
                rows: 0,
            });
        }
        let mut new_columns = BTreeSet::new();
        let mut rejected_sources = Vec::new();
        let mut read_by_day: BTreeMap<String, usize> = BTreeMap::new();
        let mut empty_reports = Vec::new();
        for outcome in &results {
            match outcome {
                FileOutcome::Loaded {
                    rows,
                    unknown_columns,
                    rows_by_day,
                    interval,
                } => {
                    if *rows == 0 {
                        empty_reports.push(*interval);
                    }
                    report.rows_read += rows;
                    for (day, n) in rows_by_day {
                        *read_by_day.entry(layout::day_string(*day)).or_default() += n;
                    }
                    // Only a file that loaded whole, with rows, adds columns.
                    if *rows > 0 {
                        new_columns.extend(unknown_columns.iter().cloned());
                    }
                }
                FileOutcome::Rejected(r) => {
                    rejected_sources.push(r.reason.source_key.clone());
                    report.rejected.push(r.clone());
                }
            }
        }
        report.rejected.sort_by(|a, b| a.relative.cmp(&b.relative));

        let mut meta = state::load_table_meta(&self.lake, &self.schema.table).await?;
        let known: std::collections::HashSet<String> = meta.extra_columns.iter().cloned().collect();
        for column in new_columns {
            if !known.contains(&column) {
                meta.extra_columns.push(column.clone());
                report.added_columns.push(column);
            }
        }
        let table_schema = self.schema.table_schema(&meta.extra_columns);

        let buffers = Arc::into_inner(buffers).expect("all file and compaction tasks are done");
        let (partitions, spill) = buffers.into_partitions();
        report.partitions = self
            .write_partitions(partitions, &table_schema, Arc::new(rejected_sources))
            .await?;
        drop(spill);
        for partition in &mut report.partitions {
            partition.rows_read = read_by_day.get(&partition.dt).copied().unwrap_or(0);
        }

        for r in &mut report.rejected {
            let content = self.source.get(&r.relative).await?.unwrap_or_default();
            r.rows = data_records(&content);
            state::write_reject(&self.lake, &self.job.name, &r.relative, content, &r.reason)
                .await?;
            crate::fault_point!("connect-after-reject");
        }
        if !report.added_columns.is_empty() {
            state::save_table_meta(&self.lake, &self.schema.table, &meta).await?;
            crate::fault_point!("connect-after-table-meta");
        }
        report.coverage = self
            .account(plan, &mut report, &empty_reports, &table_schema)
            .await?;
        if let Some(catalog) = &self.job.catalog {
            let days: Vec<String> = report.partitions.iter().map(|p| p.dt.clone()).collect();
            let covered: Vec<String> = report
                .coverage
                .days
                .keys()
                .map(|d| layout::day_string(*d))
                .collect();
            let [data, _] = self
                .sync_catalog(catalog, &table_schema, &days, &covered)
                .await?;
            report.catalog = Some(data);
        }
        // State moves only after data and catalog are committed: a failed run repeats its files.
        if !plan.hold_watermark {
            let job_state = self.next_state(plan, &report.coverage);
            if plan.state_repaired || job_state != plan.state {
                crate::fault_point!("connect-before-state");
                state::save_job_state(&self.lake, &self.job.name, &job_state).await?;
                crate::fault_point!("connect-after-state");
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        report.source_requests = self.source.requests().snapshot();
        report.lake_requests = self.lake.requests().snapshot();
        Ok(report)
    }

    /// The state after `plan` was processed: its files remembered (loaded or rejected alike, so
    /// a bad file is reported once), the watermark at the newest name read, and objects older
    /// than the lookback window forgotten.
    fn next_state(&self, plan: &Plan, coverage: &CoverageReport) -> JobState {
        let mut job_state = plan.state.clone();
        for key in &plan.files {
            if let Some(version) = plan.listed.get(&key.relative) {
                job_state.seen.insert(key.relative.clone(), version.clone());
            }
        }
        job_state.coverage = self.coverage_marks(plan).map(|mut marks| {
            marks.missing_days = self.days_to_recheck(&marks.missing_days, coverage);
            marks
        });
        let newest = plan.files.iter().map(|k| k.exported_at).max();
        if let Some(newest) = newest.filter(|n| job_state.watermark.is_none_or(|w| *n > w)) {
            job_state.watermark = Some(newest);
        }
        if let Some(mark) = job_state.watermark {
            let from = mark - Duration::days(i64::from(self.source_settings.lookback_days));
            job_state.seen.retain(|_, seen| seen.exported_at > from);
        }
        job_state
    }

    /// Creates or updates the Glue tables of this job, its interval table and the coverage
    /// table, and registers `partitions` and `covered` (`YYYY-MM-DD`) as their partitions when
    /// the catalog registers partitions. Returns the two tables' outcomes.
    pub async fn sync_catalog(
        &self,
        catalog: &crate::job::CatalogSettings,
        table_schema: &SchemaRef,
        partitions: &[String],
        covered: &[String],
    ) -> Result<[crate::catalog::SyncOutcome; 2], RunError> {
        let config = crate::aws::sdk_config(self.job.lake.region.as_deref()).await;
        let client = crate::aws::glue_client(&config);
        let table =
            |name: &str, description: &str, schema: SchemaRef| crate::catalog::TableDefinition {
                name: name.to_string(),
                description: description.to_string(),
                schema,
                location: self.lake.url_of(&layout::table_prefix(name)),
                partition: Some(catalog.date_partition("dt")),
            };
        let data = table(
            &self.schema.table,
            &self.schema.description,
            table_schema.clone(),
        );
        let coverage = table(
            super::coverage::TABLE,
            super::coverage::DESCRIPTION,
            super::coverage::schema(),
        );
        let mut outcomes = Vec::with_capacity(2);
        for (definition, days) in [(&data, partitions), (&coverage, covered)] {
            outcomes
                .push(crate::catalog::sync_table(&client, &catalog.database, definition).await?);
            crate::catalog::register_partitions(&client, &catalog.database, definition, days)
                .await?;
        }
        Ok([outcomes[0], outcomes[1]])
    }

    /// The table schema as stored (known columns plus those added so far).
    pub async fn table_schema(&self) -> Result<SchemaRef, RunError> {
        let meta: TableMeta = state::load_table_meta(&self.lake, &self.schema.table).await?;
        Ok(self.schema.table_schema(&meta.extra_columns))
    }

    /// The lineage value of a report: its URL as the job names the source.
    fn source_key(&self, key: &ReportKey) -> String {
        self.source.url_of(&key.relative)
    }

    /// Reads one report file into the buffers; a bad file is rejected, never fatal.
    async fn load_file(
        &self,
        key: ReportKey,
        compactor: &Compactor,
    ) -> Result<FileOutcome, RunError> {
        let source_key: Arc<str> = self.source_key(&key).into();
        let reject = |line: Option<u64>, column: Option<(usize, String)>, reason: String| {
            let (column_number, column) = column.unzip();
            FileOutcome::Rejected(Rejected {
                file_name: key.file_name().to_string(),
                relative: key.relative.clone(),
                reason: RejectReason {
                    source_key: source_key.to_string(),
                    line,
                    column: column.map(|c| bounded(&c, HEADER_CHARS)),
                    column_number: column_number.map(|n| n as u64),
                    reason: bounded(&reason, MAX_REASON_CHARS),
                },
                dt: self.expected_dt(&key),
                rows: 0,
            })
        };
        let mut body = self.source.open_body(&key.relative).await?;
        let mut chunker = RecordChunker::new(self.chunk_bytes);
        let mut context: Option<FileContext> = None;
        let mut pending = futures::stream::FuturesOrdered::new();
        let mut rows = 0usize;
        let mut rows_by_day = BTreeMap::new();
        let mut at_start = true;
        let mut failure: Option<RowError> = None;
        let mut finished = false;
        while !finished {
            let piece = body.next().await.map_err(|source| StoreError::Request {
                url: source_key.to_string(),
                source,
            })?;
            let chunk = match piece {
                Some(mut bytes) => {
                    if std::mem::take(&mut at_start) && bytes.starts_with(b"\xef\xbb\xbf") {
                        bytes = bytes.slice(3..);
                    }
                    chunker.push(&bytes)
                }
                None => {
                    finished = true;
                    std::mem::replace(&mut chunker, RecordChunker::new(0)).finish()
                }
            };
            let Some(chunk) = chunk else { continue };
            let (ctx, data, first_line) = match &context {
                Some(ctx) => (ctx.clone(), chunk.bytes, chunk.first_line),
                None => match self.read_header(&key, &source_key, chunk) {
                    Ok(parts) => {
                        context = Some(parts.0.clone());
                        parts
                    }
                    Err((line, column, reason)) => return Ok(reject(line, column, reason)),
                },
            };
            pending.push_back(cpu(move || parse::parse_rows(&ctx, &data, first_line)));
            // Keep at most CHUNKS_IN_FLIGHT chunks parsing; the last pass drains them all.
            let keep = if finished { 0 } else { CHUNKS_IN_FLIGHT - 1 };
            while pending.len() > keep {
                let parsed = pending.next().await;
                self.absorb(
                    parsed,
                    compactor,
                    &source_key,
                    (&mut rows, &mut rows_by_day),
                    &mut failure,
                )
                .await?;
            }
        }
        while let Some(parsed) = pending.next().await {
            self.absorb(
                Some(parsed),
                compactor,
                &source_key,
                (&mut rows, &mut rows_by_day),
                &mut failure,
            )
            .await?;
        }
        if let Some(e) = failure {
            let column = e.column_number.zip(e.column);
            return Ok(reject(Some(e.line), column, e.reason));
        }
        let Some(ctx) = context else {
            return Ok(reject(
                None,
                None,
                "the file is empty (no header row)".into(),
            ));
        };
        Ok(FileOutcome::Loaded {
            rows,
            unknown_columns: ctx.layout.unknown.iter().map(|(_, n)| n.clone()).collect(),
            rows_by_day,
            interval: self.named_interval(&key),
        })
    }

    /// Parses the header row at the start of the first chunk.
    #[allow(clippy::type_complexity)]
    fn read_header(
        &self,
        key: &ReportKey,
        source_key: &Arc<str>,
        chunk: Chunk,
    ) -> Result<(FileContext, Vec<u8>, u64), (Option<u64>, Option<(usize, String)>, String)> {
        let mut reader = Records::new(&chunk.bytes);
        let mut record = Record::default();
        if !reader.read(&mut record) {
            return Err((None, None, "the file is empty (no header row)".into()));
        }
        let mut header = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => header.push(text),
                Err(e) => {
                    return Err((
                        Some(1),
                        None,
                        format!(
                            "unreadable header row: column {} is not UTF-8 text (bad byte at {})",
                            i + 1,
                            e.valid_up_to()
                        ),
                    ))
                }
            }
        }
        let mut offset = reader.position();
        drop(reader);
        // csv stops after the '\r' of a CRLF header; the data starts after the '\n'.
        if chunk.bytes.get(offset) == Some(&b'\n') {
            offset += 1;
        }
        // A header row cut short, or ended by something other than a newline, is not a header.
        match offset.checked_sub(1).map(|last| chunk.bytes[last]) {
            Some(b'\n') => {}
            _ if offset >= chunk.bytes.len() => {
                return Err((
                    Some(1),
                    None,
                    "the file ends inside the header row (no newline after it): a cut-off upload"
                        .into(),
                ))
            }
            _ => {
                return Err((
                    Some(1),
                    None,
                    "the header row does not end with a newline (CR-only or broken line ends)"
                        .into(),
                ))
            }
        }
        // Reports of one job share a handful of header rows: map each distinct row once.
        let raw_header = &chunk.bytes[..offset];
        let cached = self
            .layouts
            .lock()
            .expect("layout cache lock is not poisoned")
            .get(raw_header)
            .cloned();
        let (layout, batch_schema) = match cached {
            Some(known) => known,
            None => {
                let layout = FileLayout::from_headers(self.schema, header.iter().copied())
                    .map_err(|e: HeaderError| {
                        let column = e.column_number().map(|n| {
                            (
                                n,
                                header.get(n - 1).copied().unwrap_or_default().to_string(),
                            )
                        });
                        (Some(1), column, e.to_string())
                    })?;
                let batch_schema = FileContext::batch_schema(self.schema, &layout);
                let known = (Arc::new(layout), batch_schema);
                let mut layouts = self
                    .layouts
                    .lock()
                    .expect("layout cache lock is not poisoned");
                // Bounded: files whose column order varies endlessly must not grow memory.
                if layouts.len() >= KNOWN_HEADERS {
                    layouts.clear();
                }
                layouts.insert(raw_header.into(), known.clone());
                known
            }
        };
        let header_lines = chunk.bytes[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        let ctx = FileContext {
            schema: self.schema,
            batch_schema,
            layout,
            instance: self.source_settings.instance.as_str().into(),
            source_key: source_key.clone(),
            exported_at_ms: key.exported_at.timestamp_millis(),
            timezone: self.job.timezone,
            interval_ms: i64::from(self.source_settings.interval_minutes) * 60_000,
            days: self.days.clone(),
        };
        let mut data = chunk.bytes;
        data.drain(..offset);
        Ok((ctx, data, chunk.first_line + header_lines))
    }

    /// Moves one parsed chunk into the buffers, compacting partitions the buffers hand back;
    /// counts its rows, in all and by day.
    async fn absorb(
        &self,
        parsed: Option<Result<Vec<parse::DayBatch>, RowError>>,
        compactor: &Compactor,
        source_key: &Arc<str>,
        (rows, rows_by_day): (&mut usize, &mut BTreeMap<i32, usize>),
        failure: &mut Option<RowError>,
    ) -> Result<(), RunError> {
        match parsed {
            None => Ok(()),
            Some(Err(e)) => {
                if failure.as_ref().is_none_or(|f| e.line < f.line) {
                    *failure = Some(e);
                }
                Ok(())
            }
            Some(Ok(days)) => {
                for day in days {
                    *rows += day.batch.num_rows();
                    *rows_by_day.entry(day.day).or_default() += day.batch.num_rows();
                    let evicted = compactor
                        .buffers
                        .add(day.day, day.batch, source_key)
                        .map_err(|source| RunError::Data {
                            context: "buffering rows".into(),
                            source,
                        })?;
                    if let Some(evicted) = evicted {
                        compactor.submit(evicted).await;
                    }
                }
                Ok(())
            }
        }
    }

    /// Merges each partition with the lake's file and writes those that changed.
    async fn write_partitions(
        &self,
        partitions: BTreeMap<i32, PartitionRows>,
        table_schema: &SchemaRef,
        rejected: Arc<Vec<String>>,
    ) -> Result<Vec<PartitionOutcome>, RunError> {
        let table = &self.schema.table;
        let existing: BTreeSet<i32> = self
            .lake
            .list(&layout::table_prefix(table))
            .await?
            .iter()
            .filter_map(|o| layout::parse_partition_file(table, &o.relative))
            .collect();
        let report = self.schema;
        let outcomes: Vec<Option<PartitionOutcome>> = futures::stream::iter(partitions)
            .map(|(day, rows)| {
                let key = layout::partition_file(table, day);
                let exists = existing.contains(&day);
                let schema = table_schema.clone();
                let rejected = rejected.clone();
                async move {
                    let old = if exists {
                        self.lake.get(&key).await?
                    } else {
                        None
                    };
                    let context = self.lake.url_of(&key);
                    let old_for_merge = old.clone();
                    let merged = cpu(move || {
                        merge_partition(rows, old_for_merge, &schema, &rejected, report)
                    })
                    .await
                    .map_err(|source| RunError::Data { context, source })?;
                    let Some((bytes, row_count, keys_read)) = merged else {
                        return Ok(None);
                    };
                    let written = old.as_deref() != Some(&bytes[..]);
                    let size = bytes.len();
                    let counted = bytes.clone();
                    let context = self.lake.url_of(&key);
                    let interval_rows = cpu(move || super::coverage::partition_rows(counted))
                        .await
                        .map_err(|source| RunError::Data { context, source })?;
                    if written {
                        self.lake.put(&key, bytes).await?;
                        crate::fault_point!("connect-after-partition-put");
                    }
                    tracing::info!(table, partition = %key, rows = row_count, bytes = size, written, "partition");
                    Ok::<_, RunError>(Some(PartitionOutcome {
                        dt: layout::day_string(day),
                        rows: row_count,
                        bytes: size,
                        written,
                        rows_read: 0,
                        keys_read,
                        interval_rows,
                    }))
                }
            })
            .buffered(PARTITIONS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(outcomes.into_iter().flatten().collect())
    }
}

/// Day numbers of the table's partition projection: `projection_start` (the catalog's, or the
/// default without one) to tomorrow (UTC), as Athena's `NOW+1DAYS`.
fn projection_days(job: &Job, now: DateTime<Utc>) -> std::ops::RangeInclusive<i32> {
    let start = job.catalog.as_ref().map_or_else(
        || {
            chrono::NaiveDate::parse_from_str(crate::job::DEFAULT_PROJECTION_START, "%Y-%m-%d")
                .expect("the default projection start is a date")
        },
        |c| c.projection_start,
    );
    layout::day_number(start)..=layout::day_number(now.date_naive()) + 1
}

enum FileOutcome {
    Loaded {
        rows: usize,
        unknown_columns: Vec<String>,
        /// Rows by partition day.
        rows_by_day: BTreeMap<i32, usize>,
        /// The interval its name points to (UTC epoch milliseconds).
        interval: i64,
    },
    Rejected(Rejected),
}

/// CSV records after the header row of a report file (what Python's `csv` module counts; a
/// file broken part-way counts the records before the break).
fn data_records(content: &[u8]) -> u64 {
    let content = content.strip_prefix(b"\xef\xbb\xbf").unwrap_or(content);
    let records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(content)
        .records()
        .take_while(Result::is_ok)
        .count() as u64;
    records.saturating_sub(1)
}

/// Sorts and encodes evicted rows as a part; a part with one row per key can become the file as is.
fn compact(
    evicted: Evicted,
    report: &ReportSchema,
    path: std::path::PathBuf,
) -> Result<Part, ParquetError> {
    let batch = concat_aligned(&evicted.batches)?;
    let schema = batch.schema();
    let (merged, dropped) =
        latest_per_key(&schema, std::slice::from_ref(&batch), &row_key(report))?;
    let (rows, final_form) = if dropped == 0 {
        (merged, true)
    } else {
        (batch, false)
    };
    std::fs::write(&path, parquet::encode(&rows)?)
        .map_err(|e| ParquetError::Spill(path.display().to_string(), e))?;
    Ok(Part {
        path,
        schema,
        final_form,
    })
}

/// One row per (name, interval, instance); the latest export wins, then the greater source key.
fn row_key(schema: &ReportSchema) -> RowKey {
    let source_key = schema.source_key_index();
    RowKey {
        key: vec![col::NAME, col::INTERVAL_START, col::INSTANCE],
        version: vec![source_key + 1, source_key],
    }
}

/// Builds a partition's final bytes, their row count (from the footer) and the number of
/// distinct keys among this run's rows; `None` when no rows remain (all rejected).
fn merge_partition(
    rows: PartitionRows,
    old: Option<Bytes>,
    schema: &SchemaRef,
    rejected: &[String],
    report: &ReportSchema,
) -> Result<Option<(Bytes, usize, usize)>, ParquetError> {
    let source_index = report.source_key_index();
    tracing::debug!(
        parts = rows.parts.len(),
        batches = rows.batches.len(),
        sources = rows.sources.len(),
        "merging partition"
    );

    let clean = !rows
        .sources
        .iter()
        .any(|s| rejected.iter().any(|r| **r == **s));
    if let ([part], true, None, true) = (&rows.parts[..], rows.batches.is_empty(), &old, clean) {
        if part.final_form && part.schema.fields() == schema.fields() {
            // One row per key, all of this run.
            let bytes = read_part(part)?;
            let count = parquet_rows(&bytes)?;
            return Ok(Some((bytes, count, count)));
        }
    }
    let mut new: Vec<RecordBatch> = Vec::new();
    for part in &rows.parts {
        new.extend(parquet::decode(read_part(part)?)?);
    }
    new.extend(rows.batches);
    let new = new
        .iter()
        .map(|b| {
            parquet::align(b, schema).and_then(|b| without_sources(&b, source_index, rejected))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys_read = distinct_keys(&new, &row_key(report))?;
    let mut batches: Vec<RecordBatch> = Vec::new();
    if let Some(old) = old {
        // A source read again replaces all its earlier rows (a file corrected in place may drop rows).
        let reread: Vec<String> = rows
            .sources
            .iter()
            .map(|s| s.to_string())
            .chain(rejected.iter().cloned())
            .collect();
        for batch in parquet::decode(old)? {
            batches.push(without_sources(
                &parquet::align(&batch, schema)?,
                source_index,
                &reread,
            )?);
        }
    }
    batches.extend(new);
    let batches = reports_over_api(batches, report)?;
    let (merged, _) = latest_per_key(schema, &batches, &row_key(report))?;
    if merged.num_rows() == 0 {
        return Ok(None);
    }
    let bytes = Bytes::from(parquet::encode(&merged)?);
    let count = parquet_rows(&bytes)?;
    Ok(Some((bytes, count, keys_read)))
}

/// Drops the rows filled from the API for every interval (of an instance) that rows from a
/// report cover: a report always replaces the API's rows of its interval, whatever their export
/// times. Rows without an `origin` (written before it existed) came from reports.
fn reports_over_api(
    batches: Vec<RecordBatch>,
    report: &ReportSchema,
) -> Result<Vec<RecordBatch>, ParquetError> {
    use arrow::array::{Array, BooleanArray, StringArray, TimestampMillisecondArray};
    let origin = report.origin_index();
    let columns = |b: &RecordBatch| {
        let instance = b
            .column(col::INSTANCE)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned();
        let start = b
            .column(col::INTERVAL_START)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .cloned();
        let origin = b
            .column(origin)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned();
        (instance, start, origin)
    };
    let is_api = |o: &Option<StringArray>, i: usize| super::coverage::from_api(o.as_ref(), i);
    let mut reported: std::collections::HashSet<(String, i64)> = Default::default();
    let mut any_api = false;
    for b in &batches {
        let (Some(instance), Some(start), o) = columns(b) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if is_api(&o, i) {
                any_api = true;
            } else {
                reported.insert((instance.value(i).to_string(), start.value(i)));
            }
        }
    }
    if !any_api || reported.is_empty() {
        return Ok(batches);
    }
    batches
        .into_iter()
        .map(|b| {
            let (Some(instance), Some(start), o) = columns(&b) else {
                return Ok(b);
            };
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    Some(
                        !is_api(&o, i)
                            || !reported.contains(&(instance.value(i).to_string(), start.value(i))),
                    )
                })
                .collect();
            Ok(arrow::compute::filter_record_batch(&b, &keep)?)
        })
        .collect()
}

fn read_part(part: &Part) -> Result<Bytes, ParquetError> {
    std::fs::read(&part.path)
        .map(Bytes::from)
        .map_err(|e| ParquetError::Spill(part.path.display().to_string(), e))
}

fn parquet_rows(bytes: &Bytes) -> Result<usize, ParquetError> {
    let reader = ::parquet::file::reader::SerializedFileReader::new(bytes.clone())?;
    use ::parquet::file::reader::FileReader;
    Ok(reader.metadata().file_metadata().num_rows() as usize)
}
