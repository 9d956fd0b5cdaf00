//! Cursor windows of an export: the span of one object's run is cut into slices on its cursor
//! field (half-open `[start, end)` inside, the run's own bounds at the ends), a slice that a Bulk
//! job fails on is halved, and the plan with each finished slice is checkpointed so a killed or
//! stopped run repeats only the unfinished slices and writes the same keys.
//!
//! Why slices, not one query: Bulk API 2.0 fails a query job on a huge window ("Retried more
//! than 15 times"); Salesforce's own advice is to add filters (reference: salesforce-scale.md §1).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::Span;
use crate::salesforce::describe::ObjectDescribe;

/// The cursor of an object: the first of these it has (Airbyte's and tap-salesforce's order;
/// history objects such as `OpportunityFieldHistory` have only `CreatedDate`).
const CURSORS: [&str; 3] = ["SystemModstamp", "LastModifiedDate", "CreatedDate"];

/// The field an incremental export of `describe` filters and slices on, if it has one.
pub fn cursor_field(describe: &ObjectDescribe) -> Option<&'static str> {
    CURSORS
        .into_iter()
        .find(|name| describe.field(name).is_some())
}

/// One window of a plan and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// Its bounds on the cursor (`None`: unbounded), stored inline in the state.
    #[serde(flatten)]
    pub bounds: Span,
    /// Its records are in the lake (its history file, if it had records, is written).
    #[serde(default)]
    pub done: bool,
    /// Read over REST: Bulk failed on it and it is too narrow to halve again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rest: bool,
    /// Records read.
    #[serde(default)]
    pub rows: u64,
    /// The API that read it (`rest` or `bulk`), once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

impl Slice {
    /// A window not read yet.
    pub fn new(bounds: Span) -> Slice {
        Slice {
            bounds,
            done: false,
            rest: false,
            rows: 0,
            api: None,
        }
    }

    /// The history file's part name: the lower bound, so every slice of a plan has its own key
    /// and a rerun of the plan writes the same keys.
    pub fn part_name(&self) -> String {
        match self.bounds.from {
            None => "part-initial".to_string(),
            Some(from) => format!("part-{}", from.format("%Y%m%dT%H%M%S%3fZ")),
        }
    }

    /// The two halves at the middle second, or `None` when the slice is unbounded or narrower
    /// than `floor` (then REST reads it).
    pub fn halve(&self, floor: Duration) -> Option<(Slice, Slice)> {
        let (from, to) = (self.bounds.from?, self.bounds.to?);
        if to - from < floor || to - from < Duration::seconds(2) {
            return None;
        }
        let middle = from + (to - from) / 2;
        let middle = DateTime::from_timestamp(middle.timestamp(), 0).unwrap_or(middle);
        let left = Slice::new(Span {
            to: Some(middle),
            to_inclusive: false,
            ..self.bounds
        });
        let right = Slice::new(Span {
            from: Some(middle),
            from_inclusive: true,
            ..self.bounds
        });
        Some((left, right))
    }
}

/// One object's planned run: its slices in cursor order, the upper bound the watermark moves to
/// when every slice is done, and the day its history files go under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Upper bound of the run (the watermark once the plan is done).
    pub until: DateTime<Utc>,
    /// `snapshot_date` of the plan's history files.
    pub day: NaiveDate,
    /// A full re-read (initial load or formula refresh): no lower bound.
    #[serde(default)]
    pub full: bool,
    /// Slices in cursor order.
    pub slices: Vec<Slice>,
}

impl Plan {
    /// The first slice not done.
    pub fn next_pending(&self) -> Option<usize> {
        self.slices.iter().position(|s| !s.done)
    }

    /// Replaces slice `index` by its two halves; false when it cannot be halved.
    pub fn split(&mut self, index: usize, floor: Duration) -> bool {
        match self.slices[index].halve(floor) {
            Some((left, right)) => {
                self.slices.splice(index..=index, [left, right]);
                true
            }
            None => false,
        }
    }

    /// The span of the windows not yet done, up to the plan's upper bound (what a `SELECT
    /// COUNT()` for this run's reconciliation covers).
    pub fn pending_span(&self) -> Span {
        let first = self.slices.iter().find(|s| !s.done);
        Span {
            from: first.and_then(|s| s.bounds.from),
            from_inclusive: first.is_some_and(|s| s.bounds.from_inclusive),
            to: Some(self.until),
            to_inclusive: self.slices.last().is_none_or(|s| s.bounds.to_inclusive),
        }
    }

