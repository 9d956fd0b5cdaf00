//! Lake columns → Salesforce fields and external IDs, by the CTI adapter's rules
//! (`schemas/pushback.toml`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::job::ReportKind;

const PUSHBACK_TOML: &str = include_str!("../../schemas/pushback.toml");

/// The fixed fields of a CTI metrics object (names without namespace).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMap {
    /// Object API name.
    pub name: String,
    /// External ID field (upsert key).
    pub external_id: String,
    /// Queue name or agent login.
    pub object_name: String,
    /// Interval start.
    pub start: String,
    /// Interval end.
    pub end: String,
    /// Export time of the report.
    pub created: String,
    /// AWS region (optional in orgs).
    pub region: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    special: BTreeMap<String, String>,
    object: BTreeMap<String, ObjectMap>,
}

fn file() -> &'static MapFile {
    static FILE: OnceLock<MapFile> = OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(PUSHBACK_TOML).expect("schemas/pushback.toml is valid (checked by tests)")
    })
}

/// The object map of a report.
pub fn object_map(report: ReportKind) -> &'static ObjectMap {
    &file().object[report.name()]
}

/// The CTI Lambdas' header → field rule (without namespace): `Contacts handled` →
/// `Contacts_handled__c`, `Service level 20 seconds` → `Service_level_20_seconds__c`.
pub fn field_for_header(header: &str) -> String {
    let cleaned: String = header
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| *c != '(' && *c != ')')
        .collect();
    if let Some(special) = file().special.get(&cleaned.to_lowercase()) {
        return special.clone();
    }
    let mut out = String::with_capacity(cleaned.len() + 3);
    let mut in_run = false;
    for c in cleaned.chars() {
        if c.is_whitespace() || c == '-' {
            if !in_run {
                out.push('_');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.push_str("__c");
    out
}

/// `<namespace>__<name>`, or the name alone for an empty or `-` namespace.
pub fn with_namespace(namespace: &str, name: &str) -> String {
    if namespace.is_empty() || namespace == "-" {
        name.to_string()
    } else {
        format!("{namespace}__{name}")
    }
}

/// The queue Lambda's key part: runs of `-`, whitespace and non-word characters removed
/// (Python's `re.sub(r'[-\s\W]+', '', name)`; Unicode letters are word characters).
pub fn lambda_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// How external IDs are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// Like the CTI Lambdas: name (sanitized for queues) + StartInterval (+ region): updates the
    /// records they wrote. Two Connect instances with the same queue name collide.
    Lambda,
    /// `<instance>|<name>|<StartInterval>`: never collides across instances.
    Instance,
}

/// The external ID of one row.
pub fn external_id(
    style: KeyStyle,
    report: ReportKind,
    instance: &str,
    name: &str,
    start: &str,
    region: Option<&str>,
) -> String {
    match style {
        KeyStyle::Lambda => {
            let name = match report {
                ReportKind::Queue => lambda_name(name),
                ReportKind::Agent => name.to_string(),
            };
            format!("{name}{start}{}", region.unwrap_or(""))
        }
        KeyStyle::Instance => format!("{instance}|{name}|{start}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::schema::ReportSchema;

    #[test]
    fn lambda_field_names() {
        assert_eq!(field_for_header("Contacts handled"), "Contacts_handled__c");
        assert_eq!(
            field_for_header("Service level 20 seconds"),
            "Service_level_20_seconds__c"
        );
        assert_eq!(
            field_for_header("Non-Productive Time"),
            "Nonproductive_time__c"
        );
        assert_eq!(
            field_for_header("Average agent interaction and customer hold time"),
            "Avg_agent_interaction_and_cust_hold_time__c"
        );
        assert_eq!(
            field_for_header("Contacts handled (connected to agent timestamp)"),
            "Contacts_handled_conn_to_agent_timestamp__c"
        );
        assert_eq!(field_for_header("Agent - idle  time"), "Agent_idle_time__c");
        assert_eq!(
            with_namespace("amazonconnect", "Occupancy__c"),
            "amazonconnect__Occupancy__c"
        );
        assert_eq!(with_namespace("-", "Occupancy__c"), "Occupancy__c");
    }

    #[test]
    fn every_metric_field_fits_salesforce_name_limits() {
        for report in [ReportKind::Queue, ReportKind::Agent] {
            for m in &ReportSchema::get(report).metrics {
                let field = field_for_header(&m.header);
                let base = field.trim_end_matches("__c");
                assert!(
                    base.len() <= 40,
                    "{} -> {field} is longer than 40",
                    m.header
                );
            }
        }
        assert_eq!(
            object_map(ReportKind::Queue).name,
            "AC_HistoricalQueueMetrics__c"
        );
    }

    #[test]
    fn keys_like_the_lambdas_or_per_instance() {
        let start = "2024-03-10T16:00:00.000Z";
        assert_eq!(
            external_id(
                KeyStyle::Lambda,
                ReportKind::Queue,
                "i",
                "Sales-EU West",
                start,
                None
            ),
            "SalesEUWest2024-03-10T16:00:00.000Z"
        );
        assert_eq!(
            external_id(
                KeyStyle::Lambda,
                ReportKind::Queue,
                "i",
                "Köln Überlauf",
                start,
                Some("eu-central-1")
            ),
            "KölnÜberlauf2024-03-10T16:00:00.000Zeu-central-1"
        );
        assert_eq!(
            external_id(
                KeyStyle::Lambda,
                ReportKind::Agent,
                "i",
                "jane.doe",
                start,
                None
            ),
            "jane.doe2024-03-10T16:00:00.000Z"
        );
        assert_eq!(
            external_id(
                KeyStyle::Instance,
                ReportKind::Queue,
                "prod-eu",
                "Sales EU",
                start,
                None
            ),
            "prod-eu|Sales EU|2024-03-10T16:00:00.000Z"
        );
    }
}
