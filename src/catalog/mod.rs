//! The Glue Data Catalog: table definitions derived from the Arrow schema, created or updated
//! idempotently, with partition projection on `dt` (no per-run calls) and/or partitions
//! registered with `BatchCreatePartition` for engines without projection.

mod glue;
mod types;

pub use glue::{register_partitions, sync_table, CatalogError, SyncOutcome};
pub use types::{glue_type, schema_listing, DatePartition, PartitionMode, TableDefinition};
