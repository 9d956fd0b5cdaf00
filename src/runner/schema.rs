//! `cxlake schema` and `cxlake catalog sync`: the tables a job writes, for any kind.

use super::{failed, JobError};
use crate::catalog::schema_listing;
use crate::connect::job::{ConnectJob, OpenMode};
use crate::connect::schema::ReportSchema;
use crate::export::ExportJob;
use crate::job::{Job, JobKind};
use crate::lake::{Access, Location};
use crate::rollup::job::RollupJob;

/// The listing of every table `job` writes: column, Arrow type, Glue type. Connect tables come
/// from the report schema and the lake's added columns, roll-ups from their formulas, Salesforce
/// tables from describe (or, without a login, from the lake's table metadata).
pub async fn listing(job: &Job) -> Result<String, JobError> {
    match &job.kind {
        JobKind::ConnectIntervals(source) => {
            let connect = ConnectJob::open(job, source, OpenMode::Inspect)
                .await
                .map_err(JobError::cause)?;
            let schema = connect
                .table_schema()
                .await
                .map_err(JobError::cause)?;
            let heading = format!(
                "partitioned by dt string, YYYY-MM-DD in {}",
                job.timezone.name()
            );
            let coverage = schema_listing(
                crate::connect::coverage::TABLE,
                &format!("every expected interval of the job's days; {heading}"),
                &crate::connect::coverage::schema(),
            );
            Ok(format!(
                "{}\n{coverage}",
                schema_listing(&connect.table().table, &heading, &schema)
            ))
        }
        JobKind::IntervalRollup(spec) => {
            let rollup = RollupJob::open(job, spec.report, &spec.grains, true)
                .await
                .map_err(failed(job, ""))?;
            let heading = format!(
                "roll-up formulas in schemas/connect_rollups.toml; partitioned by dt string, YYYY-MM-DD in {}",
                job.timezone.name()
            );
            let tables = rollup.table_schemas().await.map_err(failed(job, ""))?;
            Ok(tables
                .iter()
                .map(|(table, schema)| schema_listing(table, &heading, schema))
                .collect())
        }
        JobKind::SalesforceExport(spec) => {
            let described = match ExportJob::open(job, spec, true, None).await {
                Ok(export) => export.table_schemas().await,
                Err(e) => Err(e),
            };
            let tables = match described {
                Ok(tables) => tables
                    .into_iter()
                    .map(|(table, schema)| (table, Some(schema), "from Salesforce describe"))
                    .collect::<Vec<_>>(),
                Err(e) => {
                    eprintln!(
                        "no Salesforce describe ({}); showing the columns the lake remembers",
                        crate::observe::cause_chain(&e)
                    );
                    let lake = Location::open(
                        &job.lake.url,
                        job.lake.region.as_deref(),
                        Access::ReadOnly,
                    )
                    .await
                    .map_err(failed(job, ""))?;
                    crate::export::stored_table_schemas(&lake, spec)
                        .await
                        .map_err(failed(job, ""))?
                        .into_iter()
                        .map(|(table, schema)| (table, schema, "from the lake's table metadata"))
                        .collect()
                }
            };
            let mut out = String::new();
            for (table, schema, source) in tables {
                let latest = crate::export::latest_table(&table);
                match schema {
                    Some(schema) => out.push_str(&schema_listing(
                        &table,
                        &format!(
                            "{source}; partitioned by snapshot_date string; {latest} has the same columns"
                        ),
                        &schema,
                    )),
                    None => out.push_str(&format!(
                        "table {table}: not exported to this lake yet (no Salesforce login to describe it)\n"
                    )),
                }
            }
            Ok(out)
        }
        JobKind::SalesforcePushback(spec) => Ok(format!(
            "a salesforce-pushback job writes no lake table: it reads {} and upserts Salesforce records\n",
            ReportSchema::get(spec.pushback.report).table
        )),
    }
}

/// Creates or updates the Glue table of a connect-intervals job (add-only) without moving data;
/// returns the line to print. Other kinds' tables are kept in Glue by their runs.
pub async fn catalog_sync(job: &Job) -> Result<String, JobError> {
    let Some(catalog) = &job.catalog else {
        return Err(JobError::usage(format!(
            "job {} has no [catalog] section",
            job.name
        )));
    };
    let JobKind::ConnectIntervals(source) = &job.kind else {
        return Err(JobError::usage(format!(
            "`cxlake catalog sync` supports connect-intervals jobs; a {} job updates its Glue tables on each run \
             (see `cxlake run {} --dry-run`)",
            job.kind.name(),
            job.name
        )));
    };
    let connect = ConnectJob::open(job, source, OpenMode::Inspect)
        .await
        .map_err(JobError::cause)?;
    let schema = connect.table_schema().await.map_err(JobError::cause)?;
    let [outcome, coverage] = connect
        .sync_catalog(catalog, &schema, &[], &[])
        .await
        .map_err(JobError::cause)?;
    Ok(format!(
        "{db}.{}: {outcome:?}\n{db}.{}: {coverage:?}\n",
        connect.table().table,
        crate::connect::coverage::TABLE,
        db = catalog.database,
    ))
}
