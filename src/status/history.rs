//! For a lake written by a cxlake that kept no last-run pointers: a job's newest run and newest
//! successful run, found from the run history by key order. `cxlake_runs/dt=<day>/<run-id>.parquet`
//! names every run (run ids start with the start time), so the scan lists the day folders once,
//! then the newest days' files, and reads the manifests (`_etl/runs/<run-id>.json`) of this
//! job's runs newest first until one succeeded, at most [`MAX_DAYS`] days and [`MAX_RUNS`] runs
//! back.

use crate::lake::Location;
use crate::observe::last_run::{is_success, LastRunError, RunBrief};
use crate::observe::run_tables::RUNS_TABLE;

/// How many of the newest run days the scan looks at: a job without a success for this long is
/// late whatever its schedule.
pub const MAX_DAYS: usize = 35;

/// How many of the job's manifests the scan reads at most looking for a success (a job failing
/// every half hour for days is failing; its last success can stay unknown).
pub const MAX_RUNS: usize = 200;

/// Length of the time at the start of a run id (`20240310T101500123Z`).
const RUN_ID_TIME: usize = 19;

/// The job a run id (`<time>-<job>-<pid>`) belongs to.
fn job_of(run_id: &str) -> Option<&str> {
    let rest = run_id.get(RUN_ID_TIME..)?.strip_prefix('-')?;
    let (job, pid) = rest.rsplit_once('-')?;
    pid.bytes().all(|b| b.is_ascii_digit()).then_some(job)
}

/// The newest run of `job` and its newest successful run, from the run history.
pub async fn scan(
    lake: &Location,
    job: &str,
) -> Result<(Option<RunBrief>, Option<RunBrief>), LastRunError> {
    let days = lake.list_folders(&format!("{RUNS_TABLE}/")).await?;
    let mut last = None;
    let mut read = 0;
    for day in days.iter().rev().take(MAX_DAYS) {
        let prefix = format!("{RUNS_TABLE}/{day}/");
        let mut runs: Vec<String> = lake
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|l| {
                let run_id = l.relative.strip_prefix(&prefix)?.strip_suffix(".parquet")?;
                (job_of(run_id) == Some(job)).then(|| run_id.to_string())
            })
            .collect();
        runs.sort();
        for run_id in runs.iter().rev() {
            if read == MAX_RUNS {
                return Ok((last, None));
            }
            read += 1;
            let key = format!("_etl/runs/{run_id}.json");
            let Some(run) = crate::observe::last_run::read(lake, &key).await? else {
                continue;
            };
            let succeeded = is_success(run.exit_code);
            if last.is_none() {
                last = Some(run.clone());
            }
            if succeeded {
                return Ok((last, Some(run)));
            }
        }
    }
    Ok((last, None))
}

#[cfg(test)]
mod tests {
    use super::job_of;

    #[test]
    fn run_ids_name_their_job() {
        assert_eq!(
            job_of("20240310T101500123Z-rollup-queue-4242"),
            Some("rollup-queue")
        );
        assert_eq!(job_of("20240310T101500123Z-q-1"), Some("q"));
        assert_eq!(job_of("20240310T101500123Z-q"), None);
        assert_eq!(job_of("short"), None);
    }
}
