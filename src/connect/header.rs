//! Header row → column layout of one report file.
//!
//! Headers are matched by a normalized key (lower case, BOM and parentheses removed, runs of
//! whitespace, `-` and `_` collapsed), so spelling variants and column order never matter.

use std::collections::HashSet;

use super::schema::{HeaderRole, ReportSchema};
use super::value::{bounded, quoted};

/// Normalizes a header for lookup: `"\u{feff}Contacts handled (connected to agent timestamp)"`
/// → `"contacts handled connected to agent timestamp"`.
pub fn normalize_header(header: &str) -> String {
    let header = header.trim_start_matches('\u{feff}');
    if header.is_ascii() {
        normalize_ascii(header.as_bytes())
    } else {
        normalize_chars(header)
    }
}

/// [`normalize_chars`] for ASCII, a byte at a time (every header of a real report is ASCII).
fn normalize_ascii(header: &[u8]) -> String {
    let mut out = String::with_capacity(header.len());
    let mut pending_space = false;
    for &b in header {
        match b {
            b'(' | b')' => {}
            // The ASCII characters `char::is_whitespace` accepts (vertical tab included).
            b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r' | b' ' | b'-' | b'_' => {
                pending_space = !out.is_empty();
            }
            _ => {
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                out.push(char::from(b.to_ascii_lowercase()));
            }
        }
    }
    out
}

