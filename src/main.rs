//! The `cxlake` command line: parses arguments, runs jobs, maps outcomes to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use cxlake::connect::job::{ConnectJob, OpenMode, RunReport};
use cxlake::export::{ExportError, ExportJob};
use cxlake::job::{self, Job, JobKind};
use cxlake::observe::run::{RunMetrics, RunRecord};
use cxlake::pushback::PushbackJob;
use cxlake::rollup::job::RollupJob;
use cxlake::window::Window;

/// jemalloc: glibc's malloc fragments badly under this workload (many small Arrow buffers
/// allocated on rayon threads, freed on others), which showed as superlinear run time and
/// multi-GB peak RSS on a year of small report files.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit codes (documented in the README and in `--help`).
mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PARTIAL: u8 = 3;
    pub const LOCKED: u8 = 4;
}

#[derive(Parser)]
#[command(
    name = "cxlake",
    version,
    about = "Batch ETL for Amazon Connect contact centers: interval reports to an Athena-ready Parquet lake.",
    after_help = "Exit codes: 0 ok, 1 failure (nothing committed for the failed unit; or rows lost, see cxlake_reconciliation), 2 bad usage or job file, \
3 partial (some inputs or records rejected; see _etl/rejects/ in the lake), 4 skipped (another run of the job \
holds its lock under _etl/locks/).\n\n\
Every job setting can be overridden with CXLAKE_<SECTION>_<KEY>, e.g. CXLAKE_LAKE_URL=s3://bucket/prefix.\n\
AWS credentials and region come from the standard chain (env, profile/SSO via AWS_PROFILE, ECS task role);\n\
AWS_ENDPOINT_URL points S3 and Glue at another endpoint.\n\n\
Examples:\n  cxlake validate jobs/demo/*.toml\n  cxlake run jobs/demo/connect-queue.toml\n  \
cxlake init jobs/prod --reports s3://reports/connect/alias/Reports/SFDC/ --instance alias --lake s3://lake/cx\n  \
cxlake run jobs/aws/connect-queue.toml --from 2024-01-01 --to 2024-06-30 --dry-run"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, or a tracing filter).
    #[arg(long, global = true, env = "CXLAKE_LOG", default_value = "info")]
    log_level: String,
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
        /// Run shard I of N of a backfill (0 ≤ I < N; needs --from/--to): the files of every Nth
        /// partition day. Shards write disjoint partitions and can run at once (connect-intervals).
        #[arg(long, value_parser = parse_shard, value_name = "I/N")]
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
}

#[derive(clap::Args)]
struct InitArgs {
    /// Folder to write the job files into (created if missing).
    dir: PathBuf,
    /// Connect reports prefix above Queue/ and Agent/, e.g. s3://<bucket>/connect/<alias>/Reports/SFDC/.
    #[arg(long)]
    reports: String,
    /// Connect instance alias (stored in every row).
    #[arg(long)]
    instance: String,
    /// The lake: s3://<bucket>/<prefix> or file://<folder>.
    #[arg(long)]
    lake: String,
    /// Reporting-day time zone (IANA name).
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Glue database (omit for no catalog).
    #[arg(long)]
    database: Option<String>,
    /// Salesforce integration user (default: the example's, to edit).
    #[arg(long)]
    salesforce_user: Option<String>,
    /// Where the Salesforce credentials live: a Secrets Manager ARN, env, or file:<path>.
    #[arg(long)]
    salesforce_credentials: Option<String>,
    /// Salesforce login URL (a sandbox's, or your My Domain).
    #[arg(long)]
    salesforce_login_url: Option<String>,
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

fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected I/N with 0 <= I < N, e.g. 0/4, got {text:?}");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("expected YYYY-MM-DD, got {text:?}"))
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: exit::FAILURE,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cxlake::observe::init(&cli.log_level);
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!(
                "error: {}",
                cxlake::observe::cause_chain(failure.error.as_ref())
            );
            ExitCode::from(failure.code)
        }
    }
}

