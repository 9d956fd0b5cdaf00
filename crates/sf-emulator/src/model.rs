//! The emulated org's objects (describe metadata, loaded from describe JSON files) and seeded
//! records.
//!
//! Records are stored in a canonical JSON form: datetimes `yyyy-MM-ddTHH:mm:ss.SSSZ`, dates
//! `yyyy-MM-dd`, times `HH:mm:ss.SSSZ`, numbers as JSON numbers, booleans, text, `null`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The default org's objects: one describe JSON file each, embedded in the binary.
const DEFAULT_OBJECTS: &[(&str, &str)] = &[
    ("Account.json", include_str!("../objects/Account.json")),
    ("Contact.json", include_str!("../objects/Contact.json")),
    ("Case.json", include_str!("../objects/Case.json")),
    (
        "CaseStatus.json",
        include_str!("../objects/CaseStatus.json"),
    ),
    ("User.json", include_str!("../objects/User.json")),
    (
        "Organization.json",
        include_str!("../objects/Organization.json"),
    ),
    (
        "CX_Interaction__c.json",
        include_str!("../objects/CX_Interaction__c.json"),
    ),
    (
        "amazonconnect__AC_HistoricalQueueMetrics__c.json",
        include_str!("../objects/amazonconnect__AC_HistoricalQueueMetrics__c.json"),
    ),
    (
        "amazonconnect__AC_AgentPerformance__c.json",
        include_str!("../objects/amazonconnect__AC_AgentPerformance__c.json"),
    ),
];

/// One field of an object, as a describe `fields[]` element gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDef {
    /// API name.
    pub name: String,
    /// Describe type (`string`, `double`, `datetime`, `reference`, …).
    #[serde(rename = "type")]
    pub ftype: String,
    /// The compound field this is a component of.
    #[serde(default)]
    pub compound_field_name: Option<String>,
    /// Referenced objects.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// Relationship name of a reference.
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// External ID (upsert key).
    #[serde(default)]
    pub external_id: bool,
    /// Writable on insert (system fields are not).
    #[serde(default = "yes")]
    pub createable: bool,
    /// Writable on update.
    #[serde(default = "yes")]
    pub updateable: bool,
    /// A formula field (`calculated`, with `calculatedFormula`): computed by the org, refused
    /// on every write.
    #[serde(default)]
    pub calculated: bool,
    /// The formula of a calculated field.
    #[serde(default)]
    pub calculated_formula: Option<String>,
    /// Every property of the describe element, as given in the file.
    #[serde(skip)]
    pub raw: Map<String, Value>,
}

fn yes() -> bool {
    true
}

