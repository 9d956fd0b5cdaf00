//! `cxlake validate --print`: a job's effective settings.

use super::{Job, JobKind};

impl Job {
    /// The effective settings (after environment overrides), one `  section.key = value` per
    /// line. Job files hold no secrets today; keep it that way here: the credentials setting
    /// names where secrets live, never a value.
    pub fn settings_listing(&self) -> String {
        let job = self;
        let mut lines = vec![
            format!("  job.name = {:?}", job.name),
            format!("  job.kind = {:?}", job.kind.name()),
            format!("  job.timezone = {:?}", job.timezone.name()),
            format!("  job.late_after_hours = {}", job.late_after_hours()),
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
                lines.push(format!("  source.grace_minutes = {}", source.grace_minutes));
                match &source.fill {
                    None => lines
                        .push("  fill = (none: missing intervals are reported, not filled)".into()),
                    Some(fill) => {
                        lines.push(format!("  fill.instance_arn = {:?}", fill.instance_arn));
                        lines.push(format!(
                            "  fill.requests_per_second = {}",
                            fill.requests_per_second
                        ));
                    }
                }
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
                lines.push(format!(
                    "  salesforce.budget_run_percent = {}",
                    sf.budget.run_percent
                ));
                lines.push(format!(
                    "  salesforce.budget_total_percent = {}",
                    sf.budget.total_percent
                ));
                let export = &spec.export;
                lines.push(format!("  export.mode = {:?}", export.mode));
                lines.push(format!("  export.concurrency = {}", export.concurrency));
                lines.push(format!("  export.slice_days = {}", export.slice_days));
                lines.push(format!(
                    "  export.slice_floor_minutes = {}",
                    export.slice_floor_minutes
                ));
                lines.push(format!("  export.formulas = {:?}", export.formulas));
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
            let mode = crate::catalog::PartitionMode::ALL
                .iter()
                .find(|(m, _)| *m == catalog.partitions)
                .map_or("projection", |(_, name)| name);
            lines.push(format!("  catalog.partitions = {mode:?}"));
        }
        lines.join("\n")
    }
}
