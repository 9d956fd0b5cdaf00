//! `cxlake` with the fault points of `src/faults.rs` armed from `FAILPOINTS`: the binary the
//! crash tests run (built by `make failpoints`, never shipped).

#[path = "../main.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    let _points = cxlake::faults::armed::setup();
    cli::main()
}
