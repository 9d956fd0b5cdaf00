//! sObject describe results and the columns an export selects: describe drives the schema, one
//! Arrow type per Salesforce field type (reference §4.3, §8.1).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The parts of `GET /sobjects/{o}/describe` the export needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDescribe {
    /// API name, e.g. `Account`.
    pub name: String,
    /// Whether SOQL can read it.
    #[serde(default = "yes")]
    pub queryable: bool,
    /// Fields in describe order.
    pub fields: Vec<FieldDescribe>,
}

fn yes() -> bool {
    true
}

/// One field of a describe result.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    /// API name, e.g. `AnnualRevenue`.
    pub name: String,
    /// Describe type, e.g. `currency`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// For components of a compound field: the compound's name (`BillingCity` → `BillingAddress`).
    #[serde(default)]
    pub compound_field_name: Option<String>,
    /// Objects a reference field points to.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// Relationship name of a reference field (`Owner` for `OwnerId`).
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// External ID field (an upsert key).
    #[serde(default)]
    pub external_id: bool,
    /// Total digits of a `double`/`currency`/`percent` field (0 when describe gives none).
    #[serde(default)]
    pub precision: u32,
    /// Digits right of the point of a `double`/`currency`/`percent` field.
    #[serde(default)]
    pub scale: i32,
    /// A formula field: its value can change without moving `SystemModstamp`.
    #[serde(default)]
    pub calculated: bool,
}

/// How a field's values are normalized; each kind has exactly one Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Text of any kind (ids, picklists, text areas, e-mail, …) → Utf8.
    Text,
    /// `boolean` → Boolean.
    Boolean,
    /// `int`, `long` → Int64 (accepts `42.0`).
    Integer,
    /// `double` without a precision in describe → Float64.
    Double,
    /// `currency`, `percent`, and `double` with a precision in describe → Decimal128(p, s),
    /// parsed from the text (never through f64); percent stays 0–100.
    Decimal {
        /// Total digits (1–38).
        precision: u8,
        /// Digits right of the point (0–precision).
        scale: i8,
    },
    /// `date` → Date32.
    Date,
    /// `datetime` → Timestamp(ms, UTC).
    DateTime,
    /// `time` → Utf8 `HH:MM:SS.sss`.
    Time,
}

impl ValueKind {
    /// Every kind without parameters, with its stored name (decimals are stored as
    /// `decimal(p,s)`).
    pub const ALL: [(ValueKind, &'static str); 7] = [
        (ValueKind::Text, "text"),
        (ValueKind::Boolean, "boolean"),
        (ValueKind::Integer, "integer"),
        (ValueKind::Double, "double"),
        (ValueKind::Date, "date"),
        (ValueKind::DateTime, "datetime"),
        (ValueKind::Time, "time"),
    ];

    /// The stored name (table metadata): `text`, `double`, `decimal(18,2)`, ….
    pub fn name(self) -> String {
        if let ValueKind::Decimal { precision, scale } = self {
            return format!("decimal({precision},{scale})");
        }
        ValueKind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| n.to_string())
            .expect("every kind without parameters is listed")
    }

    /// The kind of a stored name.
    pub fn parse(name: &str) -> Option<ValueKind> {
        if let Some(args) = name
            .strip_prefix("decimal(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (p, s) = args.split_once(',')?;
            return ValueKind::decimal(p.trim().parse().ok()?, s.trim().parse().ok()?);
        }
        ValueKind::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
    }

    /// `Decimal(p, s)` when Arrow and Glue can hold it exactly (1 ≤ p ≤ 38, 0 ≤ s ≤ p).
    pub fn decimal(precision: u32, scale: i32) -> Option<ValueKind> {
        let precision = u8::try_from(precision)
            .ok()
            .filter(|p| (1..=38).contains(p))?;
        let scale = i8::try_from(scale)
            .ok()
            .filter(|s| *s >= 0 && *s as u8 <= precision)?;
        Some(ValueKind::Decimal { precision, scale })
    }

