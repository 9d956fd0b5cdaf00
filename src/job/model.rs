//! Serde model of a job file (`RawJob`) and the validated form (`Job`).

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::salesforce::auth::AuthFlow;
use crate::salesforce::credentials::CredentialSource;

/// How external IDs are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// Like the CTI Lambdas: name (sanitized for queues) + StartInterval (+ region): updates the
    /// records they wrote. Two Connect instances with the same queue name collide.
    Lambda,
    /// `<instance>|<name>|<StartInterval>`: never collides across instances.
    Instance,
}

/// The two roll-up grains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// One row per local clock hour (a DST fall-back day has two 01:00 hours, told apart by `hour_start`).
    Hourly,
    /// One row per reporting day.
    Daily,
}

impl Grain {
    /// Name used in table names and job files.
    pub fn name(self) -> &'static str {
        match self {
            Grain::Hourly => "hourly",
            Grain::Daily => "daily",
        }
    }
}

/// First day of the Glue `dt` projection range unless the job sets one (Amazon Connect launched in 2017).
pub const DEFAULT_PROJECTION_START: &str = "2017-01-01";

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique job name; names the state, lock and rejects objects under `_etl/`.
    pub name: String,
    /// Time zone whose calendar day is the `dt` partition.
    pub timezone: Tz,
    /// What the job reads.
    pub kind: JobKind,
    /// Where the job writes.
    pub lake: LakeSettings,
    /// Glue catalog; `None` means no catalog calls.
    pub catalog: Option<CatalogSettings>,
    /// Hours without a successful run after which `cxlake status` calls the job late
    /// (`[job] late_after_hours`; `None`: the kind's default, [`JobKind::default_late_after_hours`]).
    pub late_after_hours: Option<u32>,
}

/// Longest `[job] late_after_hours`: a month.
pub const MAX_LATE_AFTER_HOURS: i64 = 744;

/// The job kinds and their source settings.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// Amazon Connect scheduled interval reports.
    ConnectIntervals(ConnectSource),
    /// Salesforce objects via Bulk API 2.0 / REST query.
    SalesforceExport(SalesforceExport),
    /// Hourly and daily roll-ups of an interval table.
    IntervalRollup(RollupSpec),
    /// Interval metrics upserted into Salesforce.
    SalesforcePushback(SalesforcePushback),
}

/// A `salesforce-pushback` job: the org and what to push.
#[derive(Debug, Clone)]
pub struct SalesforcePushback {
    /// How to reach the org.
    pub salesforce: SalesforceSettings,
    /// What to push.
    pub pushback: PushbackSpec,
}

/// Push-back settings (`[pushback]`).
#[derive(Debug, Clone)]
pub struct PushbackSpec {
    /// Queue or agent interval table.
    pub report: ReportKind,
    /// Namespace of the CTI adapter (`amazonconnect`; empty or `-` for none).
    pub namespace: String,
    /// External ID style.
    pub key: KeyStyle,
    /// AWS region written to `Region__c` and appended to Lambda-style keys, like the Lambdas,
    /// when the object has `Region__c`. Unset: the AWS region of the environment (as the
    /// Lambdas' boto3 session); `""`: none.
    pub region: Option<String>,
    /// At or above this many records: Bulk API 2.0 ingest; below: sObject Collections.
    pub bulk_threshold: usize,
}

/// AppFlow's destination rule: Bulk API 2.0 from 1,000 records.
pub const DEFAULT_PUSHBACK_BULK_THRESHOLD: usize = 1000;

/// An `interval-rollup` job (`[rollup]`).
#[derive(Debug, Clone)]
pub struct RollupSpec {
    /// Which interval table: `connect_<report>_interval`.
    pub report: ReportKind,
    /// Grains to build (default both).
    pub grains: Vec<Grain>,
}

/// A `salesforce-export` job: the org and what to export.
#[derive(Debug, Clone)]
pub struct SalesforceExport {
    /// How to reach the org.
    pub salesforce: SalesforceSettings,
    /// Objects and mode.
    pub export: ExportSettings,
}