fn normalize_chars(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut pending_space = false;
    for c in header.chars() {
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
    /// The header text of every CSV column (BOM removed, cut to [`HEADER_CHARS`]), for messages.
    pub headers: Vec<String>,
}

/// Most CSV columns a report file may have; a wider header rejects the file. Connect caps a
/// report at 80,000 cells, and its metric list is about a hundred columns long.
pub const MAX_COLUMNS: usize = 2000;

/// Characters of a header kept for messages.
pub const HEADER_CHARS: usize = 80;

/// Longest column name a header may become (Glue's limit for a column name).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a header row cannot be used. Headers in messages are quoted and cut short.
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
    /// More columns than [`MAX_COLUMNS`].
    #[error("the header has {count} columns; a report may have at most {MAX_COLUMNS}")]
    TooManyColumns {
        /// Columns in the header.
        count: usize,
    },
    /// Two headers map to the same column.
    #[error("header {header} (column {number}) maps to column {column}, which an earlier header already fills")]
    Duplicate {
        /// 1-based CSV column.
        number: usize,
        /// The repeated header, quoted.
        header: String,
        /// The column both map to.
        column: String,
    },
    /// An unknown header whose column name is a table column or reserved.
    #[error("header {header} (column {number}) would become column {column}, which is {owner}; columns are never duplicated or retyped (add the header as an alias in schemas/connect_metrics.toml if it is a spelling of that metric)")]
    Reserved {
        /// 1-based CSV column.
        number: usize,
        /// The header, quoted.
        header: String,
        /// The column name it would become.
        column: String,
        /// What holds that name.
        owner: String,
    },
    /// An unknown header cxlake cannot name a column after.
    #[error("header {header} (column {number}) {problem}")]
    Unnamable {
        /// 1-based CSV column.
        number: usize,
        /// The header, quoted.
        header: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl HeaderError {
    /// The 1-based CSV column to blame, if one is.
    pub fn column_number(&self) -> Option<usize> {
        match self {
            HeaderError::Duplicate { number, .. }
            | HeaderError::Reserved { number, .. }
            | HeaderError::Unnamable { number, .. } => Some(*number),
            _ => None,
        }
    }
}

impl FileLayout {
    /// Maps a header row onto `schema`. Linear in the number of headers.
    pub fn from_headers<'a>(
        schema: &ReportSchema,
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<FileLayout, HeaderError> {
        let mut grouping = None;
        let mut interval_start = None;
        let mut interval_end = None;
        let mut metrics = vec![None; schema.metrics.len()];
        let mut unknown: Vec<(usize, String)> = Vec::new();
        let mut unknown_names: HashSet<String> = HashSet::new();
        let mut names = Vec::new();
        let headers: Vec<&str> = headers.into_iter().collect();
        if headers.len() > MAX_COLUMNS {
            return Err(HeaderError::TooManyColumns {
                count: headers.len(),
            });
        }
        for (index, header) in headers.into_iter().enumerate() {
            let header = header.trim_start_matches('\u{feff}');
            names.push(bounded(header, HEADER_CHARS));
            let number = index + 1;
            let key = normalize_header(header);
            let (slot, column) = match schema.role(&key) {
                Some(HeaderRole::Grouping) => (&mut grouping, schema.grouping_column.as_str()),
                Some(HeaderRole::IntervalStart) => (&mut interval_start, "interval_start"),
                Some(HeaderRole::IntervalEnd) => (&mut interval_end, "interval_end"),
                Some(HeaderRole::Metric(m)) => (&mut metrics[m], schema.metrics[m].column.as_str()),
                None if key.is_empty() => continue,
                None => {
                    let name = unknown_column_name(header);
                    let unnamable = |problem| HeaderError::Unnamable {
                        number,
                        header: quoted(header.as_bytes()),
                        problem,
                    };
                    if !header.bytes().any(|b| b.is_ascii_alphanumeric()) {
                        return Err(unnamable(
                            "has no ASCII letters or digits to name a column after",
                        ));
                    }
                    if name.len() > MAX_NAME_BYTES {
                        return Err(unnamable(
                            "is too long for a column name (Glue allows 255 bytes)",
                        ));
                    }
                    if let Some(owner) = schema.reserved(&name) {
                        return Err(HeaderError::Reserved {
                            number,
                            header: quoted(header.as_bytes()),
                            column: name,
                            owner: owner.to_string(),
                        });
                    }
                    if !unknown_names.insert(name.clone()) {
                        return Err(HeaderError::Duplicate {
                            number,
                            header: quoted(header.as_bytes()),
                            column: name,
                        });
                    }
                    unknown.push((index, name));
                    continue;
                }
            };
            if slot.replace(index).is_some() {
                return Err(HeaderError::Duplicate {
                    number,
                    header: quoted(header.as_bytes()),
                    column: column.to_string(),
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
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ascii_normalization_matches_the_char_by_char_one(header in "[\x00-\x7F]{0,40}") {
            prop_assert_eq!(normalize_ascii(header.as_bytes()), normalize_chars(&header));
        }
    }

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

    #[test]
    fn headers_that_would_become_reserved_or_known_columns_reject_the_file() {
        let schema = ReportSchema::get(ReportKind::Queue);
        for (header, column) in [
            ("Source key", "source_key"),
            ("Exported at", "exported_at"),
            ("Instance", "instance"),
            ("interval_start_local", "interval_start_local"),
            ("dt", "dt"),
            ("Intervals", "intervals"),
            // normalizes to a known count column: would be a second column of another type
            (
                "Contacts$agent hung up first",
                "contacts_agent_hung_up_first",
            ),
            // normalizes to a known double column: would be a second column of the same name
            ("Average handle time!", "average_handle_time_seconds"),
        ] {
            let err =
                FileLayout::from_headers(schema, ["Queue", "StartInterval", header]).unwrap_err();
            match &err {
                HeaderError::Reserved {
                    number, column: c, ..
                } => {
                    assert_eq!((*number, c.as_str()), (3, column), "{header}")
                }
                other => panic!("{header}: {other:?}"),
            }
            assert!(err.to_string().contains(header), "{err}");
        }
    }

    #[test]
    fn two_headers_for_one_column_name_the_second() {
        let schema = ReportSchema::get(ReportKind::Queue);
        let err = FileLayout::from_headers(
            schema,
            ["Queue", "StartInterval", "Lunch time", "Lunch-time"],
        )
        .unwrap_err();
        assert_eq!(err.column_number(), Some(4));
        assert!(err.to_string().contains("lunch_time_seconds"), "{err}");
    }

    #[test]
    fn unnamable_and_overlong_headers_reject_the_file() {
        let schema = ReportSchema::get(ReportKind::Queue);
        let err = FileLayout::from_headers(schema, ["Queue", "StartInterval", "%%%"]).unwrap_err();
        assert_eq!(err.column_number(), Some(3));
        let long = "x".repeat(10 << 20);
        let err = FileLayout::from_headers(schema, ["Queue", "StartInterval", &long]).unwrap_err();
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
    }

    #[test]
    fn more_columns_than_the_cap_reject_the_file() {
        let schema = ReportSchema::get(ReportKind::Queue);
        let names: Vec<String> = (0..MAX_COLUMNS).map(|i| format!("Metric {i}")).collect();
        let mut headers = vec!["Queue", "StartInterval"];
        headers.extend(names.iter().map(String::as_str));
        assert_eq!(
            FileLayout::from_headers(schema, headers.iter().copied()).unwrap_err(),
            HeaderError::TooManyColumns {
                count: MAX_COLUMNS + 2
            }
        );
        let layout =
            FileLayout::from_headers(schema, headers[..MAX_COLUMNS].iter().copied()).unwrap();
        assert_eq!(layout.unknown.len(), MAX_COLUMNS - 2);
    }
}
