//! Reconciliation: for each unit a run wrote (a Connect partition, a Salesforce object), what
//! the source had, what was read, written and rejected, and whether those figures agree.
//!
//! The rules tell a real loss from the differences the pipeline expects:
//! - **lost**: rows the run received (or that the source counted for the very pages and job
//!   the run committed) are not in the file it wrote. The run fails (exit 1).
//! - **mismatch**: the figures differ for a reason the run knows and reports: rows in rejected
//!   files, an object refused or failed before anything of it was written (its watermark
//!   stays, so the next run repeats it), or `SELECT COUNT()` taken before the export differing
//!   from what the export returned (records changed in between). A warning; the exit code is
//!   what the run's rejects and failures make it.
//! - **ok**: everything read is in the file, and every count agrees. Rows read twice (an
//!   interval in two exports: the latest wins) and rows kept from earlier runs are expected.

/// The verdict on one unit; ordered from good to bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every figure agrees.
    Ok,
    /// The figures differ, for a reason the detail names; nothing is lost.
    Mismatch,
    /// Rows read or counted by the source are missing from what was written.
    Lost,
}

impl Status {
    /// The value in the `status` column.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Mismatch => "mismatch",
            Status::Lost => "lost",
        }
    }
}

/// One row of `cxlake_reconciliation` without the run's columns (run id, job, kind, start).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    /// The lake table written (`connect_queue_interval`, `sf_account`).
    pub table: String,
    /// The Salesforce object (`None` for Connect).
    pub object: Option<String>,
    /// The table partition the rows went to: `dt=2024-03-10`, `snapshot_date=2024-03-11`
    /// (`None` when nothing was written).
    pub partition: Option<String>,
    /// The Salesforce API that served the object (`rest`, `bulk`).
    pub api: Option<String>,
    /// Rows read from the source: data rows of the loaded report files (Connect), records
    /// received in result pages (Salesforce).
    pub rows_read: u64,
    /// Distinct row keys among them (Connect: queue or agent, interval, instance).
    pub keys_read: Option<u64>,
    /// Rows in the file written (the partition after the merge, the history file), counted
    /// from its Parquet footer; `None` when no file was written.
    pub rows_written: Option<u64>,
    /// Rows not loaded: data rows of rejected report files, records of a refused object.
    pub rows_rejected: u64,
    /// `SELECT COUNT()` with the export's WHERE, before the export.
    pub soql_count: Option<u64>,
    /// What the source announced for the pages served: `Sforce-NumberOfRecords` summed over
    /// Bulk result pages, or the REST query's `totalSize`.
    pub announced_records: Option<u64>,
    /// The Bulk job's `numberRecordsProcessed`.
    pub processed_records: Option<u64>,
    /// Records flagged deleted (`IsDeleted`, incremental exports read them with `queryAll`).
    pub deleted_records: Option<u64>,
    /// The verdict.
    pub status: Status,
    /// One line saying why.
    pub detail: String,
}

/// The worst status of a run's rows (`None` without rows).
pub fn worst(rows: &[Reconciliation]) -> Option<Status> {
    rows.iter().map(|r| r.status).max()
}

/// What one run did to one Connect partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionCounts {
    /// The table.
    pub table: String,
    /// `YYYY-MM-DD`.
    pub dt: String,
    /// Data rows of loaded files that belong to this day.
    pub rows_read: u64,
    /// Distinct keys among them.
    pub keys_read: u64,
    /// Rows in the partition file after the run; `None` when the run did not rewrite it.
    pub rows_written: Option<u64>,
    /// Data rows of rejected files whose name points to this day.
    pub rows_rejected: u64,
    /// How many such files.
    pub files_rejected: u64,
    /// Where their copies are (`_etl/rejects/<job>/`).
    pub rejects: String,
}