fn try_main(cli: Cli) -> Result<u8, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Validate { jobs, print } => validate(&jobs, print),
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
            if shard.is_some() && (from.is_none() || to.is_none()) {
                return Err(usage(anyhow::anyhow!(
                    "--shard splits a backfill: give --from and --to as well"
                )));
            }
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    return Err(usage(anyhow::anyhow!("--from {f} is after --to {t}")));
                }
            }
            let loaded = load_all(&jobs)?;
            let mut code = exit::OK;
            for job in &loaded {
                let window = Window::from_days(from, to, job.timezone);
                let ttl = std::time::Duration::from_secs(lock_ttl);
                code = code.max(runtime.block_on(run_locked(
                    job,
                    window,
                    dry_run,
                    ttl,
                    shard,
                    concurrency as usize,
                    full,
                ))?);
            }
            Ok(code)
        }
        Command::Schema { job } => {
            let job = load_all(&[job])?.remove(0);
            runtime.block_on(print_schema(&job))?;
            Ok(exit::OK)
        }
        Command::Init(args) => init(args),
        Command::Emulator(args) => {
            runtime.block_on(sf_emulator::run(args))?;
            Ok(exit::OK)
        }
        Command::Catalog {
            command: CatalogCommand::Sync { job },
        } => {
            let job = load_all(&[job])?.remove(0);
            runtime.block_on(catalog_sync(&job))?;
            Ok(exit::OK)
        }
    }
}

/// Renders the job files, checks each one loads as a valid job, then writes them all.
fn init(args: InitArgs) -> Result<u8, Failure> {
    let files = job::init::render(&job::init::Deployment {
        reports: args.reports,
        instance: args.instance,
        lake: args.lake,
        timezone: args.timezone,
        database: args.database,
        salesforce_user: args.salesforce_user,
        salesforce_credentials: args.salesforce_credentials,
        salesforce_login_url: args.salesforce_login_url,
    });
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| args.dir.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        return Err(usage(anyhow::anyhow!(
            "these job files exist already (--force replaces them): {}",
            existing.join(", ")
        )));
    }
    // Validate in a scratch folder first, so a bad setting writes nothing.
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (name, text) in &files {
        let path = scratch.path().join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        match job::load(&path, &Default::default()) {
            Ok(job) => loaded.push(job),
            Err(e) => problems.extend(e.problems.iter().map(|p| format!("{name}: {p}"))),
        }
    }
    if !problems.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "the settings give invalid job files:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for ((name, text), job) in files.iter().zip(&loaded) {
        let path = args.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} ({} job {:?})",
            path.display(),
            job.kind.name(),
            job.name
        );
    }
    println!(
        "next: review them, `cxlake validate {dir}/*.toml --print`, then `cxlake run {dir}/connect-queue.toml --dry-run`",
        dir = args.dir.display()
    );
    Ok(exit::OK)
}

fn usage(error: anyhow::Error) -> Failure {
    Failure {
        code: exit::USAGE,
        error,
    }
}

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

fn validate(paths: &[PathBuf], print: bool) -> Result<u8, Failure> {
    let jobs = load_all(paths)?;
    for (path, job) in paths.iter().zip(&jobs) {
        println!(
            "{}: ok ({} job {:?})",
            path.display(),
            job.kind.name(),
            job.name
        );
        if print {
            println!("{}", describe(job));
        }
    }
    Ok(exit::OK)
}