impl FieldDef {
    /// The value of a calculated field for `record`, for formulas of the form `Field op
    /// number` (`op` one of `+ - * /`), rounded to the field's `scale`; `None` for formulas
    /// the emulator does not evaluate (the stored value is then left alone).
    pub fn evaluate(&self, record: &BTreeMap<String, Value>) -> Option<Value> {
        let formula = self.calculated_formula.as_deref()?;
        let [field, op, number] = formula.split_whitespace().collect::<Vec<_>>()[..] else {
            return None;
        };
        let number: f64 = number.parse().ok()?;
        let value = record
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)?;
        let Some(x) = value.as_f64() else {
            return Some(Value::Null);
        };
        let result = match op {
            "+" => x + number,
            "-" => x - number,
            "*" => x * number,
            "/" if number != 0.0 => x / number,
            _ => return None,
        };
        Some(json!(self.rounded(result)))
    }

    /// A number rounded to the field's `scale` decimal digits (Salesforce stores no more).
    pub fn rounded(&self, value: f64) -> f64 {
        match self.raw.get("scale").and_then(Value::as_u64) {
            Some(scale) if value.is_finite() => format!("{value:.*}", scale as usize)
                .parse()
                .unwrap_or(value),
            _ => value,
        }
    }

    /// The compound field this is a component of.
    pub fn compound(&self) -> Option<&str> {
        self.compound_field_name.as_deref()
    }

    /// Set by the org, never by a write (`createable` and `updateable` both false).
    pub fn system(&self) -> bool {
        !self.createable && !self.updateable
    }

    /// Describe's `soapType` for the field's type.
    pub fn soap_type(&self) -> &'static str {
        match self.ftype.as_str() {
            "id" | "reference" => "tns:ID",
            "boolean" => "xsd:boolean",
            "int" => "xsd:int",
            "long" => "xsd:long",
            "double" | "currency" | "percent" => "xsd:double",
            "date" => "xsd:date",
            "datetime" => "xsd:dateTime",
            "time" => "xsd:time",
            "base64" => "xsd:base64Binary",
            "address" => "urn:address",
            "location" => "urn:location",
            _ => "xsd:string",
        }
    }

    /// The describe element: the file's properties over defaults for those it leaves out.
    pub fn describe(&self) -> Value {
        let soap = self.soap_type();
        let numeric = matches!(self.ftype.as_str(), "double" | "currency" | "percent");
        let text = soap == "xsd:string";
        let mut out = json!({
            "name": self.name,
            "label": self.name,
            "type": self.ftype,
            "soapType": soap,
            "length": if text { 255 } else { 0 },
            "byteLength": 0,
            "digits": 0,
            "precision": if numeric { 18 } else { 0 },
            "scale": 0,
            "nillable": self.ftype != "boolean" && self.name != "Id",
            "custom": self.name.ends_with("__c") || self.name.ends_with("__s"),
            "calculated": false,
            "externalId": self.external_id,
            "idLookup": self.external_id || self.name == "Id",
            "unique": self.external_id,
            "compoundFieldName": self.compound_field_name,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "createable": self.createable,
            "updateable": self.updateable,
            "filterable": true,
            "sortable": !matches!(self.ftype.as_str(), "textarea" | "multipicklist" | "base64"),
            "groupable": !numeric && !matches!(self.ftype.as_str(), "textarea" | "datetime" | "base64"),
            "defaultedOnCreate": self.system(),
            "htmlFormatted": false,
            "picklistValues": [],
        });
        let map = out.as_object_mut().expect("an object");
        for (k, v) in &self.raw {
            map.insert(k.clone(), v.clone());
        }
        if !self.raw.contains_key("byteLength") {
            let length = map["length"].as_u64().unwrap_or(0);
            map.insert("byteLength".into(), json!(length * 3));
        }
        out
    }
}

/// An object's describe metadata.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    /// API name.
    pub name: String,
    /// Id prefix.
    pub key_prefix: String,
    /// Fields in describe order.
    pub fields: Vec<FieldDef>,
    /// Every top-level describe property of the file except `fields` and the emulator's own
    /// keys.
    pub raw: Map<String, Value>,
    /// Bulk API 2.0 query jobs may read the object (emulator data key `"bulkQueryable"`,
    /// default true; not part of describe, so answers never show it). Objects such as
    /// `CaseStatus` are refused at job creation with `INVALIDENTITY`.
    pub bulk_queryable: bool,
}

/// A describe file that cannot define an object.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct ObjectFileError {
    /// The file (or embedded name).
    pub file: String,
    /// What is wrong.
    pub reason: String,
}

