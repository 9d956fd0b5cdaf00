//! The `cxlake` command line: parses arguments, runs jobs, maps outcomes to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

use cxlake::job::{self, Job};
use cxlake::observe::LogFormat;
use cxlake::runner::{self, Exit, JobError, RunOptions, Stop};
use cxlake::status::{self, StatusOptions, Target, Verdict};

/// jemalloc: glibc's malloc fragments badly under this workload (many small Arrow buffers
/// allocated on rayon threads, freed on others), which showed as superlinear run time and
/// multi-GB peak RSS on a year of small report files.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "cxlake",
    version,
    about = "Batch ETL for Amazon Connect contact centers: interval reports to an Athena-ready Parquet lake.",
    after_help = "Exit codes: 0 ok, 1 failure (nothing committed for the failed unit; or rows lost, see cxlake_reconciliation; or a Connect \
job's [fill] could not finish: the intervals it did not fill stay missing), 2 bad usage or job file, \
3 partial (some inputs or records rejected; see _etl/rejects/ in the lake), 4 skipped (another run of the job \
holds its lock under _etl/locks/), 5 stopped at the Salesforce API budget (nothing lost; finished objects and slices are \
committed and the next run resumes), 143 stopped by SIGTERM or SIGINT (the work in flight abandoned, the run \
recorded as stopped and its lock released within 10 s; the next run resumes).\n\n\
Every job setting can be overridden with CXLAKE_<SECTION>_<KEY>, e.g. CXLAKE_LAKE_URL=s3://bucket/prefix \
(an empty one unsets the key, e.g. CXLAKE_FILL_INSTANCE_ARN=).\n\
AWS credentials and region come from the standard chain (env, profile/SSO via AWS_PROFILE, ECS task role);\n\
AWS_ENDPOINT_URL points S3 and Glue at another endpoint.\n\n\
Examples:\n  cxlake validate jobs/demo/*.toml\n  cxlake run jobs/demo/connect-queue.toml\n  \
cxlake init jobs/prod --reports s3://reports/connect/alias/Reports/SFDC/ --instance alias --lake s3://lake/cx\n  \
cxlake run jobs/aws/connect-queue.toml --from 2024-01-01 --to 2024-06-30 --dry-run\n  \
cxlake status jobs/aws/*.toml"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, or a tracing filter). Repeated warnings are shown
    /// once with a count at the end of the run; debug shows every one.
    #[arg(long, global = true, env = "CXLAKE_LOG", default_value = "info")]
    log_level: String,
    /// Log lines as text for people (`human`) or one JSON object per event (`json`, for
    /// CloudWatch); `auto`: human on a terminal, JSON otherwise.
    #[arg(
        long,
        global = true,
        env = "CXLAKE_LOG_FORMAT",
        default_value = "auto",
        value_enum
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run jobs. Without --from/--to, reads what is new or changed since the last run (all on the first run).
    Run {
        /// Job files.
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
        /// First day to (re)process, YYYY-MM-DD, in the job's time zone.
        #[arg(long, value_parser = parse_day)]
        from: Option<NaiveDate>,
        /// Last day to (re)process, inclusive.
        #[arg(long, value_parser = parse_day)]
        to: Option<NaiveDate>,
        /// Print the plan (files → partitions) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run shard I of N (0 ≤ I < N). connect-intervals (needs --from/--to): the files of every
        /// Nth partition day. salesforce-export: every Nth object of the job, from the I-th.
        /// Shards write disjoint partitions and objects and can run at once.
        /// `array/N` takes I from AWS_BATCH_JOB_ARRAY_INDEX (each child of an AWS Batch array job of size N).
        #[arg(long, value_parser = runner::parse_shard, value_name = "I/N")]
        shard: Option<(u32, u32)>,
        /// Units of work in flight: report files fetched and parsed at once (connect-intervals),
        /// interval days rolled up at once (interval-rollup).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=512))]
        concurrency: u64,
        /// Seconds after which the job lock of a run that stopped refreshing it (a crashed run) is
        /// stale and may be taken over; a live run refreshes it every third of this.
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
        lock_ttl: u64,
        /// Re-send every record of the window (every day without --from/--to), also those
        /// unchanged since the last push (salesforce-pushback; by default only new or changed
        /// records are sent).
        #[arg(long)]
        full: bool,
    },
    /// Check job files and report every problem at once.
    Validate {
        /// Job files.
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
        /// Print the effective settings after environment overrides.
        #[arg(long)]
        print: bool,
    },
    /// Print the schema of the tables a job writes (column, Arrow type, Glue type).
    Schema {
        /// Job file.
        job: PathBuf,
    },
    /// Write a new deployment's job files (Connect queue and agent, roll-ups, Salesforce export,
    /// push-back) from the production examples, with this deployment's settings, validated.
    Init(InitArgs),
    /// Serve the built-in Salesforce API emulator (demo, tests, benchmarks).
    Emulator(sf_emulator::EmulatorArgs),
    /// Glue Data Catalog commands.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// List the fault points compiled in (kind, name, what is committed when it is reached);
    /// the crash tests arm each with FAILPOINTS=<name>=panic.
    #[cfg(feature = "failpoints")]
    #[command(hide = true)]
    FaultPoints,
    /// How each job is doing, from the lake alone: its last run and exit, the age of its last
    /// success against its schedule, rows, rejects, lost rows, missing intervals, watermark lag
    /// (Salesforce export), API budget used, and a verdict: ok, partial, late or failing.
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
}

