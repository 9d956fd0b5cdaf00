//! The Glue Data Catalog: table definitions derived from the Arrow schema, created or updated
//! idempotently, with partition projection on `dt` so runs never register partitions.

mod glue;
mod types;

pub use glue::{sync_table, CatalogError, SyncOutcome};
pub use types::{glue_type, DatePartition, TableDefinition};
