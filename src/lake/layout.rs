//! Object keys of tables, partitions and the `_etl/` area (kept outside every table location,
//! because Athena reads every object under a table's prefix).

use chrono::{Days, NaiveDate};

/// Days since 1970-01-01 → `YYYY-MM-DD`.
pub fn day_string(day: i32) -> String {
    date_of(day).format("%Y-%m-%d").to_string()
}

/// Days since 1970-01-01 → a date.
pub fn date_of(day: i32) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    if day >= 0 {
        epoch + Days::new(day as u64)
    } else {
        epoch - Days::new(day.unsigned_abs() as u64)
    }
}

/// A date → days since 1970-01-01.
pub fn day_number(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (date - epoch).num_days() as i32
}

/// The table's folder, relative to the lake root (ends with `/`).
pub fn table_prefix(table: &str) -> String {
    format!("{table}/")
}

/// The one Parquet file of a daily partition: `<table>/dt=D/<table>-D.parquet`.
pub fn partition_file(table: &str, day: i32) -> String {
    let d = day_string(day);
    format!("{table}/dt={d}/{table}-{d}.parquet")
}

/// The day of a partition file key, if `key` is one of `table`'s partition files.
pub fn parse_partition_file(table: &str, key: &str) -> Option<i32> {
    let rest = key.strip_prefix(table)?.strip_prefix("/dt=")?;
    let (d, file) = rest.split_once('/')?;
    let date = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
    (file == format!("{table}-{d}.parquet")).then(|| day_number(date))
}

/// Job state (watermark).
pub fn state_key(job: &str) -> String {
    format!("_etl/state/{job}.json")
}

/// One object's state of a salesforce-export job (its own object, so shards and concurrent
/// objects never rewrite each other's state).
pub fn object_state_key(job: &str, object: &str) -> String {
    format!("_etl/state/{job}/objects/{object}.json")
}

/// Table metadata kept by cxlake (columns added for unknown headers).
pub fn table_meta_key(table: &str) -> String {
    format!("_etl/tables/{table}.json")
}

/// Where a rejected input is copied: its path relative to the source root, so two rejected
/// files of one name in different folders both keep their copy.
pub fn reject_key(job: &str, relative: &str) -> String {
    format!("_etl/rejects/{job}/{}", relative.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_round_trip() {
        let day = day_number(NaiveDate::from_ymd_opt(2024, 3, 10).unwrap());
        assert_eq!(day, 19792);
        let key = partition_file("connect_queue_interval", day);
        assert_eq!(
            key,
            "connect_queue_interval/dt=2024-03-10/connect_queue_interval-2024-03-10.parquet"
        );
        assert_eq!(
            parse_partition_file("connect_queue_interval", &key),
            Some(day)
        );
        assert_eq!(parse_partition_file("connect_queue", &key), None);
        assert_eq!(day_string(-1), "1969-12-31");
    }
}