impl PartitionCounts {
    /// The reconciliation row: lost when a key read is not in the partition file.
    pub fn reconcile(&self) -> Reconciliation {
        let (status, detail) = match self.rows_written {
            Some(written) if self.keys_read > written => (
                Status::Lost,
                format!(
                    "{} distinct keys read, but the partition file holds {written} rows: {} lost",
                    self.keys_read,
                    self.keys_read - written
                ),
            ),
            None if self.keys_read > 0 => (
                Status::Lost,
                format!(
                    "{} distinct keys read, but the partition file was not written",
                    self.keys_read
                ),
            ),
            _ if self.files_rejected > 0 || self.rows_rejected > 0 => (
                Status::Mismatch,
                format!(
                    "{} rows in {} rejected file{} not loaded (copies and reasons in {})",
                    self.rows_rejected,
                    self.files_rejected,
                    if self.files_rejected == 1 { "" } else { "s" },
                    self.rejects
                ),
            ),
            _ => (Status::Ok, self.agreement()),
        };
        Reconciliation {
            table: self.table.clone(),
            object: None,
            partition: Some(format!("dt={}", self.dt)),
            api: None,
            rows_read: self.rows_read,
            keys_read: Some(self.keys_read),
            rows_written: self.rows_written,
            rows_rejected: self.rows_rejected,
            soql_count: None,
            announced_records: None,
            processed_records: None,
            deleted_records: None,
            status,
            detail,
        }
    }

    fn agreement(&self) -> String {
        let mut detail = format!(
            "{} rows read, {} distinct keys, all in the partition file",
            self.rows_read, self.keys_read
        );
        if self.rows_read > self.keys_read {
            detail.push_str(&format!(
                "; {} rows repeated a key (the latest export wins)",
                self.rows_read - self.keys_read
            ));
        }
        if let Some(kept) = self
            .rows_written
            .and_then(|w| w.checked_sub(self.keys_read))
            .filter(|&n| n > 0)
        {
            detail.push_str(&format!("; {kept} rows kept from files read before"));
        }
        detail
    }
}

/// What one run did to one Salesforce object.
#[derive(Debug, Clone, Default)]
pub struct ObjectCounts {
    /// Object API name.
    pub object: String,
    /// History table.
    pub table: String,
    /// `snapshot_date=…` of the history file written (`None`: none written).
    pub partition: Option<String>,
    /// `rest` or `bulk`, once known.
    pub api: Option<String>,
    /// Records received in result pages.
    pub received: u64,
    /// Rows in the history file written (0 when an incremental run found no changes).
    pub written: u64,
    /// `SELECT COUNT()` before the export.
    pub soql_count: Option<u64>,
    /// `Sforce-NumberOfRecords` summed, or REST `totalSize`.
    pub announced: Option<u64>,
    /// Bulk `numberRecordsProcessed`.
    pub processed: Option<u64>,
    /// Records flagged deleted.
    pub deleted: u64,
    /// Why nothing of the object was written, when it was refused (`rejected`: its data did
    /// not add up or parse) or a call failed; `None` when it was exported.
    pub refused: Option<Refusal>,
    /// How its API was chosen, e.g. `rest: INVALIDENTITY: … not supported by the Bulk API`.
    pub route: Option<String>,
}

/// Why an object was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its data was refused (a damaged page, a count that does not add up).
    Rejected(String),
    /// A call failed.
    Failed(String),
    /// The run stopped at its API budget: finished windows are kept, the next run resumes.
    Stopped(String),
}

/// Longest reason kept in a detail.
const MAX_REASON_CHARS: usize = 300;

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_REASON_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

