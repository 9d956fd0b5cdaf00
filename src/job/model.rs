//! Serde model of a job file (`RawJob`) and the validated form (`Job`).

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;

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
}

/// The job kinds and their source settings.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// Amazon Connect scheduled interval reports.
    ConnectIntervals(ConnectSource),
}

impl JobKind {
    /// The kind's name as written in job files.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::ConnectIntervals(_) => "connect-intervals",
        }
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
}

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
}

#[derive(Debug, Deserialize)]
pub(super) struct RawJob {
    job: RawJobSection,
    source: Option<RawSource>,
    lake: Option<RawLake>,
    catalog: Option<RawCatalog>,
}

#[derive(Debug, Deserialize)]
struct RawJobSection {
    name: Option<String>,
    kind: Option<String>,
    timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawSource {
    url: Option<String>,
    report: Option<String>,
    instance: Option<String>,
    region: Option<String>,
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
                Some(source) => source.validate(problems).map(JobKind::ConnectIntervals),
                None => {
                    problems.push(
                        "source: missing section (a connect-intervals job reads [source])".into(),
                    );
                    None
                }
            },
            Some(other) => {
                problems.push(format!(
                    "job.kind: unknown kind {other:?}; this version runs \"connect-intervals\""
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
        let catalog = self.catalog.as_ref().and_then(|c| c.validate(problems));
        if let (Some(_), Some(lake)) = (&catalog, &lake) {
            if !lake.url.starts_with("s3://") {
                problems.push("catalog: a Glue catalog needs an s3:// lake.url".into());
            }
        }
        Some(Job {
            name: name?,
            timezone: timezone?,
            kind: kind?,
            lake: lake?,
            catalog,
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
        Some(ConnectSource {
            url: url?.to_string(),
            report: report?,
            instance: instance?.to_string(),
            region: self.region.clone(),
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
        Some(CatalogSettings {
            database: database.to_string(),
            projection_start,
        })
    }
}
