//! Salesforce's wire formats, written from the project's Salesforce reference (§0, §2.8, §3.4,
//! §4.2), not shared with any client: rendering stored values as REST JSON (`+0000` datetimes,
//! Java-style doubles as raw JSON numbers) and Bulk API 2.0 CSV (every cell quoted, null as `""`,
//! `Z` datetimes, integer fields of custom objects as `42.0`); and parsing the text values that
//! writes carry (Bulk ingest CSV cells, REST JSON strings) into the stored form.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::model::{FieldDef, ObjectDef};

/// Milliseconds since the epoch → `yyyy-MM-ddTHH:mm:ss.SSSZ`.
pub fn format_datetime(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A datetime as Salesforce accepts it on writes (reference §3.4): `yyyy-MM-ddTHH:mm:ss`,
/// optional fraction, then `Z`, `+HH:mm` or `+HHmm` → milliseconds since the epoch (UTC).
pub fn parse_datetime(text: &str) -> Option<i64> {
    if let Some(local) = text.strip_suffix('Z') {
        let at = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        return Some(at.and_utc().timestamp_millis());
    }
    // `%z` takes both `+05:00` and `+0500`.
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|at| at.timestamp_millis())
}

/// `yyyy-MM-dd`; a trailing `Z`, seen in older Bulk samples, is accepted.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// `true` / `false`, any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A finite number, E-notation included (`1.2345678E7`).
pub fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// An integer, also written as a whole number with a fraction (`42.0`).
pub fn parse_integer(text: &str) -> Option<i64> {
    if let Ok(v) = text.trim().parse::<i64>() {
        return Some(v);
    }
    parse_number(text)
        .filter(|v| v.fract() == 0.0 && v.abs() < 9.2e18)
        .map(|v| v as i64)
}

/// `HH:mm:ss[.SSS][Z]` → the stored `HH:mm:ss.SSSZ`.
pub fn parse_time(text: &str) -> Option<String> {
    let bare = text.strip_suffix('Z').unwrap_or(text);
    let time = chrono::NaiveTime::parse_from_str(bare, "%H:%M:%S%.f").ok()?;
    Some(time.format("%H:%M:%S%.3fZ").to_string())
}

/// Why a written text value does not fit its field: the describe type name Salesforce uses in
/// its messages (`double`, `boolean`, `date`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct WrongType(pub &'static str);

/// A written text value → the stored value of a field of that type.
pub fn parse_value(field: &FieldDef, text: &str) -> Result<Value, WrongType> {
    Ok(match field.ftype.as_str() {
        "boolean" => Value::Bool(parse_bool(text).ok_or(WrongType("boolean"))?),
        "int" => Value::from(parse_integer(text).ok_or(WrongType("int"))?),
        "long" => Value::from(parse_integer(text).ok_or(WrongType("long"))?),
        "double" | "currency" | "percent" => {
            Value::from(parse_number(text).ok_or(WrongType("double"))?)
        }
        "date" => Value::from(
            parse_date(text)
                .ok_or(WrongType("date"))?
                .format("%Y-%m-%d")
                .to_string(),
        ),
        "datetime" => Value::from(format_datetime(
            parse_datetime(text).ok_or(WrongType("datetime"))?,
        )),
        "time" => Value::from(parse_time(text).ok_or(WrongType("time"))?),
        _ => Value::from(text),
    })
}

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
        .filter(|f| f.compound() == Some(compound))
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

    #[test]
    fn datetimes_in_every_documented_write_form() {
        // reference §3.4: `2002-10-10T12:00:00+05:00` is stored as `2002-10-10T07:00:00Z`.
        let utc = parse_datetime("2002-10-10T07:00:00Z").unwrap();
        assert_eq!(parse_datetime("2002-10-10T12:00:00+05:00"), Some(utc));
        assert_eq!(parse_datetime("2002-10-10T12:00:00.000+0500"), Some(utc));
        assert_eq!(parse_datetime("2002-10-10T07:00:00.000+0000"), Some(utc));
        assert_eq!(format_datetime(utc), "2002-10-10T07:00:00.000Z");
        assert_eq!(parse_datetime("2002-10-10"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn dates_numbers_booleans_times() {
        assert_eq!(
            parse_date("1940-06-07Z"),
            NaiveDate::from_ymd_opt(1940, 6, 7)
        );
        assert_eq!(parse_date("2023-02-30"), None);
        assert_eq!(parse_number("1.2345678E7"), Some(12_345_678.0));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_integer("42.0"), Some(42));
        assert_eq!(parse_integer("4.5"), None);
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_time("22:12:30"), Some("22:12:30.000Z".into()));
    }
}