impl ObjectCounts {
    fn announced_by(&self) -> &'static str {
        match self.api.as_deref() {
            Some("rest") => "totalSize",
            _ => "Sforce-NumberOfRecords summed",
        }
    }

    /// The reconciliation row. An exported object is lost when the history file holds fewer
    /// rows than were received, announced for its pages or processed by its Bulk job.
    pub fn reconcile(&self) -> Reconciliation {
        let (status, detail, written, rejected) = match &self.refused {
            Some(Refusal::Rejected(reason)) => (
                Status::Mismatch,
                format!(
                    "refused, nothing written, the watermark stays (the next run repeats it): {}",
                    one_line(reason)
                ),
                None,
                self.received,
            ),
            Some(Refusal::Failed(reason)) => (
                Status::Mismatch,
                format!(
                    "failed, nothing written, the watermark stays (the next run repeats it): {}",
                    one_line(reason)
                ),
                None,
                0,
            ),
            Some(Refusal::Stopped(reason)) => (
                Status::Mismatch,
                format!(
                    "stopped at the API budget, the watermark stays (the next run resumes the unfinished windows): {}",
                    one_line(reason)
                ),
                None,
                0,
            ),
            None => {
                let (status, mut detail) = self.exported();
                if let Some(route) = self.route.as_deref().filter(|r| r.starts_with("rest: ")) {
                    detail.push_str(&format!("; read over {}", one_line(route)));
                }
                (status, detail, Some(self.written), 0)
            }
        };
        Reconciliation {
            table: self.table.clone(),
            object: Some(self.object.clone()),
            partition: self.partition.clone(),
            api: self.api.clone(),
            rows_read: self.received,
            keys_read: None,
            rows_written: written,
            rows_rejected: rejected,
            soql_count: self.soql_count,
            announced_records: self.announced,
            processed_records: self.processed,
            deleted_records: Some(self.deleted),
            status,
            detail,
        }
    }

    fn exported(&self) -> (Status, String) {
        let written = self.written;
        let short = [
            (Some(self.received), "records received"),
            (self.announced, self.announced_by()),
            (self.processed, "numberRecordsProcessed"),
        ];
        if let Some((count, what)) = short
            .iter()
            .find_map(|(n, what)| n.filter(|&n| n > written).map(|n| (n, *what)))
        {
            return (
                Status::Lost,
                format!(
                    "{what}: {count}, but the history file holds {written} rows: {} lost",
                    count - written
                ),
            );
        }
        if let Some((count, what)) = short
            .iter()
            .find_map(|(n, what)| n.filter(|&n| n < written).map(|n| (n, *what)))
        {
            return (
                Status::Mismatch,
                format!("{what}: {count}, but the history file holds {written} rows"),
            );
        }
        match self.soql_count {
            Some(count) if count != self.received => (
                Status::Mismatch,
                format!(
                    "SELECT COUNT() before the export matched {count} records, the export {} \
                     (records changed in between; a change after the count is read by the next run)",
                    self.received
                ),
            ),
            _ => {
                let mut agreed = vec!["records received"];
                if self.soql_count.is_some() {
                    agreed.push("SELECT COUNT()");
                }
                if self.announced.is_some() {
                    agreed.push(self.announced_by());
                }
                if self.processed.is_some() {
                    agreed.push("numberRecordsProcessed");
                }
                agreed.push("the history file");
                (
                    Status::Ok,
                    format!("{written} records: {} agree", agreed.join(", ")),
                )
            }
        }
    }
}

/// What one roll-up run did to one roll-up partition (a grain's table, one day).
#[derive(Debug, Clone, Default)]
pub struct RollupCounts {
    /// The roll-up table.
    pub table: String,
    /// `YYYY-MM-DD`.
    pub dt: String,
    /// Interval rows of the day read.
    pub rows_read: u64,
    /// Rows of the roll-up partition.
    pub rows_written: u64,
}

impl RollupCounts {
    /// The reconciliation row: a day with interval rows must roll up into at least one row.
    pub fn reconcile(&self) -> Reconciliation {
        let (status, detail) = if self.rows_read > 0 && self.rows_written == 0 {
            (
                Status::Lost,
                format!(
                    "{} interval rows read, but the roll-up partition holds no row",
                    self.rows_read
                ),
            )
        } else {
            (
                Status::Ok,
                format!(
                    "{} interval rows rolled up into {} rows",
                    self.rows_read, self.rows_written
                ),
            )
        };
        Reconciliation {
            table: self.table.clone(),
            object: None,
            partition: Some(format!("dt={}", self.dt)),
            api: None,
            rows_read: self.rows_read,
            keys_read: None,
            rows_written: Some(self.rows_written),
            rows_rejected: 0,
            soql_count: None,
            announced_records: None,
            processed_records: None,
            deleted_records: None,
            status,
            detail,
        }
    }
}

