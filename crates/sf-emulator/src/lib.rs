//! A Salesforce API emulator (axum) for the demo, tests and benchmarks: OAuth (JWT bearer,
//! refresh token, client credentials, password), describe, REST query/queryAll, Bulk API 2.0
//! query and ingest, sObject Collections upsert, `/limits`, and failure injection — in the wire
//! formats of Salesforce's documentation as the project's Salesforce reference records them.
//!
//! It shares no code with any Salesforce client: its formatting and parsing are its own, and its
//! objects are data — describe JSON files (`objects/*.json`, embedded as the default org;
//! `--objects DIR` adds or replaces definitions). One org in memory, seeded deterministically;
//! `--data DIR` persists records, `--canned DIR` serves pre-generated Bulk result pages.

mod headers;
mod identity;
mod ingest;
pub mod model;
mod org;
mod rows;
mod server;
pub mod soql;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;

use org::Org;

/// Command-line options of `cxlake emulator`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one; the URL is printed on the first line).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Serve HTTPS with a generated self-signed certificate for localhost/127.0.0.1.
    #[arg(long)]
    pub tls: bool,
    /// Write the certificate (PEM) here, for clients to trust (e.g. REQUESTS_CA_BUNDLE).
    #[arg(long, requires = "tls")]
    pub cert_out: Option<PathBuf>,
    /// Load extra or replacement object definitions: every `*.json` file in DIR is one describe
    /// result (`{"name", "keyPrefix", "fields": [...]}`, as `GET …/sobjects/{object}/describe`
    /// answers); an object of the same name replaces the built-in one.
    #[arg(long, value_name = "DIR")]
    pub objects: Option<PathBuf>,
    /// Rows per Bulk API 2.0 query results page when the request sets no `maxRecords`
    /// (Salesforce picks its own default; clients that send no `maxRecords` page at this size).
    #[arg(long, default_value_t = 50_000, value_name = "ROWS")]
    pub bulk_page_size: usize,
    /// Start with no records (objects, the integration user and the Organization are still defined).
    #[arg(long)]
    pub no_seed: bool,
    /// Persist records as <Object>.records.json in this folder (loaded at start when present).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Serve Bulk query results from pre-generated pages: <Object>.describe.json and
    /// <Object>.pages/page-*.csv with counts.json (see bench/gen_salesforce.py).
    #[arg(long)]
    pub canned: Option<PathBuf>,
    /// Connected app consumer key.
    #[arg(
        long,
        env = "CXLAKE_EMULATOR_CLIENT_ID",
        default_value = "cxlake-demo-client"
    )]
    pub client_id: String,
    /// Connected app consumer secret.
    #[arg(
        long,
        env = "CXLAKE_EMULATOR_CLIENT_SECRET",
        default_value = "cxlake-demo-secret",
        hide_default_value = true
    )]
    pub client_secret: String,
    /// Integration user name.
    #[arg(
        long,
        env = "CXLAKE_EMULATOR_USERNAME",
        default_value = "integration@cxlake.demo"
    )]
    pub username: String,
    /// Password (with the security token appended, as clients send it).
    #[arg(
        long,
        env = "CXLAKE_EMULATOR_PASSWORD",
        default_value = "cxlake-demo-password",
        hide_default_value = true
    )]
    pub password: String,
    /// RSA public key (PEM) that verifies JWT bearer assertions; without it the JWT flow is refused.
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,
}

/// The credentials the org accepts.
#[derive(Clone)]
pub struct OrgCredentials {
    /// Consumer key.
    pub client_id: String,
    /// Consumer secret.
    pub client_secret: String,
    /// User name.
    pub username: String,
    /// Password (+ security token).
    pub password: String,
    /// PEM public key for JWT assertions.
    pub jwt_public_key_pem: Option<String>,
}

impl Default for OrgCredentials {
    fn default() -> Self {
        OrgCredentials {
            client_id: "cxlake-demo-client".into(),
            client_secret: "cxlake-demo-secret".into(),
            username: "integration@cxlake.demo".into(),
            password: "cxlake-demo-password".into(),
            jwt_public_key_pem: None,
        }
    }
}

