//! Which GetMetricDataV2 requests fill a set of missing intervals, within the API's rules: a
//! span under 3 days at 15/30/60-minute intervals, nothing older than 3 months, at most 100
//! filter values and 20 SERVICE_LEVEL metrics per request.

use chrono::{DateTime, Months, Utc};

/// Metrics per request. The API allows 20 SERVICE_LEVEL metrics per request (and 20 by
/// `MetricId`); no other count is documented, so every request stays within 20.
pub const METRICS_PER_REQUEST: usize = 20;
const _: () = assert!(
    METRICS_PER_REQUEST <= 20,
    "the API takes 20 SERVICE_LEVEL metrics a request"
);
/// Queue or agent ids per request (the API's limit on filter values).
pub const IDS_PER_REQUEST: usize = 100;
/// Results per page (the API's largest `MaxResults`).
pub const PAGE_SIZE: i32 = 100;
/// The longest span of one request: the API wants it under 3 days at these intervals.
const MAX_SPAN_MS: i64 = 3 * 86_400_000;
/// Kept clear of the 3-month edge, so a request made a little later is still inside it.
const REACH_MARGIN_MS: i64 = 3_600_000;

/// The oldest interval start the API still answers for at `now`: 3 calendar months back (the
/// API's documented history), plus a margin.
pub fn reach_start(now: DateTime<Utc>) -> i64 {
    let three_months = now
        .checked_sub_months(Months::new(3))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    three_months.timestamp_millis() + REACH_MARGIN_MS
}

/// A span of consecutive missing intervals requested together: `[start, end)` in UTC epoch
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First interval's start.
    pub start: i64,
    /// Last interval's end.
    pub end: i64,
}

/// Groups interval starts (any order) into spans of consecutive intervals, each under 3 days;
/// intervals older than `reach` or ending after `now` are left out (they stay missing).
pub fn spans(starts: &[i64], interval_ms: i64, reach: i64, now: i64) -> Vec<Span> {
    let mut sorted: Vec<i64> = starts
        .iter()
        .copied()
        .filter(|s| *s >= reach && s + interval_ms <= now)
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<Span> = Vec::new();
    for start in sorted {
        match out.last_mut() {
            Some(span) if span.end == start && start + interval_ms - span.start < MAX_SPAN_MS => {
                span.end = start + interval_ms;
            }
            _ => out.push(Span {
                start,
                end: start + interval_ms,
            }),
        }
    }
    out
}

/// Requests (before paging) for `spans`: each span × each chunk of ids × each chunk of metrics.
pub fn request_count(spans: usize, ids: usize, metrics: usize) -> usize {
    spans * ids.div_ceil(IDS_PER_REQUEST) * metrics.div_ceil(METRICS_PER_REQUEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF_HOUR: i64 = 1_800_000;

    #[test]
    fn consecutive_intervals_share_a_span_and_gaps_split_them() {
        let starts = [0, HALF_HOUR, 2 * HALF_HOUR, 5 * HALF_HOUR];
        assert_eq!(
            spans(&starts, HALF_HOUR, 0, i64::MAX),
            vec![
                Span {
                    start: 0,
                    end: 3 * HALF_HOUR
                },
                Span {
                    start: 5 * HALF_HOUR,
                    end: 6 * HALF_HOUR
                }
            ]
        );
    }

    #[test]
    fn a_span_stays_under_three_days() {
        let starts: Vec<i64> = (0..4 * 48).map(|i| i * HALF_HOUR).collect();
        let got = spans(&starts, HALF_HOUR, 0, i64::MAX);
        assert!(got.iter().all(|s| s.end - s.start < MAX_SPAN_MS));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].end, got[1].start);
        assert_eq!(got[1].end, 4 * 48 * HALF_HOUR);
    }

    #[test]
    fn intervals_out_of_reach_or_not_over_are_left_out() {
        let starts = [0, HALF_HOUR, 2 * HALF_HOUR];
        let got = spans(&starts, HALF_HOUR, HALF_HOUR, 2 * HALF_HOUR);
        assert_eq!(
            got,
            vec![Span {
                start: HALF_HOUR,
                end: 2 * HALF_HOUR
            }]
        );
    }

    #[test]
    fn reach_is_three_calendar_months_back() {
        let now: DateTime<Utc> = "2026-05-31T12:00:00Z".parse().unwrap();
        let edge: DateTime<Utc> = "2026-02-28T12:00:00Z".parse().unwrap();
        assert_eq!(reach_start(now), edge.timestamp_millis() + REACH_MARGIN_MS);
        assert_eq!(request_count(2, 101, 21), 8);
    }
}