    /// The kind of a describe field, or `None` for types that are not exported (base64,
    /// compound parents): their data comes from component fields or is not available in Bulk
    /// queries. Currency and percent (and doubles describe gives a precision for) are exact
    /// decimals of the describe precision and scale; a double without one stays a double.
    pub fn of(field: &FieldDescribe) -> Option<ValueKind> {
        Some(match field.field_type.as_str() {
            "boolean" => ValueKind::Boolean,
            "int" | "long" => ValueKind::Integer,
            "double" | "currency" | "percent" => {
                ValueKind::decimal(field.precision, field.scale).unwrap_or(ValueKind::Double)
            }
            "date" => ValueKind::Date,
            "datetime" => ValueKind::DateTime,
            "time" => ValueKind::Time,
            "base64" | "address" | "location" => return None,
            _ => ValueKind::Text,
        })
    }
}

/// One exported column: the SOQL path that selects it and the lake column it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// SOQL path with canonical API names, e.g. `Name` or `Owner.Name`.
    pub path: String,
    /// Lake column name, e.g. `name` or `owner__name`.
    pub name: String,
    /// Normalization.
    pub kind: ValueKind,
}

/// Fields every export carries, whatever the job selects: the key, the change marker and the
/// delete flag drive incremental runs and the `_latest` table.
pub const SYSTEM_FIELDS: [&str; 3] = ["Id", "SystemModstamp", "IsDeleted"];

/// Why a column list could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The object is not queryable.
    #[error("{object} is not queryable")]
    NotQueryable {
        /// Object.
        object: String,
    },
    /// A requested field does not exist.
    #[error("{object}.{field}: no such field in describe")]
    UnknownField {
        /// Object.
        object: String,
        /// Requested path.
        field: String,
    },
    /// A requested field cannot be exported.
    #[error("{object}.{field}: {reason}")]
    Unsupported {
        /// Object.
        object: String,
        /// Requested path.
        field: String,
        /// Why.
        reason: String,
    },
    /// Two fields map to one column name.
    #[error("{object}: fields {first} and {second} both become column {column:?}")]
    Collision {
        /// Object.
        object: String,
        /// First path.
        first: String,
        /// Second path.
        second: String,
        /// Shared column name.
        column: String,
    },
    /// A relationship path needs the describe of another object.
    #[error("{object}.{field}: needs the describe of {target}")]
    NeedsDescribe {
        /// Object.
        object: String,
        /// Requested path.
        field: String,
        /// The related object.
        target: String,
    },
}

/// Lower snake case of an API name or path: `AnnualRevenue` → `annual_revenue`,
/// `Owner.Name` → `owner__name`, `SLA_Date__c` → `sla_date__c`.
pub fn column_name(path: &str) -> String {
    path.split('.')
        .map(snake_case)
        .collect::<Vec<_>>()
        .join("__")
}

fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                // The last capital of an acronym starts a word: `SLAExpiry` → `sla_expiry`.
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

impl ObjectDescribe {
    /// The field with this name, case-insensitively.
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field whose relationship is `relationship` (`Owner` → `OwnerId`).
    pub fn relationship(&self, relationship: &str) -> Option<&FieldDescribe> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(relationship))
        })
    }
}

/// The columns of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Fields left out (base64, compound parents) with the reason, for one notice per run.
    pub skipped: Vec<(String, String)>,
}

