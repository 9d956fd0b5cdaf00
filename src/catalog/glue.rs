//! Glue calls: ensure the database, then create the table or update it add-only.

use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};
use aws_sdk_glue::Client;

use super::types::{glue_type, TableDefinition};

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A Glue request failed.
    #[error("glue {operation} {target}: {message}")]
    Glue {
        /// The API operation.
        operation: &'static str,
        /// Database or table.
        target: String,
        /// The service's message.
        message: String,
    },
    /// The table holds a column with another type; columns are never retyped.
    #[error("glue table {table}: column {column:?} is {existing} in Glue but {wanted} in the data; columns are never retyped (add a new column instead)")]
    Retyped {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// Type in Glue.
        existing: String,
        /// Type cxlake writes.
        wanted: String,
    },
    /// The schema holds a type the lake must not write.
    #[error("column {column:?} has type {data_type}, which has no exact Glue type")]
    Unsupported {
        /// Column.
        column: String,
        /// Arrow type.
        data_type: String,
    },
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The table was created.
    Created,
    /// Columns or parameters were updated.
    Updated,
    /// Already as wanted.
    Unchanged,
}

fn glue_err<E: std::fmt::Debug + std::error::Error>(
    operation: &'static str,
    target: &str,
    e: E,
) -> CatalogError {
    let message =
        std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
    CatalogError::Glue {
        operation,
        target: target.to_string(),
        message,
    }
}

fn columns(def: &TableDefinition) -> Result<Vec<(String, String)>, CatalogError> {
    def.schema
        .fields()
        .iter()
        .map(|f| {
            glue_type(f.data_type())
                .map(|t| (f.name().clone(), t))
                .ok_or_else(|| CatalogError::Unsupported {
                    column: f.name().clone(),
                    data_type: f.data_type().to_string(),
                })
        })
        .collect()
}