impl ObjectDef {
    /// Parses one describe JSON document (`{"name", "keyPrefix", "fields": [...], ...}`).
    pub fn from_describe_json(file: &str, text: &str) -> Result<ObjectDef, ObjectFileError> {
        let bad = |reason: String| ObjectFileError {
            file: file.to_string(),
            reason,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let Value::Object(mut raw) = value else {
            return Err(bad("expected a JSON object (a describe result)".into()));
        };
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"name\"".into()))?
            .to_string();
        let key_prefix = raw
            .get("keyPrefix")
            .and_then(Value::as_str)
            .unwrap_or("a0Z")
            .to_string();
        let bulk_queryable = match raw.remove("bulkQueryable") {
            None => true,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(bad(format!(
                    "\"bulkQueryable\" must be true or false, not {other}"
                )))
            }
        };
        let Some(Value::Array(items)) = raw.remove("fields") else {
            return Err(bad("no \"fields\" array".into()));
        };
        let mut fields = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut field: FieldDef = serde_json::from_value(item.clone())
                .map_err(|e| bad(format!("fields[{i}]: {e}")))?;
            if fields
                .iter()
                .any(|f: &FieldDef| f.name.eq_ignore_ascii_case(&field.name))
            {
                return Err(bad(format!("fields[{i}]: {} is defined twice", field.name)));
            }
            if field.ftype == "reference" && field.reference_to.is_empty() {
                return Err(bad(format!(
                    "fields[{i}]: reference {} has no referenceTo",
                    field.name
                )));
            }
            field.raw = item.as_object().cloned().unwrap_or_default();
            fields.push(field);
        }
        if !fields.iter().any(|f| f.name == "Id") {
            return Err(bad("no Id field".into()));
        }
        Ok(ObjectDef {
            name,
            key_prefix,
            fields,
            raw,
            bulk_queryable,
        })
    }

    /// A field by name, case-insensitively.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field of a relationship name, case-insensitively.
    pub fn relationship(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }

    /// Describe JSON: the file's properties, defaults for the ones it leaves out, and `urls`.
    pub fn describe(&self, version: &str) -> Value {
        let base = format!("/services/data/v{version}/sobjects/{}", self.name);
        let mut out = json!({
            "name": self.name,
            "label": self.name,
            "labelPlural": self.name,
            "custom": self.name.ends_with("__c"),
            "keyPrefix": self.key_prefix,
            "queryable": true, "retrieveable": true, "searchable": true,
            "createable": true, "updateable": true, "deletable": true, "undeletable": true,
            "layoutable": true, "replicateable": true, "triggerable": true,
            "childRelationships": [], "recordTypeInfos": [], "supportedScopes": [],
            "urls": {
                "sobject": base,
                "describe": format!("{base}/describe"),
                "rowTemplate": format!("{base}/{{ID}}"),
            },
        });
        let map = out.as_object_mut().expect("an object");
        for (k, v) in &self.raw {
            map.insert(k.clone(), v.clone());
        }
        map.insert(
            "fields".into(),
            Value::Array(self.fields.iter().map(FieldDef::describe).collect()),
        );
        out
    }

    /// The entry of this object in `GET /sobjects` (describeGlobal).
    pub fn global_entry(&self, version: &str) -> Value {
        let described = self.describe(version);
        let mut entry = Map::new();
        for key in [
            "name",
            "label",
            "labelPlural",
            "custom",
            "keyPrefix",
            "queryable",
            "retrieveable",
            "searchable",
            "createable",
            "updateable",
            "deletable",
            "undeletable",
            "layoutable",
            "replicateable",
            "triggerable",
        ] {
            entry.insert(key.into(), described[key].clone());
        }
        entry.insert("urls".into(), described["urls"].clone());
        Value::Object(entry)
    }
}

/// The default org's objects, parsed from the embedded describe files.
pub fn default_objects() -> Vec<ObjectDef> {
    DEFAULT_OBJECTS
        .iter()
        .map(|(file, text)| {
            ObjectDef::from_describe_json(file, text)
                .expect("embedded object files are valid (checked by tests)")
        })
        .collect()
}

