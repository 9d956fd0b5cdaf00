//! Roll-up rules per metric column, from the embedded `schemas/connect_rollups.toml`.

use std::collections::HashMap;
use std::sync::OnceLock;

use arrow::datatypes::DataType;
use serde::Deserialize;

const ROLLUPS_TOML: &str = include_str!("../../schemas/connect_rollups.toml");

/// How one column rolls up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Σ value.
    Sum,
    /// max value.
    Max,
    /// Σ(value × weight) ÷ Σ weight over ordered denominators, each the sum of its columns:
    /// the first that is there wherever the value is, else the one there most often.
    Weighted(Vec<Vec<String>>),
    /// The value of the latest interval that has one.
    Last,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    column: String,
    kind: String,
    #[serde(default)]
    weight: Vec<String>,
    /// Denominators to use, in order, when `weight` is missing from a day's data.
    #[serde(default)]
    fallback: Vec<Vec<String>>,
}

fn parse(text: &str) -> Result<HashMap<String, Rule>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut rules = HashMap::new();
    for raw in file.rule {
        let plain = raw.weight.is_empty() && raw.fallback.is_empty();
        if raw.fallback.iter().any(Vec::is_empty) {
            return Err(format!("{}: an empty fallback denominator", raw.column));
        }
        let rule = match (raw.kind.as_str(), raw.weight.is_empty()) {
            ("sum", true) if plain => Rule::Sum,
            ("max", true) if plain => Rule::Max,
            ("last", true) if plain => Rule::Last,
            ("weighted", false) => {
                let mut denominators = vec![raw.weight];
                denominators.extend(raw.fallback);
                Rule::Weighted(denominators)
            }
            (kind, _) => {
                return Err(format!(
                    "{}: kind {kind:?} with weight {:?} (weighted needs a weight; sum, max and last take none)",
                    raw.column, raw.weight
                ))
            }
        };
        if rules.insert(raw.column.clone(), rule).is_some() {
            return Err(format!("{}: listed twice", raw.column));
        }
    }
    Ok(rules)
}

fn rules() -> &'static HashMap<String, Rule> {
    static RULES: OnceLock<HashMap<String, Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        parse(ROLLUPS_TOML).expect("schemas/connect_rollups.toml is valid (checked by tests)")
    })
}

/// The rule of a metric column: the listed one, else by type (text keeps the latest value,
/// numbers add up).
pub fn rule_for(column: &str, data_type: &DataType) -> Rule {
    match rules().get(column) {
        Some(rule) => rule.clone(),
        None if matches!(data_type, DataType::Utf8) => Rule::Last,
        None => Rule::Sum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::schema::ReportSchema;
    use crate::job::ReportKind;

    #[test]
    fn every_rule_names_real_columns_and_every_weight_is_a_count_or_time() {
        let all = rules();
        for report in [ReportKind::Queue, ReportKind::Agent] {
            let schema = ReportSchema::get(report).table_schema(&[]);
            for (column, rule) in all {
                if let Rule::Weighted(denominators) = rule {
                    if schema.field_with_name(column).is_err() {
                        continue;
                    }
                    for w in denominators.iter().flatten() {
                        let field = schema.field_with_name(w).unwrap_or_else(|_| {
                            panic!("{column}: weight {w} is not a {report:?} column")
                        });
                        assert!(
                            matches!(field.data_type(), DataType::Int64) || w.ends_with("_seconds"),
                            "{column}: weight {w} is neither a count nor a time"
                        );
                    }
                }
            }
        }
        // Every average, rate, percentage and service level has a weighted rule.
        for report in [ReportKind::Queue, ReportKind::Agent] {
            for m in &ReportSchema::get(report).metrics {
                if m.column.starts_with("average_") || m.column.ends_with("_pct") {
                    assert!(
                        matches!(all.get(&m.column), Some(Rule::Weighted(_))),
                        "{} has no weighted rule",
                        m.column
                    );
                }
            }
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(parse("[[rule]]\ncolumn = \"x\"\nkind = \"weighted\"\n").is_err());
        assert!(parse("[[rule]]\ncolumn = \"x\"\nkind = \"median\"\n").is_err());
        assert!(parse("[[rule]]\ncolumn = \"x\"\nkind = \"sum\"\nfallback = [[\"y\"]]\n").is_err());
        assert!(parse(
            "[[rule]]\ncolumn = \"x\"\nkind = \"weighted\"\nweight = [\"y\"]\nfallback = [[]]\n"
        )
        .is_err());
        assert_eq!(
            parse("[[rule]]\ncolumn = \"x\"\nkind = \"weighted\"\nweight = [\"a\", \"b\"]\nfallback = [[\"c\"]]\n")
                .unwrap()["x"],
            Rule::Weighted(vec![vec!["a".into(), "b".into()], vec!["c".into()]])
        );
        assert!(parse(
            "[[rule]]\ncolumn = \"x\"\nkind = \"sum\"\n[[rule]]\ncolumn = \"x\"\nkind = \"max\"\n"
        )
        .is_err());
    }
}
