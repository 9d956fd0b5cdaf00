//! Processing writes: Bulk API 2.0 ingest CSV (reference §3.4: empty = unchanged, `#N/A` = null)
//! and sObject Collections upserts (JSON `null` = null).

use serde_json::Value;

use super::model::{stamp, ObjectDef};
use super::org::{Job, Org, Record};
use super::wire::quote;

/// (successful CSV, failed CSV, unprocessed CSV, (processed, failed)).
pub type Outcome = (String, String, String, (u64, u64));

fn find(org: &Org, object: &str, field: &str, value: &str) -> Option<usize> {
    org.records.get(object)?.iter().position(|r| {
        r.get(field).and_then(Value::as_str) == Some(value)
            && r.get("IsDeleted") != Some(&Value::Bool(true))
    })
}

/// Salesforce's message for a write to a field that cannot be written (a formula field).
pub(crate) fn read_only(fields: &str) -> String {
    format!("Unable to create/update fields: {fields}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.")
}

/// Writes `values` into a new or existing record (formula fields recomputed); returns (id,
/// created).
pub(crate) fn write(
    org: &mut Org,
    def: &ObjectDef,
    existing: Option<usize>,
    values: Vec<(String, Value)>,
) -> (String, bool) {
    let at = org.tick();
    let list = org.records.entry(def.name.clone()).or_default();
    let (index, created) = match existing {
        Some(i) => (i, false),
        None => {
            let record: Record = def
                .fields
                .iter()
                .filter(|f| !matches!(f.ftype.as_str(), "address" | "location"))
                .map(|f| (f.name.clone(), Value::Null))
                .collect();
            list.push(record);
            (list.len() - 1, true)
        }
    };
    if created {
        org.counter += 1;
        let id = super::model::make_id(&def.key_prefix, 0x300000 + org.counter);
        let record = &mut org.records.get_mut(&def.name).expect("inserted")[index];
        record.insert("Id".into(), Value::from(id));
        record.insert("IsDeleted".into(), Value::Bool(false));
        record.insert("CreatedDate".into(), Value::from(stamp(at)));
    }
    let record = &mut org.records.get_mut(&def.name).expect("present")[index];
    for (k, v) in values {
        record.insert(k, v);
    }
    for field in def.fields.iter().filter(|f| f.calculated) {
        if let Some(v) = field.evaluate(record) {
            record.insert(field.name.clone(), v);
        }
    }
    record.insert("LastModifiedDate".into(), Value::from(stamp(at)));
    record.insert("SystemModstamp".into(), Value::from(stamp(at)));
    (
        record
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        created,
    )
}