const STATUS_HELP: &str = "Verdicts: ok (the last run did everything, and the last success is within the \
schedule); partial (the last run landed its data but rejected inputs or records, found Connect intervals \
missing, or stopped at the Salesforce API budget); late (no successful run within late_after_hours: \
the schedule stopped firing, runs are skipped or killed, or the job never ran); failing (the last run \
failed: exit 1 or 2, or rows lost). A successful run is one that exited 0, 3 or 5.\n\n\
Exit codes (the worst verdict of the jobs): 0 every job ok, 3 partial, 6 late, 7 failing; \
1 the lake could not be read, 2 bad usage or job file.\n\n\
Examples:\n  cxlake status jobs/aws/*.toml\n  cxlake status --lake s3://lake-bucket/cxlake --json\n  \
cxlake status jobs/demo/*.toml --now 2030-01-01T00:00:00Z";

#[derive(clap::Args)]
struct StatusArgs {
    /// Job files (their lakes and late_after_hours). Without any: every job with run records
    /// in --lake.
    jobs: Vec<PathBuf>,
    /// The lake whose jobs to report when no job file is given (s3://bucket/prefix or
    /// file://folder).
    #[arg(long, env = "CXLAKE_LAKE_URL")]
    lake: Option<String>,
    /// One JSON document (the jobs, their figures and verdicts) instead of the table.
    #[arg(long)]
    json: bool,
    /// Late after this many hours without a successful run, for every job (default: the job
    /// file's [job] late_after_hours, else 2 for connect-intervals and 26 for the daily kinds).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=744))]
    late_after_hours: Option<u32>,
    /// Measure ages at this instant (RFC 3339, e.g. 2024-03-11T06:00:00Z) instead of now.
    #[arg(long, value_parser = parse_instant)]
    now: Option<DateTime<Utc>>,
}

#[derive(clap::Args)]
struct InitArgs {
    /// Folder to write the job files into (created if missing).
    dir: PathBuf,
    #[command(flatten)]
    deployment: job::init::Deployment,
    /// Replace job files that already exist.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Create or update the job's Glue tables (add-only) without moving data.
    Sync {
        /// Job file.
        job: PathBuf,
    },
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("expected an RFC 3339 instant such as 2024-03-11T06:00:00Z, got {text:?}")
        })
}

/// `cxlake status`'s exit code: the worst verdict of its jobs (`--help` and the README document
/// the table; 1 and 2 keep their meaning of every command).
fn status_code(worst: Verdict) -> u8 {
    match worst {
        Verdict::Ok => 0,
        Verdict::Partial => 3,
        Verdict::Late => 6,
        Verdict::Failing => 7,
    }
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("expected YYYY-MM-DD, got {text:?}"))
}

/// A failure with the exit class it maps to (the codes are [`Exit::code`]'s table, which
/// `--help` and the README document).
struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            exit: Exit::Failure,
            error: error.into(),
        }
    }
}

/// A job's error keeps its own exit class.
fn job_failure(error: JobError) -> Failure {
    Failure {
        exit: error.exit(),
        error: error.into(),
    }
}

fn usage(error: anyhow::Error) -> Failure {
    Failure {
        exit: Exit::Usage,
        error,
    }
}

/// Parses the command line, runs it and maps its outcome to the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    cxlake::observe::init(&cli.log_level, cli.log_format);
    let outcome = try_main(cli);
    // Repeats held back after the last run's summary (none, usually) are counted now.
    cxlake::observe::repeats::take();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!(
                "error: {}",
                cxlake::observe::cause_chain(failure.error.as_ref())
            );
            ExitCode::from(failure.exit.code())
        }
    }
}

/// Runs the command; returns the process exit code.
fn try_main(cli: Cli) -> Result<u8, Failure> {
    cxlake::net::RetryPolicy::from_env(&cxlake::job::process_env())
        .map_err(|e| usage(anyhow::anyhow!(e)))?
        .install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    command(&runtime, cli.command)
}

