//! REST sObject rows: `GET /sobjects/{object}` (basic information), retrieve, create, update,
//! delete by id, and upsert (or retrieve) by external ID — with the status codes and error
//! bodies of Salesforce's REST API (reference §4.4–4.5).

// A handler's error here is the finished HTTP answer (status and Salesforce's error body),
// built once per request; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::ingest::write;
use crate::model::{FieldDef, ObjectDef};
use crate::org::{ApiError, Org, Selected};
use crate::server::{json_response, respond, rest_record, AppState, Handled};
use crate::wire;

/// A REST error with the `fields` list Salesforce adds for field errors.
fn field_error(status: u16, code: &str, message: String, fields: Vec<String>) -> Response {
    json_response(
        status,
        &json!([{ "message": message, "errorCode": code, "fields": fields }]),
    )
}

/// Jackson's name for the JSON token a value starts with (Salesforce parses bodies with it,
/// and its messages name the token).
fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(n) if n.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// Line and column (1-based) of the value of `key` in a JSON body, as Jackson reports it.
fn location(body: &[u8], key: &str) -> (usize, usize) {
    let text = String::from_utf8_lossy(body);
    let needle = format!("\"{key}\"");
    let Some(at) = text.find(&needle) else {
        return (1, 1);
    };
    let after = &text[at + needle.len()..];
    let colon = after.find(':').map_or(0, |c| c + 1);
    let value_start = at
        + needle.len()
        + colon
        + after[colon..]
            .chars()
            .take_while(|c| c.is_whitespace())
            .count();
    let before = &text[..value_start];
    let line = before.matches('\n').count() + 1;
    let column = value_start - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    (line, column)
}

/// A JSON body value → the stored value of `field`. Salesforce converts numeric strings for
/// number fields (and `"true"`/`"false"` for checkboxes); anything else of the wrong kind is a
/// 400 `JSON_PARSER_ERROR` naming the type and the token.
fn json_to_stored(field: &FieldDef, value: &Value) -> Result<Value, String> {
    let kind = match field.ftype.as_str() {
        "boolean" => "boolean",
        "int" => "int",
        "long" => "long",
        "double" | "currency" | "percent" => "double",
        "date" => "date",
        "datetime" => "datetime",
        "time" => "time",
        _ => "string",
    };
    let wrong = || {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!(
            "Cannot deserialize instance of {kind} from {} value {shown} or request may be missing a required field",
            token_name(value)
        )
    };
    match (kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        ("string", Value::String(s)) => Ok(Value::from(s.as_str())),
        ("string", Value::Number(n)) => Ok(Value::from(n.to_string())),
        ("string", Value::Bool(b)) => Ok(Value::from(b.to_string())),
        (_, Value::String(s)) => wire::parse_value(field, s).map_err(|_| wrong()),
        ("boolean", Value::Bool(b)) => Ok(Value::Bool(*b)),
        ("double", Value::Number(n)) => Ok(Value::Number(n.clone())),
        ("int" | "long", Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Value::Number(n.clone()))
        }
        _ => Err(wrong()),
    }
}

/// Checks and converts a JSON body's fields for an insert (`insert`) or update.
fn body_values(
    def: &ObjectDef,
    body: &[u8],
    insert: bool,
) -> Result<Vec<(String, Value)>, Response> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| {
        field_error(
            400,
            "JSON_PARSER_ERROR",
            format!(
                "Unexpected character at [line:{}, column:{}]",
                e.line(),
                e.column()
            ),
            vec![],
        )
    })?;
    let Value::Object(map) = parsed else {
        return Err(field_error(
            400,
            "JSON_PARSER_ERROR",
            format!(
                "Cannot deserialize instance of {} from {} value",
                def.name,
                token_name(&parsed)
            ),
            vec![],
        ));
    };
    let mut values = Vec::new();
    let mut read_only = Vec::new();
    for (key, value) in &map {
        if key == "attributes" {
            continue;
        }
        let Some(field) = def.field(key) else {
            return Err(field_error(
                400,
                "INVALID_FIELD",
                format!("No such column '{key}' on sobject of type {}", def.name),
                vec![key.clone()],
            ));
        };
        if field.calculated || (insert && !field.createable) || (!insert && !field.updateable) {
            read_only.push(field.name.clone());
            continue;
        }
        let stored = json_to_stored(field, value).map_err(|message| {
            let (line, column) = location(body, key);
            field_error(
                400,
                "JSON_PARSER_ERROR",
                format!("{message} at [line:{line}, column:{column}]"),
                vec![field.name.clone()],
            )
        })?;
        values.push((field.name.clone(), stored));
    }
    if !read_only.is_empty() {
        return Err(field_error(
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            crate::ingest::read_only(&read_only.join(", ")),
            read_only,
        ));
    }
    Ok(values)
}