/// Runs an ingest job's upload; `Err` fails the whole job.
pub fn process(org: &mut Org, job: &Job) -> Result<Outcome, String> {
    let def = org.object(&job.object).map_err(|e| e.message)?.clone();
    let upload = job
        .upload
        .clone()
        .ok_or("InvalidBatch : no data uploaded for this job")?;
    let mut reader = csv::ReaderBuilder::new().from_reader(upload.as_slice());
    let header = reader
        .headers()
        .map_err(|e| format!("InvalidBatch : {e}"))?
        .clone();
    let names: Vec<Option<String>> = header
        .iter()
        .map(|h| def.field(h).map(|f| f.name.clone()))
        .collect();
    let quoted_header = header.iter().map(quote).collect::<Vec<_>>().join(",");
    let mut ok = format!("\"sf__Id\",\"sf__Created\",{quoted_header}\n");
    let mut failed = format!("\"sf__Id\",\"sf__Error\",{quoted_header}\n");
    let unprocessed = format!("{quoted_header}\n");
    let (mut processed, mut failures) = (0u64, 0u64);
    let key = job.external_id.clone().unwrap_or_else(|| "Id".into());
    let fault = org.faults.fail_ingest_rows_matching.clone();
    // Key → record index, so a large upload is not quadratic.
    let mut index: std::collections::HashMap<String, usize> = org
        .records
        .get(&def.name)
        .map(|rs| {
            rs.iter()
                .enumerate()
                .filter(|(_, r)| r.get("IsDeleted") != Some(&Value::Bool(true)))
                .filter_map(|(i, r)| {
                    r.get(&key)
                        .and_then(Value::as_str)
                        .map(|k| (k.to_string(), i))
                })
                .collect()
        })
        .unwrap_or_default();
    for row in reader.records() {
        let row = row.map_err(|e| format!("InvalidBatch : {e}"))?;
        processed += 1;
        let original = row.iter().map(quote).collect::<Vec<_>>().join(",");
        let mut error = None;
        let mut values = Vec::new();
        let mut key_value = None;
        for ((h, name), cell) in header.iter().zip(&names).zip(row.iter()) {
            let Some(name) = name else {
                error = Some(format!(
                    "INVALID_FIELD:No such column '{h}' on entity '{}':{h} --",
                    def.name
                ));
                break;
            };
            if name.eq_ignore_ascii_case(&key) {
                key_value = Some(cell.to_string());
            }
            if def.field(name).is_some_and(|f| f.calculated) {
                error = Some(format!(
                    "INVALID_FIELD_FOR_INSERT_UPDATE:{}:{name} --",
                    read_only(name)
                ));
                break;
            }
            if let Some(f) = &fault {
                if f.field.eq_ignore_ascii_case(name) && f.value == cell {
                    error = Some(format!("{} --", f.error));
                    break;
                }
            }
            match cell {
                "" => {}
                "#N/A" => values.push((name.clone(), Value::Null)),
                text => match Org::convert(def.field(name).expect("resolved"), text) {
                    Ok(v) => values.push((name.clone(), v)),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                },
            }
        }
        let existing = key_value.as_deref().and_then(|k| index.get(k).copied());
        if error.is_none() && job.operation != "insert" && key_value.is_none() {
            error = Some(format!("MISSING_ARGUMENT:{key} not specified:{key} --"));
        }
        if error.is_none()
            && matches!(job.operation.as_str(), "update" | "delete")
            && existing.is_none()
        {
            error = Some("ENTITY_IS_DELETED:entity is deleted or does not exist:--".to_string());
        }
        match error {
            Some(e) => {
                failures += 1;
                failed.push_str(&format!("\"\",{},{original}\n", quote(&e)));
            }
            None if job.operation == "delete" => {
                let i = existing.expect("checked");
                let at = org.tick();
                org.mark_deleted(&def.name, i, at);
                let id = org.records[&def.name][i]
                    .get("Id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                ok.push_str(&format!("{},\"false\",{original}\n", quote(&id)));
            }
            None => {
                let existing = if job.operation == "insert" {
                    None
                } else {
                    existing
                };
                let (id, created) = write(org, &def, existing, values);
                if created {
                    if let Some(k) = &key_value {
                        index.insert(k.clone(), org.records[&def.name].len() - 1);
                    }
                }
                ok.push_str(&format!(
                    "{},{},{original}\n",
                    quote(&id),
                    quote(&created.to_string())
                ));
            }
        }
    }
    org.persist(&def.name);
    Ok((ok, failed, unprocessed, (processed, failures)))
}

/// One sObject Collections upsert record; `Err((statusCode, message, fields))`.
pub fn upsert_json(
    org: &mut Org,
    def: &ObjectDef,
    key: &str,
    record: &Value,
) -> Result<(String, bool), (String, String, Vec<String>)> {
    let err =
        |code: &str, message: String, fields: Vec<String>| (code.to_string(), message, fields);
    let Value::Object(map) = record else {
        return Err(err(
            "INVALID_INPUT",
            "record is not an object".into(),
            vec![],
        ));
    };
    match map
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
    {
        Some(t) if t.eq_ignore_ascii_case(&def.name) => {}
        _ => {
            return Err(err(
                "INVALID_INPUT",
                "attributes.type is required and must match the object in the URI".into(),
                vec![],
            ))
        }
    }
    let mut values = Vec::new();
    let mut key_value = None;
    for (k, v) in map {
        if k == "attributes" {
            continue;
        }
        let Some(field) = def.field(k) else {
            return Err(err(
                "INVALID_FIELD",
                format!("No such column '{k}' on sobject of type {}", def.name),
                vec![k.clone()],
            ));
        };
        if field.name.eq_ignore_ascii_case(key) {
            key_value = v.as_str().map(str::to_string);
        }
        if field.calculated {
            return Err(err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                read_only(&field.name),
                vec![field.name.clone()],
            ));
        }
        let value = match v {
            Value::Null => Value::Null,
            Value::String(s) => Org::convert(field, s).map_err(|e| {
                err(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    e,
                    vec![field.name.clone()],
                )
            })?,
            Value::Number(_) | Value::Bool(_) => v.clone(),
            _ => {
                return Err(err(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    format!("{}: unsupported value", field.name),
                    vec![field.name.clone()],
                ))
            }
        };
        values.push((field.name.clone(), value));
    }
    if let Some(f) = org.faults.fail_ingest_rows_matching.clone() {
        if values
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(&f.field) && v.as_str() == Some(f.value.as_str()))
        {
            let (code, message) = f.error.split_once(':').unwrap_or((f.error.as_str(), ""));
            return Err(err(code, message.to_string(), vec![f.field.clone()]));
        }
    }
    let Some(key_value) = key_value else {
        return Err(err(
            "MISSING_ARGUMENT",
            format!("{key} not specified"),
            vec![key.to_string()],
        ));
    };
    let existing = find(org, &def.name, key, &key_value);
    Ok(write(org, def, existing, values))
}
