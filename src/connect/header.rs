//! Header row → column layout of one report file.
//!
//! Headers are matched by a normalized key (lower case, BOM and parentheses removed, runs of
//! whitespace, `-` and `_` collapsed), so spelling variants and column order never matter.

use super::schema::{HeaderRole, ReportSchema};

/// Normalizes a header for lookup: `"\u{feff}Contacts handled (connected to agent timestamp)"`
/// → `"contacts handled connected to agent timestamp"`.
pub fn normalize_header(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut pending_space = false;
    for c in header.trim_start_matches('\u{feff}').chars() {
        if c == '(' || c == ')' {
            continue;
        }
        if c.is_whitespace() || c == '-' || c == '_' {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Column name for a header cxlake does not know: snake_case, `_seconds` when it is a time.
/// `"Coffee break time"` → `coffee_break_time_seconds`; `"Frobnication ratio"` → `frobnication_ratio`.
pub fn unknown_column_name(header: &str) -> String {
    let mut name = String::new();
    for c in normalize_header(header).chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let mut name = name.trim_matches('_').to_string();
    if name.is_empty() {
        name = "unnamed".into();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "m_");
    }
    if name.ends_with("_time") || name == "time" {
        name.push_str("_seconds");
    }
    name
}

/// Where each table column is in a file, decided from its header row.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLayout {
    /// CSV column of the queue/agent name.
    pub grouping: usize,
    /// CSV column of `StartInterval`.
    pub interval_start: usize,
    /// CSV column of `EndInterval`, if present.
    pub interval_end: Option<usize>,
    /// For each known metric (table order), its CSV column if present.
    pub metrics: Vec<Option<usize>>,
    /// Headers not in the map: (CSV column, new column name).
    pub unknown: Vec<(usize, String)>,
    /// The header text of every CSV column (BOM removed), for error messages.
    pub headers: Vec<String>,
}

/// Why a header row cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// No `Queue`/`Agent` column.
    #[error("no grouping column {expected:?} in the header")]
    MissingGrouping {
        /// The header cxlake looked for.
        expected: String,
    },
    /// No `StartInterval` column (the report was not grouped by interval).
    #[error("no StartInterval column in the header (group the report by Interval)")]
    MissingIntervalStart,
    /// Two headers map to the same column.
    #[error("column {header:?} appears twice in the header")]
    Duplicate {
        /// The repeated header.
        header: String,
    },
}

impl FileLayout {
    /// Maps a header row onto `schema`.
    pub fn from_headers<'a>(
        schema: &ReportSchema,
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<FileLayout, HeaderError> {
        let mut grouping = None;
        let mut interval_start = None;
        let mut interval_end = None;
        let mut metrics = vec![None; schema.metrics.len()];
        let mut unknown: Vec<(usize, String)> = Vec::new();
        let mut names = Vec::new();
        for (index, header) in headers.into_iter().enumerate() {
            names.push(header.trim_start_matches('\u{feff}').to_string());
            let key = normalize_header(header);
            let slot = match schema.role(&key) {
                Some(HeaderRole::Grouping) => &mut grouping,
                Some(HeaderRole::IntervalStart) => &mut interval_start,
                Some(HeaderRole::IntervalEnd) => &mut interval_end,
                Some(HeaderRole::Metric(m)) => &mut metrics[m],
                None if key.is_empty() => continue,
                None => {
                    let name = unknown_column_name(header);
                    if unknown.iter().any(|(_, n)| *n == name) {
                        return Err(HeaderError::Duplicate {
                            header: header.to_string(),
                        });
                    }
                    unknown.push((index, name));
                    continue;
                }
            };
            if slot.replace(index).is_some() {
                return Err(HeaderError::Duplicate {
                    header: header.trim_start_matches('\u{feff}').to_string(),
                });
            }
        }
        Ok(FileLayout {
            grouping: grouping.ok_or_else(|| HeaderError::MissingGrouping {
                expected: schema.grouping_header.clone(),
            })?,
            interval_start: interval_start.ok_or(HeaderError::MissingIntervalStart)?,
            interval_end,
            metrics,
            unknown,
            headers: names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ReportKind;

    #[test]
    fn normalization_ignores_bom_case_parentheses_and_separators() {
        assert_eq!(normalize_header("\u{feff}Queue"), "queue");
        assert_eq!(
            normalize_header("Contacts handled (connected to agent  timestamp)"),
            "contacts handled connected to agent timestamp"
        );
        assert_eq!(
            normalize_header("Non-Productive Time"),
            "non productive time"
        );
        assert_eq!(
            normalize_header(" Agent_non-response "),
            "agent non response"
        );
    }

    #[test]
    fn unknown_headers_get_names_by_rule() {
        assert_eq!(
            unknown_column_name("Coffee break time"),
            "coffee_break_time_seconds"
        );
        assert_eq!(
            unknown_column_name("Frobnication ratio"),
            "frobnication_ratio"
        );
        assert_eq!(unknown_column_name("Contacts (ü) 20% #"), "contacts_20");
        assert_eq!(unknown_column_name("90th percentile"), "m_90th_percentile");
    }

    #[test]
    fn layout_follows_any_column_order() {
        let schema = ReportSchema::get(ReportKind::Queue);
        let layout = FileLayout::from_headers(
            schema,
            [
                "Contacts handled",
                "EndInterval",
                "\u{feff}Queue",
                "StartInterval",
                "Lunch time",
            ],
        )
        .unwrap();
        assert_eq!(layout.grouping, 2);
        assert_eq!(layout.interval_start, 3);
        assert_eq!(layout.interval_end, Some(1));
        assert_eq!(layout.unknown, vec![(4, "lunch_time_seconds".to_string())]);
        let handled = schema
            .metrics
            .iter()
            .position(|m| m.column == "contacts_handled")
            .unwrap();
        assert_eq!(layout.metrics[handled], Some(0));
        assert_eq!(layout.headers.len(), 5);
        assert_eq!(layout.headers[2], "Queue");
    }

    #[test]
    fn aliases_map_to_the_same_column() {
        let schema = ReportSchema::get(ReportKind::Queue);
        let a = FileLayout::from_headers(schema, ["Queue", "StartInterval", "Contact abandoned"])
            .unwrap();
        let b = FileLayout::from_headers(schema, ["Queue", "StartInterval", "Contacts abandoned"])
            .unwrap();
        assert_eq!(a.metrics, b.metrics);
    }

    #[test]
    fn missing_grouping_or_interval_is_an_error() {
        let schema = ReportSchema::get(ReportKind::Agent);
        assert_eq!(
            FileLayout::from_headers(schema, ["Queue", "StartInterval"]).unwrap_err(),
            HeaderError::MissingGrouping {
                expected: "Agent".into()
            }
        );
        assert_eq!(
            FileLayout::from_headers(schema, ["Agent", "Occupancy"]).unwrap_err(),
            HeaderError::MissingIntervalStart
        );
        assert!(matches!(
            FileLayout::from_headers(schema, ["Agent", "StartInterval", "Occupancy", "occupancy"]),
            Err(HeaderError::Duplicate { .. })
        ));
    }
}