/// How to reach and log in to a Salesforce org (`[salesforce]`).
#[derive(Debug, Clone)]
pub struct SalesforceSettings {
    /// Token host: `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain URL.
    pub login_url: String,
    /// OAuth flow.
    pub auth: AuthFlow,
    /// Integration user (JWT and password flows), unless the credentials carry `Username`.
    pub username: Option<String>,
    /// Where the secrets come from.
    pub credentials: CredentialSource,
    /// API version, e.g. `66.0`.
    pub api_version: String,
    /// REST, Bulk, or automatic by record count.
    pub api: ApiChoice,
    /// Automatic mode: Bulk at or above this many records, REST below (AppFlow's rule: 1,000,000).
    pub bulk_threshold: u64,
    /// Bulk results page size (`maxRecords`).
    pub page_size: u64,
    /// Extra trusted CA certificate (PEM), e.g. the emulator's.
    pub ca_file: Option<String>,
    /// Ask for gzip-compressed responses (`Accept-Encoding: gzip`, as Salesforce recommends for
    /// Bulk results); off only makes sense on a local link, e.g. against the emulator.
    pub compression: bool,
    /// How much of the org's shared daily API allowance a run may spend.
    pub budget: Budget,
}

/// The share of the org's rolling 24-hour API allowance (`DailyApiRequests`) a run may use:
/// the run stops cleanly (exit 5) when either is reached and resumes on the next run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Percent of the allowance this run's own calls may use.
    pub run_percent: u32,
    /// Percent of the allowance in use (by every integration of the org) at which the run stops.
    pub total_percent: u32,
}

/// A run's own calls: at most 10 % of the daily allowance (the allowance is shared by every
/// integration of the org; tap-salesforce allows 25 %).
pub const DEFAULT_BUDGET_RUN_PERCENT: u32 = 10;
/// Stop when the org has used 80 % of its allowance (tap-salesforce's default).
pub const DEFAULT_BUDGET_TOTAL_PERCENT: u32 = 80;

/// What happens to formula (`calculated`) fields, whose values can change without moving
/// `SystemModstamp` (so an incremental export does not see the change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormulaPolicy {
    /// Exported like any field; values can be stale in `_latest` until the record changes.
    Include,
    /// Not exported (Fivetran's default).
    Exclude,
    /// Exported, and every `days` days the whole object is read again so `_latest` is current.
    Refresh {
        /// Days between full re-reads (0: every run).
        days: u32,
    },
}

/// Which query API an export uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiChoice {
    /// REST below `bulk_threshold` records, Bulk API 2.0 at or above.
    Auto,
    /// Always REST query.
    Rest,
    /// Always Bulk API 2.0.
    Bulk,
}

/// Export mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportMode {
    /// Full extract of every object on each run.
    Snapshot,
    /// Rows changed (or deleted) since the last run's `SystemModstamp` watermark.
    Incremental,
}

/// What to export (`[export]`).
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Snapshot or incremental.
    pub mode: ExportMode,
    /// Objects in run order.
    pub objects: Vec<ObjectSpec>,
    /// Objects exported at once (at most [`MAX_BULK_JOBS`] Bulk jobs are in flight whatever this is).
    pub concurrency: usize,
    /// Width of the cursor windows an incremental export is cut into, in days.
    pub slice_days: u32,
    /// A window that fails in Bulk is halved until it is narrower than this many minutes; then
    /// it is read over REST.
    pub slice_floor_minutes: u32,
    /// Formula fields.
    pub formulas: FormulaPolicy,
}

/// Bulk query jobs in flight at once, whatever `export.concurrency` is (Airbyte's limit).
pub const MAX_BULK_JOBS: usize = 5;
/// Objects at once by default.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Most objects at once.
pub const MAX_CONCURRENCY: usize = 16;
/// Cursor windows of 30 days (Airbyte's `stream_slice_step` default).
pub const DEFAULT_SLICE_DAYS: u32 = 30;
/// Windows narrower than an hour are read over REST when Bulk fails on them.
pub const DEFAULT_SLICE_FLOOR_MINUTES: u32 = 60;
/// Formula refresh every 7 days unless `export.formula_refresh_days` says otherwise.
pub const DEFAULT_FORMULA_REFRESH_DAYS: u32 = 7;

/// One exported object.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    /// API name, e.g. `Account`.
    pub name: String,
    /// Field paths; empty = every exportable field.
    pub fields: Vec<String>,
    /// Optional SOQL condition ANDed into the query.
    pub filter: Option<String>,
}

impl JobKind {
    /// The kind's name as written in job files.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::ConnectIntervals(_) => "connect-intervals",
            JobKind::SalesforceExport(_) => "salesforce-export",
            JobKind::IntervalRollup(_) => "interval-rollup",
            JobKind::SalesforcePushback(_) => "salesforce-pushback",
        }
    }

    /// [`default_late_after_hours`] of this kind.
    pub fn default_late_after_hours(&self) -> u32 {
        default_late_after_hours(self.name())
    }
}

