//! The emulated org's objects (describe metadata) and seeded records.
//!
//! Records are stored in a canonical JSON form: datetimes `yyyy-MM-ddTHH:mm:ss.SSSZ`, dates
//! `yyyy-MM-dd`, times `HH:mm:ss.SSSZ`, numbers as JSON numbers, booleans, text, `null`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One field of an object.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name.
    pub name: String,
    /// Describe type.
    pub ftype: String,
    /// The compound field this is a component of.
    pub compound: Option<String>,
    /// Referenced objects.
    pub reference_to: Vec<String>,
    /// Relationship name of a reference.
    pub relationship: Option<String>,
    /// External ID (upsert key).
    pub external_id: bool,
    /// Set by the org, not by writes.
    pub system: bool,
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
}

impl ObjectDef {
    /// A field by name, case-insensitively.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field of a relationship name, case-insensitively.
    pub fn relationship(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }

    /// Describe JSON (the properties clients read, per the reference §4.3).
    pub fn describe(&self, version: &str) -> Value {
        let fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                let soap = match f.ftype.as_str() {
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
                };
                let numeric = matches!(f.ftype.as_str(), "double" | "currency" | "percent");
                json!({
                    "name": f.name, "label": f.name.replace("__c", "").replace('_', " "),
                    "type": f.ftype, "soapType": soap,
                    "length": if soap == "xsd:string" { 255 } else { 0 },
                    "byteLength": if soap == "xsd:string" { 765 } else { 0 },
                    "digits": if f.ftype == "int" { 9 } else { 0 },
                    "precision": if numeric { 18 } else { 0 },
                    "scale": if f.ftype == "currency" || f.ftype == "percent" { 2 } else if numeric { 4 } else { 0 },
                    "nillable": f.name != "Id" && f.ftype != "boolean",
                    "custom": f.name.ends_with("__c") || f.name.ends_with("__s"),
                    "calculated": false,
                    "externalId": f.external_id, "idLookup": f.external_id || f.name == "Id",
                    "unique": f.external_id,
                    "compoundFieldName": f.compound,
                    "referenceTo": f.reference_to,
                    "relationshipName": f.relationship,
                    "createable": !f.system, "updateable": !f.system,
                    "picklistValues": [],
                })
            })
            .collect();
        json!({
            "name": self.name, "label": self.name, "custom": self.name.ends_with("__c"),
            "queryable": true, "createable": true, "updateable": true, "keyPrefix": self.key_prefix,
            "urls": { "describe": format!("/services/data/v{version}/sobjects/{}/describe", self.name) },
            "fields": fields,
        })
    }
}

fn field(name: &str, ftype: &str) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        ftype: ftype.to_string(),
        compound: None,
        reference_to: Vec::new(),
        relationship: None,
        external_id: false,
        system: matches!(
            name,
            "Id" | "IsDeleted" | "CreatedDate" | "LastModifiedDate" | "SystemModstamp"
        ),
    }
}

fn reference(name: &str, to: &str, relationship: &str) -> FieldDef {
    FieldDef {
        reference_to: vec![to.to_string()],
        relationship: Some(relationship.to_string()),
        ..field(name, "reference")
    }
}

fn address(prefix: &str, compound: &str, custom: bool) -> Vec<FieldDef> {
    let mut out = vec![field(compound, "address")];
    for (part, ftype) in [
        ("Street", "textarea"),
        ("City", "string"),
        ("State", "string"),
        ("PostalCode", "string"),
        ("Country", "string"),
        ("Latitude", "double"),
        ("Longitude", "double"),
        ("GeocodeAccuracy", "picklist"),
    ] {
        let name = if custom {
            format!("{prefix}__{part}__s")
        } else {
            format!("{prefix}{part}")
        };
        out.push(FieldDef {
            compound: Some(compound.to_string()),
            ..field(&name, ftype)
        });
    }
    out
}

fn object(name: &str, prefix: &str, mut fields: Vec<FieldDef>) -> ObjectDef {
    let mut all = vec![field("Id", "id"), field("IsDeleted", "boolean")];
    all.append(&mut fields);
    for system in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
        all.push(field(system, "datetime"));
    }
    ObjectDef {
        name: name.to_string(),
        key_prefix: prefix.to_string(),
        fields: all,
    }
}

