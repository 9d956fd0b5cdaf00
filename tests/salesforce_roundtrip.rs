//! Property test: random records of every field type, stored in the emulator, read back through
//! its REST JSON (`/query` + `nextRecordsUrl`) and its Bulk API 2.0 CSV (query job + result pages)
//! normalize to identical Arrow batches, with as many rows as were stored.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use cxlake::salesforce::auth::AuthFlow;
use cxlake::salesforce::credentials::Credentials;
use cxlake::salesforce::describe::{self, FieldDescribe, ValueKind};
use cxlake::salesforce::{normalize, Client, ClientConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use sf_emulator::{self as emulator, EmulatorConfig, OrgCredentials};

const OBJECT: &str = "CX_Interaction__c";

/// A random canonical value (the emulator's admin format) for a describe field; ~15% nulls.
/// Numbers with a describe precision stay within it (at most `precision - scale` integer digits),
/// as Salesforce refuses to store anything else.
fn value(field: &FieldDescribe) -> BoxedStrategy<Value> {
    let some: BoxedStrategy<Value> = match field.field_type.as_str() {
        "double" | "currency" | "percent" if field.precision > 0 => {
            let digits = (field.precision as i32 - field.scale).clamp(1, 12);
            let whole = 10f64.powi(digits);
            let places = 10f64.powi(field.scale.clamp(0, 2));
            prop_oneof![
                (-whole..whole).prop_map(move |v| (v * places).trunc() / places),
                (-9i64..10).prop_map(|v| v as f64),
            ]
            .prop_map(Value::from)
            .boxed()
        }
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        "int" | "long" => (-1_000_000_000i64..1_000_000_000)
            .prop_map(Value::from)
            .boxed(),
        "double" | "currency" | "percent" => prop_oneof![
            (-1_000_000.0f64..1_000_000.0).prop_map(|v| (v * 100.0).round() / 100.0),
            (10_000_000.0f64..1e15).prop_map(|v| v.round()),
            (0.0001f64..0.001),
            (-50i64..50).prop_map(|v| v as f64),
        ]
        .prop_map(Value::from)
        .boxed(),
        "date" => (-25_000i32..50_000)
            .prop_map(|d| Value::from(cxlake::lake::layout::day_string(d)))
            .boxed(),
        "datetime" => (-2_000_000_000_000i64..4_000_000_000_000)
            .prop_map(|ms| {
                let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
                Value::from(at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            })
            .boxed(),
        "time" => (0u32..86_400_000)
            .prop_map(|ms| {
                Value::from(format!(
                    "{:02}:{:02}:{:02}.{:03}Z",
                    ms / 3_600_000,
                    ms / 60_000 % 60,
                    ms / 1000 % 60,
                    ms % 1000
                ))
            })
            .boxed(),
        // Text: quotes, commas, newlines, non-ASCII, and literal NA-like strings that must stay text.
        _ => prop_oneof![
            "[a-zA-Z0-9 ,;\"'\n\t\u{e9}\u{4e1c}\u{1f600}-]{1,30}",
            Just("N/A".to_string()),
            Just("#N/A".to_string()),
            Just("null".to_string()),
        ]
        .prop_map(Value::from)
        .boxed(),
    };
    prop_oneof![1 => Just(Value::Null), 6 => some].boxed()
}

#[test]
fn rest_json_and_bulk_csv_normalize_to_identical_arrow() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let running = runtime
        .block_on(emulator::start(EmulatorConfig {
            port: 0,
            tls: false,
            data_dir: None,
            seed: true,
            credentials: OrgCredentials::default(),
            ..EmulatorConfig::default()
        }))
        .expect("emulator starts");
    let demo = OrgCredentials::default();
    let client = Client::new(
        ClientConfig {
            login_url: running.base_url.clone(),
            flow: AuthFlow::ClientCredentials,
            api_version: "66.0".into(),
            ca_file: None,
            compression: true,
            policy: cxlake::net::RetryPolicy {
                max_retries: 2,
                backoff: Duration::from_millis(50),
                ..Default::default()
            },
        },
        Credentials {
            consumer_key: Some(demo.client_id.clone()),
            consumer_secret: Some(demo.client_secret.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let described = runtime.block_on(client.describe(OBJECT)).unwrap();
    let selection =
        describe::select(&described, &[], &Default::default()).expect("all fields select");
    // Writable custom fields of every exportable type get random values.
    let fields: Vec<FieldDescribe> = described
        .fields
        .iter()
        .filter(|f| f.name.ends_with("__c") || f.name.ends_with("__s"))
        .filter(|f| ValueKind::of(f).is_some() && f.field_type != "reference")
        .filter(|f| !f.external_id)
        .cloned()
        .collect();
    let kinds: std::collections::BTreeSet<&str> =
        fields.iter().map(|f| f.field_type.as_str()).collect();
    for wanted in [
        "boolean", "int", "double", "currency", "percent", "date", "datetime", "time", "textarea",
    ] {
        assert!(
            kinds.contains(wanted),
            "{OBJECT} has no {wanted} field: {kinds:?}"
        );
    }
    let record = fields.iter().map(value).collect::<Vec<_>>();
    let records = proptest::collection::vec(record, 1..60);

    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let http = reqwest::Client::new();
    let admin = format!("{}/__emulator/objects/{OBJECT}/records", running.base_url);
    runner
        .run(&records, |rows| {
            let body: Vec<Value> = rows
                .iter()
                .enumerate()
                .map(|(i, values)| {
                    let mut map = serde_json::Map::new();
                    map.insert("Name".into(), json!(format!("prop {i}")));
                    for (field, v) in fields.iter().zip(values) {
                        map.insert(field.name.clone(), v.clone());
                    }
                    Value::Object(map)
                })
                .collect();
            let (rest, bulk) = runtime.block_on(async {
                let put = http.put(&admin).json(&body).send().await.unwrap();
                assert!(put.status().is_success(), "{}", put.text().await.unwrap());
                let soql = format!("SELECT {} FROM {OBJECT}", selection.soql_fields());
                (
                    rest_batch(&client, &soql, &selection.columns).await,
                    bulk_batch(&client, &soql, &selection.columns).await,
                )
            });
            prop_assert_eq!(rest.num_rows(), rows.len());
            prop_assert_eq!(&rest, &bulk);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(running.stop());
}

async fn rest_batch(client: &Client, soql: &str, columns: &[describe::Column]) -> RecordBatch {
    let mut page = client.query(soql, false).await.unwrap();
    let mut batches = Vec::new();
    loop {
        batches.push(normalize::rest_records(columns, &page.records, "rest").unwrap());
        match page.next_records_url.clone() {
            Some(next) if !page.done => page = client.query_more(&next).await.unwrap(),
            _ => break,
        }
    }
    concat_batches(&normalize::schema(columns), &batches).unwrap()
}

async fn bulk_batch(client: &Client, soql: &str, columns: &[describe::Column]) -> RecordBatch {
    let job = client.create_query_job(soql, false).await.unwrap();
    let info = client
        .wait_for_query_job(&job.id, OBJECT, Duration::from_millis(20))
        .await
        .unwrap();
    let mut batches = Vec::new();
    let mut locator: Option<String> = None;
    loop {
        // Small pages so that most cases span several.
        let page = client
            .query_results(&job.id, locator.as_deref(), 17)
            .await
            .unwrap();
        let next = page.next.clone();
        let body = client.page_body(page).await.unwrap();
        batches.push(normalize::bulk_page(columns, &body, info.delimiter(), "bulk").unwrap());
        match next {
            Some(l) => locator = Some(l),
            None => break,
        }
    }
    concat_batches(&normalize::schema(columns), &batches).unwrap()
}