/// Effective settings, one per line. Job files hold no secrets today; keep it that way here.
fn describe(job: &Job) -> String {
    let mut lines = vec![
        format!("  job.name = {:?}", job.name),
        format!("  job.kind = {:?}", job.kind.name()),
        format!("  job.timezone = {:?}", job.timezone.name()),
    ];
    match &job.kind {
        JobKind::ConnectIntervals(source) => {
            lines.push(format!("  source.url = {:?}", source.url));
            lines.push(format!("  source.report = {:?}", source.report.name()));
            lines.push(format!("  source.instance = {:?}", source.instance));
            lines.push(format!("  source.lookback_days = {}", source.lookback_days));
            lines.push(format!(
                "  source.interval_minutes = {}",
                source.interval_minutes
            ));
        }
        JobKind::SalesforceExport(spec) => {
            let sf = &spec.salesforce;
            lines.push(format!("  salesforce.login_url = {:?}", sf.login_url));
            lines.push(format!("  salesforce.auth = {:?}", sf.auth.name()));
            if let Some(user) = &sf.username {
                lines.push(format!("  salesforce.username = {user:?}"));
            }
            // The credentials setting names where secrets live (env, a file, a secret ARN), never a value.
            lines.push(format!("  salesforce.credentials = {:?}", sf.credentials));
            lines.push(format!("  salesforce.api_version = {:?}", sf.api_version));
            lines.push(format!("  salesforce.api = {:?}", sf.api));
            lines.push(format!(
                "  salesforce.bulk_threshold = {}",
                sf.bulk_threshold
            ));
            lines.push(format!("  salesforce.page_size = {}", sf.page_size));
            lines.push(format!("  export.mode = {:?}", spec.export.mode));
            for object in &spec.export.objects {
                lines.push(format!(
                    "  export.object {} fields={} filter={:?}",
                    object.name,
                    if object.fields.is_empty() {
                        "all".to_string()
                    } else {
                        object.fields.join(",")
                    },
                    object.filter
                ));
            }
        }
        JobKind::SalesforcePushback(spec) => {
            let p = &spec.pushback;
            lines.push(format!(
                "  salesforce.login_url = {:?}",
                spec.salesforce.login_url
            ));
            lines.push(format!(
                "  salesforce.auth = {:?}",
                spec.salesforce.auth.name()
            ));
            lines.push(format!(
                "  salesforce.credentials = {:?}",
                spec.salesforce.credentials
            ));
            lines.push(format!("  pushback.report = {:?}", p.report.name()));
            lines.push(format!("  pushback.namespace = {:?}", p.namespace));
            lines.push(format!("  pushback.key = {:?}", p.key));
            lines.push(match p.region.as_deref() {
                None => "  pushback.region = (the AWS region of the environment)".to_string(),
                Some("") => "  pushback.region = \"\" (none)".to_string(),
                Some(region) => format!("  pushback.region = {region:?}"),
            });
            lines.push(format!("  pushback.bulk_threshold = {}", p.bulk_threshold));
        }
        JobKind::IntervalRollup(spec) => {
            lines.push(format!("  rollup.report = {:?}", spec.report.name()));
            lines.push(format!(
                "  rollup.grains = {:?}",
                spec.grains.iter().map(|g| g.name()).collect::<Vec<_>>()
            ));
        }
    }
    lines.push(format!("  lake.url = {:?}", job.lake.url));
    if let Some(catalog) = &job.catalog {
        lines.push(format!("  catalog.database = {:?}", catalog.database));
        lines.push(format!(
            "  catalog.projection_start = \"{}\"",
            catalog.projection_start
        ));
        let mode = cxlake::catalog::PartitionMode::ALL
            .iter()
            .find(|(m, _)| *m == catalog.partitions)
            .map_or("projection", |(_, name)| name);
        lines.push(format!("  catalog.partitions = {mode:?}"));
    }
    lines.join("\n")
}

/// Runs a job under its lock (`_etl/locks/<job>`); dry runs take none. Another run holding the
/// lock is not an error of this run: it is reported and the exit code says "skipped".
async fn run_locked(
    job: &Job,
    window: Window,
    dry_run: bool,
    ttl: std::time::Duration,
    shard: Option<(u32, u32)>,
    concurrency: usize,
    full: bool,
) -> Result<u8, Failure> {
    if full && !matches!(job.kind, JobKind::SalesforcePushback(_)) {
        return Err(usage(anyhow::anyhow!(
            "job {}: --full applies to salesforce-pushback jobs (a {} job has no record digests to bypass)",
            job.name,
            job.kind.name()
        )));
    }
    if shard.is_some() && !matches!(job.kind, JobKind::ConnectIntervals(_)) {
        return Err(usage(anyhow::anyhow!(
            "job {}: --shard applies to connect-intervals jobs (a {} job has no per-day input files to split)",
            job.name,
            job.kind.name()
        )));
    }
    if dry_run {
        return run_job(job, window, dry_run, shard, concurrency, full)
            .await
            .map(|(code, _)| code);
    }
    let lake = cxlake::lake::Location::open(
        &job.lake.url,
        job.lake.region.as_deref(),
        cxlake::lake::Access::Create,
    )
    .await
    .with_context(|| format!("job {}", job.name))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // Shards of one backfill lock separately: they write disjoint partitions.
    let lock_name = match shard {
        Some((i, n)) => format!("{}.shard-{i}-of-{n}", job.name),
        None => job.name.clone(),
    };
    let lock = match cxlake::lake::lock::acquire(&lake, &lock_name, ttl, &command).await {
        Ok(lock) => lock,
        Err(cxlake::lake::lock::LockError::Held { job: name, info }) => {
            let e = cxlake::lake::lock::LockError::Held { job: name, info };
            eprintln!("skipped: {e}");
            return Ok(exit::LOCKED);
        }
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context(format!("job {}: lock", job.name))
                .into())
        }
    };
    if let Some(previous) = &lock.took_over {
        tracing::warn!(job = %job.name, owner = %previous.owner, expired = %previous.expires_at, "took over a stale lock (a run that did not finish)");
    }
    let heartbeat = lock.keep_alive(ttl);
    let started = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let outcome = run_job(job, window, dry_run, shard, concurrency, full).await;
    heartbeat.abort();
    let (code, metrics, error) = match &outcome {
        Ok((code, metrics)) => (*code, metrics.clone(), None),
        Err(failure) => (
            failure.code,
            RunMetrics::default(),
            Some(cxlake::observe::cause_chain(failure.error.as_ref())),
        ),
    };
    let code = RunRecord {
        job: &job.name,
        kind: job.kind.name(),
        command: &command,
        window,
        started,
        seconds: clock.elapsed().as_secs_f64(),
        exit_code: code,
        failed: code == exit::FAILURE,
        error,
        metrics,
    }
    .report(&lake, job.catalog.as_ref(), job.lake.region.as_deref())
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(job = %job.name, error = %e, "could not release the job lock; it expires on its own");
    }
    outcome.map(|_| code)
}