impl Selection {
    /// The SOQL SELECT list.
    pub fn soql_fields(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Builds the columns for `requested` paths (empty = every exportable field). `related` holds
/// the describes of objects that relationship paths point to.
pub fn select(
    describe: &ObjectDescribe,
    requested: &[String],
    related: &BTreeMap<String, ObjectDescribe>,
) -> Result<Selection, SelectError> {
    let object = describe.name.clone();
    if !describe.queryable {
        return Err(SelectError::NotQueryable { object });
    }
    let mut columns: Vec<Column> = Vec::new();
    let mut skipped = Vec::new();
    let push = |column: Column, columns: &mut Vec<Column>| -> Result<(), SelectError> {
        if let Some(existing) = columns.iter().find(|c| c.name == column.name) {
            if existing.path == column.path {
                return Ok(());
            }
            return Err(SelectError::Collision {
                object: describe.name.clone(),
                first: existing.path.clone(),
                second: column.path,
                column: column.name,
            });
        }
        columns.push(column);
        Ok(())
    };
    for system in SYSTEM_FIELDS {
        if let Some(field) = describe.field(system) {
            let kind = ValueKind::of(field).unwrap_or(ValueKind::Text);
            push(
                Column {
                    path: field.name.clone(),
                    name: column_name(&field.name),
                    kind,
                },
                &mut columns,
            )?;
        }
    }
    if requested.is_empty() {
        for field in &describe.fields {
            match ValueKind::of(field) {
                Some(kind) => push(
                    Column {
                        path: field.name.clone(),
                        name: column_name(&field.name),
                        kind,
                    },
                    &mut columns,
                )?,
                None => skipped.push((field.name.clone(), skip_reason(&field.field_type))),
            }
        }
        return Ok(Selection { columns, skipped });
    }
    for path in requested {
        let column = resolve(describe, path, related)?;
        push(column, &mut columns)?;
    }
    Ok(Selection { columns, skipped })
}

fn skip_reason(field_type: &str) -> String {
    match field_type {
        "base64" => "base64 field: not available in Bulk API 2.0 queries".to_string(),
        other => format!("{other} compound field: exported as its component fields"),
    }
}

fn resolve(
    describe: &ObjectDescribe,
    path: &str,
    related: &BTreeMap<String, ObjectDescribe>,
) -> Result<Column, SelectError> {
    let object = describe.name.clone();
    let unknown = || SelectError::UnknownField {
        object: object.clone(),
        field: path.to_string(),
    };
    let (canonical, field) = match path.split_once('.') {
        None => {
            let field = describe.field(path).ok_or_else(unknown)?;
            (field.name.clone(), field)
        }
        Some((relationship, rest)) => {
            if rest.contains('.') {
                return Err(SelectError::Unsupported {
                    object,
                    field: path.to_string(),
                    reason: "only one relationship hop is supported".to_string(),
                });
            }
            let reference = describe.relationship(relationship).ok_or_else(unknown)?;
            let target = reference.reference_to.first().ok_or_else(unknown)?;
            let target_describe =
                related
                    .get(target)
                    .ok_or_else(|| SelectError::NeedsDescribe {
                        object: object.clone(),
                        field: path.to_string(),
                        target: target.clone(),
                    })?;
            let field = target_describe.field(rest).ok_or_else(unknown)?;
            let relationship = reference
                .relationship_name
                .clone()
                .unwrap_or_else(|| relationship.to_string());
            (format!("{relationship}.{}", field.name), field)
        }
    };
    let kind = ValueKind::of(field).ok_or_else(|| SelectError::Unsupported {
        object: object.clone(),
        field: path.to_string(),
        reason: skip_reason(&field.field_type),
    })?;
    Ok(Column {
        name: column_name(&canonical),
        path: canonical,
        kind,
    })
}

/// Objects that relationship paths in `requested` point to (to describe before [`select`]).
pub fn related_objects(describe: &ObjectDescribe, requested: &[String]) -> Vec<String> {
    let mut out: Vec<String> = requested
        .iter()
        .filter_map(|p| p.split_once('.'))
        .filter_map(|(rel, _)| describe.relationship(rel))
        .filter_map(|f| f.reference_to.first().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: &str) -> FieldDescribe {
        FieldDescribe {
            name: name.into(),
            field_type: ty.into(),
            compound_field_name: None,
            reference_to: vec![],
            relationship_name: None,
            external_id: false,
            precision: 0,
            scale: 0,
            calculated: false,
        }
    }

    fn account() -> ObjectDescribe {
        let mut city = field("BillingCity", "string");
        city.compound_field_name = Some("BillingAddress".into());
        let mut owner = field("OwnerId", "reference");
        owner.reference_to = vec!["User".into()];
        owner.relationship_name = Some("Owner".into());
        ObjectDescribe {
            name: "Account".into(),
            queryable: true,
            fields: vec![
                field("Id", "id"),
                field("IsDeleted", "boolean"),
                field("Name", "string"),
                field("BillingAddress", "address"),
                city,
                FieldDescribe {
                    precision: 18,
                    ..field("AnnualRevenue", "currency")
                },
                field("Logo__c", "base64"),
                owner,
                field("SystemModstamp", "datetime"),
            ],
        }
    }

    #[test]
    fn snake_case_names() {
        assert_eq!(column_name("AnnualRevenue"), "annual_revenue");
        assert_eq!(column_name("Owner.Name"), "owner__name");
        assert_eq!(
            column_name("SLAExpirationDate__c"),
            "sla_expiration_date__c"
        );
        assert_eq!(column_name("Account__r.Name"), "account__r__name");
        assert_eq!(
            column_name("Mailing_Address__Street__s"),
            "mailing_address__street__s"
        );
        assert_eq!(column_name("Id"), "id");
        assert_eq!(column_name("Phone2__c"), "phone2__c");
    }

    #[test]
    fn all_fields_skip_base64_and_compound_parents() {
        let s = select(&account(), &[], &BTreeMap::new()).unwrap();
        let names: Vec<_> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "system_modstamp",
                "is_deleted",
                "name",
                "billing_city",
                "annual_revenue",
                "owner_id"
            ]
        );
        let skipped: Vec<_> = s.skipped.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(skipped, ["BillingAddress", "Logo__c"]);
        assert_eq!(
            s.columns[5].kind,
            ValueKind::Decimal {
                precision: 18,
                scale: 0
            }
        );
    }