/// `cxlake status`: prints the table (or JSON) and returns the worst verdict's code.
fn status(runtime: &tokio::runtime::Runtime, args: StatusArgs) -> Result<u8, Failure> {
    let targets: Vec<Target> = if !args.jobs.is_empty() {
        load_all(&args.jobs)?.iter().map(Target::of_job).collect()
    } else if let Some(lake) = &args.lake {
        runtime.block_on(status::targets_in_lake(lake, None))?
    } else {
        return Err(usage(anyhow::anyhow!(
            "status: give job files, or the lake to report on with --lake (or CXLAKE_LAKE_URL)"
        )));
    };
    let options = StatusOptions {
        now: args.now.unwrap_or_else(Utc::now),
        late_after_hours: args.late_after_hours,
    };
    let report = runtime.block_on(status::collect(&targets, options))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the status")?
        );
    } else {
        print!("{}", status::table(&report));
    }
    Ok(status_code(report.verdict))
}

fn command(runtime: &tokio::runtime::Runtime, command: Command) -> Result<u8, Failure> {
    let exit: Result<Exit, Failure> = match command {
        Command::Validate { jobs, print } => {
            let loaded = load_all(&jobs)?;
            let fills = loaded.iter().any(|job| {
                matches!(&job.kind, cxlake::job::JobKind::ConnectIntervals(s) if s.fill.is_some())
            });
            if fills {
                let problems = cxlake::connect::fill::mapping::problems();
                if !problems.is_empty() {
                    return Err(usage(anyhow::anyhow!(problems.join("\n"))));
                }
            }
            for (path, job) in jobs.iter().zip(loaded) {
                println!(
                    "{}: ok ({} job {:?})",
                    path.display(),
                    job.kind.name(),
                    job.name
                );
                if let cxlake::job::JobKind::ConnectIntervals(source) = &job.kind {
                    if let Some(fill) = &source.fill {
                        println!(
                            "  fills missing intervals from GetMetricDataV2 of {}: {} report columns mapped (schemas/connect_api_metrics.toml)",
                            fill.instance_arn,
                            cxlake::connect::fill::mapping::for_report(source.report).len()
                        );
                    }
                }
                if print {
                    println!("{}", job.settings_listing());
                }
            }
            Ok(Exit::Ok)
        }
        Command::Run {
            jobs,
            from,
            to,
            dry_run,
            lock_ttl,
            shard,
            concurrency,
            full,
        } => {
            let options = RunOptions {
                from,
                to,
                dry_run,
                shard,
                concurrency: concurrency as usize,
                lock_ttl: std::time::Duration::from_secs(lock_ttl),
                full,
                command: std::env::args().collect::<Vec<_>>().join(" "),
                stop: runtime
                    .block_on(async { Stop::listen() })
                    .context("listening for SIGTERM and SIGINT")?,
            };
            options.check().map_err(job_failure)?;
            let mut exit = Exit::Ok;
            for job in &load_all(&jobs)? {
                let outcome = runtime.block_on(runner::run(job, &options));
                exit = exit.max(outcome.map_err(job_failure)?);
                if exit == Exit::Stopped {
                    break;
                }
            }
            Ok(exit)
        }
        Command::Schema { job } => {
            let job = load_all(&[job])?.remove(0);
            print!(
                "{}",
                runtime
                    .block_on(runner::schema::listing(&job))
                    .map_err(job_failure)?
            );
            Ok(Exit::Ok)
        }
        Command::Init(args) => {
            match job::init::write(&args.dir, &args.deployment, args.force) {
                Ok(written) => print!("{written}"),
                Err(e) if e.is_usage() => return Err(usage(e.into())),
                Err(e) => return Err(e.into()),
            }
            Ok(Exit::Ok)
        }
        Command::Emulator(args) => {
            runtime.block_on(sf_emulator::run(args))?;
            Ok(Exit::Ok)
        }
        Command::Status(args) => return status(runtime, args),
        Command::Catalog {
            command: CatalogCommand::Sync { job },
        } => {
            let job = load_all(&[job])?.remove(0);
            print!(
                "{}",
                runtime
                    .block_on(runner::schema::catalog_sync(&job))
                    .map_err(job_failure)?
            );
            Ok(Exit::Ok)
        }
        #[cfg(feature = "failpoints")]
        Command::FaultPoints => {
            print!("{}", cxlake::faults::listing());
            Ok(Exit::Ok)
        }
    };
    exit.map(Exit::code)
}

/// Loads every job file, or fails with every file's problems (bad usage).
fn load_all(paths: &[PathBuf]) -> Result<Vec<Job>, Failure> {
    let env = job::process_env();
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match job::load(path, &env) {
            Ok(job) => jobs.push(job),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(jobs)
    } else {
        Err(usage(anyhow::anyhow!(errors.join("\n"))))
    }
}