/// Makes Glue's table match `def`: created if missing; otherwise columns are appended (never
/// dropped or retyped) and projection parameters set. Without changes, no write call is made.
pub async fn sync_table(
    client: &Client,
    database: &str,
    def: &TableDefinition,
) -> Result<SyncOutcome, CatalogError> {
    ensure_database(client, database).await?;
    let wanted = columns(def)?;
    // A CreateTable whose answer was lost (a reset, a timeout) and was retried meets the table
    // its first attempt created: read it again and go on as for an existing table.
    let mut created_elsewhere = false;
    let existing = loop {
        let existing = match client
            .get_table()
            .database_name(database)
            .name(&def.name)
            .send()
            .await
        {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(glue_err("GetTable", &def.name, e)),
        };
        if let Some(existing) = existing {
            break existing;
        }
        match client
            .create_table()
            .database_name(database)
            .table_input(table_input(def, &wanted))
            .send()
            .await
        {
            Ok(_) => return Ok(SyncOutcome::Created),
            Err(e)
                if !created_elsewhere
                    && e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                created_elsewhere = true;
            }
            Err(e) => return Err(glue_err("CreateTable", &def.name, e)),
        }
    };
    let current: Vec<(String, String)> = existing
        .storage_descriptor()
        .map(|sd| {
            sd.columns()
                .iter()
                .map(|c| {
                    (
                        c.name().to_string(),
                        c.r#type().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Add-only: keep every column Glue has, in its place; append the new ones.
    let mut merged = current.clone();
    for (name, ty) in &wanted {
        match current.iter().find(|(n, _)| n == name) {
            Some((_, existing_type)) if existing_type != ty => {
                return Err(CatalogError::Retyped {
                    table: def.name.clone(),
                    column: name.clone(),
                    existing: existing_type.clone(),
                    wanted: ty.clone(),
                })
            }
            Some(_) => {}
            None => merged.push((name.clone(), ty.clone())),
        }
    }
    let parameters_match = def
        .parameters()
        .iter()
        .all(|(k, v)| existing.parameters().and_then(|p| p.get(k)) == Some(v));
    let location_matches =
        existing.storage_descriptor().and_then(|sd| sd.location()) == Some(def.location.as_str());
    if merged == current && parameters_match && location_matches {
        return Ok(SyncOutcome::Unchanged);
    }
    client
        .update_table()
        .database_name(database)
        .table_input(table_input(def, &merged))
        .skip_archive(true)
        .send()
        .await
        .map_err(|e| glue_err("UpdateTable", &def.name, e))?;
    Ok(SyncOutcome::Updated)
}

async fn ensure_database(client: &Client, database: &str) -> Result<(), CatalogError> {
    match client.get_database().name(database).send().await {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_not_found_exception()) => {}
        Err(e) => return Err(glue_err("GetDatabase", database, e)),
    }
    let input = DatabaseInput::builder()
        .name(database)
        .description("Contact center lake written by cxlake")
        .build()
        .expect("name is set");
    match client.create_database().database_input(input).send().await {
        Ok(_) => Ok(()),
        // Another run created it in between.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(glue_err("CreateDatabase", database, e)),
    }
}

fn column(name: &str, ty: &str) -> Column {
    Column::builder()
        .name(name)
        .r#type(ty)
        .build()
        .expect("name is set")
}

/// Parquet read through Hive's SerDe, at `location`, with these columns.
fn storage_descriptor(location: &str, columns: &[(String, String)]) -> StorageDescriptor {
    StorageDescriptor::builder()
        .location(location)
        .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
        .output_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(
                    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                )
                .parameters("serialization.format", "1")
                .build(),
        )
        .set_columns(Some(columns.iter().map(|(n, t)| column(n, t)).collect()))
        .build()
}

fn table_input(def: &TableDefinition, columns: &[(String, String)]) -> TableInput {
    let sd = storage_descriptor(&def.location, columns);
    TableInput::builder()
        .name(&def.name)
        .description(&def.description)
        .table_type("EXTERNAL_TABLE")
        .set_partition_keys(
            def.partition
                .as_ref()
                .map(|p| vec![column(&p.column, "string")]),
        )
        .set_parameters(Some(def.parameters().into_iter().collect()))
        .storage_descriptor(sd)
        .build()
        .expect("name is set")
}

/// Glue's `BatchCreatePartition` limit.
const PARTITIONS_PER_CALL: usize = 100;

/// Registers the partitions `values` (e.g. `2024-03-10`) of a date-partitioned table whose
/// [`PartitionMode`](super::PartitionMode) registers partitions, for engines without partition
/// projection (Redshift Spectrum, EMR/Hive, Glue ETL). Idempotent: a partition that already
/// exists counts as registered. Returns how many were new. Run after [`sync_table`] (the
/// partition's columns are the table's).
pub async fn register_partitions(
    client: &Client,
    database: &str,
    def: &TableDefinition,
    values: &[String],
) -> Result<usize, CatalogError> {
    let Some(partition) = def.partition.as_ref().filter(|p| p.mode.registers()) else {
        return Ok(0);
    };
    let wanted = columns(def)?;
    let mut values: Vec<&String> = values.iter().collect();
    values.sort();
    values.dedup();
    let mut created = 0;
    for chunk in values.chunks(PARTITIONS_PER_CALL) {
        let inputs = chunk
            .iter()
            .map(|value| {
                let location = format!("{}{}={value}/", def.location, partition.column);
                PartitionInput::builder()
                    .values(value.as_str())
                    .storage_descriptor(storage_descriptor(&location, &wanted))
                    .build()
            })
            .collect();
        let out = client
            .batch_create_partition()
            .database_name(database)
            .table_name(&def.name)
            .set_partition_input_list(Some(inputs))
            .send()
            .await
            .map_err(|e| glue_err("BatchCreatePartition", &def.name, e))?;
        let mut failed = 0;
        for error in out.errors() {
            let detail = error.error_detail();
            let code = detail.and_then(|d| d.error_code()).unwrap_or_default();
            failed += 1;
            if code != "AlreadyExistsException" {
                return Err(CatalogError::Glue {
                    operation: "BatchCreatePartition",
                    target: format!(
                        "{} partition {}",
                        def.name,
                        error.partition_values().join("/")
                    ),
                    message: format!(
                        "{code}: {}",
                        detail.and_then(|d| d.error_message()).unwrap_or_default()
                    ),
                });
            }
        }
        created += chunk.len() - failed;
    }
    Ok(created)
}
