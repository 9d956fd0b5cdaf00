//! The lake: object stores from URLs (`s3://`, `file://`), the partition layout, deterministic
//! Parquet encoding, and merging rows so that the latest export of a key wins.

pub mod buffer;
pub mod layout;
pub mod lock;
pub mod merge;
pub mod parquet;
pub mod partitions;
pub mod store;

pub use store::{Access, Location, StoreError};
