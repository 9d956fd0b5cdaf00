//! cxlake: batch ETL from Amazon Connect interval reports (and, later, Salesforce) to an
//! Athena-ready Parquet lake on S3 or a local folder.
//!
//! The pipeline is plan → parse → write → catalog → state; each stage lives in its own module
//! with I/O at the edges and pure transformations in the middle.

pub mod aws;
pub mod catalog;
pub mod connect;
pub mod exec;
pub mod export;
pub mod faults;
pub mod job;
pub mod lake;
pub mod net;
pub mod observe;
pub mod pushback;
pub mod rollup;
pub mod runner;
pub mod salesforce;
pub mod state;
pub mod status;
pub mod window;