/// Hours without a successful run before `cxlake status` calls a job of kind `kind` late, unless
/// its file says otherwise: a Connect job runs every 30 minutes (late after 2 hours), the other
/// kinds daily (late after 26 hours). The stack's freshness alarms default to the same windows
/// (`IntervalJobFreshnessHours`, `DailyJobFreshnessHours` in `deploy/cxlake.yaml`).
pub fn default_late_after_hours(kind: &str) -> u32 {
    if kind == "connect-intervals" {
        2
    } else {
        26
    }
}

impl Job {
    /// Hours without a successful run before the job is late: the file's, else the kind's.
    pub fn late_after_hours(&self) -> u32 {
        self.late_after_hours
            .unwrap_or_else(|| self.kind.default_late_after_hours())
    }
}

/// Where Connect reports are read from.
#[derive(Debug, Clone)]
pub struct ConnectSource {
    /// `s3://bucket/prefix/` or `file://folder/`.
    pub url: String,
    /// Queue or agent report.
    pub report: ReportKind,
    /// Connect instance alias, stored in every row and part of the row key.
    pub instance: String,
    /// AWS region of the source bucket, when it differs from the default.
    pub region: Option<String>,
    /// Days before the watermark that a scheduled run lists again, loading every report it
    /// has not processed or that changed since (late and re-exported files).
    pub lookback_days: u32,
    /// Length of the report's intervals in minutes (15, 30 or 60).
    pub interval_minutes: u32,
    /// Minutes after an interval's end before its missing export counts as missing.
    pub grace_minutes: u32,
    /// Fill missing intervals from the Connect API (`[fill]`); `None` reports them only.
    pub fill: Option<FillSettings>,
}

/// `[fill]`: the Connect instance whose GetMetricDataV2 fills missing intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct FillSettings {
    /// `arn:aws:connect:<region>:<account>:instance/<id>`.
    pub instance_arn: String,
    /// The instance id from the ARN.
    pub instance_id: String,
    /// The region from the ARN.
    pub region: String,
    /// Requests per second this job makes (the account's GetMetricDataV2 quota is shared).
    pub requests_per_second: f64,
}

/// Minutes after an interval's end before a missing export counts: Connect runs a scheduled
/// report 15 minutes after its time, and the job's next scheduled run (one interval later)
/// reads it; 60 covers both with room.
pub const DEFAULT_GRACE_MINUTES: u32 = 60;
/// GetMetricDataV2 requests per second a job makes unless `[fill] requests_per_second` says
/// otherwise: half of the account's rate (10 per second, unverified), which other tools share.
pub const DEFAULT_FILL_RPS: f64 = 5.0;
/// The most a job may ask for.
pub const MAX_FILL_RPS: f64 = 10.0;

/// Scheduled runs re-list this many days before the watermark unless the job sets `lookback_days`.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 3;
/// The longest lookback a job may set (the state remembers every object within it).
pub const MAX_LOOKBACK_DAYS: i64 = 90;

/// The interval of a Connect report unless `source.interval_minutes` says otherwise.
pub const DEFAULT_INTERVAL_MINUTES: u32 = 30;

/// The two Connect interval reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// Historical metrics grouped by queue.
    Queue,
    /// Agent performance grouped by agent login.
    Agent,
}

impl ReportKind {
    /// The name used in job files and in `schemas/connect_metrics.toml`.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Queue => "queue",
            ReportKind::Agent => "agent",
        }
    }
}

/// Lake location.
#[derive(Debug, Clone)]
pub struct LakeSettings {
    /// `s3://bucket/prefix` or `file://folder`.
    pub url: String,
    /// AWS region of the lake bucket.
    pub region: Option<String>,
}

/// Glue catalog settings.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// Glue database (lower case).
    pub database: String,
    /// First day of the `dt` partition projection range.
    pub projection_start: NaiveDate,
    /// How engines find partitions: Athena projection, registered in Glue, or both.
    pub partitions: crate::catalog::PartitionMode,
}

