//! Running a job of any kind one way: check the options against the kind, take the job's lock,
//! plan, then print the plan (`--dry-run`) or run it, print the kind's summary, record the run
//! (manifest and EMF line) and release the lock. Each kind plugs in through [`JobRun`]; this
//! module knows no kind's internals, and the binary only parses arguments and maps [`Exit`]s.

mod connect;
mod export;
mod pushback;
mod rollup;
pub mod schema;
pub mod stop;

use std::fmt::Display;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::job::{Job, JobKind};
use crate::lake::lock::{self, LockError};
use crate::lake::partitions::DayFile;
use crate::lake::{Access, Location};
use crate::observe::progress::Progress;
pub use crate::observe::run::Exit;
use crate::observe::run::{RunMetrics, RunRecord};
use crate::window::Window;
pub use stop::Stop;

/// Any error a kind's stage returns, kept as the cause of a [`JobError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A run that could not be done: what was being done (the job and the step) and why.
#[derive(Debug)]
pub struct JobError {
    exit: Exit,
    /// What was being done; `None` when the cause says it all.
    context: Option<String>,
    cause: Option<BoxError>,
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.context, &self.cause) {
            (Some(context), _) => f.write_str(context),
            (None, Some(cause)) => cause.fmt(f),
            (None, None) => f.write_str("failed"),
        }
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause = self.cause.as_deref()?;
        match self.context {
            Some(_) => Some(cause),
            None => cause.source(),
        }
    }
}

impl JobError {
    /// Bad usage (exit 2), explained by `message`.
    pub fn usage(message: impl Into<String>) -> Self {
        JobError {
            exit: Exit::Usage,
            context: Some(message.into()),
            cause: None,
        }
    }

    /// A failed step (exit 1): `context` names the job and step, `source` says why.
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        JobError {
            exit: Exit::Failure,
            context: Some(context.into()),
            cause: Some(source.into()),
        }
    }

    /// A failure (exit 1) that `cause` explains on its own.
    pub fn cause(cause: impl Into<BoxError>) -> Self {
        JobError {
            exit: Exit::Failure,
            context: None,
            cause: Some(cause.into()),
        }
    }

    /// Like [`JobError::failed`], with the exit class `exit` (a kind's usage errors).
    pub fn with_exit(exit: Exit, context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        JobError {
            exit,
            context: Some(context.into()),
            cause: Some(source.into()),
        }
    }

    /// The exit class this error maps to.
    pub fn exit(&self) -> Exit {
        self.exit
    }
}

/// `map_err` adapter: a failure of job `job`'s `step` (`""` for the job as a whole).
fn failed<E: Into<BoxError>>(job: &Job, step: &str) -> impl FnOnce(E) -> JobError {
    let context = if step.is_empty() {
        format!("job {}", job.name)
    } else {
        format!("job {}: {step}", job.name)
    };
    move |e| JobError::failed(context, e)
}

/// The environment variable AWS Batch sets to each child's index in an array job.
pub const BATCH_ARRAY_INDEX: &str = "AWS_BATCH_JOB_ARRAY_INDEX";

/// Parses `--shard`: `I/N` with 0 ≤ I < N, or `array/N`, whose I is [`BATCH_ARRAY_INDEX`] (so
/// one AWS Batch array job of size N runs every shard of a backfill with one command line).
pub fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    shard_from(text, std::env::var(BATCH_ARRAY_INDEX).ok().as_deref())
}

/// [`parse_shard`] with the array index given.
fn shard_from(text: &str, array_index: Option<&str>) -> Result<(u32, u32), String> {
    let bad = || format!("expected I/N with 0 <= I < N, e.g. 0/4, or array/N, got {text:?}");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    let i: u32 = if i == "array" {
        let index = array_index.ok_or_else(|| {
            format!("--shard array/{n} takes I from {BATCH_ARRAY_INDEX}, which is not set (AWS Batch sets it in array jobs)")
        })?;
        index
            .parse()
            .map_err(|_| format!("{BATCH_ARRAY_INDEX}={index:?} is not a shard index"))?
    } else {
        i.parse().map_err(|_| bad())?
    };
    if n == 0 || i >= n {
        return Err(if i >= n && n > 0 && text.starts_with("array/") {
            format!("{BATCH_ARRAY_INDEX}={i} is not below the {n} shards of --shard {text}")
        } else {
            bad()
        });
    }
    Ok((i, n))
}

/// The options of `cxlake run` that apply to every job given.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// First day to (re)process, in each job's time zone.
    pub from: Option<NaiveDate>,
    /// Last day to (re)process, inclusive.
    pub to: Option<NaiveDate>,
    /// Print the plan and write nothing.
    pub dry_run: bool,
    /// Shard `I` of `N`: a backfill's days (connect-intervals) or a job's objects (salesforce-export).
    pub shard: Option<(u32, u32)>,
    /// Units of work in flight (report files, roll-up days).
    pub concurrency: usize,
    /// After how long a lock that is not refreshed is stale.
    pub lock_ttl: Duration,
    /// Re-send unchanged records (salesforce-pushback).
    pub full: bool,
    /// The command line, recorded in the lock and the run manifest.
    pub command: String,
    /// A signal to stop (SIGTERM, SIGINT): the run abandons its work and ends [`Exit::Stopped`].
    pub stop: Stop,
}

