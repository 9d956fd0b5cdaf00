//! Report object keys: `<ScheduleName>-YYYY-MM-DDThh:mm:ssZ.csv`, the time in UTC being the end of
//! the covered interval (the scheduled run time; Connect writes the file ~15 minutes later).

use chrono::{DateTime, NaiveDateTime, Utc};

/// A report file found in the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReportKey {
    /// When the report was scheduled (from the name); the export time used for "latest wins".
    pub exported_at: DateTime<Utc>,
    /// Key relative to the source root.
    pub relative: String,
    /// The schedule name before the timestamp.
    pub schedule: String,
}

const STAMP_LEN: usize = "YYYY-MM-DDThh:mm:ssZ".len();

impl ReportKey {
    /// Parses a key relative to the source root; `None` when the name is not a report name.
    /// Colons may arrive URL-encoded (`%3A`), as in S3 event notifications.
    pub fn parse(relative: &str) -> Option<ReportKey> {
        let file_name = relative.rsplit('/').next()?;
        let decoded = file_name.replace("%3A", ":").replace("%3a", ":");
        let stem = decoded
            .strip_suffix(".csv")
            .or_else(|| decoded.strip_suffix(".CSV"))?;
        let split = stem.len().checked_sub(STAMP_LEN + 1)?;
        let (schedule, stamp) = stem.split_at(split);
        let stamp = stamp.strip_prefix('-')?;
        let naive = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%SZ").ok()?;
        Some(ReportKey {
            exported_at: naive.and_utc(),
            relative: relative.to_string(),
            schedule: schedule.to_string(),
        })
    }

    /// The file name part of the key.
    pub fn file_name(&self) -> &str {
        self.relative.rsplit('/').next().unwrap_or(&self.relative)
    }

    /// The range of keys holding this schedule's reports named from 2000 up to `until`,
    /// spelled as this key spells its time (`:` or `%3A`): a listing may jump over it.
    /// Keys that start with the schedule name and such a time are all this range can hide.
    pub fn older_names(&self, until: DateTime<Utc>) -> Option<(String, String)> {
        let stem = self.relative.get(..self.relative.len() - ".csv".len())?;
        // The stamp holds two '-'; the schedule name ends at the third from the end.
        let name_end = stem.rmatch_indices('-').nth(2)?.0 + 1;
        let (prefix, stamp) = stem.split_at(name_end);
        let colon = ["%3A", "%3a"]
            .into_iter()
            .find(|c| stamp.contains(c))
            .unwrap_or(":");
        let until = until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        (until.as_str() > "2000").then(|| {
            (
                format!("{prefix}2000"),
                format!("{prefix}{}", until.replace(':', colon)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_schedule_and_utc_time() {
        let key = ReportKey::parse("sfIntervalQueue-2018-11-22T12:00:00Z.csv").unwrap();
        assert_eq!(key.schedule, "sfIntervalQueue");
        assert_eq!(
            key.exported_at,
            Utc.with_ymd_and_hms(2018, 11, 22, 12, 0, 0).unwrap()
        );
    }

    #[test]
    fn schedule_names_may_contain_dashes_and_keys_folders() {
        let key = ReportKey::parse("sub/dir/My-Queue-Report-2024-03-10T00:30:00Z.csv").unwrap();
        assert_eq!(key.schedule, "My-Queue-Report");
        assert_eq!(key.file_name(), "My-Queue-Report-2024-03-10T00:30:00Z.csv");
    }

    #[test]
    fn url_encoded_colons_are_accepted() {
        let key = ReportKey::parse("sfIntervalAgent-2018-11-21T17%3A00%3A00Z.csv").unwrap();
        assert_eq!(
            key.exported_at,
            Utc.with_ymd_and_hms(2018, 11, 21, 17, 0, 0).unwrap()
        );
    }

    #[test]
    fn older_names_are_a_key_range_in_the_key_spelling() {
        let until = Utc.with_ymd_and_hms(2024, 3, 8, 10, 0, 0).unwrap();
        let key = ReportKey::parse("sub/My-Queue-2024-03-10T00:30:00Z.csv").unwrap();
        assert_eq!(
            key.older_names(until),
            Some((
                "sub/My-Queue-2000".to_string(),
                "sub/My-Queue-2024-03-08T10:00:00Z".to_string()
            ))
        );
        let encoded = ReportKey::parse("Q-2024-03-10T00%3A30%3A00Z.csv").unwrap();
        assert_eq!(
            encoded.older_names(until).unwrap().1,
            "Q-2024-03-08T10%3A00%3A00Z"
        );
        // An old key sorts inside, a newer one and another schedule's ("Q-1-…") outside.
        let (from, to) = key.older_names(until).unwrap();
        let inside = |k: &str| from.as_str() <= k && k <= to.as_str();
        assert!(inside("sub/My-Queue-2024-03-07T23:30:00Z.csv"));
        assert!(!inside("sub/My-Queue-2024-03-08T10:30:00Z.csv"));
        assert!(!inside("sub/My-Queue-1-2024-03-01T00:00:00Z.csv"));
    }

    #[test]
    fn other_names_are_not_reports() {
        for name in [
            "notes.txt",
            "sfIntervalQueue.csv",
            "sfIntervalQueue-2018-11-22T12:00:00.csv",
            "sfIntervalQueue-2018-13-22T12:00:00Z.csv",
            "2018-11-22T12:00:00Z.csv",
        ] {
            assert_eq!(ReportKey::parse(name), None, "{name}");
        }
    }
}