async fn run_job(
    job: &Job,
    window: Window,
    dry_run: bool,
    shard: Option<(u32, u32)>,
    concurrency: usize,
    full: bool,
) -> Result<(u8, RunMetrics), Failure> {
    match &job.kind {
        JobKind::ConnectIntervals(source) => {
            run_connect(job, source, window, dry_run, shard, concurrency).await
        }
        JobKind::SalesforceExport(spec) => run_export(job, spec, window, dry_run).await,
        JobKind::IntervalRollup(spec) => run_rollup(job, spec, window, dry_run, concurrency).await,
        JobKind::SalesforcePushback(spec) => run_pushback(job, spec, window, dry_run, full).await,
    }
}

async fn run_pushback(
    job: &Job,
    spec: &cxlake::job::SalesforcePushback,
    window: Window,
    dry_run: bool,
    full: bool,
) -> Result<(u8, RunMetrics), Failure> {
    let pushback = PushbackJob::open(job, &spec.pushback, &spec.salesforce, dry_run, full)
        .await
        .with_context(|| format!("job {}", job.name))?;
    let plan = pushback
        .plan(&window)
        .await
        .with_context(|| format!("job {}: planning", job.name))?;
    if dry_run {
        print_day_plan(&job.name, &plan, &pushback.object());
        let lookup = pushback
            .lookup(&plan)
            .await
            .with_context(|| format!("job {}: dry run against the org", job.name))?;
        print_region(lookup.region.as_deref());
        println!(
            "would send {} records ({} unchanged since the last push)",
            lookup.records, lookup.unchanged
        );
        println!(
            "looked up {} of them in {}: would update {}, would create {}",
            lookup.sampled,
            lookup.object,
            lookup.existing,
            lookup.sampled - lookup.existing
        );
        for (key, exists) in &lookup.examples {
            let what = if *exists { "update" } else { "create" };
            println!("  {what} {key}");
        }
        print_skipped(&lookup.skipped);
        println!(
            "requests: salesforce {} token, {} API",
            lookup.calls.0, lookup.calls.1
        );
        return Ok((exit::OK, RunMetrics::default()));
    }
    let bar = cxlake::observe::progress::bar("days read");
    let report = pushback
        .run(&plan, bar.as_ref())
        .await
        .with_context(|| format!("job {}", job.name))?;
    tracing::info!(
        job = %job.name,
        object = %report.object,
        days = report.days,
        records = report.records,
        unchanged = report.unchanged,
        calls_saved = report.calls_saved,
        created = report.created,
        updated = report.updated,
        rejected = report.rejected,
        bulk_jobs = report.bulk_jobs,
        skipped_columns = ?report.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
        salesforce_api_calls = report.calls.1,
        seconds = report.seconds,
        "run finished"
    );
    println!(
        "{}: {} records from {} days -> {} ({} created, {} updated, {} rejected) in {:.2}s",
        job.name,
        report.records,
        report.days,
        report.object,
        report.created,
        report.updated,
        report.rejected,
        report.seconds
    );
    println!(
        "  unchanged since the last push: {} records not sent (about {} upsert calls saved)",
        report.unchanged, report.calls_saved
    );
    print_region(report.region.as_deref());
    println!(
        "requests: salesforce {} token, {} API ({} retries, {} re-logins; {} Bulk ingest jobs)",
        report.calls.0, report.calls.1, report.calls.2, report.calls.3, report.bulk_jobs
    );
    print_skipped(&report.skipped);
    let code = if report.rejected > 0 {
        println!(
            "  rejected records are in _etl/rejects/{}/ with Salesforce's error; they are sent again next run",
            job.name
        );
        exit::PARTIAL
    } else {
        exit::OK
    };
    Ok((
        code,
        RunMetrics {
            inputs: report.days as u64,
            rows: report.records as u64,
            rejects: report.rejected as u64,
            api_calls: report.calls.1,
            outputs: vec![report.object.clone()],
            reconciliation: report.reconciliation(),
            ..RunMetrics::default()
        },
    ))
}

