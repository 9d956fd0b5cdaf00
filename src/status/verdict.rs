//! The one-word verdict on a job, from its newest run and its newest successful run: pure, so
//! the rules are tested without a lake.

use chrono::{DateTime, Duration, Utc};

use crate::observe::last_run::RunBrief;

/// How a job is doing, from good to bad (the worst one decides `cxlake status`'s exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The last run did everything and the last success is within the job's schedule.
    Ok,
    /// The last run landed its data but not all of it: inputs or records rejected, Connect
    /// intervals missing, or a Salesforce export stopped at its API budget (it resumes).
    Partial,
    /// No successful run within the job's schedule (or none at all): the schedule stopped
    /// firing, runs are skipped or killed, or the job never ran.
    Late,
    /// The last run failed (exit 1 or 2, or rows lost): nothing was committed for the failed
    /// unit, and the next run retries.
    Failing,
}

impl Verdict {
    /// The word shown.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Partial => "partial",
            Verdict::Late => "late",
            Verdict::Failing => "failing",
        }
    }
}

/// What a run's exit code means, in a word or two.
pub fn outcome(exit_code: u8) -> &'static str {
    match exit_code {
        0 => "ok",
        1 => "failed",
        2 => "bad usage",
        3 => "partial",
        4 => "skipped",
        5 => "budget stop",
        _ => "unknown",
    }
}

/// The verdict on a job and one line saying why, at `now`, for a job that is late after
/// `late_after` without a successful run.
pub fn judge(
    last_run: Option<&RunBrief>,
    last_success: Option<&RunBrief>,
    now: DateTime<Utc>,
    late_after: Duration,
) -> (Verdict, String) {
    let Some(run) = last_run else {
        return (Verdict::Late, "no run recorded in the lake".into());
    };
    let lost = run.lost_rows.unwrap_or(0);
    if matches!(run.exit_code, 1 | 2) || lost > 0 {
        let why = match (&run.error, lost) {
            (Some(error), _) => error.clone(),
            (None, lost) if lost > 0 => format!("{lost} rows lost"),
            (None, _) => "no error recorded".into(),
        };
        return (
            Verdict::Failing,
            format!(
                "last run failed (exit {}, {} ago): {why}",
                run.exit_code,
                age(now - run.finished())
            ),
        );
    }
    match last_success {
        None => {
            return (
                Verdict::Late,
                "no successful run recorded in the lake".into(),
            )
        }
        Some(success) if now - success.finished() > late_after => {
            return (
                Verdict::Late,
                format!(
                    "last success {} ago, late after {}",
                    age(now - success.finished()),
                    age(late_after)
                ),
            )
        }
        Some(_) => {}
    }
    let rejects = run.rejects.unwrap_or(0);
    let missing = run.missing_intervals.unwrap_or(0);
    if run.exit_code == 3 || rejects > 0 {
        return (
            Verdict::Partial,
            format!("last run rejected {rejects} input(s); see _etl/rejects/"),
        );
    }
    if run.exit_code == 5 {
        return (
            Verdict::Partial,
            "last run stopped at the Salesforce API budget; the next run resumes".into(),
        );
    }
    if missing > 0 {
        return (
            Verdict::Partial,
            format!("{missing} Connect interval(s) missing"),
        );
    }
    (Verdict::Ok, String::new())
}

/// A duration as people read it: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn age(duration: Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 60 {
        format!("{seconds}s")
    } else if minutes < 60 {
        format!("{minutes}m")
    } else if hours < 48 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m:02}m"),
        }
    } else {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h:02}h"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an instant")
            .with_timezone(&Utc)
    }

    fn run(exit_code: u8, finished: &str) -> RunBrief {
        RunBrief {
            run_id: "r".into(),
            job: "q".into(),
            started_at: at(finished) - Duration::seconds(5),
            finished_at: Some(at(finished)),
            exit_code,
            rows: Some(10),
            rejects: Some(u64::from(exit_code == 3)),
            lost_rows: Some(0),
            ..RunBrief::default()
        }
    }

    const NOW: &str = "2024-03-10T12:00:00Z";

    fn verdict(last: Option<&RunBrief>, success: Option<&RunBrief>) -> Verdict {
        judge(last, success, at(NOW), Duration::hours(2)).0
    }

    #[test]
    fn a_recent_clean_run_is_ok() {
        let r = run(0, "2024-03-10T11:50:00Z");
        assert_eq!(verdict(Some(&r), Some(&r)), Verdict::Ok);
    }

    #[test]
    fn a_job_without_runs_or_successes_is_late() {
        assert_eq!(verdict(None, None), Verdict::Late);
        let partial_never_ok = run(3, "2024-03-10T11:50:00Z");
        assert_eq!(verdict(Some(&partial_never_ok), None), Verdict::Late);
    }

    #[test]
    fn an_old_success_is_late_past_the_schedule_only() {
        let r = run(0, "2024-03-10T09:59:00Z");
        let (v, why) = judge(Some(&r), Some(&r), at(NOW), Duration::hours(2));
        assert_eq!(v, Verdict::Late);
        assert_eq!(why, "last success 2h01m ago, late after 2h");
        let r = run(0, "2024-03-10T10:01:00Z");
        assert_eq!(verdict(Some(&r), Some(&r)), Verdict::Ok);
    }

    #[test]
    fn a_failed_last_run_is_failing_even_when_late() {
        let ok = run(0, "2024-03-09T00:00:00Z");
        let mut failed = run(1, "2024-03-10T11:50:00Z");
        failed.error = Some("job q: lock: access denied".into());
        let (v, why) = judge(Some(&failed), Some(&ok), at(NOW), Duration::hours(2));
        assert_eq!(v, Verdict::Failing);
        assert!(
            why.contains("exit 1") && why.contains("access denied"),
            "{why}"
        );
    }

    #[test]
    fn rows_lost_are_failing() {
        let mut r = run(0, "2024-03-10T11:50:00Z");
        r.lost_rows = Some(3);
        assert_eq!(verdict(Some(&r), Some(&r)), Verdict::Failing);
    }

    #[test]
    fn rejects_budget_stops_and_missing_intervals_are_partial() {
        let rejected = run(3, "2024-03-10T11:50:00Z");
        assert_eq!(verdict(Some(&rejected), Some(&rejected)), Verdict::Partial);
        let stopped = run(5, "2024-03-10T11:50:00Z");
        assert_eq!(verdict(Some(&stopped), Some(&stopped)), Verdict::Partial);
        let mut gaps = run(0, "2024-03-10T11:50:00Z");
        gaps.missing_intervals = Some(2);
        assert_eq!(verdict(Some(&gaps), Some(&gaps)), Verdict::Partial);
    }

    #[test]
    fn verdicts_order_from_good_to_bad() {
        assert!(Verdict::Ok < Verdict::Partial);
        assert!(Verdict::Partial < Verdict::Late);
        assert!(Verdict::Late < Verdict::Failing);
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Duration::seconds(45)), "45s");
        assert_eq!(age(Duration::minutes(12)), "12m");
        assert_eq!(age(Duration::minutes(185)), "3h05m");
        assert_eq!(age(Duration::hours(26)), "26h");
        assert_eq!(age(Duration::hours(52)), "2d04h");
        assert_eq!(age(Duration::days(3)), "3d");
        assert_eq!(age(Duration::seconds(-5)), "0s");
    }
}