/// How to start an emulator.
#[derive(Clone, Default)]
pub struct EmulatorConfig {
    /// Port (0 = any free one).
    pub port: u16,
    /// HTTPS with a self-signed certificate.
    pub tls: bool,
    /// Persistence folder.
    pub data_dir: Option<PathBuf>,
    /// Seed the standard records.
    pub seed: bool,
    /// Accepted credentials.
    pub credentials: OrgCredentials,
    /// Canned Bulk result pages.
    pub canned: Option<PathBuf>,
    /// Extra or replacement object definitions (describe JSON files).
    pub objects_dir: Option<PathBuf>,
    /// Default rows per Bulk query results page (0: 50,000).
    pub bulk_page_size: usize,
}

/// Emulator errors.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding or serving failed.
    #[error("emulator: {0}")]
    Io(#[from] std::io::Error),
    /// A file given to the emulator is unusable.
    #[error("emulator: {0}")]
    Input(String),
}

/// A running emulator.
pub struct RunningEmulator {
    /// `http(s)://127.0.0.1:PORT` (also the `instance_url` it hands out).
    pub base_url: String,
    /// The self-signed certificate (PEM) when serving TLS.
    pub ca_pem: Option<String>,
    shutdown: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningEmulator {
    /// Stops serving.
    pub async fn stop(self) {
        self.shutdown.shutdown();
        let _ = self.task.await;
    }
}

/// The org's id (`00D…`), in identity URLs and the `Organization` record.
pub const ORG_ID: &str = "00Dcx0000000001AAA";
/// The integration user's id (`005…`): the user every token belongs to.
pub const USER_ID: &str = "005cx0000000001AAA";

/// Every `*.json` describe file of a folder, in name order.
pub fn read_object_files(dir: &std::path::Path) -> Result<Vec<model::ObjectDef>, EmulatorError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| EmulatorError::Input(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| EmulatorError::Input(format!("{}: {e}", path.display())))?;
            model::ObjectDef::from_describe_json(&path.display().to_string(), &text)
                .map_err(|e| EmulatorError::Input(e.to_string()))
        })
        .collect()
}

/// Puts an object into the org, replacing one of the same name (any case).
fn define(org: &mut Org, def: model::ObjectDef) {
    org.objects
        .retain(|name, _| !name.eq_ignore_ascii_case(&def.name));
    org.objects.insert(def.name.clone(), def);
}

/// The integration user and the Organization: present in every org, seeded or not.
fn standing_records(org: &mut Org, config: &EmulatorConfig, created_ms: i64) {
    let username = &config.credentials.username;
    let at = model::stamp(created_ms);
    let user = serde_json::json!({
        "Id": USER_ID, "IsDeleted": false, "Username": username, "Name": "Integration User",
        "FirstName": "Integration", "LastName": "User", "Email": username, "IsActive": true,
        "UserType": "Standard", "TimeZoneSidKey": "GMT", "LanguageLocaleKey": "en_US",
        "LocaleSidKey": "en_US", "Alias": "integ",
        "CreatedDate": at, "LastModifiedDate": at, "SystemModstamp": at,
    });
    let organization = serde_json::json!({
        "Id": ORG_ID, "IsDeleted": false, "Name": "cxlake emulator",
        "OrganizationType": "Developer Edition", "InstanceName": "CX1", "IsSandbox": false,
        "TrialExpirationDate": null, "NamespacePrefix": null, "TimeZoneSidKey": "GMT",
        "LanguageLocaleKey": "en_US", "DefaultLocaleSidKey": "en_US",
        "CreatedDate": at, "LastModifiedDate": at, "SystemModstamp": at,
    });
    for (object, record) in [("User", user), ("Organization", organization)] {
        let Ok(def) = org.object(object).cloned() else {
            continue;
        };
        let record: org::Record = record
            .as_object()
            .expect("an object")
            .iter()
            .filter_map(|(k, v)| def.field(k).map(|f| (f.name.clone(), v.clone())))
            .collect();
        let list = org.records.entry(def.name.clone()).or_default();
        list.retain(|r| r.get("Id") != record.get("Id"));
        list.insert(0, record);
    }
}

