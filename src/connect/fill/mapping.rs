//! Which GetMetricDataV2 metric fills which report column: `schemas/connect_api_metrics.toml`,
//! embedded at build time and checked against the report schema.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::connect::schema::ReportSchema;
use crate::job::ReportKind;

const MAPPING_TOML: &str = include_str!("../../../schemas/connect_api_metrics.toml");

/// The API's metrics that take a threshold in seconds.
const THRESHOLD_METRICS: [&str; 3] = [
    "SERVICE_LEVEL",
    "SUM_CONTACTS_ANSWERED_IN_X",
    "SUM_CONTACTS_ABANDONED_IN_X",
];
/// The largest threshold the API accepts (seven days, in seconds).
const MAX_THRESHOLD_SECONDS: u32 = 604_800;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    metric: Vec<ApiMetric>,
}

/// One report column and the API metric that fills it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiMetric {
    /// The interval table's column.
    pub column: String,
    /// The GetMetricDataV2 metric name.
    pub api: String,
    /// The threshold of a service-level or "in X seconds" metric.
    #[serde(default)]
    pub threshold: Option<Threshold>,
    /// The reports (`queue`, `agent`) whose column it fills.
    pub reports: Vec<String>,
}

/// A metric's threshold: `comparison` (`LT` or `LTE`) against `seconds`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// `LT` or `LTE`.
    pub comparison: String,
    /// Seconds, 1 to 604800.
    pub seconds: u32,
}

fn parsed() -> Result<&'static MappingFile, String> {
    static FILE: OnceLock<Result<MappingFile, String>> = OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(MAPPING_TOML).map_err(|e| format!("schemas/connect_api_metrics.toml: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Every problem of the embedded mapping (empty when it is sound).
pub fn problems() -> Vec<String> {
    let file = match parsed() {
        Ok(file) => file,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, m) in file.metric.iter().enumerate() {
        let at = format!(
            "schemas/connect_api_metrics.toml metric {} ({:?})",
            i + 1,
            m.column
        );
        if m.api.is_empty()
            || !m
                .api
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            problems.push(format!(
                "{at}: api {:?} is not an upper-case metric name",
                m.api
            ));
        }
        let takes_threshold = THRESHOLD_METRICS.contains(&m.api.as_str());
        match (&m.threshold, takes_threshold) {
            (None, true) => problems.push(format!("{at}: {} needs a threshold", m.api)),
            (Some(_), false) => problems.push(format!("{at}: {} takes no threshold", m.api)),
            (Some(t), true) => {
                if t.comparison != "LT" && t.comparison != "LTE" {
                    problems.push(format!(
                        "{at}: threshold comparison must be LT or LTE, got {:?}",
                        t.comparison
                    ));
                }
                if !(1..=MAX_THRESHOLD_SECONDS).contains(&t.seconds) {
                    problems.push(format!(
                        "{at}: threshold seconds must be 1 to {MAX_THRESHOLD_SECONDS}, got {}",
                        t.seconds
                    ));
                }
            }
            (None, false) => {}
        }
        if m.reports.is_empty() {
            problems.push(format!("{at}: reports is empty"));
        }
        for report in &m.reports {
            let kind = match report.as_str() {
                "queue" => ReportKind::Queue,
                "agent" => ReportKind::Agent,
                other => {
                    problems.push(format!(
                        "{at}: report must be \"queue\" or \"agent\", got {other:?}"
                    ));
                    continue;
                }
            };
            let schema = ReportSchema::get(kind);
            if !schema.metrics.iter().any(|c| c.column == m.column) {
                problems.push(format!(
                    "{at}: {:?} is not a metric column of the {report} report",
                    m.column
                ));
            }
            if !seen.insert((report.clone(), m.column.clone())) {
                problems.push(format!(
                    "{at}: {:?} is mapped twice for the {report} report",
                    m.column
                ));
            }
        }
    }
    problems
}

/// The metrics that fill `report`'s columns (empty if the embedded file is broken, which
/// `cxlake validate` and the tests report).
pub fn for_report(report: ReportKind) -> Vec<&'static ApiMetric> {
    parsed()
        .map(|file| {
            file.metric
                .iter()
                .filter(|m| m.reports.iter().any(|r| r == report.name()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_mapping_is_sound() {
        assert_eq!(problems(), Vec::<String>::new());
        assert!(for_report(ReportKind::Queue).len() > 40);
        assert!(for_report(ReportKind::Agent).len() > 20);
    }
}
