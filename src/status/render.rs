//! `cxlake status` as a table for people: one row per job, then one line per job that is not
//! ok saying why.

use chrono::Duration;

use super::verdict::age;
use super::{JobStatus, Report, Verdict};

const HEADER: [&str; 12] = [
    "JOB",
    "VERDICT",
    "LAST RUN",
    "EXIT",
    "LAST SUCCESS",
    "LATE AFTER",
    "ROWS",
    "REJECTS",
    "LOST",
    "MISSING",
    "WM LAG",
    "API",
];

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |n| n.to_string())
}

fn ago(seconds: Option<i64>) -> String {
    seconds.map_or_else(
        || "never".into(),
        |s| format!("{} ago", age(Duration::seconds(s))),
    )
}

fn row(job: &JobStatus, report: &Report) -> [String; 12] {
    let last_run = job.last_run.as_ref();
    let api = match (job.api_calls, job.api_budget_used_pct) {
        (Some(calls), Some(pct)) => format!("{calls} calls, org {pct:.0}%"),
        (Some(calls), None) => format!("{calls} calls"),
        (None, Some(pct)) => format!("org {pct:.0}%"),
        (None, None) => "-".into(),
    };
    [
        job.job.clone(),
        job.verdict.name().to_string(),
        ago(last_run.map(|r| (report.now - r.finished_at).num_seconds())),
        last_run.map_or_else(|| "-".into(), |r| r.exit_code.to_string()),
        ago(job.last_success_age_seconds),
        age(Duration::seconds(job.late_after_seconds)),
        count(job.rows),
        count(job.rejects),
        count(job.lost_rows),
        count(job.missing_intervals),
        job.watermark_lag_seconds
            .map_or_else(|| "-".into(), |s| age(Duration::seconds(s))),
        api,
    ]
}

/// The table, its columns aligned, then a line per job that is not ok.
pub fn table(report: &Report) -> String {
    let rows: Vec<[String; 12]> = report.jobs.iter().map(|j| row(j, report)).collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(HEADER.to_vec());
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    for job in report.jobs.iter().filter(|j| j.verdict != Verdict::Ok) {
        out += &format!("{}: {}: {}\n", job.job, job.verdict.name(), job.reason);
    }
    out
}