    #[test]
    fn money_and_percent_are_exact_decimals_of_the_describe_precision() {
        let with = |ty: &str, precision, scale| {
            ValueKind::of(&FieldDescribe {
                precision,
                scale,
                ..field("X__c", ty)
            })
        };
        let decimal = |precision, scale| Some(ValueKind::Decimal { precision, scale });
        assert_eq!(with("currency", 18, 2), decimal(18, 2));
        assert_eq!(with("percent", 5, 2), decimal(5, 2));
        assert_eq!(with("double", 18, 4), decimal(18, 4));
        // No precision in describe: a plain double; nonsense precision/scale never panics.
        assert_eq!(with("double", 0, 0), Some(ValueKind::Double));
        assert_eq!(with("currency", 60, 2), Some(ValueKind::Double));
        assert_eq!(with("currency", 4, 6), Some(ValueKind::Double));
        for kind in [ValueKind::Double, ValueKind::Text, decimal(18, 2).unwrap()] {
            assert_eq!(ValueKind::parse(&kind.name()), Some(kind));
        }
        assert_eq!(ValueKind::parse("decimal(18,2)"), decimal(18, 2));
        assert_eq!(ValueKind::parse("decimal(99,2)"), None);
    }

    #[test]
    fn relationship_paths_use_the_related_describe() {
        let user = ObjectDescribe {
            name: "User".into(),
            queryable: true,
            fields: vec![field("Id", "id"), field("Name", "string")],
        };
        let requested = vec!["name".to_string(), "owner.name".to_string()];
        assert_eq!(related_objects(&account(), &requested), ["User"]);
        let err = select(&account(), &requested, &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, SelectError::NeedsDescribe { .. }));
        let related = BTreeMap::from([("User".to_string(), user)]);
        let s = select(&account(), &requested, &related).unwrap();
        let last = s.columns.last().unwrap();
        assert_eq!(last.path, "Owner.Name");
        assert_eq!(last.name, "owner__name");
        assert_eq!(s.columns[3].path, "Name");
        let bad = select(&account(), &["Nope".into()], &related).unwrap_err();
        assert_eq!(bad.to_string(), "Account.Nope: no such field in describe");
        let b64 = select(&account(), &["Logo__c".into()], &related).unwrap_err();
        assert!(b64.to_string().contains("base64"), "{b64}");
    }
}
