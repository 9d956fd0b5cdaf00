//! Lake columns → Salesforce fields and external IDs, by the CTI adapter's rules
//! (`schemas/pushback.toml`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::job::{KeyStyle, ReportKind};

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
        if is_python_space(c) || c == '-' {
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

/// The queue Lambda's key part: Python 3's `re.sub(r'[-\s\W]+', '', name)`. `-` and every
/// `\s` character are `\W` too, so this keeps exactly the `\w` characters.
pub fn lambda_name(name: &str) -> String {
    name.chars().filter(|&c| is_python_word(c)).collect()
}

/// Python 3's `\w` on `str`: `str.isalnum()` (general categories L*, Nd, Nl, No) or `_`.
///
/// The table is Unicode 15.0, the one of the Lambdas' `python3.12` runtime, so a character
/// assigned later (unassigned, hence `\W`, for the Lambda) is dropped here too. Rust's
/// `char::is_alphanumeric` differs: it also keeps combining marks (Other_Alphabetic), e.g. the
/// vowel signs of `हिन्दी`.
pub fn is_python_word(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    c == '_'
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
        )
}

/// Python 3's `\s` on `str` (`str.isspace()`): Unicode White_Space plus the information
/// separators U+001C–U+001F, which Python counts as space (bidi class B/S).
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Lambda field names a column added by rule for an unknown header may have come from, most
/// likely first: `lunch_time_seconds` (from `Lunch time`) → `lunch_time__c`, then
/// `lunch_time_seconds__c` (from `Lunch time seconds`). Matched case-insensitively with
/// describe, like the Lambdas, so `Lunch_time__c` is found. The column rule keeps ASCII letters
/// and digits and turns every other run into `_`, which is all a Salesforce field name can hold.
pub fn fields_for_added_column(column: &str) -> Vec<String> {
    let name = match column.strip_prefix("m_") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => column,
    };
    let mut out = Vec::new();
    if let Some(base) = name.strip_suffix("_seconds") {
        if base.ends_with("_time") || base == "time" {
            out.push(format!("{base}__c"));
        }
    }
    out.push(format!("{name}__c"));
    out
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

    /// Expected keys computed by CPython 3's `re.sub(r'[-\s\W]+', '', name)` (not by this code).
    #[test]
    fn queue_names_sanitised_like_python_re() {
        let cases = [
            ("Sales-EU West", "SalesEUWest"),
            ("Café Olé", "CaféOlé"),
            ("Cafe\u{301} Ole\u{301}", "CafeOle"),
            ("हिन्दी सहायता", "हनदसहयत"),
            ("客服 一线", "客服一线"),
            ("دعم العملاء", "دعمالعملاء"),
            ("support_tier_2", "support_tier_2"),
            ("Sales, EU", "SalesEU"),
            ("Support \"Tier 2\"", "SupportTier2"),
            ("a\u{a0}b\u{3000}c\u{2003}d\te\u{1c}f\u{85}g", "abcdefg"),
            ("Ⅻ ½ ²", "Ⅻ½²"),
            ("x\u{200b}y\u{200d}z", "xyz"),
            ("emoji 😀 q", "emojiq"),
        ];
        for (name, expected) in cases {
            assert_eq!(lambda_name(name), expected, "{name:?}");
        }
    }

    #[test]
    fn python_space_is_never_a_word_character() {
        // Python's `\s` on str (CPython `str.isspace()`), listed by CPython itself.
        let spaces = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let found: Vec<u32> = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_python_space(c))
            .map(u32::from)
            .collect();
        assert_eq!(found, spaces);
        assert!(found
            .iter()
            .all(|&c| !is_python_word(char::from_u32(c).unwrap())));
        assert_eq!(field_for_header("Lunch\u{a0}time"), "Lunch_time__c");
    }

    #[test]
    fn added_columns_map_back_to_lambda_fields() {
        assert_eq!(
            fields_for_added_column("lunch_time_seconds"),
            ["lunch_time__c", "lunch_time_seconds__c"]
        );
        assert_eq!(fields_for_added_column("adherence"), ["adherence__c"]);
        assert_eq!(
            fields_for_added_column("m_90th_percentile"),
            ["90th_percentile__c"]
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