fn not_found() -> ApiError {
    ApiError::new(404, "NOT_FOUND", "The requested resource does not exist")
}

/// The index of the live or deleted record with this id.
fn by_id(org: &Org, object: &str, id: &str) -> Option<usize> {
    org.records.get(object)?.iter().position(|r| {
        r.get("Id")
            .and_then(Value::as_str)
            .is_some_and(|x| x == id || (id.len() == 15 && x.starts_with(id)))
    })
}

fn deleted(org: &Org, object: &str, index: usize) -> bool {
    org.records[object][index].get("IsDeleted") == Some(&Value::Bool(true))
}

/// `GET /sobjects/{object}`: basic information.
pub fn basic_info(state: &AppState, object: &str, version: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("describe");
    let def = org.object(object).map_err(|_| not_found())?;
    Ok(json_response(
        200,
        &json!({ "objectDescribe": def.global_entry(version), "recentItems": [] }),
    ))
}

/// `GET /sobjects/{object}/{id}[?fields=A,B]`.
pub fn retrieve(
    state: &AppState,
    object: &str,
    id: &str,
    fields: Option<&String>,
    version: &str,
) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("retrieve");
    let def = org.object(object).map_err(|_| not_found())?.clone();
    let index = by_id(&org, &def.name, id)
        .filter(|&i| !deleted(&org, &def.name, i))
        .ok_or_else(not_found)?;
    render(&org, &def, index, fields, version)
}

fn render(
    org: &Org,
    def: &ObjectDef,
    index: usize,
    fields: Option<&String>,
    version: &str,
) -> Handled {
    let names: Vec<String> = match fields {
        Some(list) => list
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
        None => def.fields.iter().map(|f| f.name.clone()).collect(),
    };
    let selected = org.resolve(def, &names)?;
    let written: Vec<String> = selected
        .iter()
        .map(|s| match s {
            Selected::Field(f) => f.name.clone(),
            Selected::Related(_, _, f) => f.name.clone(),
        })
        .collect();
    let record = &org.records[&def.name][index];
    let text = rest_record(org, def, &selected, &written, record, version);
    Ok(respond(200, "application/json;charset=UTF-8", text))
}

/// `POST /sobjects/{object}`: 201 `{id, success, errors}`.
pub fn create(state: &AppState, object: &str, body: &[u8]) -> Result<Response, Response> {
    let mut org = state.org.lock().expect("lock");
    org.count("create");
    let def = org
        .object(object)
        .map_err(|_| crate::server::api_error(not_found()))?
        .clone();
    let values = body_values(&def, body, true)?;
    let (id, _) = write(&mut org, &def, None, values);
    org.persist(&def.name);
    Ok(json_response(
        201,
        &json!({ "id": id, "success": true, "errors": [] }),
    ))
}

/// `PATCH /sobjects/{object}/{id}`: 204.
pub fn update(state: &AppState, object: &str, id: &str, body: &[u8]) -> Result<Response, Response> {
    let mut org = state.org.lock().expect("lock");
    org.count("update");
    let api = |e: ApiError| crate::server::api_error(e);
    let def = org.object(object).map_err(|_| api(not_found()))?.clone();
    let index = by_id(&org, &def.name, id).ok_or_else(|| api(not_found()))?;
    if deleted(&org, &def.name, index) {
        return Err(field_error(
            404,
            "ENTITY_IS_DELETED",
            "entity is deleted".into(),
            vec![],
        ));
    }
    let values = body_values(&def, body, false)?;
    write(&mut org, &def, Some(index), values);
    org.persist(&def.name);
    Ok(respond(204, "application/json;charset=UTF-8", ""))
}

