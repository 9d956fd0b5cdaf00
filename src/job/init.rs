//! `cxlake init`: a new deployment's job files, from the production examples in `jobs/aws/` with
//! the deployment's own buckets, instance, time zone, Glue database and Salesforce login put in.
//! The files are ordinary job files: edit them, then `cxlake validate` them.

/// What differs between deployments (also the options of `cxlake init`).
#[derive(Debug, Clone, clap::Args)]
pub struct Deployment {
    /// Connect reports prefix above Queue/ and Agent/, e.g. s3://<bucket>/connect/<alias>/Reports/SFDC/.
    #[arg(long)]
    pub reports: String,
    /// Connect instance alias (stored in every row).
    #[arg(long)]
    pub instance: String,
    /// The lake: s3://<bucket>/<prefix> or file://<folder>.
    #[arg(long)]
    pub lake: String,
    /// Reporting-day time zone (IANA name).
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Glue database (omit for no catalog).
    #[arg(long)]
    pub database: Option<String>,
    /// Salesforce integration user (default: the example's, to edit).
    #[arg(long)]
    pub salesforce_user: Option<String>,
    /// Where the Salesforce credentials live: a Secrets Manager ARN, env, or file:<path>.
    #[arg(long)]
    pub salesforce_credentials: Option<String>,
    /// Salesforce login URL (a sandbox's, or your My Domain; default https://login.salesforce.com).
    #[arg(long)]
    pub salesforce_login_url: Option<String>,
}

/// The templates: the production examples, with the values [`render`] replaces.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "connect-queue.toml",
        include_str!("../../jobs/aws/connect-queue.toml"),
    ),
    (
        "connect-agent.toml",
        include_str!("../../jobs/aws/connect-agent.toml"),
    ),
    (
        "rollup-queue.toml",
        include_str!("../../jobs/aws/rollup-queue.toml"),
    ),
    (
        "rollup-agent.toml",
        include_str!("../../jobs/aws/rollup-agent.toml"),
    ),
    (
        "salesforce-export.toml",
        include_str!("../../jobs/aws/salesforce-export.toml"),
    ),
    (
        "pushback-queue.toml",
        include_str!("../../jobs/aws/pushback-queue.toml"),
    ),
    (
        "pushback-agent.toml",
        include_str!("../../jobs/aws/pushback-agent.toml"),
    ),
];

/// The example values in `jobs/aws/` that [`render`] replaces.
const EXAMPLE_REPORTS: &str = "s3://example-connect-reports/connect/example-instance/Reports/SFDC/";
const EXAMPLE_INSTANCE: &str = "\"example-instance\"";
const EXAMPLE_LAKE: &str = "\"s3://example-lake/cxlake\"";
const EXAMPLE_TIMEZONE: &str = "timezone = \"America/New_York\"";
const EXAMPLE_DATABASE: &str = "\n[catalog]\ndatabase = \"contact_center\"\n";
const EXAMPLE_USER: &str = "\"integration@example.com\"";
const EXAMPLE_CREDENTIALS: &str =
    "\"arn:aws:secretsmanager:us-east-1:123456789012:secret:cxlake/salesforce\"";
const EXAMPLE_LOGIN_URL: &str = "\"https://login.salesforce.com\"";

/// The job files of a deployment: (file name, contents).
pub fn render(deployment: &Deployment) -> Vec<(&'static str, String)> {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let reports = format!("{}/", deployment.reports.trim_end_matches('/'));
    let catalog = match &deployment.database {
        Some(database) => format!("\n[catalog]\ndatabase = {}\n", quoted(database)),
        None => "\n".to_string(),
    };
    let keep_or = |example: &str, value: &Option<String>| match value {
        Some(value) => quoted(value),
        None => example.to_string(),
    };
    let (user, credentials, login_url) = (
        keep_or(EXAMPLE_USER, &deployment.salesforce_user),
        keep_or(EXAMPLE_CREDENTIALS, &deployment.salesforce_credentials),
        keep_or(EXAMPLE_LOGIN_URL, &deployment.salesforce_login_url),
    );
    TEMPLATES
        .iter()
        .map(|(name, template)| {
            let text = template
                // The report folders first: they hold the example instance alias too.
                .replace(
                    &format!("\"{EXAMPLE_REPORTS}Queue/\""),
                    &quoted(&format!("{reports}Queue/")),
                )
                .replace(
                    &format!("\"{EXAMPLE_REPORTS}Agent/\""),
                    &quoted(&format!("{reports}Agent/")),
                )
                .replace(EXAMPLE_INSTANCE, &quoted(&deployment.instance))
                .replace(EXAMPLE_LAKE, &quoted(&deployment.lake))
                .replace(
                    EXAMPLE_TIMEZONE,
                    &format!("timezone = {}", quoted(&deployment.timezone)),
                )
                .replace(EXAMPLE_DATABASE, &catalog)
                .replace(EXAMPLE_USER, &user)
                .replace(EXAMPLE_CREDENTIALS, &credentials)
                .replace(EXAMPLE_LOGIN_URL, &login_url);
            (*name, text)
        })
        .collect()
}

