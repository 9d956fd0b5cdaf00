//! Logging: human-readable on a terminal (beside progress bars), one JSON object per event
//! otherwise (ECS/CloudWatch); run records (manifest, EMF line, the `cxlake_runs` and
//! `cxlake_reconciliation` tables) and the reconciliation rules.

pub mod last_run;
pub mod progress;
pub mod reconcile;
pub mod repeats;
pub mod run;
pub mod run_tables;

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written (`--log-format`, `CXLAKE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human on a terminal, JSON otherwise (a container's log driver).
    Auto,
    /// Text for people, also when piped (`make demo | tee`).
    Human,
    /// One JSON object per event (CloudWatch Logs).
    Json,
}

/// Installs the global subscriber. `level` is a tracing filter such as `info` or `cxlake=debug`.
/// Repeated warnings are held back and counted ([`repeats`]) unless the filter shows debug.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let show_all = filter.max_level_hint() >= Some(LevelFilter::DEBUG);
    let terminal = std::io::stderr().is_terminal();
    let human = match format {
        LogFormat::Auto => terminal,
        LogFormat::Human => true,
        LogFormat::Json => false,
    };
    let output = if human {
        tracing_subscriber::fmt::layer()
            .with_writer(|| progress::SuspendingStderr)
            .with_target(false)
            .with_ansi(terminal)
            .compact()
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(repeats::Repeats::new(show_all))
        .with(output)
        .init();
}

/// An error and its causes, each cause once and on one line. Many errors (object_store's, the AWS
/// SDK's) already print their source in their own message, so a plain `{:#}` of the chain would
/// repeat the same text several times; a cause whose text is already there is left out.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        // The error itself may be a list (every problem of a job file); its causes go on one
        // line, as some carry a multi-line body (an S3 XML error document).
        let text = if line.is_empty() {
            e.to_string()
        } else {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !line.contains(text.as_str()) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::cause_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading s3://lake/x: {source}")]
    struct Embeds {
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Inner {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_appears_once() {
        let error = Embeds {
            source: Inner {
                source: std::io::Error::other("connection refused"),
            },
        };
        assert_eq!(
            cause_chain(&error),
            "reading s3://lake/x: request failed: connection refused"
        );
    }

    #[test]
    fn multi_line_causes_fold_onto_one_line() {
        let error = anyhow::Error::new(std::io::Error::other(
            "404 Not Found:\n<Error>\n  <Code>NoSuchBucket</Code>\n</Error>",
        ))
        .context("job q: lock");
        assert_eq!(
            cause_chain(error.as_ref()),
            "job q: lock: 404 Not Found: <Error> <Code>NoSuchBucket</Code> </Error>"
        );
    }

    #[test]
    fn the_error_itself_keeps_its_lines() {
        let error = anyhow::anyhow!("job.toml: invalid job file:\n  - a\n  - b");
        assert_eq!(
            cause_chain(error.as_ref()),
            "job.toml: invalid job file:\n  - a\n  - b"
        );
    }

    #[test]
    fn anyhow_context_is_kept_in_order() {
        let error = anyhow::Error::new(std::io::Error::other("denied")).context("job q: lock");
        assert_eq!(cause_chain(error.as_ref()), "job q: lock: denied");
    }
}
