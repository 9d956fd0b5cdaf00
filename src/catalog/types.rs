//! Arrow → Glue types and the table definition (lake.md §2: the Glue type must match the
//! Parquet type exactly).

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use chrono::NaiveDate;

/// The Glue/Athena type of an Arrow type the lake writes; `None` for types the lake never writes.
pub fn glue_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        _ => return None,
    })
}

/// `cxlake schema`'s listing of one table: a heading, then one line per column with its Arrow
/// and Glue types.
pub fn schema_listing(table: &str, heading: &str, schema: &SchemaRef) -> String {
    let mut out = format!("table {table} ({heading})\n");
    for field in schema.fields() {
        let glue = glue_type(field.data_type()).unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "  {:<48} {:<28} {glue}\n",
            field.name(),
            field.data_type().to_string()
        ));
    }
    out
}

/// A table as Glue should hold it.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    /// Table name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Data columns (the partition column is not in the files).
    pub schema: SchemaRef,
    /// `s3://bucket/prefix/<table>/`.
    pub location: String,
    /// The date partition column (`dt`, `snapshot_date`) projected from this day on; `None`
    /// for an unpartitioned table (e.g. `sf_<object>_latest`).
    pub partition: Option<DatePartition>,
}

/// A `yyyy-MM-dd` string partition column, projected by Athena and/or registered in Glue.
#[derive(Debug, Clone)]
pub struct DatePartition {
    /// Column name.
    pub column: String,
    /// First day of the projection range.
    pub start: NaiveDate,
    /// How engines find the partitions.
    pub mode: PartitionMode,
}

/// How engines find a table's partitions (`[catalog] partitions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionMode {
    /// Athena partition projection only: no per-run catalog calls (the default).
    #[default]
    Projection,
    /// Partitions registered with `BatchCreatePartition`, for engines without projection
    /// (Redshift Spectrum, EMR/Hive, Glue ETL, Spark with a Glue metastore).
    Register,
    /// Both: Athena projects (and ignores registered partitions), other engines use them.
    Both,
}

impl PartitionMode {
    /// The setting's values, as written in job files.
    pub const ALL: [(PartitionMode, &'static str); 3] = [
        (PartitionMode::Projection, "projection"),
        (PartitionMode::Register, "register"),
        (PartitionMode::Both, "both"),
    ];

    /// The mode of a job-file value.
    pub fn parse(text: &str) -> Option<PartitionMode> {
        PartitionMode::ALL
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(mode, _)| *mode)
    }

    /// Whether Athena projection parameters are set.
    pub fn projects(self) -> bool {
        self != PartitionMode::Register
    }

    /// Whether runs register new partitions.
    pub fn registers(self) -> bool {
        self != PartitionMode::Projection
    }
}

impl TableDefinition {
    /// Table parameters: Parquet classification and, for a partitioned table that projects,
    /// date partition projection (values generated in UTC at query time, so the range ends at
    /// `NOW+1DAYS` for zones ahead of UTC). A register-only table says `projection.enabled =
    /// false`, so a table switched from projection stops projecting.
    pub fn parameters(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = [
            ("EXTERNAL", "TRUE".to_string()),
            ("classification", "parquet".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if self.partition.as_ref().is_some_and(|p| !p.mode.projects()) {
            out.insert("projection.enabled".into(), "false".into());
        }
        if let Some(p) = self.partition.as_ref().filter(|p| p.mode.projects()) {
            let c = &p.column;
            for (k, v) in [
                ("projection.enabled".to_string(), "true".to_string()),
                (format!("projection.{c}.type"), "date".to_string()),
                (format!("projection.{c}.format"), "yyyy-MM-dd".to_string()),
                (
                    format!("projection.{c}.range"),
                    format!("{},NOW+1DAYS", p.start.format("%Y-%m-%d")),
                ),
                (format!("projection.{c}.interval"), "1".to_string()),
                (format!("projection.{c}.interval.unit"), "DAYS".to_string()),
                (
                    "storage.location.template".to_string(),
                    format!("{}{c}=${{{c}}}/", self.location),
                ),
            ] {
                out.insert(k, v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::schema::ReportSchema;
    use crate::job::ReportKind;

    #[test]
    fn every_interval_column_has_an_exact_glue_type() {
        let schema = ReportSchema::get(ReportKind::Queue).table_schema(&["x".into()]);
        for field in schema.fields() {
            assert!(glue_type(field.data_type()).is_some(), "{field:?}");
        }
        assert_eq!(
            glue_type(&crate::connect::schema::utc_millis()).unwrap(),
            "timestamp"
        );
        assert_eq!(
            glue_type(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            None
        );
        assert_eq!(glue_type(&DataType::Float32), None);
    }

    #[test]
    fn projection_template_points_at_dt_folders() {
        let def = TableDefinition {
            name: "t".into(),
            description: String::new(),
            schema: ReportSchema::get(ReportKind::Agent).table_schema(&[]),
            location: "s3://lake/cx/t/".into(),
            partition: Some(DatePartition {
                column: "dt".into(),
                start: NaiveDate::from_ymd_opt(2017, 1, 1).unwrap(),
                mode: PartitionMode::Projection,
            }),
        };
        let p = def.parameters();
        assert_eq!(p["storage.location.template"], "s3://lake/cx/t/dt=${dt}/");
        assert_eq!(p["projection.dt.range"], "2017-01-01,NOW+1DAYS");
        let mut registered = def.clone();
        registered.partition.as_mut().unwrap().mode = PartitionMode::Register;
        let p = registered.parameters();
        assert_eq!(p["projection.enabled"], "false");
        assert!(!p.contains_key("storage.location.template"));
        for (mode, name) in PartitionMode::ALL {
            assert_eq!(PartitionMode::parse(name), Some(mode));
        }
    }
}
