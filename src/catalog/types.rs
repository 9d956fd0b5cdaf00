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
    /// First day of the `dt` projection.
    pub projection_start: NaiveDate,
}

impl TableDefinition {
    /// Table parameters: Parquet classification and `dt` partition projection (values generated
    /// in UTC at query time, so the range ends at `NOW+1DAYS` for zones ahead of UTC).
    pub fn parameters(&self) -> BTreeMap<String, String> {
        [
            ("EXTERNAL", "TRUE".to_string()),
            ("classification", "parquet".to_string()),
            ("projection.enabled", "true".to_string()),
            ("projection.dt.type", "date".to_string()),
            ("projection.dt.format", "yyyy-MM-dd".to_string()),
            (
                "projection.dt.range",
                format!("{},NOW+1DAYS", self.projection_start.format("%Y-%m-%d")),
            ),
            ("projection.dt.interval", "1".to_string()),
            ("projection.dt.interval.unit", "DAYS".to_string()),
            (
                "storage.location.template",
                format!("{}dt=${{dt}}/", self.location),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
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
            projection_start: NaiveDate::from_ymd_opt(2017, 1, 1).unwrap(),
        };
        let p = def.parameters();
        assert_eq!(p["storage.location.template"], "s3://lake/cx/t/dt=${dt}/");
        assert_eq!(p["projection.dt.range"], "2017-01-01,NOW+1DAYS");
    }
}