/// The CTI adapter's metric objects (namespace `amazonconnect`), fields by the Lambdas' rule.
fn cti_object(name: &str, prefix: &str, report: crate::job::ReportKind) -> ObjectDef {
    let ns = |n: &str| format!("amazonconnect__{n}");
    let mut fields = vec![
        FieldDef {
            external_id: true,
            ..field(&ns("AC_Record_Id__c"), "string")
        },
        field(&ns("AC_Object_Name__c"), "string"),
        field(&ns("StartInterval__c"), "datetime"),
        field(&ns("EndInterval__c"), "datetime"),
        field(&ns("Created_Date__c"), "datetime"),
        field(&ns("Region__c"), "string"),
    ];
    // Newer Connect metrics that an older adapter version does not have: push-back must skip
    // them with a notice.
    let missing = [
        "Callback_attempts__c",
        "Contacts_created__c",
        "Contact_disconnected__c",
    ];
    for m in &crate::connect::schema::ReportSchema::get(report).metrics {
        let f = crate::pushback::map::field_for_header(&m.header);
        if missing.contains(&f.as_str()) || fields.iter().any(|x| x.name == ns(&f)) {
            continue;
        }
        let ftype = if m.column.starts_with("agent_") && m.column.ends_with("name") {
            "string"
        } else {
            "double"
        };
        fields.push(field(&ns(&f), ftype));
    }
    object(&ns(name), prefix, fields)
}

/// Every object of the seeded org.
pub fn standard_objects() -> Vec<ObjectDef> {
    let mut account = vec![
        field("Name", "string"),
        field("Type", "picklist"),
        field("Industry", "picklist"),
        field("AnnualRevenue", "currency"),
        field("NumberOfEmployees", "int"),
        field("Rating", "picklist"),
        field("Phone", "phone"),
        field("Website", "url"),
        field("Description", "textarea"),
    ];
    account.extend(address("Billing", "BillingAddress", false));
    account.push(reference("OwnerId", "User", "Owner"));
    let mut contact = vec![
        reference("AccountId", "Account", "Account"),
        field("FirstName", "string"),
        field("LastName", "string"),
        field("Name", "string"),
        field("Email", "email"),
        field("Birthdate", "date"),
    ];
    contact.extend(address("Mailing", "MailingAddress", false));
    let mut interaction = vec![
        field("Name", "string"),
        reference("Account__c", "Account", "Account__r"),
        field("Channel__c", "picklist"),
        field("Topics__c", "multipicklist"),
        field("Notes__c", "textarea"),
        field("Agent_Email__c", "email"),
        field("Callback_Phone__c", "phone"),
        field("Recording_Url__c", "url"),
        field("Verification_Code__c", "encryptedstring"),
        field("Disposition__c", "combobox"),
        field("Handled__c", "boolean"),
        field("Hold_Count__c", "int"),
        field("Queue_Position__c", "long"),
        field("Handle_Seconds__c", "double"),
        field("Cost__c", "currency"),
        field("Satisfaction__c", "percent"),
        field("Call_Date__c", "date"),
        field("Started_At__c", "datetime"),
        field("Shift_Start__c", "time"),
        field("Transcript__c", "base64"),
        FieldDef {
            external_id: true,
            ..field("External_Key__c", "string")
        },
    ];
    interaction.extend(address("Mailing_Address", "Mailing_Address__c", true));
    interaction.push(field("Location__c", "location"));
    for part in ["Latitude", "Longitude"] {
        interaction.push(FieldDef {
            compound: Some("Location__c".into()),
            ..field(&format!("Location__{part}__s"), "double")
        });
    }
    vec![
        object(
            "User",
            "005",
            vec![
                field("Username", "string"),
                field("Name", "string"),
                field("Email", "email"),
                field("IsActive", "boolean"),
                field("TimeZoneSidKey", "picklist"),
            ],
        ),
        object("Account", "001", account),
        object("Contact", "003", contact),
        object(
            "Case",
            "500",
            vec![
                field("CaseNumber", "string"),
                field("Subject", "string"),
                field("Status", "picklist"),
                field("Priority", "picklist"),
                field("Origin", "picklist"),
                reference("AccountId", "Account", "Account"),
                reference("ContactId", "Contact", "Contact"),
                field("IsClosed", "boolean"),
                field("ClosedDate", "datetime"),
            ],
        ),
        object("CX_Interaction__c", "a01", interaction),
        cti_object(
            "AC_HistoricalQueueMetrics__c",
            "a0Q",
            crate::job::ReportKind::Queue,
        ),
        cti_object(
            "AC_AgentPerformance__c",
            "a0A",
            crate::job::ReportKind::Agent,
        ),
    ]
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

/// `yyyy-MM-ddTHH:mm:ss.SSSZ`.
pub fn stamp(ms: i64) -> String {
    crate::salesforce::ingest::datetime(ms)
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
    out
}
