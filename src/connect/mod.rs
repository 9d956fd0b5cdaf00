//! Amazon Connect scheduled interval reports: report keys, the header → column map, CSV → Arrow
//! parsing, and the `connect-intervals` job that lands them in the lake.

pub mod coverage;
pub mod fill;
pub mod header;
pub mod job;
pub mod key;
pub mod parse;
pub mod records;
pub mod schema;
pub mod split;
pub mod value;
