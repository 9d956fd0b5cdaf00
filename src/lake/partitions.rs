//! Which daily partitions of a table a downstream job (roll-up, push-back) should read: those
//! changed since its watermark, or those of the `--from/--to` days.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{layout, Location, StoreError};
use crate::window::{local_midnight, Window};

/// A daily partition file: day (days since epoch), key, last modified.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayFile {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Key relative to the lake.
    pub key: String,
    /// Last modification time.
    pub modified: DateTime<Utc>,
}

/// Partition files of `table`: with an open window, those modified after `watermark` (all when
/// there is none); otherwise those whose day (in `tz`) overlaps the window. Sorted by day.
pub async fn changed_days(
    lake: &Location,
    table: &str,
    watermark: Option<DateTime<Utc>>,
    window: &Window,
    tz: Tz,
) -> Result<Vec<DayFile>, StoreError> {
    let listed = lake.list(&layout::table_prefix(table)).await?;
    let mut days: Vec<DayFile> = listed
        .into_iter()
        .filter_map(|l| {
            let day = layout::parse_partition_file(table, &l.relative)?;
            Some(DayFile {
                day,
                key: l.relative,
                modified: l.modified,
            })
        })
        .filter(|f| {
            if window.is_open() {
                watermark.is_none_or(|w| f.modified > w)
            } else {
                let date = layout::date_of(f.day);
                let start = local_midnight(date, tz);
                let end = local_midnight(date.succ_opt().unwrap_or(date), tz);
                window.start.is_none_or(|s| end > s) && window.end.is_none_or(|e| start < e)
            }
        })
        .collect();
    days.sort();
    Ok(days)
}
