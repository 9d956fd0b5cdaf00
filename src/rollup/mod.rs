//! The `interval-rollup` job: hourly and daily tables per queue and per agent, built from the
//! interval tables with the formulas in `schemas/connect_rollups.toml`.

pub mod aggregate;
pub mod job;
pub mod rules;