fn load_objects(org: &mut Org, config: &EmulatorConfig) -> Result<(), EmulatorError> {
    for def in model::default_objects() {
        define(org, def);
    }
    if let Some(dir) = &config.objects_dir {
        for def in read_object_files(dir)? {
            define(org, def);
        }
    }
    let base_ms = chrono::Utc::now().timestamp_millis() - 30 * 86_400_000;
    if config.seed {
        // Seeded records keep only the fields their object defines (an `--objects` file may
        // drop some).
        for (object, rows) in model::seed(base_ms) {
            let Ok(def) = org.object(&object).cloned() else {
                continue;
            };
            // Decimals carry at most `scale` digits after the point, as Salesforce stores them.
            let rows = rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .filter_map(|(k, v)| {
                            let field = def.field(&k)?;
                            let v = match (field.ftype.as_str(), v.as_f64()) {
                                ("double" | "currency" | "percent", Some(x)) => {
                                    serde_json::json!(field.rounded(x))
                                }
                                _ => v,
                            };
                            Some((k, v))
                        })
                        .collect()
                })
                .collect();
            org.records.insert(def.name.clone(), rows);
        }
        org.clock = org
            .records
            .values()
            .flatten()
            .filter_map(|r| r.get("SystemModstamp").and_then(|v| v.as_str()))
            .filter_map(wire::parse_datetime)
            .max()
            .unwrap_or(0);
    }
    standing_records(org, config, base_ms - 86_400_000);
    for dir in [&config.canned, &config.data_dir].into_iter().flatten() {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| EmulatorError::Input(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".describe.json") {
                let text = std::fs::read_to_string(entry.path())?;
                let def = model::ObjectDef::from_describe_json(&name, &text)
                    .map_err(|e| EmulatorError::Input(e.to_string()))?;
                define(org, def);
            }
        }
    }
    if let Some(dir) = &config.data_dir {
        for object in org.objects.keys().cloned().collect::<Vec<_>>() {
            let path = dir.join(format!("{object}.records.json"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let records = serde_json::from_str(&text)
                    .map_err(|e| EmulatorError::Input(format!("{}: {e}", path.display())))?;
                org.records.insert(object, records);
            }
        }
    }
    // The org began with its standing records; records that start out deleted were deleted
    // now, as far as the recycle bin and the delete log know.
    org.started = base_ms - 86_400_000;
    let now = org.now();
    org.log_unlogged_deletions(now);
    Ok(())
}

/// For a query on a canned object: the object and its page files with row counts.
fn canned_pages(org: &Org, soql_text: &str) -> Option<(String, Vec<(PathBuf, u64)>)> {
    let dir = org.data_dir_canned.as_ref()?;
    let query = soql::parse(soql_text).ok()?;
    let object = org.object(&query.object).ok()?.name.clone();
    let pages = dir.join(format!("{object}.pages"));
    let counts: std::collections::BTreeMap<String, u64> =
        serde_json::from_str(&std::fs::read_to_string(pages.join("counts.json")).ok()?).ok()?;
    Some((
        object,
        counts
            .into_iter()
            .map(|(file, n)| (pages.join(file), n))
            .collect(),
    ))
}

/// Starts an emulator on 127.0.0.1.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    let mut org = Org {
        data_dir: config.data_dir.clone(),
        data_dir_canned: config.canned.clone(),
        bulk_page_size: if config.bulk_page_size == 0 {
            50_000
        } else {
            config.bulk_page_size
        },
        ..Org::default()
    };
    load_objects(&mut org, &config)?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls { "https" } else { "http" };
    let base_url = format!("{scheme}://127.0.0.1:{}", addr.port());
    let state = server::AppState {
        org: Arc::new(Mutex::new(org)),
        credentials: Arc::new(config.credentials.clone()),
        base_url: Arc::new(Mutex::new(base_url.clone())),
    };
    // One entry point: Salesforce answers paths with a doubled slash after the host
    // (`//services/...`, which the sf CLI sends), so the path is normalised before dispatch.
    let app = Router::new()
        .fallback(server::dispatch)
        // Ingest uploads may be up to 150 MB (reference §3.3); axum's default limit is 2 MB.
        .layer(axum::extract::DefaultBodyLimit::max(160 << 20))
        .with_state(state);
    let handle = axum_server::Handle::new();
    let (task, ca_pem) = if config.tls {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .map_err(|e| EmulatorError::Input(format!("certificate: {e}")))?;
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.clone().into_bytes(),
            key_pem.into_bytes(),
        )
        .await?;
        let mut server = axum_server::from_tcp_rustls(listener, tls)?
            .map(headers::SalesforceCaseAcceptor::new)
            .handle(handle.clone());
        server.http_builder().http1().title_case_headers(true);
        (
            tokio::spawn(server.serve(app.into_make_service())),
            Some(cert_pem),
        )
    } else {
        let mut server = axum_server::from_tcp(listener)?
            .map(headers::SalesforceCaseAcceptor::new)
            .handle(handle.clone());
        server.http_builder().http1().title_case_headers(true);
        (tokio::spawn(server.serve(app.into_make_service())), None)
    };
    Ok(RunningEmulator {
        base_url,
        ca_pem,
        shutdown: handle,
        task,
    })
}

