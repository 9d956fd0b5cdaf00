//! Job files: the TOML model, environment overrides and validation.
//!
//! A job file is read as TOML, `CXLAKE_<SECTION>_<KEY>` environment variables are laid over it,
//! and the result is checked in one pass that reports every problem at once with its key path.

pub mod init;
mod model;
mod settings;

pub use model::{
    default_late_after_hours, ApiChoice, Budget, CatalogSettings, ConnectSource, ExportMode,
    ExportSettings, FillSettings, FormulaPolicy, Grain, Job, JobKind, KeyStyle, LakeSettings,
    ObjectSpec, PushbackSpec, ReportKind, RollupSpec, SalesforceExport, SalesforcePushback,
    SalesforceSettings, DEFAULT_API_VERSION, DEFAULT_BULK_THRESHOLD, DEFAULT_LOOKBACK_DAYS,
    DEFAULT_PAGE_SIZE, DEFAULT_PROJECTION_START, MAX_BULK_JOBS, MAX_LATE_AFTER_HOURS,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Sections that environment variables may override.
const SECTIONS: &[&str] = &[
    "job",
    "source",
    "lake",
    "catalog",
    "salesforce",
    "export",
    "rollup",
    "pushback",
    "fill",
];
/// Prefix of the environment variables that override job settings.
pub const ENV_PREFIX: &str = "CXLAKE_";

/// Everything wrong with a job file, each problem with its key path.
#[derive(Debug, thiserror::Error)]
#[error("{}: invalid job file:\n{}", path.display(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct JobError {
    /// The job file.
    pub path: PathBuf,
    /// One line per problem, e.g. `source.report: expected "queue" or "agent", got "queues"`.
    pub problems: Vec<String>,
}

/// Reads, overrides from `env` and validates one job file.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Job, JobError> {
    let fail = |problems: Vec<String>| JobError {
        path: path.to_path_buf(),
        problems,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(vec![format!("cannot read: {e}")]))?;
    let mut value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(vec![e.to_string().trim().replace('\n', "\n    ")]))?;
    let mut problems = apply_env_overrides(&mut value, env);
    let mut unknown = Vec::new();
    let raw: Option<model::RawJob> = match serde_ignored::deserialize(
        toml::Value::Table(value),
        |p| unknown.push(p.to_string()),
    ) {
        Ok(raw) => Some(raw),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    // serde_ignored writes `?` for an Option level; the key path reads better without it.
    problems.extend(
        unknown
            .into_iter()
            .map(|k| format!("{}: unknown key", k.replace(".?", ""))),
    );
    let job = raw.and_then(|raw| raw.validate(&mut problems));
    match job {
        Some(job) if problems.is_empty() => Ok(job),
        _ => Err(fail(problems)),
    }
}

/// Lays `CXLAKE_<SECTION>_<KEY>` variables over the parsed file. Returns problems for variables
/// that name a known section but cannot be applied.
fn apply_env_overrides(doc: &mut toml::Table, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, raw_value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) || key.is_empty() {
            continue;
        }
        if raw_value.is_empty() {
            // An empty variable unsets the key (and a section it leaves empty), so a deployment
            // can pass an optional setting, e.g. `CXLAKE_FILL_INSTANCE_ARN`, always.
            if let Some(toml::Value::Table(t)) = doc.get_mut(section) {
                t.remove(key);
                if t.is_empty() {
                    doc.remove(section);
                }
            }
            continue;
        }
        let table = doc
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match table {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), env_value(raw_value));
            }
            _ => problems.push(format!("{section}: is not a table, cannot apply {name}")),
        }
    }
    problems
}

/// Environment values are strings, except for plain integers and booleans.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

/// The process environment as a sorted map (the input of [`load`]).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    const GOOD: &str = r#"
[job]
name = "connect-queue"
kind = "connect-intervals"
timezone = "America/New_York"
[source]
url = "file://reports/"
report = "queue"
instance = "demo"
[lake]
url = "file://lake"
"#;

    #[test]
    fn loads_a_valid_connect_job() {
        let file = write(GOOD);
        let job = load(file.path(), &BTreeMap::new()).unwrap();
        assert_eq!(job.name, "connect-queue");
        assert_eq!(job.timezone.name(), "America/New_York");
        let JobKind::ConnectIntervals(src) = &job.kind else {
            panic!("wrong kind")
        };
        assert_eq!(src.report, ReportKind::Queue);
    }

    #[test]
    fn env_overrides_every_section() {
        let file = write(GOOD);
        let env = BTreeMap::from([
            (
                "CXLAKE_LAKE_URL".to_string(),
                "s3://bucket/lake".to_string(),
            ),
            ("CXLAKE_JOB_TIMEZONE".to_string(), "UTC".to_string()),
            ("CXLAKE_CATALOG_DATABASE".to_string(), "cc".to_string()),
            (
                "CXLAKE_BIN".to_string(),
                "ignored: not a section".to_string(),
            ),
        ]);
        let job = load(file.path(), &env).unwrap();
        assert_eq!(job.lake.url, "s3://bucket/lake");
        assert_eq!(job.timezone.name(), "UTC");
        assert_eq!(job.catalog.unwrap().database, "cc");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let file = write(
            r#"
[job]
name = "Bad Name"
kind = "connect-intervals"
timezone = "Mars/Olympus"
colour = "blue"
[source]
url = "ftp://x/"
report = "queues"
instance = ""
[lake]
url = "file://lake"
"#,
        );
        let err = load(file.path(), &BTreeMap::new()).unwrap_err();
        let all = err.problems.join("\n");
        for key in [
            "job.name",
            "job.timezone",
            "job.colour",
            "source.url",
            "source.report",
            "source.instance",
        ] {
            assert!(all.contains(key), "missing {key} in:\n{all}");
        }
    }

    #[test]
    fn unknown_env_key_in_known_section_is_reported() {
        let file = write(GOOD);
        let env = BTreeMap::from([("CXLAKE_LAKE_BUCKETT".to_string(), "x".to_string())]);
        let err = load(file.path(), &env).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.contains("lake.buckett")),
            "{:?}",
            err.problems
        );
    }
}
