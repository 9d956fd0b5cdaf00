//! The window of a run: `--from`/`--to` days in the job's time zone, turned into UTC instants.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A half-open span of UTC time `[start, end)`; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant included.
    pub start: Option<DateTime<Utc>>,
    /// First instant excluded.
    pub end: Option<DateTime<Utc>>,
}

impl Window {
    /// The days `from..=to` in `tz` (either may be open).
    pub fn from_days(from: Option<NaiveDate>, to: Option<NaiveDate>, tz: Tz) -> Window {
        Window {
            start: from.map(|d| local_midnight(d, tz)),
            end: to.map(|d| local_midnight(d + Days::new(1), tz)),
        }
    }

    /// Whether `at` falls inside.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| at >= s) && self.end.is_none_or(|e| at < e)
    }

    /// True when neither end is set.
    pub fn is_open(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }
}

/// The first instant of `day` in `tz` (on a day that starts in a DST gap, the first valid one).
pub fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..=4)
        .find_map(|hours| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(hours)))
                .earliest()
        })
        .expect("a day has a valid local hour within 4 hours of midnight")
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_local_to_the_job_time_zone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let w = Window::from_days(
            NaiveDate::from_ymd_opt(2024, 3, 10),
            NaiveDate::from_ymd_opt(2024, 3, 10),
            tz,
        );
        assert_eq!(w.start.unwrap().to_rfc3339(), "2024-03-10T05:00:00+00:00");
        assert_eq!(w.end.unwrap().to_rfc3339(), "2024-03-11T04:00:00+00:00"); // 23-hour day
        assert!(w.contains("2024-03-10T05:00:00Z".parse().unwrap()));
        assert!(!w.contains("2024-03-11T04:00:00Z".parse().unwrap()));
    }

    #[test]
    fn open_ends() {
        let w = Window::from_days(None, None, Tz::UTC);
        assert!(w.is_open() && w.contains(Utc::now()));
    }
}
