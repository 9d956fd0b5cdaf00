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

/// A `yyyy-MM-dd` string partition column with Athena partition projection.
#[derive(Debug, Clone)]
pub struct DatePartition {
    /// Column name.
    pub column: String,
    /// First day of the projection range.
    pub start: NaiveDate,
}

impl TableDefinition {
    /// Table parameters: Parquet classification and, for a partitioned table, date partition
    /// projection (values generated in UTC at query time, so the range ends at `NOW+1DAYS` for
    /// zones ahead of UTC).
    pub fn parameters(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = [
            ("EXTERNAL", "TRUE".to_string()),
            ("classification", "parquet".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(p) = &self.partition {
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
            }),
        };
        let p = def.parameters();
        assert_eq!(p["storage.location.template"], "s3://lake/cx/t/dt=${dt}/");
        assert_eq!(p["projection.dt.range"], "2017-01-01,NOW+1DAYS");
    }
}