impl CatalogSettings {
    /// The date partition `column` of a table in this catalog.
    pub fn date_partition(&self, column: &str) -> crate::catalog::DatePartition {
        crate::catalog::DatePartition {
            column: column.to_string(),
            start: self.projection_start,
            mode: self.partitions,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawJob {
    job: RawJobSection,
    source: Option<RawSource>,
    lake: Option<RawLake>,
    catalog: Option<RawCatalog>,
    salesforce: Option<RawSalesforce>,
    export: Option<RawExport>,
    rollup: Option<RawRollup>,
    pushback: Option<RawPushback>,
    fill: Option<RawFill>,
}

#[derive(Debug, Deserialize)]
struct RawFill {
    instance_arn: Option<String>,
    requests_per_second: Option<f64>,
}

impl RawFill {
    fn validate(&self, problems: &mut Vec<String>) -> Option<FillSettings> {
        let arn = required(&self.instance_arn, "fill.instance_arn", problems)?;
        // arn:<partition>:connect:<region>:<account>:instance/<id>
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let parsed = match parts.as_slice() {
            ["arn", _, "connect", region, account, resource]
                if !region.is_empty() && !account.is_empty() =>
            {
                resource
                    .strip_prefix("instance/")
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                    .map(|id| (region.to_string(), id.to_string()))
            }
            _ => None,
        };
        if parsed.is_none() {
            problems.push(format!(
                "fill.instance_arn: expected arn:aws:connect:<region>:<account>:instance/<instance id>, got {arn:?}"
            ));
        }
        let requests_per_second = self.requests_per_second.unwrap_or(DEFAULT_FILL_RPS);
        let rate_ok = (0.1..=MAX_FILL_RPS).contains(&requests_per_second);
        if !rate_ok {
            problems.push(format!(
                "fill.requests_per_second: expected 0.1 to {MAX_FILL_RPS}, got {requests_per_second}"
            ));
        }
        let (region, instance_id) = parsed.filter(|_| rate_ok)?;
        Some(FillSettings {
            instance_arn: arn.to_string(),
            instance_id,
            region,
            requests_per_second,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawPushback {
    report: Option<String>,
    namespace: Option<String>,
    key: Option<String>,
    region: Option<String>,
    bulk_threshold: Option<i64>,
}

impl RawPushback {
    fn validate(&self, problems: &mut Vec<String>) -> Option<PushbackSpec> {
        let report = match required(&self.report, "pushback.report", problems) {
            Some("queue") => Some(ReportKind::Queue),
            Some("agent") => Some(ReportKind::Agent),
            Some(other) => {
                problems.push(format!(
                    "pushback.report: expected \"queue\" or \"agent\", got {other:?}"
                ));
                None
            }
            None => None,
        };
        let key = match self.key.as_deref() {
            None | Some("lambda") => Some(KeyStyle::Lambda),
            Some("instance") => Some(KeyStyle::Instance),
            Some(other) => {
                problems.push(format!(
                    "pushback.key: expected \"lambda\" (compatible with the CTI Lambdas) or \"instance\", got {other:?}"
                ));
                None
            }
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| "amazonconnect".into());
        if !(namespace.is_empty() || namespace == "-" || is_api_name(&namespace)) {
            problems.push(format!(
                "pushback.namespace: {namespace:?} is not a namespace prefix"
            ));
        }
        let bulk_threshold = match self.bulk_threshold {
            None => Some(DEFAULT_PUSHBACK_BULK_THRESHOLD),
            Some(v) if v > 0 => Some(v as usize),
            Some(v) => {
                problems.push(format!(
                    "pushback.bulk_threshold: must be positive, got {v}"
                ));
                None
            }
        };
        if let Some(region) = &self.region {
            if !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                problems.push(format!(
                    "pushback.region: expected an AWS region such as \"us-east-1\" (or \"\" for none), got {region:?}"
                ));
            }
        }
        Some(PushbackSpec {
            report: report?,
            namespace,
            key: key?,
            region: self.region.clone(),
            bulk_threshold: bulk_threshold?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawRollup {
    report: Option<String>,
    grains: Option<Vec<String>>,
}

impl RawRollup {
    fn validate(&self, problems: &mut Vec<String>) -> Option<RollupSpec> {
        let report = match required(&self.report, "rollup.report", problems) {
            Some("queue") => Some(ReportKind::Queue),
            Some("agent") => Some(ReportKind::Agent),
            Some(other) => {
                problems.push(format!(
                    "rollup.report: expected \"queue\" or \"agent\", got {other:?}"
                ));
                None
            }
            None => None,
        };
        let mut grains = Vec::new();
        for g in self
            .grains
            .clone()
            .unwrap_or_else(|| vec!["hourly".into(), "daily".into()])
        {
            match g.as_str() {
                "hourly" => grains.push(Grain::Hourly),
                "daily" => grains.push(Grain::Daily),
                other => problems.push(format!(
                    "rollup.grains: expected \"hourly\" or \"daily\", got {other:?}"
                )),
            }
        }
        if grains.is_empty() {
            problems.push("rollup.grains: list at least one of \"hourly\", \"daily\"".into());
        }
        grains.dedup();
        Some(RollupSpec {
            report: report?,
            grains,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawSalesforce {
    login_url: Option<String>,
    auth: Option<String>,
    username: Option<String>,
    credentials: Option<String>,
    api_version: Option<toml::Value>,
    api: Option<String>,
    bulk_threshold: Option<i64>,
    page_size: Option<i64>,
    ca_file: Option<String>,
    compression: Option<bool>,
    budget_run_percent: Option<i64>,
    budget_total_percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawExport {
    mode: Option<String>,
    objects: Option<Vec<String>>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    filter: std::collections::BTreeMap<String, String>,
    concurrency: Option<i64>,
    slice_days: Option<i64>,
    slice_floor_minutes: Option<i64>,
    formulas: Option<String>,
    formula_refresh_days: Option<i64>,
}

/// A whole number setting within `min..=max` (`section.key` names it in the problem).
fn bounded(
    value: Option<i64>,
    key: &str,
    default: i64,
    (min, max): (i64, i64),
    problems: &mut Vec<String>,
) -> Option<i64> {
    match value {
        None => Some(default),
        Some(v) if (min..=max).contains(&v) => Some(v),
        Some(v) => {
            problems.push(format!("{key}: expected {min} to {max}, got {v}"));
            None
        }
    }
}

/// Default API version (Spring '26); older versions hide newer fields.
pub const DEFAULT_API_VERSION: &str = "66.0";
/// AppFlow's automatic threshold: Bulk API 2.0 at or above one million records.
pub const DEFAULT_BULK_THRESHOLD: u64 = 1_000_000;
/// Bulk results page size asked for (`maxRecords`), as simple-salesforce and tap-salesforce do.
pub const DEFAULT_PAGE_SIZE: u64 = 50_000;

#[derive(Debug, Deserialize)]
struct RawJobSection {
    name: Option<String>,
    kind: Option<String>,
    timezone: Option<String>,
    late_after_hours: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawSource {
    url: Option<String>,
    report: Option<String>,
    instance: Option<String>,
    region: Option<String>,
    lookback_days: Option<i64>,
    interval_minutes: Option<i64>,
    grace_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawLake {
    url: Option<String>,
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawCatalog {
    database: Option<String>,
    projection_start: Option<String>,
    partitions: Option<String>,
}

fn required<'a>(
    value: &'a Option<String>,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Some(v),
        Some(_) => {
            problems.push(format!("{key}: must not be empty"));
            None
        }
        None => {
            problems.push(format!("{key}: missing"));
            None
        }
    }
}

fn check_url(url: &str, key: &str, problems: &mut Vec<String>) {
    if !(url.starts_with("s3://") || url.starts_with("file://")) {
        problems.push(format!(
            "{key}: expected an s3:// or file:// URL, got {url:?}"
        ));
    } else if let Some(rest) = url.strip_prefix("s3://") {
        if rest.split('/').next().unwrap_or_default().is_empty() {
            problems.push(format!("{key}: s3 URL has no bucket: {url:?}"));
        }
    }
}

/// Lower snake-case names keep Glue, Athena and S3 keys happy.
fn is_identifier(name: &str, extra: char) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == extra)
}

impl RawJob {
    /// Checks every setting, pushing one message per problem; returns the job when all parts parsed.
    pub(super) fn validate(self, problems: &mut Vec<String>) -> Option<Job> {
        let name = required(&self.job.name, "job.name", problems).map(str::to_string);
        if let Some(n) = &name {
            if !is_identifier(n, '-') {
                problems.push(format!(
                    "job.name: use lower-case letters, digits, '-' and '_' (it names objects under _etl/), got {n:?}"
                ));
            }
        }
        let timezone = match self.job.timezone.as_deref() {
            None => Some(Tz::UTC),
            Some(tz) => match tz.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    problems.push(format!("job.timezone: unknown IANA time zone {tz:?}"));
                    None
                }
            },
        };
        let kind = match required(&self.job.kind, "job.kind", problems) {
            Some("connect-intervals") => match &self.source {
                Some(source) => {
                    let fill = self.fill.as_ref().map(|f| f.validate(problems));
                    let mut source = source.validate(problems);
                    if let (Some(source), Some(fill)) = (&mut source, fill) {
                        source.fill = Some(fill?);
                    }
                    source.map(JobKind::ConnectIntervals)
                }
                None => {
                    problems.push(
                        "source: missing section (a connect-intervals job reads [source])".into(),
                    );
                    None
                }
            },
            Some("salesforce-export") => match (&self.salesforce, &self.export) {
                (Some(sf), Some(export)) => {
                    let salesforce = sf.validate(problems);
                    let export = export.validate(problems);
                    Some(JobKind::SalesforceExport(SalesforceExport {
                        salesforce: salesforce?,
                        export: export?,
                    }))
                }
                (sf, export) => {
                    for (missing, name) in
                        [(sf.is_none(), "salesforce"), (export.is_none(), "export")]
                    {
                        if missing {
                            problems.push(format!(
                                "{name}: missing section (a salesforce-export job reads [salesforce] and [export])"
                            ));
                        }
                    }
                    None
                }
            },
            Some("salesforce-pushback") => match (&self.salesforce, &self.pushback) {
                (Some(sf), Some(pushback)) => {
                    let salesforce = sf.validate(problems);
                    let pushback = pushback.validate(problems);
                    Some(JobKind::SalesforcePushback(SalesforcePushback {
                        salesforce: salesforce?,
                        pushback: pushback?,
                    }))
                }
                (sf, pushback) => {
                    for (missing, name) in [
                        (sf.is_none(), "salesforce"),
                        (pushback.is_none(), "pushback"),
                    ] {
                        if missing {
                            problems.push(format!(
                                "{name}: missing section (a salesforce-pushback job reads [salesforce] and [pushback])"
                            ));
                        }
                    }
                    None
                }
            },
            Some("interval-rollup") => match &self.rollup {
                Some(rollup) => rollup.validate(problems).map(JobKind::IntervalRollup),
                None => {
                    problems.push(
                        "rollup: missing section (an interval-rollup job reads [rollup])".into(),
                    );
                    None
                }
            },
            Some(other) => {
                problems.push(format!(
                    "job.kind: unknown kind {other:?}; this version runs \"connect-intervals\", \"salesforce-export\", \"interval-rollup\" and \"salesforce-pushback\""
                ));
                // Still check a [source] against the one kind that has one: every problem at once.
                if let Some(source) = &self.source {
                    source.validate(problems);
                }
                None
            }
            None => None,
        };
        let lake = match &self.lake {
            None => {
                problems.push("lake: missing section".into());
                None
            }
            Some(lake) => required(&lake.url, "lake.url", problems).map(|url| {
                check_url(url, "lake.url", problems);
                LakeSettings {
                    url: url.to_string(),
                    region: lake.region.clone(),
                }
            }),
        };
        if self.fill.is_some() && self.job.kind.as_deref() != Some("connect-intervals") {
            problems.push(
                "fill: only a connect-intervals job fills intervals from the Connect API".into(),
            );
        }
        let catalog = self.catalog.as_ref().and_then(|c| c.validate(problems));
        if let (Some(_), Some(lake)) = (&catalog, &lake) {
            if !lake.url.starts_with("s3://") {
                problems.push("catalog: a Glue catalog needs an s3:// lake.url".into());
            }
        }
        let late_after_hours = match self.job.late_after_hours {
            None => Some(None),
            Some(hours) if (1..=MAX_LATE_AFTER_HOURS).contains(&hours) => Some(Some(hours as u32)),
            Some(hours) => {
                problems.push(format!(
                    "job.late_after_hours: expected 1 to {MAX_LATE_AFTER_HOURS} hours, got {hours}"
                ));
                None
            }
        };
        Some(Job {
            name: name?,
            timezone: timezone?,
            kind: kind?,
            lake: lake?,
            catalog,
            late_after_hours: late_after_hours?,
        })
    }
}

impl RawSource {
    fn validate(&self, problems: &mut Vec<String>) -> Option<ConnectSource> {
        let url = required(&self.url, "source.url", problems);
        if let Some(url) = url {
            check_url(url, "source.url", problems);
        }
        let report = match required(&self.report, "source.report", problems) {
            Some("queue") => Some(ReportKind::Queue),
            Some("agent") => Some(ReportKind::Agent),
            Some(other) => {
                problems.push(format!(
                    "source.report: expected \"queue\" or \"agent\", got {other:?}"
                ));
                None
            }
            None => None,
        };
        let instance = required(&self.instance, "source.instance", problems);
        let lookback_days = match self.lookback_days {
            None => Some(DEFAULT_LOOKBACK_DAYS),
            Some(days @ 1..=MAX_LOOKBACK_DAYS) => Some(days as u32),
            Some(other) => {
                problems.push(format!(
                    "source.lookback_days: expected 1 to {MAX_LOOKBACK_DAYS} days, got {other}"
                ));
                None
            }
        };
        let interval_minutes = match self.interval_minutes {
            None => Some(DEFAULT_INTERVAL_MINUTES),
            Some(m @ (15 | 30 | 60)) => Some(m as u32),
            Some(other) => {
                problems.push(format!(
                    "source.interval_minutes: Connect interval reports are 15, 30 or 60 minutes, got {other}"
                ));
                None
            }
        };
        let grace_minutes = bounded(
            self.grace_minutes,
            "source.grace_minutes",
            i64::from(DEFAULT_GRACE_MINUTES),
            (0, 7 * 24 * 60),
            problems,
        );
        Some(ConnectSource {
            grace_minutes: grace_minutes? as u32,
            fill: None,
            url: url?.to_string(),
            report: report?,
            instance: instance?.to_string(),
            region: self.region.clone(),
            lookback_days: lookback_days?,
            interval_minutes: interval_minutes?,
        })
    }
}

impl RawCatalog {
    fn validate(&self, problems: &mut Vec<String>) -> Option<CatalogSettings> {
        let database = required(&self.database, "catalog.database", problems)?;
        if !is_identifier(database, '_') {
            problems.push(format!(
                "catalog.database: Glue/Athena database names are lower-case letters, digits and '_', got {database:?}"
            ));
        }
        let start = self
            .projection_start
            .as_deref()
            .unwrap_or(DEFAULT_PROJECTION_START);
        let projection_start = match NaiveDate::parse_from_str(start, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => {
                problems.push(format!(
                    "catalog.projection_start: expected YYYY-MM-DD, got {start:?}"
                ));
                return None;
            }
        };
        let partitions = match self.partitions.as_deref() {
            None => crate::catalog::PartitionMode::default(),
            Some(text) => match crate::catalog::PartitionMode::parse(text) {
                Some(mode) => mode,
                None => {
                    problems.push(format!(
                        "catalog.partitions: expected \"projection\", \"register\" or \"both\", got {text:?}"
                    ));
                    return None;
                }
            },
        };
        Some(CatalogSettings {
            database: database.to_string(),
            projection_start,
            partitions,
        })
    }
}

impl RawSalesforce {
    fn validate(&self, problems: &mut Vec<String>) -> Option<SalesforceSettings> {
        let login_url = self
            .login_url
            .clone()
            .unwrap_or_else(|| "https://login.salesforce.com".to_string());
        if !(login_url.starts_with("https://") || login_url.starts_with("http://")) {
            problems.push(format!(
                "salesforce.login_url: expected an https:// URL, got {login_url:?}"
            ));
        }
        let auth = match self.auth.as_deref().map(AuthFlow::parse) {
            None => Some(AuthFlow::Jwt),
            Some(Some(flow)) => Some(flow),
            Some(None) => {
                problems.push(format!(
                    "salesforce.auth: expected jwt, refresh-token, client-credentials or password, got {:?}",
                    self.auth.as_deref().unwrap_or_default()
                ));
                None
            }
        };
        let credentials =
            match CredentialSource::parse(self.credentials.as_deref().unwrap_or("env")) {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(format!("salesforce.credentials: {e}"));
                    None
                }
            };
        // `66.0` reads as a float in TOML and env overrides; accept strings and numbers.
        let api_version = match &self.api_version {
            None => Some(DEFAULT_API_VERSION.to_string()),
            Some(toml::Value::String(s)) => Some(s.trim_start_matches('v').to_string()),
            Some(toml::Value::Float(f)) => Some(format!("{f:.1}")),
            Some(toml::Value::Integer(i)) => Some(format!("{i}.0")),
            Some(other) => {
                problems.push(format!(
                    "salesforce.api_version: expected e.g. \"66.0\", got {other}"
                ));
                None
            }
        };
        if let Some(v) = &api_version {
            match v.parse::<f64>() {
                Ok(n) if n >= 47.0 => {}
                _ => problems.push(format!(
                    "salesforce.api_version: Bulk API 2.0 query needs 47.0 or later, got {v:?}"
                )),
            }
        }
        let api = match self.api.as_deref() {
            None | Some("auto") => Some(ApiChoice::Auto),
            Some("rest") => Some(ApiChoice::Rest),
            Some("bulk") => Some(ApiChoice::Bulk),
            Some(other) => {
                problems.push(format!(
                    "salesforce.api: expected auto, rest or bulk, got {other:?}"
                ));
                None
            }
        };
        let positive =
            |value: Option<i64>, key: &str, default: u64, problems: &mut Vec<String>| match value {
                None => Some(default),
                Some(v) if v > 0 => Some(v as u64),
                Some(v) => {
                    problems.push(format!("salesforce.{key}: must be positive, got {v}"));
                    None
                }
            };
        let bulk_threshold = positive(
            self.bulk_threshold,
            "bulk_threshold",
            DEFAULT_BULK_THRESHOLD,
            problems,
        );
        let page_size = positive(self.page_size, "page_size", DEFAULT_PAGE_SIZE, problems);
        let run_percent = bounded(
            self.budget_run_percent,
            "salesforce.budget_run_percent",
            DEFAULT_BUDGET_RUN_PERCENT.into(),
            (1, 100),
            problems,
        );
        let total_percent = bounded(
            self.budget_total_percent,
            "salesforce.budget_total_percent",
            DEFAULT_BUDGET_TOTAL_PERCENT.into(),
            (1, 100),
            problems,
        );
        Some(SalesforceSettings {
            login_url: login_url.trim_end_matches('/').to_string(),
            auth: auth?,
            username: self.username.clone(),
            credentials: credentials?,
            api_version: api_version?,
            api: api?,
            bulk_threshold: bulk_threshold?,
            page_size: page_size?,
            ca_file: self.ca_file.clone(),
            compression: self.compression.unwrap_or(true),
            budget: Budget {
                run_percent: run_percent? as u32,
                total_percent: total_percent? as u32,
            },
        })
    }
}

/// Salesforce API names: letters, digits and underscores, starting with a letter.
fn is_api_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl RawExport {
    fn validate(&self, problems: &mut Vec<String>) -> Option<ExportSettings> {
        let mode = match self.mode.as_deref() {
            None | Some("incremental") => Some(ExportMode::Incremental),
            Some("snapshot") => Some(ExportMode::Snapshot),
            Some(other) => {
                problems.push(format!(
                    "export.mode: expected snapshot or incremental, got {other:?}"
                ));
                None
            }
        };
        let names = match &self.objects {
            Some(list) if !list.is_empty() => list.clone(),
            _ => {
                problems
                    .push("export.objects: list at least one object, e.g. [\"Account\"]".into());
                return None;
            }
        };
        for name in &names {
            if !is_api_name(name) {
                problems.push(format!(
                    "export.objects: {name:?} is not a Salesforce API name"
                ));
            }
        }
        for (kind, keys) in [
            ("fields", self.fields.keys().collect::<Vec<_>>()),
            ("filter", self.filter.keys().collect::<Vec<_>>()),
        ] {
            for key in keys {
                if !names.contains(key) {
                    problems.push(format!(
                        "export.{kind}.{key}: {key} is not in export.objects"
                    ));
                }
            }
        }
        for (object, fields) in &self.fields {
            for path in fields {
                if !path.split('.').all(is_api_name) {
                    problems.push(format!(
                        "export.fields.{object}: {path:?} is not a field name or Relationship.Field path"
                    ));
                }
            }
        }
        let objects = names
            .iter()
            .map(|name| ObjectSpec {
                name: name.clone(),
                fields: self.fields.get(name).cloned().unwrap_or_default(),
                filter: self.filter.get(name).cloned(),
            })
            .collect();
        let concurrency = bounded(
            self.concurrency,
            "export.concurrency",
            DEFAULT_CONCURRENCY as i64,
            (1, MAX_CONCURRENCY as i64),
            problems,
        );
        let slice_days = bounded(
            self.slice_days,
            "export.slice_days",
            DEFAULT_SLICE_DAYS.into(),
            (1, 3650),
            problems,
        );
        let slice_floor_minutes = bounded(
            self.slice_floor_minutes,
            "export.slice_floor_minutes",
            DEFAULT_SLICE_FLOOR_MINUTES.into(),
            (1, 7 * 24 * 60),
            problems,
        );
        let refresh_days = bounded(
            self.formula_refresh_days,
            "export.formula_refresh_days",
            DEFAULT_FORMULA_REFRESH_DAYS.into(),
            (0, 366),
            problems,
        );
        let formulas = match self.formulas.as_deref() {
            None | Some("include") => Some(FormulaPolicy::Include),
            Some("exclude") => Some(FormulaPolicy::Exclude),
            Some("refresh") => {
                refresh_days.map(|days| FormulaPolicy::Refresh { days: days as u32 })
            }
            Some(other) => {
                problems.push(format!(
                    "export.formulas: expected include, exclude or refresh, got {other:?}"
                ));
                None
            }
        };
        if self.formula_refresh_days.is_some() && self.formulas.as_deref() != Some("refresh") {
            problems.push(
                "export.formula_refresh_days: applies only with export.formulas = \"refresh\""
                    .into(),
            );
        }
        if mode == Some(ExportMode::Snapshot) && self.formulas.as_deref() == Some("refresh") {
            problems.push(
                "export.formulas: \"refresh\" applies to incremental exports (a snapshot reads every value on each run)".into(),
            );
        }
        Some(ExportSettings {
            mode: mode?,
            objects,
            concurrency: concurrency? as usize,
            slice_days: slice_days? as u32,
            slice_floor_minutes: slice_floor_minutes? as u32,
            formulas: formulas?,
        })
    }
}