    /// Records read by the done slices.
    pub fn rows(&self) -> u64 {
        self.slices.iter().filter(|s| s.done).map(|s| s.rows).sum()
    }
}

/// Cuts `(from, until]` (or `[from, until]` with `from_inclusive`) into windows of `width`:
/// `[a, b)` inside, the given bounds at the ends. Without a lower bound there is one slice.
pub fn cut(
    from: Option<DateTime<Utc>>,
    from_inclusive: bool,
    until: DateTime<Utc>,
    until_inclusive: bool,
    width: Duration,
) -> Vec<Slice> {
    let last = |from, from_inclusive| Span {
        from,
        from_inclusive,
        to: Some(until),
        to_inclusive: until_inclusive,
    };
    let Some(mut start) = from else {
        return vec![Slice::new(last(None, false))];
    };
    let mut slices = Vec::new();
    let mut inclusive = from_inclusive;
    while until - start > width {
        let end = start + width;
        slices.push(Slice::new(Span {
            to: Some(end),
            to_inclusive: false,
            ..last(Some(start), inclusive)
        }));
        start = end;
        inclusive = true;
    }
    slices.push(Slice::new(last(Some(start), inclusive)));
    slices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_cursor_is_systemmodstamp_else_lastmodifieddate_else_createddate() {
        let describe = |fields: &[&str]| -> ObjectDescribe {
            serde_json::from_value(serde_json::json!({
                "name": "X",
                "fields": fields
                    .iter()
                    .map(|f| serde_json::json!({"name": f, "type": "datetime"}))
                    .collect::<Vec<_>>(),
            }))
            .unwrap()
        };
        let all = ["CreatedDate", "LastModifiedDate", "SystemModstamp"];
        assert_eq!(cursor_field(&describe(&all)), Some("SystemModstamp"));
        assert_eq!(cursor_field(&describe(&all[..2])), Some("LastModifiedDate"));
        // OpportunityFieldHistory has CreatedDate only.
        assert_eq!(cursor_field(&describe(&all[..1])), Some("CreatedDate"));
        assert_eq!(cursor_field(&describe(&[])), None);
    }

    #[test]
    fn cut_covers_the_span_once_with_half_open_windows() {
        let slices = cut(
            Some(at("2024-01-01T00:00:00Z")),
            false,
            at("2024-03-15T12:00:00Z"),
            true,
            Duration::days(30),
        );
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[0].bounds.from, Some(at("2024-01-01T00:00:00Z")));
        assert!(
            !slices[0].bounds.from_inclusive,
            "the watermark itself was exported"
        );
        for pair in slices.windows(2) {
            assert_eq!(pair[0].bounds.to, pair[1].bounds.from);
            assert!(!pair[0].bounds.to_inclusive && pair[1].bounds.from_inclusive);
        }
        let last = slices.last().unwrap();
        assert_eq!(last.bounds.to, Some(at("2024-03-15T12:00:00Z")));
        assert!(last.bounds.to_inclusive);
        assert_eq!(
            cut(
                None,
                false,
                at("2024-01-01T00:00:00Z"),
                true,
                Duration::days(30)
            )
            .len(),
            1
        );
    }

    #[test]
    fn halving_keeps_the_outer_bounds_and_stops_at_the_floor() {
        let mut plan = Plan {
            until: at("2024-01-02T00:00:00Z"),
            day: NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
            full: false,
            slices: cut(
                Some(at("2024-01-01T00:00:00Z")),
                false,
                at("2024-01-02T00:00:00Z"),
                true,
                Duration::days(30),
            ),
        };
        assert!(plan.split(0, Duration::hours(1)));
        let [left, right] = &plan.slices[..] else {
            panic!("two halves")
        };
        assert_eq!(left.bounds.to, Some(at("2024-01-01T12:00:00Z")));
        assert!(!left.bounds.from_inclusive && !left.bounds.to_inclusive);
        assert!(right.bounds.from_inclusive && right.bounds.to_inclusive);
        assert_ne!(left.part_name(), right.part_name());
        let mut narrow = plan.clone();
        while narrow.split(0, Duration::hours(1)) {}
        let first = &narrow.slices[0];
        assert!(first.bounds.to.unwrap() - first.bounds.from.unwrap() < Duration::hours(1));
        // 24 h: 12 h, 6 h, 3 h, 90 min, then two windows of 45 min, under the floor.
        assert_eq!(narrow.slices.len(), 6);
    }
}
