//! Rendering stored values in Salesforce's wire formats (reference §0, §2.8, §4.2): REST JSON
//! (`+0000` datetimes, Java-style doubles as raw JSON numbers) and Bulk API 2.0 CSV (every cell
//! quoted, null as `""`, `Z` datetimes, integer fields of custom objects as `42.0`).

use serde_json::Value;

use super::model::{FieldDef, ObjectDef};

/// Java's `Double.toString`: plain from 10⁻³ up to 10⁷, otherwise E-notation (`1.2345678E7`).
pub fn java_double(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let text = format!("{v}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let text = format!("{v:e}");
        let (mantissa, exponent) = text.split_once('e').expect("{:e} has an exponent");
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exponent}")
    }
}

/// `2024-03-10T07:30:00.000Z` → `2024-03-10T07:30:00.000+0000`.
pub fn rest_datetime(canonical: &str) -> String {
    match canonical.strip_suffix('Z') {
        Some(base) => format!("{base}+0000"),
        None => canonical.to_string(),
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// The JSON text of one value in a REST record.
pub fn rest_value(
    object: &ObjectDef,
    field: &FieldDef,
    id: &str,
    value: &Value,
    version: &str,
) -> String {
    if value.is_null() {
        return "null".into();
    }
    match field.ftype.as_str() {
        "datetime" => serde_json::to_string(&rest_datetime(value.as_str().unwrap_or_default()))
            .expect("strings serialize"),
        "boolean" => value.as_bool().unwrap_or(false).to_string(),
        "int" | "long" => number(value).map_or("null".into(), |n| (n as i64).to_string()),
        "double" | "currency" | "percent" => number(value).map_or("null".into(), java_double),
        "base64" => serde_json::to_string(&format!(
            "/services/data/v{version}/sobjects/{}/{id}/{}",
            object.name, field.name
        ))
        .expect("strings serialize"),
        _ => serde_json::to_string(&text(value)).expect("strings serialize"),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One Bulk CSV cell, quoted.
pub fn bulk_cell(object: &ObjectDef, field: &FieldDef, value: &Value) -> String {
    let raw = if value.is_null() {
        String::new()
    } else {
        match field.ftype.as_str() {
            "boolean" => value.as_bool().unwrap_or(false).to_string(),
            // Integer fields have been seen as `0.0` in Bulk results (tap-salesforce works around
            // it); the emulator writes custom objects' integers that way so clients must cope.
            "int" | "long" if object.name.ends_with("__c") => {
                number(value).map_or(String::new(), |n| java_double(n.trunc()))
            }
            "int" | "long" => number(value).map_or(String::new(), |n| (n as i64).to_string()),
            "double" | "currency" | "percent" => number(value).map_or(String::new(), java_double),
            _ => text(value),
        }
    };
    quote(&raw)
}

/// A CSV cell with every value quoted and quotes doubled.
pub fn quote(raw: &str) -> String {
    format!("\"{}\"", raw.replace('"', "\"\""))
}

/// The compound value of an address or location field, built from its components.
pub fn compound(
    object: &ObjectDef,
    compound: &str,
    record: &std::collections::BTreeMap<String, Value>,
    version: &str,
) -> String {
    let parts: Vec<&FieldDef> = object
        .fields
        .iter()
        .filter(|f| f.compound.as_deref() == Some(compound))
        .collect();
    if parts
        .iter()
        .all(|f| record.get(&f.name).is_none_or(Value::is_null))
    {
        return "null".into();
    }
    let items: Vec<String> = parts
        .iter()
        .map(|f| {
            let key = component_key(&f.name);
            let value = record.get(&f.name).cloned().unwrap_or(Value::Null);
            format!("\"{key}\":{}", rest_value(object, f, "", &value, version))
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// `BillingPostalCode` → `postalCode`; `Mailing_Address__City__s` → `city`.
fn component_key(name: &str) -> String {
    let base = name.trim_end_matches("__s");
    let part = base.rsplit("__").next().unwrap_or(base);
    let part = [
        "Street",
        "City",
        "State",
        "PostalCode",
        "Country",
        "Latitude",
        "Longitude",
        "GeocodeAccuracy",
    ]
    .iter()
    .find(|p| part.ends_with(*p))
    .copied()
    .unwrap_or(part);
    let mut chars = part.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_style_doubles() {
        assert_eq!(java_double(1234567.0), "1234567.0");
        assert_eq!(java_double(12345678.0), "1.2345678E7");
        assert_eq!(java_double(-0.5), "-0.5");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(java_double(99213206.0), "9.9213206E7");
        assert_eq!(java_double(42.0), "42.0");
        for v in [1.5e300, 3.3e-9, 123.456, 1e7, 9_999_999.99] {
            assert_eq!(java_double(v).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            rest_datetime("2024-03-10T07:30:00.000Z"),
            "2024-03-10T07:30:00.000+0000"
        );
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(component_key("BillingPostalCode"), "postalCode");
        assert_eq!(component_key("Mailing_Address__City__s"), "city");
        assert_eq!(component_key("Location__Latitude__s"), "latitude");
    }
}