/// A small deterministic generator (splitmix64) for seeded data and ids.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// An 18-character Salesforce id.
pub fn make_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{:0>12}AAA", format!("{n:X}"))
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ` (the canonical stored form of a datetime).
pub fn stamp(ms: i64) -> String {
    crate::wire::format_datetime(ms)
}

/// Seeded records per object (deterministic).
pub fn seed(base_ms: i64) -> BTreeMap<String, Vec<BTreeMap<String, Value>>> {
    let mut rng = Rng::new(42);
    let mut out: BTreeMap<String, Vec<BTreeMap<String, Value>>> = BTreeMap::new();
    let mut modstamp = base_ms;
    let mut next_stamp = |rng: &mut Rng| {
        modstamp += 1000 + rng.below(60_000) as i64;
        modstamp
    };
    let system = |id: String, at: i64, deleted: bool| -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("Id".to_string(), json!(id)),
            ("IsDeleted".to_string(), json!(deleted)),
            ("CreatedDate".to_string(), json!(stamp(at - 86_400_000))),
            ("LastModifiedDate".to_string(), json!(stamp(at))),
            ("SystemModstamp".to_string(), json!(stamp(at))),
        ])
    };
    let users: Vec<String> = (1..=10).map(|i| make_id("005", i)).collect();
    let names = [
        "Ann Lee",
        "Bo Chen",
        "Zoë Müller",
        "Raj Patel",
        "Ola Nordmann",
        "Kim Park",
        "Sam O'Neil",
        "Li Wei",
        "Ana Souza",
        "Tom Ford",
    ];
    for (i, id) in users.iter().enumerate() {
        let mut r = system(id.clone(), next_stamp(&mut rng), false);
        r.insert("Username".into(), json!(format!("user{i}@cxlake.demo")));
        r.insert("Name".into(), json!(names[i]));
        r.insert("Email".into(), json!(format!("user{i}@cxlake.demo")));
        r.insert("IsActive".into(), json!(i != 9));
        r.insert(
            "TimeZoneSidKey".into(),
            json!(rng.pick(&["America/New_York", "Europe/Berlin", "Asia/Tokyo"])),
        );
        out.entry("User".into()).or_default().push(r);
    }
    let accounts: Vec<String> = (1..=50).map(|i| make_id("001", i)).collect();
    for (i, id) in accounts.iter().enumerate() {
        let mut r = system(id.clone(), next_stamp(&mut rng), i == 7);
        r.insert(
            "Name".into(),
            json!(format!(
                "{} {}",
                rng.pick(&[
                    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Soylent", "Tyrell"
                ]),
                i
            )),
        );
        r.insert(
            "Type".into(),
            json!(rng.pick(&["Customer", "Partner", "Prospect"])),
        );
        r.insert(
            "Industry".into(),
            json!(rng.pick(&["Banking", "Retail", "Telecom", "Healthcare"])),
        );
        r.insert(
            "AnnualRevenue".into(),
            if rng.chance(15) {
                Value::Null
            } else {
                json!((rng.below(5_000_000_000) as f64) / 100.0)
            },
        );
        r.insert(
            "NumberOfEmployees".into(),
            if rng.chance(10) {
                Value::Null
            } else {
                json!(rng.below(100_000))
            },
        );
        r.insert(
            "Rating".into(),
            if rng.chance(30) {
                Value::Null
            } else {
                json!(rng.pick(&["Hot", "Warm", "Cold"]))
            },
        );
        r.insert(
            "Phone".into(),
            json!(format!("+1 555 {:04}", rng.below(10_000))),
        );
        r.insert(
            "Website".into(),
            json!(format!("https://www.example{i}.com")),
        );
        r.insert(
            "Description".into(),
            if rng.chance(40) {
                Value::Null
            } else {
                json!(format!(
                    "Key account, \"tier {}\"\nRenewal in Q{}",
                    rng.below(3) + 1,
                    rng.below(4) + 1
                ))
            },
        );
        r.insert(
            "BillingStreet".into(),
            json!(format!(
                "{} Main St\nSuite {}",
                rng.below(999) + 1,
                rng.below(50)
            )),
        );
        r.insert(
            "BillingCity".into(),
            json!(rng.pick(&["Boston", "Köln", "São Paulo", "Tokyo"])),
        );
        r.insert("BillingState".into(), Value::Null);
        r.insert(
            "BillingPostalCode".into(),
            json!(format!("{:05}", rng.below(99_999))),
        );
        r.insert(
            "BillingCountry".into(),
            json!(rng.pick(&["US", "DE", "BR", "JP"])),
        );
        r.insert(
            "BillingLatitude".into(),
            json!(((rng.below(180_000) as f64) / 1000.0) - 90.0),
        );
        r.insert(
            "BillingLongitude".into(),
            json!(((rng.below(360_000) as f64) / 1000.0) - 180.0),
        );
        r.insert("BillingGeocodeAccuracy".into(), json!("Address"));
        r.insert(
            "OwnerId".into(),
            json!(users[rng.below(users.len() as u64) as usize]),
        );
        out.entry("Account".into()).or_default().push(r);
    }
    let contacts: Vec<String> = (1..=100).map(|i| make_id("003", i)).collect();
    for (i, id) in contacts.iter().enumerate() {
        let mut r = system(id.clone(), next_stamp(&mut rng), false);
        let (first, last) = (
            rng.pick(&["Ana", "Ben", "Chloé", "Dmitri", "Eve"]),
            rng.pick(&["Smith", "García", "Nguyen", "O'Brien"]),
        );
        r.insert(
            "AccountId".into(),
            if rng.chance(10) {
                Value::Null
            } else {
                json!(accounts[rng.below(50) as usize])
            },
        );
        r.insert("FirstName".into(), json!(first));
        r.insert("LastName".into(), json!(last));
        r.insert("Name".into(), json!(format!("{first} {last}")));
        r.insert("Email".into(), json!(format!("contact{i}@example.com")));
        r.insert(
            "Birthdate".into(),
            if rng.chance(30) {
                Value::Null
            } else {
                json!(format!(
                    "19{:02}-{:02}-{:02}",
                    50 + rng.below(50),
                    rng.below(12) + 1,
                    rng.below(28) + 1
                ))
            },
        );
        for f in [
            "MailingStreet",
            "MailingState",
            "MailingPostalCode",
            "MailingLatitude",
            "MailingLongitude",
            "MailingGeocodeAccuracy",
        ] {
            r.insert(f.into(), Value::Null);
        }
        r.insert("MailingCity".into(), json!(rng.pick(&["Boston", "Lyon"])));
        r.insert("MailingCountry".into(), json!(rng.pick(&["US", "FR"])));
        out.entry("Contact".into()).or_default().push(r);
    }
    for i in 1..=80u64 {
        let at = next_stamp(&mut rng);
        let mut r = system(make_id("500", i), at, false);
        let closed = rng.chance(60);
        r.insert("CaseNumber".into(), json!(format!("{:08}", 1000 + i)));
        r.insert(
            "Subject".into(),
            json!(rng.pick(&[
                "Billing question",
                "Password reset",
                "Outage, \"urgent\"",
                "Callback request"
            ])),
        );
        r.insert(
            "Status".into(),
            json!(if closed { "Closed" } else { "Open" }),
        );
        r.insert(
            "Priority".into(),
            json!(rng.pick(&["Low", "Medium", "High"])),
        );
        r.insert("Origin".into(), json!(rng.pick(&["Phone", "Email", "Web"])));
        r.insert("AccountId".into(), json!(accounts[rng.below(50) as usize]));
        r.insert("ContactId".into(), json!(contacts[rng.below(100) as usize]));
        r.insert("IsClosed".into(), json!(closed));
        r.insert(
            "ClosedDate".into(),
            if closed {
                json!(stamp(at - 3_600_000))
            } else {
                Value::Null
            },
        );
        out.entry("Case".into()).or_default().push(r);
    }
    for i in 1..=300u64 {
        let at = next_stamp(&mut rng);
        let mut r = system(make_id("a01", i), at, i % 97 == 0);
        let null = |rng: &mut Rng| rng.chance(12);
        r.insert("Name".into(), json!(format!("INT-{i:05}")));
        r.insert(
            "Account__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(accounts[rng.below(50) as usize])
            },
        );
        r.insert(
            "Channel__c".into(),
            json!(rng.pick(&["Voice", "Chat", "Task"])),
        );
        r.insert(
            "Topics__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(rng.pick(&["Billing;Refund", "Outage", "Billing;Outage;VIP"]))
            },
        );
        r.insert(
            "Notes__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(rng.pick(&[
                    "Customer said \"call me back\", twice.\nSecond line; café, naïve, 東京",
                    "N/A",
                    "#N/A",
                    "null",
                    "Plain note",
                    "Tab\there, comma, and \"quotes\"",
                ]))
            },
        );
        r.insert(
            "Agent_Email__c".into(),
            json!(format!("agent{}@cxlake.demo", rng.below(20))),
        );
        r.insert(
            "Callback_Phone__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(format!("+44 20 7946 {:04}", rng.below(10_000)))
            },
        );
        r.insert(
            "Recording_Url__c".into(),
            json!(format!("https://recordings.example.com/{i}?a=1&b=2")),
        );
        r.insert("Verification_Code__c".into(), json!("****"));
        r.insert(
            "Disposition__c".into(),
            json!(rng.pick(&["Resolved", "Escalated", "Custom value"])),
        );
        r.insert(
            "Handled__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(rng.chance(70))
            },
        );
        r.insert(
            "Hold_Count__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(rng.below(5))
            },
        );
        r.insert("Queue_Position__c".into(), json!(rng.below(10_000_000_000)));
        r.insert(
            "Handle_Seconds__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(match rng.below(4) {
                    0 => (rng.below(100_000) as f64) / 100.0,
                    1 => 12_345_678.0 + rng.below(1_000_000_000) as f64,
                    2 => -((rng.below(1000) as f64) / 8.0),
                    _ => (rng.below(100) as f64) / 100_000.0,
                })
            },
        );
        // The formula field `Handle_Seconds__c / 60` (no draw from the generator).
        let seconds = r["Handle_Seconds__c"].as_f64();
        r.insert(
            "Handle_Minutes__c".into(),
            seconds.map_or(Value::Null, |s| json!(s / 60.0)),
        );
        r.insert(
            "Cost__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!((rng.below(10_000_000) as f64) / 100.0)
            },
        );
        r.insert(
            "Satisfaction__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!((rng.below(10_000) as f64) / 100.0)
            },
        );
        r.insert(
            "Call_Date__c".into(),
            json!(format!(
                "2024-{:02}-{:02}",
                rng.below(12) + 1,
                rng.below(28) + 1
            )),
        );
        r.insert(
            "Started_At__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(stamp(at - rng.below(10_000_000_000) as i64))
            },
        );
        r.insert(
            "Shift_Start__c".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(format!(
                    "{:02}:{:02}:00.000Z",
                    rng.below(24),
                    rng.below(4) * 15
                ))
            },
        );
        r.insert("Transcript__c".into(), json!("SGVsbG8gd29ybGQ="));
        r.insert("External_Key__c".into(), json!(format!("EXT-{i}")));
        r.insert(
            "Mailing_Address__Street__s".into(),
            json!(format!("{} High St", i)),
        );
        r.insert(
            "Mailing_Address__City__s".into(),
            json!(rng.pick(&["London", "Zürich"])),
        );
        for f in [
            "Mailing_Address__State__s",
            "Mailing_Address__GeocodeAccuracy__s",
        ] {
            r.insert(f.into(), Value::Null);
        }
        r.insert("Mailing_Address__PostalCode__s".into(), json!("01234"));
        r.insert(
            "Mailing_Address__Country__s".into(),
            json!(rng.pick(&["GB", "CH"])),
        );
        r.insert("Mailing_Address__Latitude__s".into(), json!(51.5072));
        r.insert("Mailing_Address__Longitude__s".into(), json!(-0.1276));
        r.insert(
            "Location__Latitude__s".into(),
            if null(&mut rng) {
                Value::Null
            } else {
                json!(47.3769)
            },
        );
        r.insert("Location__Longitude__s".into(), json!(8.5417));
        out.entry("CX_Interaction__c".into()).or_default().push(r);
    }
    // Case status values (setup data: Bulk API 2.0 refuses the object). Seeded last, so the
    // records above keep their values and modstamps.
    for (i, (label, closed)) in [
        ("New", false),
        ("Working", false),
        ("Escalated", false),
        ("On Hold", false),
        ("Closed", true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = system(make_id("01J", i as u64 + 1), next_stamp(&mut rng), false);
        r.insert("MasterLabel".into(), json!(label));
        r.insert("ApiName".into(), json!(label));
        r.insert("SortOrder".into(), json!(i + 1));
        r.insert("IsClosed".into(), json!(closed));
        r.insert("IsDefault".into(), json!(i == 0));
        out.entry("CaseStatus".into()).or_default().push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_org_defines_every_documented_object() {
        let names: Vec<String> = default_objects().into_iter().map(|o| o.name).collect();
        for wanted in [
            "Account",
            "Contact",
            "Case",
            "CaseStatus",
            "User",
            "Organization",
            "CX_Interaction__c",
            "amazonconnect__AC_HistoricalQueueMetrics__c",
            "amazonconnect__AC_AgentPerformance__c",
        ] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} missing: {names:?}"
            );
        }
    }

    #[test]
    fn cti_objects_carry_the_packages_field_names() {
        // Names from reference/connect-interval.md §3.1–3.2, including the hard-coded renames.
        for object in default_objects()
            .into_iter()
            .filter(|o| o.name.starts_with("amazonconnect__AC_"))
        {
            for name in [
                "AC_Object_Name__c",
                "StartInterval__c",
                "EndInterval__c",
                "Created_Date__c",
                "Region__c",
                "Nonproductive_time__c",
                "Avg_agent_interaction_and_cust_hold_time__c",
                "Agent_non_response_without_cust_abandons__c",
                "Contacts_handled_conn_to_agent_timestamp__c",
                "Average_outbound_after_contact_work_time__c",
                "Service_level_20_seconds__c",
                "Contacts_abandoned_in_600_seconds__c",
            ] {
                let full = format!("amazonconnect__{name}");
                assert!(object.field(&full).is_some(), "{}: no {full}", object.name);
            }
            let key = object.field("amazonconnect__AC_Record_Id__c").unwrap();
            assert!(key.external_id);
            assert_eq!(
                object
                    .field("amazonconnect__StartInterval__c")
                    .unwrap()
                    .ftype,
                "datetime"
            );
            for field in &object.fields {
                let bare = field.name.trim_start_matches("amazonconnect__");
                let stem = bare.strip_suffix("__c").unwrap_or(bare);
                assert!(
                    stem.len() <= 40,
                    "{} is longer than Salesforce allows",
                    field.name
                );
            }
        }
    }

    #[test]
    fn describe_keeps_file_properties_and_fills_defaults() {
        let def = ObjectDef::from_describe_json(
            "X.json",
            r#"{"name":"X__c","keyPrefix":"a0X","label":"Ex","fields":[
                {"name":"Id","type":"id","createable":false,"updateable":false},
                {"name":"Amount__c","type":"currency","precision":16,"scale":2}]}"#,
        )
        .unwrap();
        let d = def.describe("66.0");
        assert_eq!(d["label"], "Ex");
        assert_eq!(d["keyPrefix"], "a0X");
        assert_eq!(d["fields"][1]["precision"], 16);
        assert_eq!(d["fields"][1]["soapType"], "xsd:double");
        assert_eq!(d["fields"][0]["createable"], false);
        assert_eq!(
            d["urls"]["describe"],
            "/services/data/v66.0/sobjects/X__c/describe"
        );
    }

    #[test]
    fn unusable_describe_files_are_named_with_the_reason() {
        let no_id = ObjectDef::from_describe_json(
            "a.json",
            r#"{"name":"A","fields":[{"name":"B","type":"string"}]}"#,
        )
        .unwrap_err();
        assert_eq!(no_id.to_string(), "a.json: no Id field");
        let twice = ObjectDef::from_describe_json(
            "b.json",
            r#"{"name":"B","fields":[{"name":"Id","type":"id"},{"name":"id","type":"id"}]}"#,
        )
        .unwrap_err();
        assert!(
            twice.to_string().contains("fields[1]: id is defined twice"),
            "{twice}"
        );
        let untyped =
            ObjectDef::from_describe_json("c.json", r#"{"name":"C","fields":[{"name":"Id"}]}"#)
                .unwrap_err();
        assert!(
            untyped
                .to_string()
                .contains("fields[0]: missing field `type`"),
            "{untyped}"
        );
    }
}