/// What one push-back run did to its target object.
#[derive(Debug, Clone, Default)]
pub struct PushCounts {
    /// The lake table read.
    pub table: String,
    /// The Salesforce object written.
    pub object: String,
    /// Records read from the lake.
    pub read: u64,
    /// Of those, records sent (new or changed).
    pub sent: u64,
    /// Created by Salesforce.
    pub created: u64,
    /// Updated by Salesforce.
    pub updated: u64,
    /// Rejected by Salesforce.
    pub rejected: u64,
    /// Where rejected records are kept (`_etl/rejects/<job>/`).
    pub rejects: String,
}

impl PushCounts {
    /// The reconciliation row: every record sent is answered (created, updated or rejected);
    /// a record without an answer leaves its day pending, so the next run sends it again.
    pub fn reconcile(&self) -> Reconciliation {
        let answered = self.created + self.updated + self.rejected;
        let (status, detail) = if answered < self.sent {
            (
                Status::Mismatch,
                format!(
                    "{} records sent without an answer from Salesforce (their days are sent again next run)",
                    self.sent - answered
                ),
            )
        } else if answered > self.sent {
            (
                Status::Mismatch,
                format!(
                    "{answered} answers from Salesforce for {} records sent",
                    self.sent
                ),
            )
        } else if self.rejected > 0 {
            (
                Status::Mismatch,
                format!(
                    "{} records rejected by Salesforce (with its errors in {}; sent again next run)",
                    self.rejected, self.rejects
                ),
            )
        } else {
            (
                Status::Ok,
                format!(
                    "{} records sent: {} created, {} updated; {} unchanged since the last push not sent",
                    self.sent,
                    self.created,
                    self.updated,
                    self.read.saturating_sub(self.sent)
                ),
            )
        };
        Reconciliation {
            table: self.table.clone(),
            object: Some(self.object.clone()),
            partition: None,
            api: None,
            rows_read: self.read,
            keys_read: None,
            rows_written: Some(self.created + self.updated),
            rows_rejected: self.rejected,
            soql_count: None,
            announced_records: None,
            processed_records: None,
            deleted_records: None,
            status,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> PartitionCounts {
        PartitionCounts {
            table: "connect_queue_interval".into(),
            dt: "2024-03-10".into(),
            rows_read: 10,
            keys_read: 8,
            rows_written: Some(12),
            rows_rejected: 0,
            files_rejected: 0,
            rejects: "_etl/rejects/q/".into(),
        }
    }

    #[test]
    fn repeated_keys_and_earlier_rows_are_expected() {
        let row = partition().reconcile();
        assert_eq!(row.status, Status::Ok, "{}", row.detail);
        assert!(
            row.detail.contains("2 rows repeated a key"),
            "{}",
            row.detail
        );
        assert!(row.detail.contains("4 rows kept"), "{}", row.detail);
        assert_eq!(row.partition.as_deref(), Some("dt=2024-03-10"));
    }

    #[test]
    fn a_key_read_but_missing_from_the_partition_is_lost() {
        let row = PartitionCounts {
            rows_written: Some(7),
            ..partition()
        }
        .reconcile();
        assert_eq!(row.status, Status::Lost);
        assert!(row.detail.contains("1 lost"), "{}", row.detail);
        let unwritten = PartitionCounts {
            rows_written: None,
            ..partition()
        }
        .reconcile();
        assert_eq!(unwritten.status, Status::Lost);
    }

    #[test]
    fn rejected_files_are_a_mismatch_not_a_loss() {
        let row = PartitionCounts {
            rows_rejected: 3,
            files_rejected: 1,
            ..partition()
        }
        .reconcile();
        assert_eq!(row.status, Status::Mismatch);
        assert!(
            row.detail.starts_with("3 rows in 1 rejected file "),
            "{}",
            row.detail
        );
        // A day only a rejected file pointed to: nothing written, nothing read, nothing lost.
        let only = PartitionCounts {
            rows_read: 0,
            keys_read: 0,
            rows_written: None,
            rows_rejected: 5,
            files_rejected: 2,
            ..partition()
        }
        .reconcile();
        assert_eq!(only.status, Status::Mismatch);
    }

    fn exported() -> ObjectCounts {
        ObjectCounts {
            object: "Account".into(),
            table: "sf_account".into(),
            partition: Some("snapshot_date=2024-03-11".into()),
            api: Some("bulk".into()),
            received: 50,
            written: 50,
            soql_count: Some(50),
            announced: Some(50),
            processed: Some(50),
            deleted: 2,
            refused: None,
            route: None,
        }
    }

    #[test]
    fn agreeing_counts_are_ok() {
        let row = exported().reconcile();
        assert_eq!(row.status, Status::Ok, "{}", row.detail);
        assert_eq!(row.rows_written, Some(50));
        assert_eq!(row.deleted_records, Some(2));
    }

    #[test]
    fn fewer_rows_written_than_announced_or_processed_is_lost() {
        for counts in [
            ObjectCounts {
                written: 49,
                ..exported()
            },
            ObjectCounts {
                announced: Some(51),
                ..exported()
            },
            ObjectCounts {
                processed: Some(51),
                ..exported()
            },
        ] {
            let row = counts.reconcile();
            assert_eq!(row.status, Status::Lost, "{}", row.detail);
            assert!(row.detail.ends_with(" lost"), "{}", row.detail);
        }
    }

    #[test]
    fn a_count_taken_before_the_export_may_differ() {
        for count in [48, 53] {
            let row = ObjectCounts {
                soql_count: Some(count),
                ..exported()
            }
            .reconcile();
            assert_eq!(row.status, Status::Mismatch, "{}", row.detail);
            assert!(row.detail.contains("changed in between"), "{}", row.detail);
        }
    }

    #[test]
    fn a_refused_object_wrote_nothing_and_lost_nothing() {
        let row = ObjectCounts {
            written: 0,
            partition: None,
            received: 20,
            announced: Some(21),
            refused: Some(Refusal::Rejected(
                "Account Bulk job 750 page 2: expected 21 records,\n got 20".into(),
            )),
            ..exported()
        }
        .reconcile();
        assert_eq!(row.status, Status::Mismatch);
        assert_eq!((row.rows_written, row.rows_rejected), (None, 20));
        assert!(
            row.detail.ends_with("expected 21 records, got 20"),
            "{}",
            row.detail
        );
    }

    #[test]
    fn a_rolled_up_day_without_rows_is_lost() {
        let counts = RollupCounts {
            table: "connect_queue_hourly".into(),
            dt: "2024-03-10".into(),
            rows_read: 96,
            rows_written: 48,
        };
        assert_eq!(counts.reconcile().status, Status::Ok);
        let empty = RollupCounts {
            rows_written: 0,
            ..counts
        };
        assert_eq!(empty.reconcile().status, Status::Lost);
    }

    #[test]
    fn every_record_pushed_is_answered() {
        let counts = PushCounts {
            table: "connect_queue_interval".into(),
            object: "Metrics__c".into(),
            read: 10,
            sent: 8,
            created: 5,
            updated: 3,
            rejected: 0,
            rejects: "_etl/rejects/p/".into(),
        };
        let row = counts.reconcile();
        assert_eq!((row.status, row.rows_written), (Status::Ok, Some(8)));
        assert!(
            row.detail
                .ends_with("2 unchanged since the last push not sent"),
            "{}",
            row.detail
        );
        for other in [
            PushCounts {
                created: 4,
                ..counts.clone()
            },
            PushCounts {
                updated: 2,
                rejected: 1,
                ..counts.clone()
            },
        ] {
            assert_eq!(other.reconcile().status, Status::Mismatch);
        }
    }

    #[test]
    fn the_worst_status_wins() {
        let ok = exported().reconcile();
        let lost = ObjectCounts {
            written: 1,
            ..exported()
        }
        .reconcile();
        assert_eq!(worst(&[ok.clone(), lost]), Some(Status::Lost));
        assert_eq!(worst(&[ok]), Some(Status::Ok));
        assert_eq!(worst(&[]), None);
    }
}