impl RunOptions {
    /// Checks the options that do not depend on a job.
    pub fn check(&self) -> Result<(), JobError> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return Err(JobError::usage(format!("--from {from} is after --to {to}")));
            }
        }
        Ok(())
    }

    /// Checks the options that apply to some kinds only against `job`'s kind.
    fn check_kind(&self, job: &Job) -> Result<(), JobError> {
        if self.full && !matches!(job.kind, JobKind::SalesforcePushback(_)) {
            return Err(JobError::usage(format!(
                "job {}: --full applies to salesforce-pushback jobs (a {} job has no record digests to bypass)",
                job.name,
                job.kind.name()
            )));
        }
        if self.shard.is_some()
            && matches!(job.kind, JobKind::ConnectIntervals(_))
            && (self.from.is_none() || self.to.is_none())
        {
            return Err(JobError::usage(format!(
                "job {}: --shard splits a connect-intervals backfill by day: give --from and --to as well",
                job.name
            )));
        }
        if self.shard.is_some()
            && !matches!(
                job.kind,
                JobKind::ConnectIntervals(_) | JobKind::SalesforceExport(_)
            )
        {
            return Err(JobError::usage(format!(
                "job {}: --shard applies to connect-intervals (days) and salesforce-export (objects) jobs; a {} job has nothing to split",
                job.name,
                job.kind.name()
            )));
        }
        Ok(())
    }
}

/// One job kind's way through a run. The runner calls `plan`, then `dry_run` (printing what it
/// returns) or `run`, and treats the report the same for every kind.
pub(crate) trait JobRun {
    /// What a run will do.
    type Plan;
    /// What a run did.
    type Report: Summary;
    /// What progress counts (`files`, `days`, …).
    const UNIT: &'static str;

    /// Decides what to read and write in `window`.
    async fn plan(&self, window: Window) -> Result<Self::Plan, JobError>;

    /// What `--dry-run` prints for `plan` (a kind may ask its target, never write it).
    async fn dry_run(&self, plan: &Self::Plan) -> Result<String, JobError>;

    /// Runs `plan`, counting units done on `progress`.
    async fn run(&self, plan: Self::Plan, progress: &Progress) -> Result<Self::Report, JobError>;
}

/// A kind's report: its summary (stdout) as `Display`, and what every run records of it.
pub(crate) trait Summary: Display {
    /// Logs the run's events (one `run finished` event with its figures, warnings first).
    fn log(&self);
    /// Lines for stderr (objects rejected or failed), after the summary.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// The exit class of a finished run (ok, partial, failure).
    fn exit(&self) -> Exit;
    /// The figures of the run manifest and the EMF line.
    fn metrics(&self) -> RunMetrics;
}

/// Runs `job` with `options`: under its lock (`_etl/locks/<job>`, shards lock separately; dry
/// runs take none), recording the run in the lake. Another run holding the lock is not an error
/// of this run: it is reported and the result is [`Exit::Locked`].
pub async fn run(job: &Job, options: &RunOptions) -> Result<Exit, JobError> {
    options.check_kind(job)?;
    let window = Window::from_days(options.from, options.to, job.timezone);
    if options.stop.received().is_some() {
        return Ok(Exit::Stopped);
    }
    if options.dry_run {
        let outcome = match until_stopped(dispatch(job, window, options), &options.stop).await {
            Ok(outcome) => outcome.map(|(exit, _)| exit),
            Err(_) => Ok(Exit::Stopped),
        };
        crate::observe::repeats::take();
        return outcome;
    }
    let lake = Location::open(&job.lake.url, job.lake.region.as_deref(), Access::Create)
        .await
        .map_err(failed(job, ""))?;
    let lock_name = match options.shard {
        Some((i, n)) => format!("{}.shard-{i}-of-{n}", job.name),
        None => job.name.clone(),
    };
    let ttl = options.lock_ttl;
    let lock = match lock::acquire(&lake, &lock_name, ttl, &options.command).await {
        Ok(lock) => lock,
        Err(held @ LockError::Held { .. }) => {
            eprintln!("skipped: {held}");
            crate::observe::repeats::take();
            return Ok(Exit::Locked);
        }
        Err(e) => return Err(failed(job, "lock")(e)),
    };
    if let Some(previous) = &lock.took_over {
        tracing::warn!(job = %job.name, owner = %previous.owner, expired = %previous.expires_at, "took over a stale lock (a run that did not finish)");
    }
    let heartbeat = lock.keep_alive(ttl);
    let started = chrono::Utc::now();
    let clock = Instant::now();
    // A stop abandons the kind's work where it is (see `stop`): nothing it did is lost.
    let outcome = match until_stopped(dispatch(job, window, options), &options.stop).await {
        Ok(outcome) => outcome,
        Err(signal) => {
            eprintln!(
                "stopped: job {} was told to stop ({signal}); the work in flight was abandoned, the next run resumes it",
                job.name
            );
            Ok((Exit::Stopped, RunMetrics::default()))
        }
    };
    heartbeat.abort();
    // Wait until the refresh task is gone, so no refresh of the lock runs alongside its release.
    let _ = heartbeat.await;
    let (exit, metrics, error) = match &outcome {
        Ok((Exit::Stopped, metrics)) => (
            Exit::Stopped,
            metrics.clone(),
            options.stop.received().map(|signal| {
                format!("stopped by {signal}: the work in flight was abandoned; the next run resumes it")
            }),
        ),
        Ok((exit, metrics)) => (*exit, metrics.clone(), None),
        Err(e) => (
            e.exit(),
            RunMetrics::default(),
            Some(crate::observe::cause_chain(e)),
        ),
    };

    let recorded = RunRecord {
        job: &job.name,
        kind: job.kind.name(),
        command: &options.command,
        window,
        started,
        seconds: clock.elapsed().as_secs_f64(),
        exit_code: exit.code(),
        failed: exit == Exit::Failure,
        error,
        metrics,
    }
    .report(&lake, job.catalog.as_ref(), job.lake.region.as_deref())
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(job = %job.name, error = %e, "could not release the job lock; it expires on its own");
    }
    // Reconciliation may turn a finished run into a failure (rows lost).
    outcome.map(|(exit, _)| {
        if recorded == Exit::Failure.code() {
            Exit::Failure
        } else {
            exit
        }
    })
}