/// Why `cxlake init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Job files of these paths exist and `force` was not given.
    #[error("these job files exist already (--force replaces them): {}", .0.join(", "))]
    Exists(Vec<String>),
    /// The deployment's settings make invalid job files (each problem names its file).
    #[error("the settings give invalid job files:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
    /// A file or folder could not be written.
    #[error("{what}")]
    Io {
        /// What was being done, and where.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl InitError {
    /// Whether the error is the user's settings (bad usage) rather than the machine's.
    pub fn is_usage(&self) -> bool {
        matches!(self, InitError::Exists(_) | InitError::Invalid(_))
    }
}

/// The job files [`write`] wrote: (path, kind name, job name).
#[derive(Debug)]
pub struct Written {
    dir: std::path::PathBuf,
    files: Vec<(std::path::PathBuf, &'static str, String)>,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (path, kind, name) in &self.files {
            writeln!(f, "wrote {} ({kind} job {name:?})", path.display())?;
        }
        writeln!(
            f,
            "next: review them, `cxlake validate {dir}/*.toml --print`, then `cxlake run {dir}/connect-queue.toml --dry-run`",
            dir = self.dir.display()
        )
    }
}

/// Renders a deployment's job files into `dir` (created if missing), after checking that each
/// one loads as a valid job in a scratch folder, so a bad setting writes nothing. Existing files
/// are replaced only with `force`.
pub fn write(
    dir: &std::path::Path,
    deployment: &Deployment,
    force: bool,
) -> Result<Written, InitError> {
    let io = |what: String| move |source| InitError::Io { what, source };
    let files = render(deployment);
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(InitError::Exists(existing));
    }
    let scratch = tempfile::tempdir().map_err(io("creating a scratch folder".into()))?;
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (name, text) in &files {
        let path = scratch.path().join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        match super::load(&path, &Default::default()) {
            Ok(job) => loaded.push(job),
            Err(e) => problems.extend(e.problems.iter().map(|p| format!("{name}: {p}"))),
        }
    }
    if !problems.is_empty() {
        return Err(InitError::Invalid(problems));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut written = Vec::new();
    for ((name, text), job) in files.iter().zip(loaded) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        written.push((path, job.kind.name(), job.name));
    }
    Ok(Written {
        dir: dir.to_path_buf(),
        files: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            reports: "s3://acme-reports/connect/acme-prod/Reports/SFDC".into(),
            instance: "acme-prod".into(),
            lake: "s3://acme-lake/cx".into(),
            timezone: "Europe/Berlin".into(),
            database: Some("acme_cc".into()),
            salesforce_user: Some("etl@acme.example".into()),
            salesforce_credentials: Some("env".into()),
            salesforce_login_url: Some("https://acme.my.salesforce.com".into()),
        }
    }

    #[test]
    fn no_example_value_is_left_behind() {
        for (name, text) in render(&deployment()) {
            assert!(!text.contains("example-"), "{name}:\n{text}");
            assert!(!text.contains("contact_center"), "{name}:\n{text}");
            assert!(!text.contains("America/New_York"), "{name}:\n{text}");
            assert!(!text.contains("123456789012"), "{name}:\n{text}");
            assert!(text.contains("s3://acme-lake/cx"), "{name}:\n{text}");
            assert!(
                text.contains("timezone = \"Europe/Berlin\""),
                "{name}:\n{text}"
            );
            if name.starts_with("salesforce") || name.starts_with("pushback") {
                assert!(text.contains("credentials = \"env\""), "{name}:\n{text}");
                assert!(text.contains("\"etl@acme.example\""), "{name}:\n{text}");
                assert!(text.contains("acme.my.salesforce.com"), "{name}:\n{text}");
            }
        }
    }

    #[test]
    fn connect_jobs_read_their_report_folder() {
        let files = render(&deployment());
        let (_, queue) = files
            .iter()
            .find(|(n, _)| *n == "connect-queue.toml")
            .expect("queue job");
        let table: toml::Table = queue.parse().expect("valid TOML");
        assert_eq!(
            table["source"]["url"].as_str(),
            Some("s3://acme-reports/connect/acme-prod/Reports/SFDC/Queue/")
        );
        assert_eq!(table["source"]["instance"].as_str(), Some("acme-prod"));
        assert_eq!(table["catalog"]["database"].as_str(), Some("acme_cc"));
    }

    #[test]
    fn without_a_database_no_catalog_section_is_written() {
        let files = render(&Deployment {
            database: None,
            ..deployment()
        });
        for (name, text) in files {
            let table: toml::Table = text.parse().expect("valid TOML");
            assert!(!table.contains_key("catalog"), "{name}");
        }
    }

    #[test]
    fn values_are_quoted_as_toml() {
        let files = render(&Deployment {
            instance: "odd \"alias\"".into(),
            ..deployment()
        });
        let (_, queue) = &files[0];
        let table: toml::Table = queue.parse().expect("valid TOML");
        assert_eq!(table["source"]["instance"].as_str(), Some("odd \"alias\""));
    }
}
