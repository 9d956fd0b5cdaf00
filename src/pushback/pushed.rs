//! What push-back last upserted, so a run sends only new or changed records: one state object
//! per job and interval day (`_etl/state/<job>/pushed/dt=YYYY-MM-DD.json`) mapping each
//! external ID to a digest of the record as it was written (every field name and value, so a
//! field the org gains later changes every digest).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lake::{layout, Location};
use crate::salesforce::ingest::WriteValue;
use crate::state::StateError;

/// The records of one interval day that Salesforce accepted, by external ID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushedDay {
    /// External ID → record digest.
    pub records: BTreeMap<String, String>,
}

/// Where a job keeps the digests of one day.
pub fn pushed_key(job: &str, day: i32) -> String {
    format!(
        "_etl/state/{job}/pushed/dt={}.json",
        layout::day_string(day)
    )
}

/// The digest of one record: SHA-256 (first 128 bits, hex) over its fields and values.
pub fn record_digest(fields: &[String], values: &[WriteValue]) -> String {
    let mut hasher = Sha256::new();
    for (field, value) in fields.iter().zip(values) {
        hasher.update(field.as_bytes());
        // A type tag per value, and separators that cannot occur in a field name.
        match value {
            WriteValue::Null => hasher.update(b"\x1fn"),
            WriteValue::Text(t) => {
                hasher.update(b"\x1ft");
                hasher.update(t.as_bytes());
            }
            WriteValue::Number(n) => {
                hasher.update(b"\x1fd");
                hasher.update(n.to_bits().to_be_bytes());
            }
            WriteValue::DateTime(ms) => {
                hasher.update(b"\x1fs");
                hasher.update(ms.to_be_bytes());
            }
        }
        hasher.update(b"\x1e");
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Reads a day's digests (none stored: empty).
pub async fn load(lake: &Location, job: &str, day: i32) -> Result<PushedDay, StateError> {
    let key = pushed_key(job, day);
    match lake.get(&key).await? {
        None => Ok(PushedDay::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            url: lake.url_of(&key),
            source,
        }),
    }
}

/// Stores a day's digests.
pub async fn save(
    lake: &Location,
    job: &str,
    day: i32,
    pushed: &PushedDay,
) -> Result<(), StateError> {
    let mut text = serde_json::to_vec(pushed).expect("digests serialize");
    text.push(b'\n');
    Ok(lake.put(&pushed_key(job, day), Bytes::from(text)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_any_value_type_or_field() {
        let fields = vec!["A__c".to_string(), "B__c".to_string()];
        let base = record_digest(
            &fields,
            &[WriteValue::Text("x".into()), WriteValue::Number(1.0)],
        );
        assert_eq!(base.len(), 32);
        assert_eq!(
            base,
            record_digest(
                &fields,
                &[WriteValue::Text("x".into()), WriteValue::Number(1.0)]
            )
        );
        for other in [
            record_digest(
                &fields,
                &[WriteValue::Text("x".into()), WriteValue::Number(2.0)],
            ),
            record_digest(&fields, &[WriteValue::Text("x".into()), WriteValue::Null]),
            record_digest(
                &fields,
                &[WriteValue::Text("x".into()), WriteValue::DateTime(1)],
            ),
            record_digest(&fields, &[WriteValue::Text("x1".into()), WriteValue::Null]),
            record_digest(
                &["A__c".to_string(), "C__c".to_string()],
                &[WriteValue::Text("x".into()), WriteValue::Number(1.0)],
            ),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(
            pushed_key("pushback-queue", 19792),
            "_etl/state/pushback-queue/pushed/dt=2024-03-10.json"
        );
    }
}
