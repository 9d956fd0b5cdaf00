//! A Salesforce API emulator (axum) for the demo, tests and benchmarks: OAuth, describe, REST
//! query, Bulk API 2.0 query and ingest, sObject Collections, limits and failure injection,
//! faithful to the wire formats in the project's Salesforce reference.

/// Command-line options of `cxlake emulator`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// TCP port to listen on (0 picks a free one; the chosen URL is printed).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
}

/// Runs the emulator until interrupted.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("the emulator is not built yet (port {})", args.port)
}