/// The region of a push-back's keys and `Region__c`, when there is one.
fn print_region(region: Option<&str>) {
    if let Some(region) = region {
        println!("  region: {region} (in Region__c and at the end of Lambda-style keys)");
    }
}

/// Every report column a push-back does not write, with the reason.
fn print_skipped(skipped: &[cxlake::pushback::SkippedColumn]) {
    if !skipped.is_empty() {
        println!("  columns not pushed:");
        for column in skipped {
            println!("    {column}");
        }
    }
}

/// A dry run's plan of interval days (roll-up, push-back): each partition read, and the target.
fn print_day_plan(job: &str, plan: &[cxlake::lake::partitions::DayFile], target: &str) {
    println!("plan for {job}: {} interval days -> {target}", plan.len());
    for file in plan {
        println!("  {}", file.key);
    }
    println!("dry run: nothing written");
}

async fn run_rollup(
    job: &Job,
    spec: &cxlake::job::RollupSpec,
    window: Window,
    dry_run: bool,
    concurrency: usize,
) -> Result<(u8, RunMetrics), Failure> {
    let rollup = RollupJob::open(job, spec.report, &spec.grains, dry_run)
        .await
        .with_context(|| format!("job {}", job.name))?;
    let plan = rollup
        .plan(&window)
        .await
        .with_context(|| format!("job {}: planning", job.name))?;
    if dry_run {
        let tables: Vec<String> = spec
            .grains
            .iter()
            .map(|g| cxlake::rollup::job::table_name(spec.report, *g))
            .collect();
        print_day_plan(&job.name, &plan, &tables.join(", "));
        return Ok((exit::OK, RunMetrics::default()));
    }
    let bar = cxlake::observe::progress::bar("days");
    let report = rollup
        .run(&plan, concurrency, bar.as_ref())
        .await
        .with_context(|| format!("job {}", job.name))?;
    tracing::info!(
        job = %job.name,
        days = report.days,
        rows_read = report.rows_read,
        partitions_written = report.written.len(),
        partitions_unchanged = report.unchanged,
        bytes_written = report.bytes_written,
        seconds = report.seconds,
        lake_get = report.lake_requests.0,
        lake_put = report.lake_requests.1,
        "run finished"
    );
    println!(
        "{}: {} days, {} interval rows -> {} partitions written, {} unchanged in {:.2}s",
        job.name,
        report.days,
        report.rows_read,
        report.written.len(),
        report.unchanged,
        report.seconds
    );
    for (day, grain, used) in &report.fallbacks {
        println!(
            "  {day} {}: {} weighted by the fallback {} in {} rows (its first denominator is missing)",
            grain.name(),
            used.column,
            used.denominator,
            used.rows
        );
    }
    Ok((
        exit::OK,
        RunMetrics {
            inputs: report.days as u64,
            rows: report.rows_read as u64,
            bytes: report.bytes_written as u64,
            outputs: report.written.clone(),
            reconciliation: report.reconciliation(),
            ..RunMetrics::default()
        },
    ))
}

