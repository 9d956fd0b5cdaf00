//! A Salesforce API emulator (axum) for the demo, tests and benchmarks: OAuth (JWT bearer,
//! refresh token, client credentials, password), describe, REST query/queryAll, Bulk API 2.0
//! query and ingest, sObject Collections upsert, `/limits`, and failure injection — in the wire
//! formats of the project's Salesforce reference. One org in memory, seeded deterministically;
//! `--data DIR` persists records, `--canned DIR` serves pre-generated Bulk result pages.

mod ingest;
pub mod model;
mod org;
mod server;
pub mod soql;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::routing::any;
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
    /// Start with no records (objects are still defined).
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

fn load_objects(org: &mut Org, config: &EmulatorConfig) -> Result<(), EmulatorError> {
    for def in model::standard_objects() {
        org.objects.insert(def.name.clone(), def);
    }
    if config.seed {
        org.records = model::seed(chrono::Utc::now().timestamp_millis() - 30 * 86_400_000);
        org.clock = org
            .records
            .values()
            .flatten()
            .filter_map(|r| r.get("SystemModstamp").and_then(|v| v.as_str()))
            .filter_map(|s| crate::salesforce::normalize::parse_datetime(s).ok())
            .max()
            .unwrap_or(0);
    }
    for dir in [&config.canned, &config.data_dir].into_iter().flatten() {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| EmulatorError::Input(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(object) = name.strip_suffix(".describe.json") {
                let text = std::fs::read_to_string(entry.path())?;
                let def = describe_from_json(object, &text)?;
                org.objects.insert(def.name.clone(), def);
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
    Ok(())
}

fn describe_from_json(object: &str, text: &str) -> Result<model::ObjectDef, EmulatorError> {
    let bad = |e: String| EmulatorError::Input(format!("{object}.describe.json: {e}"));
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let fields = v["fields"]
        .as_array()
        .ok_or_else(|| bad("no fields".into()))?;
    Ok(model::ObjectDef {
        name: v["name"].as_str().unwrap_or(object).to_string(),
        key_prefix: v["keyPrefix"].as_str().unwrap_or("a0Z").to_string(),
        fields: fields
            .iter()
            .map(|f| model::FieldDef {
                name: f["name"].as_str().unwrap_or_default().to_string(),
                ftype: f["type"].as_str().unwrap_or("string").to_string(),
                compound: f["compoundFieldName"].as_str().map(str::to_string),
                reference_to: f["referenceTo"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                relationship: f["relationshipName"].as_str().map(str::to_string),
                external_id: f["externalId"].as_bool().unwrap_or(false),
                system: false,
            })
            .collect(),
    })
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
    let app = Router::new()
        .route("/services/{*rest}", any(server::services))
        .route("/__emulator/{*rest}", any(server::admin))
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
        let server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle.clone());
        (
            tokio::spawn(server.serve(app.into_make_service())),
            Some(cert_pem),
        )
    } else {
        let server = axum_server::from_tcp(listener)?.handle(handle.clone());
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