/// `DELETE /sobjects/{object}/{id}`: 204; the record stays visible to queryAll.
pub fn delete(state: &AppState, object: &str, id: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("delete");
    let def = org.object(object).map_err(|_| not_found())?.clone();
    let index = by_id(&org, &def.name, id).ok_or_else(not_found)?;
    if deleted(&org, &def.name, index) {
        return Err(ApiError::new(404, "ENTITY_IS_DELETED", "entity is deleted"));
    }
    let at = org.tick();
    org.mark_deleted(&def.name, index, at);
    org.persist(&def.name);
    Ok(respond(204, "application/json;charset=UTF-8", ""))
}

/// The external ID field named in a URL, or 404 as Salesforce answers for any other field.
fn external_field(def: &ObjectDef, name: &str) -> Result<String, ApiError> {
    def.field(name)
        .filter(|f| f.external_id || f.name == "Id")
        .map(|f| f.name.clone())
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {name}"),
            )
        })
}

/// Live records whose `field` holds `value` (external IDs compare case-insensitively unless
/// the field is case-sensitive unique, which describe files do not model).
fn matching(org: &Org, def: &ObjectDef, field: &str, value: &str) -> Vec<usize> {
    org.records
        .get(&def.name)
        .map(|rs| {
            rs.iter()
                .enumerate()
                .filter(|(_, r)| r.get("IsDeleted") != Some(&Value::Bool(true)))
                .filter(|(_, r)| {
                    r.get(field)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.eq_ignore_ascii_case(value))
                })
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default()
}

fn multiple(def: &ObjectDef, org: &Org, found: &[usize], version: &str) -> Response {
    let urls: Vec<Value> = found
        .iter()
        .filter_map(|&i| org.records[&def.name][i].get("Id").and_then(Value::as_str))
        .map(|id| {
            json!(format!(
                "/services/data/v{version}/sobjects/{}/{id}",
                def.name
            ))
        })
        .collect();
    json_response(300, &Value::Array(urls))
}

/// `GET /sobjects/{object}/{field}/{value}`: the record with that external ID.
pub fn retrieve_by_external_id(
    state: &AppState,
    object: &str,
    field: &str,
    value: &str,
    fields: Option<&String>,
    version: &str,
) -> Result<Response, Response> {
    let mut org = state.org.lock().expect("lock");
    org.count("retrieve");
    let api = crate::server::api_error;
    let def = org.object(object).map_err(|_| api(not_found()))?.clone();
    let key = external_field(&def, field).map_err(api)?;
    let found = matching(&org, &def, &key, value);
    match found.as_slice() {
        [] => Err(api(not_found())),
        [index] => render(&org, &def, *index, fields, version).map_err(api),
        _ => Ok(multiple(&def, &org, &found, version)),
    }
}

/// `PATCH /sobjects/{object}/{field}/{value}`: upsert by external ID. Created: 201
/// `{id, success, errors, created: true}`. Updated: 200 with `created: false` from API 46.0,
/// 204 with no body before (the Lambdas' default `v42.0`). Several matches: 300 with their URLs.
pub fn upsert(
    state: &AppState,
    object: &str,
    field: &str,
    value: &str,
    body: &[u8],
    version: &str,
) -> Result<Response, Response> {
    let mut org = state.org.lock().expect("lock");
    org.count("upsert");
    let api = crate::server::api_error;
    let def = org.object(object).map_err(|_| api(not_found()))?.clone();
    let key = external_field(&def, field).map_err(api)?;
    let found = matching(&org, &def, &key, value);
    if found.len() > 1 {
        return Ok(multiple(&def, &org, &found, version));
    }
    let existing = found.first().copied();
    let mut values = body_values(&def, body, existing.is_none())?;
    if let Some((_, given)) = values.iter().find(|(name, _)| *name == key) {
        if given.as_str() != Some(value) {
            return Err(field_error(
                400,
                "INVALID_FIELD",
                format!(
                    "The value of the external ID field {key} in the body does not match the URL"
                ),
                vec![key.clone()],
            ));
        }
    }
    if existing.is_none() && key == "Id" {
        return Err(api(not_found()));
    }
    if existing.is_none() {
        values.retain(|(name, _)| *name != key);
        values.push((key.clone(), Value::from(value)));
    }
    let (id, created) = write(&mut org, &def, existing, values);
    org.persist(&def.name);
    let newer = version.parse::<f64>().unwrap_or(0.0) >= 46.0;
    let answer = json!({ "id": id, "success": true, "errors": [], "created": created });
    Ok(match (created, newer) {
        (true, _) => json_response(201, &answer),
        (false, true) => json_response(200, &answer),
        (false, false) => respond(204, "application/json;charset=UTF-8", ""),
    })
}

/// `columnMetadata` of a query (`GET /query?q=…&columns=true`, which the sf CLI sends before
/// running a query to learn its columns).
pub fn columns(object: &ObjectDef, selected: &[Selected]) -> Value {
    let column = |name: &str, f: &FieldDef, children: Vec<Value>| {
        let apex = match f.ftype.as_str() {
            "boolean" => "Boolean",
            "int" => "Integer",
            "long" => "Long",
            "double" | "percent" => "Double",
            "currency" => "Decimal",
            "date" => "Date",
            "datetime" => "Datetime",
            "time" => "Time",
            "id" | "reference" => "Id",
            "address" => "Address",
            "location" => "Location",
            _ => "String",
        };
        let numeric = matches!(
            f.ftype.as_str(),
            "int" | "long" | "double" | "currency" | "percent"
        );
        let mut m = Map::new();
        m.insert("aggregate".into(), json!(false));
        m.insert("apexType".into(), json!(apex));
        m.insert("booleanType".into(), json!(f.ftype == "boolean"));
        m.insert("columnName".into(), json!(name));
        m.insert("custom".into(), json!(f.name.ends_with("__c")));
        m.insert("displayName".into(), json!(name));
        m.insert("foreignKeyName".into(), Value::Null);
        m.insert("insertable".into(), json!(f.createable));
        m.insert("joinColumns".into(), Value::Array(children));
        m.insert("numberType".into(), json!(numeric));
        m.insert("textType".into(), json!(!numeric && f.ftype != "boolean"));
        m.insert("updatable".into(), json!(f.updateable));
        Value::Object(m)
    };
    let mut out: Vec<Value> = Vec::new();
    let mut relationships: Vec<(String, Vec<Value>, FieldDef)> = Vec::new();
    for sel in selected {
        match sel {
            Selected::Field(f) => out.push(column(&f.name, f, vec![])),
            Selected::Related(reference, _, f) => {
                let rel = reference.relationship_name.clone().unwrap_or_default();
                let child = column(&f.name, f, vec![]);
                match relationships.iter_mut().find(|(r, _, _)| *r == rel) {
                    Some((_, children, _)) => children.push(child),
                    None => relationships.push((rel, vec![child], reference.clone())),
                }
            }
        }
    }
    for (rel, children, reference) in relationships {
        out.push(column(&rel, &reference, children));
    }
    json!({
        "columnMetadata": out,
        "entityName": object.name,
        "groupBy": false,
        "idSelected": selected.iter().any(|s| matches!(s, Selected::Field(f) if f.name == "Id")),
        "keyPrefix": object.key_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(ftype: &str) -> FieldDef {
        serde_json::from_value(json!({"name": "F__c", "type": ftype})).unwrap()
    }

    #[test]
    fn numeric_strings_are_numbers_and_wrong_kinds_are_named() {
        assert_eq!(
            json_to_stored(&field("double"), &json!("461")),
            Ok(json!(461.0))
        );
        assert_eq!(
            json_to_stored(&field("percent"), &json!("66.67")),
            Ok(json!(66.67))
        );
        assert_eq!(json_to_stored(&field("int"), &json!("7")), Ok(json!(7)));
        assert_eq!(
            json_to_stored(&field("double"), &Value::Null),
            Ok(Value::Null)
        );
        assert_eq!(
            json_to_stored(&field("string"), &json!(12)),
            Ok(json!("12"))
        );
        assert_eq!(
            json_to_stored(&field("double"), &json!("abc")),
            Err("Cannot deserialize instance of double from VALUE_STRING value abc or request may be missing a required field".into())
        );
        assert_eq!(
            json_to_stored(&field("boolean"), &json!(1)),
            Err("Cannot deserialize instance of boolean from VALUE_NUMBER_INT value 1 or request may be missing a required field".into())
        );
        assert!(json_to_stored(&field("int"), &json!(4.5)).is_err());
        assert!(json_to_stored(&field("date"), &json!("2024-02-30")).is_err());
    }

    #[test]
    fn error_locations_point_at_the_value() {
        let body = br#"{"Name": "x",
  "Count__c": "abc"}"#;
        assert_eq!(location(body, "Count__c"), (2, 15));
        assert_eq!(location(body, "Name"), (1, 10));
    }
}