async fn run_export(
    job: &Job,
    spec: &cxlake::job::SalesforceExport,
    window: Window,
    dry_run: bool,
) -> Result<(u8, RunMetrics), Failure> {
    let export = ExportJob::open(job, spec, dry_run)
        .await
        .with_context(|| format!("job {}", job.name))?;
    let export = match cxlake::observe::progress::bar("records").filter(|_| !dry_run) {
        Some(bar) => export.with_progress(bar),
        None => export,
    };
    if dry_run {
        let lines = export
            .plan(&window)
            .await
            .map_err(export_failure)
            .map_err(|f| f.context(&job.name))?;
        println!(
            "plan for {} ({} objects, {:?} mode):",
            job.name,
            lines.len(),
            spec.export.mode
        );
        for line in lines {
            println!("  {line}");
        }
        println!("dry run: nothing written");
        return Ok((exit::OK, RunMetrics::default()));
    }
    let report = export
        .run(&window)
        .await
        .map_err(export_failure)
        .map_err(|f| f.context(&job.name))?;
    let rows: u64 = report.objects.iter().map(|o| o.rows).sum();
    tracing::info!(
        job = %job.name,
        objects = report.objects.len(),
        failed = report.failed.len(),
        rejected = report.rejected.len(),
        rows,
        seconds = report.seconds,
        salesforce_token_calls = report.calls.0,
        salesforce_api_calls = report.calls.1,
        salesforce_retries = report.calls.2,
        lake_get = report.lake_requests.0,
        lake_put = report.lake_requests.1,
        "run finished"
    );
    let summary: Vec<String> = report
        .objects
        .iter()
        .map(|o| {
            format!(
                "{} {} rows ({} deleted) via {}{}",
                o.table,
                o.rows,
                o.deleted,
                o.api.name(),
                o.latest_rows
                    .map(|n| format!(", latest {n}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    println!(
        "{}: {} objects, {rows} rows in {:.2}s; {}",
        job.name,
        report.objects.len(),
        report.seconds,
        if summary.is_empty() {
            "-".to_string()
        } else {
            summary.join("; ")
        }
    );
    println!(
        "requests: salesforce {} token, {} API ({} retries, {} re-logins); lake {} GET, {} PUT",
        report.calls.0,
        report.calls.1,
        report.calls.2,
        report.calls.3,
        report.lake_requests.0,
        report.lake_requests.1
    );
    for (object, error) in &report.rejected {
        eprintln!("rejected: {}: {object}: {error}", job.name);
    }
    for (object, error) in &report.failed {
        eprintln!("error: {}: {object}: {error}", job.name);
    }
    let code = if !report.failed.is_empty() {
        exit::FAILURE
    } else if !report.rejected.is_empty() {
        exit::PARTIAL
    } else {
        exit::OK
    };
    Ok((
        code,
        RunMetrics {
            inputs: (report.objects.len() + report.failed.len() + report.rejected.len()) as u64,
            rows,
            bytes: report.objects.iter().map(|o| o.history_bytes).sum(),
            rejects: (report.failed.len() + report.rejected.len()) as u64,
            api_calls: report.calls.1,
            outputs: report
                .objects
                .iter()
                .filter_map(|o| o.history_key.clone())
                .collect(),
            reconciliation: report.reconciliation(),
        },
    ))
}

/// Export errors: a bad window is a usage error, everything else a failure.
fn export_failure(error: ExportError) -> Failure {
    match error {
        ExportError::Usage(_) => usage(error.into()),
        other => other.into(),
    }
}

impl Failure {
    fn context(self, what: &str) -> Failure {
        Failure {
            code: self.code,
            error: self.error.context(format!("job {what}")),
        }
    }
}

async fn run_connect(
    job: &Job,
    source: &cxlake::job::ConnectSource,
    window: Window,
    dry_run: bool,
    shard: Option<(u32, u32)>,
    concurrency: usize,
) -> Result<(u8, RunMetrics), Failure> {
    let connect = ConnectJob::open(
        job,
        source,
        if dry_run {
            OpenMode::DryRun
        } else {
            OpenMode::Run
        },
    )
    .await
    .with_context(|| format!("job {}", job.name))?
    .with_concurrency(concurrency);
    let connect = match cxlake::observe::progress::bar("files").filter(|_| !dry_run) {
        Some(bar) => connect.with_progress(bar),
        None => connect,
    };
    let mut plan = connect
        .plan(window)
        .await
        .with_context(|| format!("job {}: planning", job.name))?;
    if let Some((index, count)) = shard {
        connect.shard(&mut plan, index, count);
        tracing::info!(job = %job.name, shard = %format!("{index}/{count}"), files = plan.files.len(), "shard of the backfill");
    }
    if dry_run {
        println!(
            "plan for {} ({} → {}): {} report files{}",
            job.name,
            source.url,
            connect
                .lake()
                .url_of(&cxlake::lake::layout::table_prefix(&connect.table().table)),
            plan.files.len(),
            plan.lookback_from
                .map(|from| format!(" not read yet or changed, named after {from} (lookback {} days before the watermark)", source.lookback_days))
                .unwrap_or_default()
        );
        for key in &plan.files {
            let changed = if plan.changed.contains(&key.relative) {
                "  (changed since it was read)"
            } else {
                ""
            };
            println!(
                "  {}  ->  dt={}{changed}",
                key.relative,
                connect.expected_dt(key)
            );
        }
        for key in &plan.future {
            println!(
                "  {}  (rejected: the name's time is in the future)",
                key.relative
            );
        }
        for other in &plan.skipped {
            println!("  {other}  (skipped: not a report file name)");
        }
        for entry in &plan.unreadable {
            println!("  {}  (skipped: {})", entry.entry, entry.reason);
        }
        println!("dry run: nothing written (partitions shown are expected from file names; the rows decide)");
        return Ok((exit::OK, RunMetrics::default()));
    }
    for other in &plan.skipped {
        tracing::warn!(job = %job.name, object = %other, "skipped: not a report file name");
    }
    let report = connect
        .run(&plan)
        .await
        .with_context(|| format!("job {}", job.name))?;
    print_summary(job, &connect, &report);
    let code = if report.rejected.is_empty() && report.unreadable.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    };
    Ok((
        code,
        RunMetrics {
            rows: report.rows_read as u64,
            bytes: report
                .partitions
                .iter()
                .filter(|p| p.written)
                .map(|p| p.bytes as u64)
                .sum(),
            rejects: (report.rejected.len() + report.unreadable.len()) as u64,
            inputs: report.files as u64,
            reconciliation: report.reconciliation(),
            ..RunMetrics::default()
        },
    ))
}

fn print_summary(job: &Job, connect: &ConnectJob<'_>, report: &RunReport) {
    for r in &report.rejected {
        tracing::warn!(
            job = %job.name,
            source = %r.reason.source_key,
            line = r.reason.line,
            column = r.reason.column.as_deref(),
            column_number = r.reason.column_number,
            reason = %r.reason.reason,
            "file rejected"
        );
    }
    for entry in &report.unreadable {
        tracing::warn!(job = %job.name, entry = %entry.entry, reason = %entry.reason, "source entry skipped: it cannot be read or named");
    }
    let written = report.partitions.iter().filter(|p| p.written).count();
    let bytes: usize = report
        .partitions
        .iter()
        .filter(|p| p.written)
        .map(|p| p.bytes)
        .sum();
    tracing::info!(
        job = %job.name,
        table = %connect.table().table,
        files = report.files,
        rows_read = report.rows_read,
        partitions = report.partitions.len(),
        partitions_written = written,
        bytes_written = bytes,
        rejected = report.rejected.len(),
        unreadable = report.unreadable.len(),
        added_columns = ?report.added_columns,
        catalog = ?report.catalog,
        seconds = report.seconds,
        source_get = report.source_requests.0,
        source_list_pages = report.source_requests.2,
        lake_get = report.lake_requests.0,
        lake_put = report.lake_requests.1,
        lake_list_pages = report.lake_requests.2,
        "run finished"
    );
    println!(
        "{}: {} files, {} rows → {} partitions of {} ({} written, {} unchanged), {} rejected, {:.2}s",
        job.name,
        report.files,
        report.rows_read,
        report.partitions.len(),
        connect.table().table,
        written,
        report.partitions.len() - written,
        report.rejected.len(),
        report.seconds
    );
    let (source, lake) = (report.source_requests, report.lake_requests);
    println!(
        "  requests: source {} GET, {} LIST pages; lake {} GET, {} PUT, {} LIST pages",
        source.0, source.2, lake.0, lake.1, lake.2
    );
    for r in &report.rejected {
        let at = match (r.reason.line, r.reason.column_number, &r.reason.column) {
            (Some(l), Some(n), Some(c)) => format!("line {l}, column {n} {c:?}: "),
            (Some(l), None, Some(c)) => format!("line {l}, column {c:?}: "),
            (Some(l), _, None) => format!("line {l}: "),
            _ => String::new(),
        };
        println!(
            "  rejected {}: {at}{}",
            r.reason.source_key, r.reason.reason
        );
    }
    for entry in &report.unreadable {
        println!(
            "  skipped {}{}: {}",
            connect.source_url(),
            entry.entry,
            entry.reason
        );
    }
}

/// Connect settings of a job, or a usage error for kinds whose schema comes from the source.
fn connect_source<'a>(
    job: &'a Job,
    command: &str,
) -> Result<&'a cxlake::job::ConnectSource, Failure> {
    match &job.kind {
        JobKind::ConnectIntervals(source) => Ok(source),
        other => Err(usage(anyhow::anyhow!(
            "`cxlake {command}` supports connect-intervals jobs; a {} job's schema comes from Salesforce describe \
             (see `cxlake run {{job}} --dry-run`; each run updates Glue)",
            other.name()
        ))),
    }
}

async fn print_schema(job: &Job) -> Result<(), Failure> {
    use cxlake::catalog::schema_listing;
    let context = || format!("job {}", job.name);
    match &job.kind {
        JobKind::ConnectIntervals(source) => {
            let connect = ConnectJob::open(job, source, OpenMode::Inspect).await?;
            let schema = connect.table_schema().await?;
            let heading = format!(
                "partitioned by dt string, YYYY-MM-DD in {}",
                job.timezone.name()
            );
            print!(
                "{}",
                schema_listing(&connect.table().table, &heading, &schema)
            );
        }
        JobKind::IntervalRollup(spec) => {
            let rollup = RollupJob::open(job, spec.report, &spec.grains, true)
                .await
                .with_context(context)?;
            let heading = format!(
                "roll-up formulas in schemas/connect_rollups.toml; partitioned by dt string, YYYY-MM-DD in {}",
                job.timezone.name()
            );
            for (table, schema) in rollup.table_schemas().await.with_context(context)? {
                print!("{}", schema_listing(&table, &heading, &schema));
            }
        }
        JobKind::SalesforceExport(spec) => {
            let described = match ExportJob::open(job, spec, true).await {
                Ok(export) => export.table_schemas().await.map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::Error::from(e)),
            };
            let tables = match described {
                Ok(tables) => tables
                    .into_iter()
                    .map(|(table, schema)| (table, Some(schema), "from Salesforce describe"))
                    .collect::<Vec<_>>(),
                Err(e) => {
                    eprintln!(
                        "no Salesforce describe ({e:#}); showing the columns the lake remembers"
                    );
                    let lake = cxlake::lake::Location::open(
                        &job.lake.url,
                        job.lake.region.as_deref(),
                        cxlake::lake::Access::ReadOnly,
                    )
                    .await
                    .with_context(context)?;
                    cxlake::export::stored_table_schemas(&lake, spec)
                        .await
                        .with_context(context)?
                        .into_iter()
                        .map(|(table, schema)| (table, schema, "from the lake's table metadata"))
                        .collect()
                }
            };
            for (table, schema, source) in tables {
                let latest = cxlake::export::latest_table(&table);
                match schema {
                    Some(schema) => print!(
                        "{}",
                        schema_listing(
                            &table,
                            &format!(
                                "{source}; partitioned by snapshot_date string; {latest} has the same columns"
                            ),
                            &schema
                        )
                    ),
                    None => println!("table {table}: not exported to this lake yet (no Salesforce login to describe it)"),
                }
            }
        }
        JobKind::SalesforcePushback(spec) => {
            let schema = cxlake::connect::schema::ReportSchema::get(spec.pushback.report);
            println!(
                "a salesforce-pushback job writes no lake table: it reads {} and upserts Salesforce records",
                schema.table
            );
        }
    }
    Ok(())
}

async fn catalog_sync(job: &Job) -> Result<(), Failure> {
    let Some(catalog) = &job.catalog else {
        return Err(usage(anyhow::anyhow!(
            "job {} has no [catalog] section",
            job.name
        )));
    };
    let source = connect_source(job, "catalog sync")?;
    let connect = ConnectJob::open(job, source, OpenMode::Inspect).await?;
    let schema = connect.table_schema().await?;
    let outcome = connect.sync_catalog(catalog, &schema, &[]).await?;
    println!(
        "{}.{}: {:?}",
        catalog.database,
        connect.table().table,
        outcome
    );
    Ok(())
}