/// Runs the emulator until interrupted (`cxlake emulator`).
pub async fn run(args: EmulatorArgs) -> Result<(), EmulatorError> {
    let jwt_public_key_pem = match &args.jwt_public_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| EmulatorError::Input(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    if let Some(dir) = &args.data {
        std::fs::create_dir_all(dir)?;
    }
    let running = start(EmulatorConfig {
        port: args.port,
        tls: args.tls,
        data_dir: args.data.clone(),
        seed: !args.no_seed,
        canned: args.canned.clone(),
        objects_dir: args.objects.clone(),
        bulk_page_size: args.bulk_page_size,
        credentials: OrgCredentials {
            client_id: args.client_id,
            client_secret: args.client_secret,
            username: args.username,
            password: args.password,
            jwt_public_key_pem,
        },
    })
    .await?;
    if let (Some(path), Some(pem)) = (&args.cert_out, &running.ca_pem) {
        std::fs::write(path, pem)?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "emulator listening on {}", running.base_url)?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    running.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sf-emulator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn org_with(objects_dir: Option<PathBuf>, seed: bool) -> Result<Org, EmulatorError> {
        let mut org = Org::default();
        let config = EmulatorConfig {
            seed,
            objects_dir,
            ..EmulatorConfig::default()
        };
        load_objects(&mut org, &config).map(|()| org)
    }

    #[test]
    fn objects_dir_adds_fields_and_drops_others() {
        const QUEUE: &str = "amazonconnect__AC_HistoricalQueueMetrics__c";
        let dir = scratch("objects");
        let mut describe: serde_json::Value = serde_json::from_str(include_str!(
            "../objects/amazonconnect__AC_HistoricalQueueMetrics__c.json"
        ))
        .unwrap();
        let fields = describe["fields"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "amazonconnect__Region__c");
        fields.push(serde_json::json!({"name": "amazonconnect__Lunch_time__c", "type": "double"}));
        std::fs::write(dir.join("queue.json"), describe.to_string()).unwrap();
        std::fs::write(
            dir.join("extra.json"),
            r#"{"name":"Extra__c","keyPrefix":"a0E","fields":[{"name":"Id","type":"id"}]}"#,
        )
        .unwrap();
        let org = org_with(Some(dir.clone()), true).unwrap();
        let queue = org.object(QUEUE).unwrap();
        assert!(queue.field("amazonconnect__Lunch_time__c").is_some());
        assert!(queue.field("amazonconnect__Region__c").is_none());
        assert!(org.object("extra__c").is_ok());
        assert!(org.object("Account").is_ok(), "built-in objects stay");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_objects_file_stops_the_start_with_its_name() {
        let dir = scratch("bad");
        std::fs::write(dir.join("broken.json"), "{\"name\": \"B\", \"fields\": 3}").unwrap();
        let error = org_with(Some(dir.clone()), false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("broken.json: no \"fields\" array"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_org_has_its_integration_user_and_organization() {
        let org = org_with(None, false).unwrap();
        let user = &org.records["User"];
        assert_eq!(user.len(), 1);
        assert_eq!(user[0]["Id"], USER_ID);
        assert_eq!(user[0]["Username"], OrgCredentials::default().username);
        assert_eq!(org.records["Organization"][0]["Id"], ORG_ID);
    }
}