/// Runs `work` until it ends or `stop` comes (then `Err` with the signal's name, and `work` is
/// dropped where it was).
async fn until_stopped<T>(
    work: impl std::future::Future<Output = T>,
    stop: &Stop,
) -> Result<T, &'static str> {
    // Biased: once a signal is in, the next poll stops, even if `work` could go on.
    tokio::select! {
        biased;
        signal = stop.requested() => Err(signal),
        done = work => Ok(done),
    }
}

/// A dry run's plan of interval days (roll-up, push-back): each partition read, and the target.
struct DayPlan<'a> {
    job: &'a str,
    plan: &'a [DayFile],
    target: &'a str,
}

impl Display for DayPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "plan for {}: {} interval days -> {}",
            self.job,
            self.plan.len(),
            self.target
        )?;
        for file in self.plan {
            writeln!(f, "  {}", file.key)?;
        }
        writeln!(f, "dry run: nothing written")
    }
}

/// Opens `job`'s kind and takes it through [`execute`].
async fn dispatch(
    job: &Job,
    window: Window,
    options: &RunOptions,
) -> Result<(Exit, RunMetrics), JobError> {
    match &job.kind {
        JobKind::ConnectIntervals(source) => {
            let kind = connect::ConnectRun::open(job, source, options).await?;
            execute(&kind, window, options).await
        }
        JobKind::SalesforceExport(spec) => {
            let kind = export::ExportRun::open(job, spec, options).await?;
            execute(&kind, window, options).await
        }
        JobKind::IntervalRollup(spec) => {
            let kind = rollup::RollupRun::open(job, spec, options).await?;
            execute(&kind, window, options).await
        }
        JobKind::SalesforcePushback(spec) => {
            let kind = pushback::PushbackRun::open(job, spec, options).await?;
            execute(&kind, window, options).await
        }
    }
}

/// Plan, then print the plan or run it and print the summary: the same for every kind.
async fn execute<K: JobRun>(
    kind: &K,
    window: Window,
    options: &RunOptions,
) -> Result<(Exit, RunMetrics), JobError> {
    let plan = kind.plan(window).await?;
    if options.dry_run {
        print!("{}", kind.dry_run(&plan).await?);
        return Ok((Exit::Ok, RunMetrics::default()));
    }
    let report = kind.run(plan, &Progress::new(K::UNIT)).await?;
    report.log();
    print!("{report}");
    for line in report.problems() {
        eprintln!("{line}");
    }
    Ok((report.exit(), report.metrics()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_the_flag_or_the_batch_array_index() {
        assert_eq!(shard_from("1/4", None), Ok((1, 4)));
        assert_eq!(shard_from("array/4", Some("3")), Ok((3, 4)));
        let unset = shard_from("array/4", None).unwrap_err();
        assert!(
            unset.contains(BATCH_ARRAY_INDEX) && unset.contains("not set"),
            "{unset}"
        );
        let beyond = shard_from("array/4", Some("4")).unwrap_err();
        assert!(beyond.contains("not below the 4 shards"), "{beyond}");
        assert!(shard_from("array/4", Some("x")).is_err());
        for bad in ["2/2", "1", "a/b", "0/0", "array/0", "-1/2"] {
            let e = shard_from(bad, Some("0")).unwrap_err();
            assert!(e.contains("I/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn exit_codes_are_the_documented_table() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Failure,
            Exit::Usage,
            Exit::Partial,
            Exit::Locked,
            Exit::Budget,
            Exit::Stopped,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 143]);
    }
}
