//! HTTP handlers: OAuth, REST (describe, query, collections, limits), Bulk API 2.0 query and
//! ingest, and the admin API (`/__emulator/…`: records, faults, stats).

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::model::{stamp, ObjectDef};
use super::org::{ApiError, Faults, Job, Org, PageFault, Record, Selected, RETRIES_EXHAUSTED};
use super::rows;
use super::soql;
use super::wire;
use super::OrgCredentials;

/// Shared server state.
#[derive(Clone)]
pub struct AppState {
    /// The org.
    pub org: Arc<Mutex<Org>>,
    /// Accepted credentials.
    pub credentials: Arc<OrgCredentials>,
    /// Public base URL (`instance_url`).
    pub base_url: Arc<Mutex<String>>,
}

pub(crate) fn respond(status: u16, content_type: &str, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", content_type)
        .body(body.into())
        .expect("valid response")
}

pub(crate) fn json_response(status: u16, value: &Value) -> Response {
    respond(status, "application/json;charset=UTF-8", value.to_string())
}

pub(crate) fn api_error(e: ApiError) -> Response {
    let mut r = json_response(
        e.status,
        &json!([{ "message": e.message, "errorCode": e.code }]),
    );
    if e.status == 401 {
        r.headers_mut()
            .insert("WWW-Authenticate", HeaderValue::from_static("Token"));
    }
    r
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        400,
        &json!({ "error": error, "error_description": description }),
    )
}

/// 24 random bytes as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    } else {
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        bytes[..8].copy_from_slice(&t.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An access token: the org id, `!`, opaque text (Salesforce's session id shape).
fn token() -> String {
    format!("00Dcx0000000001!{}", random_hex())
}

/// A refresh token: only `[A-Za-z0-9._-]` (no `!`, which the sf CLI's `org login sfdx-url`
/// refuses in the `force://` URL it parses).
fn refresh_token() -> String {
    format!("5Aep861.{}", random_hex())
}

fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// `application/x-www-form-urlencoded` pairs (a query string or form body); a name given twice
/// keeps its last value.
pub(crate) fn url_decode_pairs(text: &str) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// A percent-encoded path segment, decoded (`+` is a plus sign in paths).
fn decode_path_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// One form-encoded value (`+` is a space), as in HTTP Basic client credentials.
fn form_value(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// `POST /services/oauth2/token`. Parameters come from the form body and, as the CTI Lambdas
/// send them, from the query string with an empty body; the body wins when both name one.
fn oauth(state: &AppState, headers: &HeaderMap, body: &[u8], query: &str) -> Response {
    let mut f = url_decode_pairs(query);
    f.extend(form(body));
    let creds = &state.credentials;
    let base = state.base_url.lock().expect("lock").clone();
    let grant = f.get("grant_type").map(String::as_str).unwrap_or("");
    let client_ok = |f: &std::collections::HashMap<String, String>| {
        let (mut id, mut secret) = (f.get("client_id").cloned(), f.get("client_secret").cloned());
        if let Some(basic) = headers
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        {
            if let Some(decoded) = base64_decode(basic) {
                if let Some((i, s)) = decoded.split_once(':') {
                    id = Some(form_value(i));
                    secret = Some(form_value(s));
                }
            }
        }
        id.as_deref() == Some(&creds.client_id) && secret.as_deref() == Some(&creds.client_secret)
    };
    let mut org = state.org.lock().expect("lock");
    org.count("token");
    let issue = |org: &mut Org, refresh: bool| {
        let access = token();
        org.tokens.insert(access.clone());
        let mut body = json!({
            "access_token": access, "instance_url": base, "id": format!("{base}/id/{}/{}", crate::ORG_ID, crate::USER_ID),
            "token_type": "Bearer", "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
            "signature": "c2lnbmF0dXJl", "scope": "api web refresh_token",
        });
        if refresh {
            let r = refresh_token();
            org.refresh_tokens.insert(r.clone());
            body["refresh_token"] = json!(r);
        }
        json_response(200, &body)
    };
    match grant {
        "password" => {
            if !client_ok(&f) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            if f.get("username") != Some(&creds.username)
                || f.get("password") != Some(&creds.password)
            {
                return oauth_error("invalid_grant", "authentication failure");
            }
            issue(&mut org, true)
        }
        "client_credentials" => {
            if !client_ok(&f) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            issue(&mut org, false)
        }
        "refresh_token" => {
            if !client_ok(&f) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            match f.get("refresh_token") {
                Some(r) if org.refresh_tokens.contains(r) => issue(&mut org, false),
                _ => oauth_error("invalid_grant", "expired access/refresh token"),
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let Some(pem) = &creds.jwt_public_key_pem else {
                return oauth_error("invalid_grant", "user hasn't approved this consumer");
            };
            let Some(assertion) = f.get("assertion") else {
                return oauth_error("invalid_request", "assertion is missing");
            };
            match verify_jwt(assertion, pem, creds, &base) {
                Ok(()) => issue(&mut org, false),
                Err(description) => oauth_error("invalid_grant", &description),
            }
        }
        _ => oauth_error("unsupported_grant_type", "grant type not supported"),
    }
}

/// Checks a JWT bearer assertion no more strictly than Salesforce does in practice: RS256 with
/// the connected app's certificate key; `iss` the consumer key; `sub` (or `prn`) the user; `aud`
/// the login host with or without a trailing slash; `exp` not passed. The docs ask for `exp`
/// within 3 minutes in seconds, but Salesforce accepts the sf CLI's `exp` in milliseconds, so
/// a far `exp` is not refused and one in milliseconds is read as such.
fn verify_jwt(
    assertion: &str,
    pem: &str,
    creds: &OrgCredentials,
    base: &str,
) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        #[serde(default)]
        sub: Option<String>,
        #[serde(default)]
        prn: Option<String>,
        exp: u64,
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| "invalid assertion".to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    let mut audiences = Vec::new();
    for host in [
        "https://login.salesforce.com",
        "https://test.salesforce.com",
        base.trim_end_matches('/'),
    ] {
        audiences.push(host.to_string());
        audiences.push(format!("{host}/"));
    }
    validation.set_audience(&audiences);
    // `exp` is checked below, where a millisecond value is understood.
    validation.validate_exp = false;
    validation.required_spec_claims = ["exp", "aud"].iter().map(|s| s.to_string()).collect();
    let data = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
        .map_err(|e| format!("invalid assertion ({e})"))?;
    let now = chrono::Utc::now().timestamp() as u64;
    let exp = if data.claims.exp > 100_000_000_000 {
        data.claims.exp / 1000
    } else {
        data.claims.exp
    };
    if exp + 60 < now {
        return Err("expired authorization code".into());
    }
    if data.claims.iss != creds.client_id {
        return Err("invalid client credentials".into());
    }
    // `prn` is the older name of `sub`; when both are given, `prn` wins (reference §5.2).
    let user = data.claims.prn.or(data.claims.sub).unwrap_or_default();
    if user != creds.username {
        return Err("user hasn't approved this consumer".into());
    }
    Ok(())
}

fn base64_decode(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Every `/services/…` request.
/// Every request. Runs of `/` in the path count as one, as Salesforce treats them (the sf CLI
/// sends `//services/...` after an instance URL with a trailing slash).
pub async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut path = String::with_capacity(uri.path().len());
    for c in uri.path().chars() {
        if !(c == '/' && path.ends_with('/')) {
            path.push(c);
        }
    }
    let query = uri.query().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/__emulator/") {
        return admin(&state, method, rest, query, &body);
    }
    if let Some(rest) = path.strip_prefix("/id/") {
        return crate::identity::identity_url(&state, &headers, rest, query);
    }
    match path.strip_prefix("/services/") {
        Some(rest) => services(&state, method, rest, query, &headers, &body).await,
        None => api_error(ApiError::new(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
        )),
    }
}

/// The bearer token of a request (`Authorization: Bearer …`), or empty.
pub(crate) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .unwrap_or("")
}

/// 401 `INVALID_SESSION_ID` unless the request carries a live token.
pub(crate) fn check_session(org: &mut Org, token: &str) -> Result<(), ApiError> {
    if org.tokens.contains(token) {
        Ok(())
    } else {
        org.count("unauthorized");
        Err(ApiError::new(
            401,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ))
    }
}

/// Every `/services/…` request (`path` without that prefix).
async fn services(
    state: &AppState,
    method: Method,
    path: &str,
    query_text: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let state = state.clone();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments == ["oauth2", "token"] && method == Method::POST {
        return oauth(&state, headers, body, query_text);
    }
    if segments == ["oauth2", "userinfo"] && matches!(method, Method::GET | Method::POST) {
        return crate::identity::userinfo(&state, headers);
    }
    if segments == ["data"] {
        let versions: Vec<Value> = (31..=66)
            .map(|v| json!({ "label": format!("v{v}"), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0") }))
            .collect();
        return json_response(200, &Value::Array(versions));
    }
    let (Some(&"data"), Some(version)) = (segments.first(), segments.get(1)) else {
        return api_error(ApiError::new(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
        ));
    };
    let version = version.trim_start_matches('v').to_string();
    if version.parse::<f64>().map_or(true, |v| v < 31.0) {
        return api_error(ApiError::new(
            410,
            "GONE",
            format!("API version {version} is retired"),
        ));
    }
    // Path segments are percent-decoded (`+` stays `+` in a path): an external ID with spaces
    // arrives as `%20`.
    let rest: Vec<String> = segments[2..]
        .iter()
        .map(|s| decode_path_segment(s))
        .collect();
    let query = url_decode_pairs(query_text);
    let headers = headers.clone();
    let body = Bytes::copy_from_slice(body);
    let refusal = {
        let mut org = state.org.lock().expect("lock");
        let bearer = bearer(&headers);
        if let Some(n) = org.faults.expire_tokens_after_calls {
            if n == 0 {
                org.tokens.clear();
                org.faults.expire_tokens_after_calls = None;
            } else {
                org.faults.expire_tokens_after_calls = Some(n - 1);
            }
        }
        if let Err(e) = check_session(&mut org, bearer) {
            return api_error(e);
        }
        // The recycle bin is emptied lazily: on every data call (and when the clock moves).
        org.purge_recycle_bin();
        // A refused call does not count against the allowance; every other data call does.
        if org.allowance.used >= org.allowance.max {
            org.count("daily_limit_exceeded");
            Some(ApiError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ))
        } else if org.faults.concurrent_limit_calls > 0 {
            org.faults.concurrent_limit_calls -= 1;
            org.count("limit_exceeded");
            Some(ApiError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentPerOrgLongTxn Limit exceeded.",
            ))
        } else if org.faults.server_error_calls > 0 {
            org.faults.server_error_calls -= 1;
            org.count("server_error");
            let status = org.faults.status.unwrap_or(503);
            Some(ApiError::new(
                status,
                "SERVER_UNAVAILABLE",
                "Service temporarily unavailable",
            ))
        } else {
            org.allowance.used += 1;
            None
        }
    };
    if let Some(e) = refusal {
        let mut response = api_error(e);
        limit_info(state.org.lock().expect("lock").allowance, &mut response);
        return response;
    }
    let gzip = headers
        .get("Accept-Encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let fields = query.get("fields");
    let into = |r: Result<Response, Response>| -> Handled { Ok(r.unwrap_or_else(|e| e)) };
    let result = match (method.clone(), parts.as_slice()) {
        (Method::GET, []) => Ok(crate::identity::version_resources(
            &state.base_url.lock().expect("lock"),
            &version,
        )),
        (Method::GET, ["limits"]) => limits(&state),
        (Method::GET, ["sobjects"]) => sobjects(&state, &version),
        (Method::GET, ["sobjects", object, "describe"]) => describe(&state, object, &version),
        (Method::GET, ["sobjects", object]) => rows::basic_info(&state, object, &version),
        (Method::POST, ["sobjects", object]) => into(rows::create(&state, object, &body)),
        (Method::GET, ["sobjects", object, "deleted"]) => {
            let mut org = state.org.lock().expect("lock");
            org.count("get_deleted");
            org.get_deleted(
                object,
                query.get("start").map(String::as_str),
                query.get("end").map(String::as_str),
            )
            .map(|v| json_response(200, &v))
        }
        (Method::GET, ["sobjects", object, id]) => {
            rows::retrieve(&state, object, id, fields, &version)
        }
        (Method::PATCH, ["sobjects", object, id]) => into(rows::update(&state, object, id, &body)),
        (Method::DELETE, ["sobjects", object, id]) => rows::delete(&state, object, id),
        (Method::GET, ["sobjects", object, field, value]) => into(rows::retrieve_by_external_id(
            &state, object, field, value, fields, &version,
        )),
        (Method::PATCH, ["sobjects", object, field, value]) => {
            into(rows::upsert(&state, object, field, value, &body, &version))
        }
        (Method::GET, ["query" | "queryAll"])
            if query.get("columns").is_some_and(|c| c == "true") =>
        {
            query_columns(&state, query.get("q").map(String::as_str).unwrap_or(""))
        }
        (Method::GET, [resource @ ("query" | "queryAll")]) => rest_query(
            &state,
            query.get("q").map(String::as_str).unwrap_or(""),
            *resource == "queryAll",
            &version,
            &headers,
        ),
        (Method::GET, ["query" | "queryAll", cursor]) => query_more(&state, cursor, &version),
        (Method::PATCH, ["composite", "sobjects", object, external_id]) => {
            collections_upsert(&state, object, external_id, &body)
        }
        (Method::POST, ["jobs", "query"]) => create_query_job(&state, &body, &version),
        (Method::GET, ["jobs", kind @ ("query" | "ingest")]) => list_jobs(&state, kind),
        (Method::GET, ["jobs", "query", id]) => job_info(&state, id, true),
        (Method::PATCH, ["jobs", "query" | "ingest", id]) => patch_job(&state, id, &body),
        (Method::DELETE, ["jobs", "query" | "ingest", id]) => delete_job(&state, id),
        (Method::GET, ["jobs", "query", id, "results"]) => {
            return query_results(&state, id, &version, &query, gzip).await;
        }
        (Method::GET, ["jobs", "query", id, "resultPages"]) => result_pages(&state, id, &version),
        (Method::POST, ["jobs", "ingest"]) => create_ingest_job(&state, &body, &version),
        (Method::GET, ["jobs", "ingest", id]) => job_info(&state, id, false),
        (Method::PUT, ["jobs", "ingest", id, "batches"]) => upload(&state, id, &body),
        (
            Method::GET,
            ["jobs", "ingest", id, which @ ("successfulResults" | "failedResults" | "unprocessedrecords")],
        ) => ingest_results(&state, id, which),
        _ => Err(ApiError::new(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
        )),
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => api_error(e),
    };
    limit_info(state.org.lock().expect("lock").allowance, &mut response);
    response
}

/// `Sforce-Limit-Info: api-usage=USED/MAX`, on every data response (reference §3).
fn limit_info(allowance: super::org::Allowance, response: &mut Response) {
    let text = format!("api-usage={}/{}", allowance.used, allowance.max);
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().insert("Sforce-Limit-Info", v);
    }
}

pub(crate) type Handled = Result<Response, ApiError>;

fn limits(state: &AppState) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("limits");
    let super::org::Allowance { max, used } = org.allowance;
    Ok(json_response(
        200,
        &json!({
            "DailyApiRequests": { "Max": max, "Remaining": max.saturating_sub(used) },
            "DailyBulkApiBatches": { "Max": 15000, "Remaining": 15000 },
            "DailyBulkV2QueryJobs": { "Max": 10000, "Remaining": 10000 },
            "DailyBulkV2QueryFileStorageMB": { "Max": 1048576, "Remaining": 1048576 },
        }),
    ))
}

fn query_columns(state: &AppState, soql: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("query");
    let (object, selected, _, _) = org.run_query(soql, false)?;
    Ok(json_response(200, &rows::columns(&object, &selected)))
}

fn sobjects(state: &AppState, version: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("describe");
    let list: Vec<Value> = org
        .objects
        .values()
        .map(|o| o.global_entry(version))
        .collect();
    Ok(json_response(
        200,
        &json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list }),
    ))
}

fn describe(state: &AppState, object: &str, version: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("describe");
    let def = org
        .object(object)
        .map_err(|_| ApiError::new(404, "NOT_FOUND", "The requested resource does not exist"))?;
    Ok(json_response(200, &def.describe(version)))
}

/// One REST record as JSON text.
pub(crate) fn rest_record(
    org: &Org,
    object: &ObjectDef,
    selected: &[Selected],
    written: &[String],
    record: &Record,
    version: &str,
) -> String {
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut parts = vec![format!(
        "\"attributes\":{{\"type\":\"{}\",\"url\":\"/services/data/v{version}/sobjects/{}/{id}\"}}",
        object.name, object.name
    )];
    let mut done_relationships: Vec<String> = Vec::new();
    for (sel, _path) in selected.iter().zip(written) {
        match sel {
            Selected::Field(f) if matches!(f.ftype.as_str(), "address" | "location") => {
                parts.push(format!(
                    "\"{}\":{}",
                    f.name,
                    wire::compound(object, &f.name, record, version)
                ));
            }
            Selected::Field(f) => {
                let value = record.get(&f.name).cloned().unwrap_or(Value::Null);
                parts.push(format!(
                    "\"{}\":{}",
                    f.name,
                    wire::rest_value(object, f, id, &value, version)
                ));
            }
            Selected::Related(reference, target, _) => {
                let rel = reference.relationship_name.clone().unwrap_or_default();
                if done_relationships.contains(&rel) {
                    continue;
                }
                done_relationships.push(rel.clone());
                let parent = record
                    .get(&reference.name)
                    .and_then(Value::as_str)
                    .and_then(|pid| org.parent(target, pid));
                let Some((tdef, parent)) = parent else {
                    parts.push(format!("\"{rel}\":null"));
                    continue;
                };
                let pid = parent.get("Id").and_then(Value::as_str).unwrap_or_default();
                let mut inner = vec![format!(
                    "\"attributes\":{{\"type\":\"{}\",\"url\":\"/services/data/v{version}/sobjects/{}/{pid}\"}}",
                    tdef.name, tdef.name
                )];
                for s in selected {
                    if let Selected::Related(r2, _, f2) = s {
                        if r2.name == reference.name {
                            let value = parent.get(&f2.name).cloned().unwrap_or(Value::Null);
                            inner.push(format!(
                                "\"{}\":{}",
                                f2.name,
                                wire::rest_value(tdef, f2, pid, &value, version)
                            ));
                        }
                    }
                }
                parts.push(format!("\"{rel}\":{{{}}}", inner.join(",")));
            }
        }
    }
    format!("{{{}}}", parts.join(","))
}

fn page_response(
    org: &mut Org,
    object: &str,
    total: usize,
    records: &[String],
    next: Option<String>,
) -> Response {
    let mut body = format!("{{\"totalSize\":{total},\"done\":{}", next.is_none());
    if let Some(n) = next {
        body.push_str(&format!(",\"nextRecordsUrl\":\"{n}\""));
    }
    body.push_str(&format!(",\"records\":[{}]}}", records.join(",")));
    let body = corrupt_page(org, object, body.into_bytes(), false);
    respond(200, "application/json;charset=UTF-8", body)
}

/// Serves the page damaged when a `corrupt_page` fault picks it (then the fault is spent).
fn corrupt_page(org: &mut Org, object: &str, body: Vec<u8>, csv: bool) -> Vec<u8> {
    let Some(fault) = org.faults.corrupt_page.as_mut() else {
        return body;
    };
    if !fault.object.eq_ignore_ascii_case(object) {
        return body;
    }
    if fault.page > 1 {
        fault.page -= 1;
        return body;
    }
    let fault = org.faults.corrupt_page.take().expect("checked above");
    let damaged = if csv {
        damage_csv(&fault, &body)
    } else {
        damage_json(&fault, &body)
    };
    damaged.unwrap_or(body)
}

/// What a damaged cell holds: text no number, date, datetime or boolean parser accepts.
const BAD_VALUE: &str = "not-a-value";

fn damage_json(fault: &PageFault, body: &[u8]) -> Option<Vec<u8>> {
    if fault.kind == "truncate" {
        return Some(body[..body.len() / 2].to_vec());
    }
    let mut page: Value = serde_json::from_slice(body).ok()?;
    if fault.kind == "drop_record" {
        // `totalSize` still counts it.
        page.get_mut("records")?.as_array_mut()?.pop()?;
        return serde_json::to_vec(&page).ok();
    }
    let field = fault.field.as_deref()?;
    let first = page.get_mut("records")?.get_mut(0)?.as_object_mut()?;
    match fault.kind.as_str() {
        "wide_row" => {
            first.remove(field);
        }
        "bad_value" => {
            first.insert(field.to_string(), Value::from(BAD_VALUE));
        }
        _ => return None,
    }
    serde_json::to_vec(&page).ok()
}

fn damage_csv(fault: &PageFault, body: &[u8]) -> Option<Vec<u8>> {
    if fault.kind == "truncate" {
        return Some(body[..body.len() / 2].to_vec());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body);
    let mut rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
        .collect::<Result<_, _>>()
        .ok()?;
    match fault.kind.as_str() {
        // `Sforce-NumberOfRecords` still counts it.
        "drop_record" if rows.len() > 1 => {
            rows.pop();
        }
        "wide_row" => rows.get_mut(1)?.push("extra".into()),
        "bad_value" => {
            let field = fault.field.as_deref()?;
            let at = rows
                .first()?
                .iter()
                .position(|h| h.eq_ignore_ascii_case(field))?;
            *rows.get_mut(1)?.get_mut(at)? = BAD_VALUE.into();
        }
        _ => return None,
    }
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    for row in &rows {
        writer.write_record(row).ok()?;
    }
    writer.into_inner().ok()
}

fn rest_query(
    state: &AppState,
    soql: &str,
    all: bool,
    version: &str,
    headers: &HeaderMap,
) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("query");
    if soql::parse(soql).is_ok_and(|q| q.count) {
        // `SELECT COUNT()`: the number in `totalSize`, no records (a canned object counts its
        // canned pages' rows, the records its Bulk query serves).
        let total = match super::canned_pages(&org, soql) {
            Some((_, pages)) => pages.iter().map(|(_, n)| *n as usize).sum(),
            None => org.run_query(soql, all)?.3.len(),
        };
        return Ok(json_response(
            200,
            &json!({ "totalSize": total, "done": true, "records": [] }),
        ));
    }
    let (object, selected, written, rows) = org.run_query(soql, all)?;
    let rendered: Vec<String> = rows
        .iter()
        .map(|r| rest_record(&org, &object, &selected, &written, r, version))
        .collect();
    let batch = headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix("batchSize="))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2000)
        .clamp(200, 2000);
    let total = rendered.len();
    let name = object.name.clone();
    if total <= batch {
        return Ok(page_response(&mut org, &name, total, &rendered, None));
    }
    org.counter += 1;
    let cursor = format!("01gcx{:013}", org.counter);
    let first = rendered[..batch].to_vec();
    let resource = if all { "queryAll" } else { "query" };
    org.cursors.insert(
        cursor.clone(),
        (rendered, batch, resource.to_string(), name.clone()),
    );
    Ok(page_response(
        &mut org,
        &name,
        total,
        &first,
        Some(format!(
            "/services/data/v{version}/{resource}/{cursor}-{batch}"
        )),
    ))
}

fn query_more(state: &AppState, cursor: &str, version: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("query_more");
    let (id, offset) = cursor
        .rsplit_once('-')
        .ok_or_else(|| ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))?;
    let offset: usize = offset
        .parse()
        .map_err(|_| ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))?;
    let (rendered, batch, resource, object) = org
        .cursors
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))?;
    let end = (offset + batch).min(rendered.len());
    let next =
        (end < rendered.len()).then(|| format!("/services/data/v{version}/{resource}/{id}-{end}"));
    Ok(page_response(
        &mut org,
        &object,
        rendered.len(),
        &rendered[offset.min(end)..end],
        next,
    ))
}

fn job_json(job: &Job, query: bool) -> Value {
    let mut v = json!({
        "id": job.id, "operation": job.operation, "object": job.object,
        "createdById": "005cx0000000001AAA", "createdDate": wire::rest_datetime(&stamp(job.created)),
        "systemModstamp": wire::rest_datetime(&stamp(job.created)), "state": job.state,
        "concurrencyMode": "Parallel", "contentType": "CSV",
        "apiVersion": job.version.parse::<f64>().unwrap_or(66.0),
        "jobType": if query { "V2Query" } else { "V2Ingest" },
        "lineEnding": "LF", "columnDelimiter": "COMMA", "retries": 0, "totalProcessingTime": 0,
    });
    if query {
        v["isPkChunkingSupported"] = json!(true);
        if job.state == "JobComplete" {
            v["numberRecordsProcessed"] = json!(query_job_records(job));
        }
    } else {
        v["externalIdFieldName"] = json!(job.external_id);
        v["contentUrl"] = json!(format!(
            "services/data/v{}/jobs/ingest/{}/batches",
            job.version, job.id
        ));
        v["numberRecordsProcessed"] = json!(job.counts.0);
        v["numberRecordsFailed"] = json!(job.counts.1);
    }
    // `errorMessage` belongs to a Failed job (reference §2.4); a failure decided at creation
    // (fault injection) shows only once the job has reached that state.
    if let (Some(e), "Failed") = (&job.error, job.state.as_str()) {
        v["errorMessage"] = json!(e);
    }
    v
}

/// The number of records a query job's query matched (its result rows or canned pages).
fn query_job_records(job: &Job) -> u64 {
    match (&job.result, &job.canned) {
        (Some((_, rows)), _) => rows.len() as u64,
        (_, Some(pages)) => pages.iter().map(|(_, n)| n).sum(),
        _ => 0,
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "API_ERROR",
            format!(
                "Value does not match expected type at [line:{}, column:{}]",
                e.line(),
                e.column()
            ),
        )
    })
}

fn create_query_job(state: &AppState, body: &[u8], version: &str) -> Handled {
    let request = parse_body(body)?;
    let operation = request["operation"].as_str().unwrap_or("query").to_string();
    if operation != "query" && operation != "queryAll" {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!("invalid operation {operation}"),
        ));
    }
    let soql = request["query"].as_str().unwrap_or_default().to_string();
    let mut org = state.org.lock().expect("lock");
    org.count("bulk_create");
    if soql::parse(&soql).is_ok_and(|q| q.count) {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "Aggregate functions such as COUNT() are not supported in Bulk Query",
        ));
    }
    // Objects Bulk API 2.0 cannot serve (describe data `"bulkQueryable": false`) are refused
    // at creation, with the body Salesforce answers (reference §2).
    if let Some(def) = soql::parse(&soql)
        .ok()
        .and_then(|q| org.object(&q.object).ok())
        .filter(|d| !d.bulk_queryable)
    {
        return Err(ApiError::new(
            400,
            "INVALIDENTITY",
            format!("Entity '{}' is not supported by the Bulk API.", def.name),
        ));
    }
    let canned = super::canned_pages(&org, &soql);
    let (object, result) = match canned {
        Some((object, pages)) => (object, Err(pages)),
        None => {
            let (object, selected, written, rows) =
                org.run_query(&soql, operation == "queryAll")?;
            for s in &selected {
                if let Selected::Field(f) = s {
                    match f.ftype.as_str() {
                        "address" | "location" => return Err(ApiError::new(400, "API_ERROR", "Selecting compound data not supported in Bulk Query")),
                        "base64" => return Err(ApiError::new(400, "API_ERROR", format!("FUNCTIONALITY_NOT_ENABLED: Selecting base64 field {} not supported in Bulk Query", f.name))),
                        _ => {}
                    }
                }
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    selected
                        .iter()
                        .map(|s| match s {
                            Selected::Field(f) => {
                                wire::bulk_cell(&object, f, r.get(&f.name).unwrap_or(&Value::Null))
                            }
                            Selected::Related(reference, target, f) => {
                                let rel = reference.relationship_name.clone().unwrap_or_default();
                                let value = org.related(&object, r, &rel, &f.name);
                                let tdef = org
                                    .object(target)
                                    .cloned()
                                    .unwrap_or_else(|_| object.clone());
                                wire::bulk_cell(&tdef, f, &value)
                            }
                        })
                        .collect()
                })
                .collect();
            (object.name.clone(), Ok((written, cells)))
        }
    };
    let id = org.new_id("750");
    let created = org.tick();
    let mut job = Job {
        id: id.clone(),
        operation,
        object,
        state: "UploadComplete".into(),
        version: version.to_string(),
        created,
        polls_left: 1 + org.faults.slow_job_polls,
        error: None,
        result: None,
        canned: None,
        external_id: None,
        upload: None,
        outcome: None,
        counts: (0, 0),
    };
    match result {
        Ok(r) => job.result = Some(r),
        Err(pages) => job.canned = Some(pages),
    }
    if let Some(message) = org.faults.fail_next_query_job.take() {
        job.error = Some(message);
    }
    let info = job_json(&job, true);
    org.jobs.insert(id, job);
    Ok(json_response(200, &info))
}

fn list_jobs(state: &AppState, kind: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("bulk_list");
    let query = kind == "query";
    let records: Vec<Value> = org
        .jobs
        .values()
        .filter(|j| (j.operation == "query" || j.operation == "queryAll") == query)
        .map(|j| job_json(j, query))
        .collect();
    Ok(json_response(
        200,
        &json!({ "done": true, "records": records, "nextRecordsUrl": null }),
    ))
}

fn job_info(state: &AppState, id: &str, query: bool) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count(if query { "bulk_poll" } else { "ingest_poll" });
    let fail_above = org.faults.bulk_fail_above_records;
    let job = org
        .jobs
        .get_mut(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    if matches!(job.state.as_str(), "UploadComplete" | "InProgress")
        && (query || job.outcome.is_some())
    {
        if job.polls_left > 0 {
            job.polls_left -= 1;
            job.state = "InProgress".into();
        } else if job.error.is_some() {
            job.state = "Failed".into();
        } else if query && fail_above.is_some_and(|max| query_job_records(job) > max) {
            job.error = Some(RETRIES_EXHAUSTED.into());
            job.state = "Failed".into();
        } else {
            job.state = "JobComplete".into();
        }
    }
    Ok(json_response(200, &job_json(job, query)))
}

fn patch_job(state: &AppState, id: &str, body: &[u8]) -> Handled {
    let request = parse_body(body)?;
    let wanted = request["state"].as_str().unwrap_or_default().to_string();
    let mut org = state.org.lock().expect("lock");
    org.count("bulk_patch");
    let job = org
        .jobs
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    match wanted.as_str() {
        "Aborted" if matches!(job.state.as_str(), "Open" | "UploadComplete" | "InProgress") => {
            org.jobs.get_mut(id).expect("exists").state = "Aborted".into();
        }
        "UploadComplete" if job.state == "Open" => {
            let outcome = super::ingest::process(&mut org, &job);
            let j = org.jobs.get_mut(id).expect("exists");
            j.state = "UploadComplete".into();
            j.polls_left = 1;
            match outcome {
                Ok((ok, failed, unprocessed, counts)) => {
                    j.outcome = Some((ok, failed, unprocessed));
                    j.counts = counts;
                }
                Err(message) => {
                    j.outcome = Some((String::new(), String::new(), String::new()));
                    j.error = Some(message);
                }
            }
        }
        _ => {
            return Err(ApiError::new(
                400,
                "INVALIDJOBSTATE",
                format!(
                    "Cannot change state of job {id} from {} to {wanted}",
                    job.state
                ),
            ))
        }
    }
    let j = org.jobs.get(id).expect("exists");
    Ok(json_response(
        200,
        &job_json(j, job.operation.starts_with("query")),
    ))
}

fn delete_job(state: &AppState, id: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("bulk_delete");
    let job = org
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    if !matches!(
        job.state.as_str(),
        "JobComplete" | "Aborted" | "Failed" | "UploadComplete"
    ) || (job.state == "UploadComplete" && job.operation.starts_with("query"))
    {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "Error encountered when deleting the job because the job is not terminated",
        ));
    }
    org.jobs.remove(id);
    Ok(respond(204, "application/json", ""))
}

fn encode_locator(offset: usize) -> String {
    base64_encode(offset.to_string().as_bytes())
        .trim_end_matches('=')
        .to_string()
}

fn decode_locator(locator: &str) -> Option<usize> {
    base64_decode(locator)?.parse().ok()
}

enum Page {
    Rows(Vec<String>, Vec<Vec<String>>, usize, Option<String>),
    File(std::path::PathBuf, u64, Option<String>),
}

fn results_page(
    state: &AppState,
    id: &str,
    version: &str,
    query: &std::collections::HashMap<String, String>,
) -> Result<Page, ApiError> {
    let mut org = state.org.lock().expect("lock");
    org.count("bulk_results");
    let job = org
        .jobs
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    if job.version != version {
        return Err(ApiError::new(
            409,
            "INVALIDVERSION",
            format!(
                "Job {id} was created with API version {}; request its results with that version",
                job.version
            ),
        ));
    }
    if job.state != "JobComplete" {
        return Err(ApiError::new(
            400,
            "INVALIDJOBSTATE",
            format!(
                "Job {id} is {}; results are available once it is JobComplete",
                job.state
            ),
        ));
    }
    let offset = match query.get("locator") {
        None => 0,
        Some(l) => decode_locator(l)
            .ok_or_else(|| ApiError::new(400, "INVALIDLOCATOR", "invalid locator"))?,
    };
    if let Some(pages) = &job.canned {
        let (path, n) = pages
            .get(offset)
            .cloned()
            .ok_or_else(|| ApiError::new(400, "INVALIDLOCATOR", "invalid locator"))?;
        let next = (offset + 1 < pages.len()).then(|| encode_locator(offset + 1));
        return Ok(Page::File(path, n, next));
    }
    let (header, rows) = job.result.clone().unwrap_or_default();
    let max = query
        .get("maxRecords")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|&m| m > 0)
        .unwrap_or(org.bulk_page_size.max(1));
    let start = offset.min(rows.len());
    let end = (offset + max).min(rows.len());
    let next = (end < rows.len()).then(|| encode_locator(end));
    Ok(Page::Rows(
        header,
        rows[start..end].to_vec(),
        end - start,
        next,
    ))
}

async fn query_results(
    state: &AppState,
    id: &str,
    version: &str,
    query: &std::collections::HashMap<String, String>,
    gzip: bool,
) -> Response {
    match results_page(state, id, version, query) {
        Err(e) => api_error(e),
        Ok(Page::File(path, n, next)) => match tokio::fs::read(&path).await {
            Ok(body) => results_response(body, n, next, gzip),
            Err(e) => api_error(ApiError::new(500, "UNKNOWN_EXCEPTION", e.to_string())),
        },
        Ok(Page::Rows(header, page, count, next)) => {
            let mut body = Vec::new();
            if count > 0 {
                body.extend(
                    header
                        .iter()
                        .map(|h| wire::quote(h))
                        .collect::<Vec<_>>()
                        .join(",")
                        .as_bytes(),
                );
                body.push(b'\n');
                for row in &page {
                    body.extend(row.join(",").as_bytes());
                    body.push(b'\n');
                }
            }
            let body = {
                let mut org = state.org.lock().expect("lock");
                let object = org
                    .jobs
                    .get(id)
                    .map(|j| j.object.clone())
                    .unwrap_or_default();
                corrupt_page(&mut org, &object, body, true)
            };
            results_response(body, count as u64, next, gzip)
        }
    }
}

fn results_response(body: Vec<u8>, count: u64, next: Option<String>, gzip: bool) -> Response {
    let (body, encoding) = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&body).expect("in memory");
        (encoder.finish().expect("in memory"), Some("gzip"))
    } else {
        (body, None)
    };
    let mut r = respond(200, "text/csv", body);
    let h = r.headers_mut();
    h.insert("Sforce-NumberOfRecords", HeaderValue::from(count));
    h.insert(
        "Sforce-Locator",
        HeaderValue::from_str(next.as_deref().unwrap_or("null")).expect("ascii"),
    );
    if let Some(e) = encoding {
        h.insert("Content-Encoding", HeaderValue::from_static(e));
    }
    r
}

fn result_pages(state: &AppState, id: &str, version: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("bulk_result_pages");
    if version.parse::<f64>().unwrap_or(0.0) < 58.0 {
        return Err(ApiError::new(
            404,
            "NOT_FOUND",
            "resultPages needs API version 58.0 or later",
        ));
    }
    let job = org
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    let pages: Vec<Value> = match (&job.result, &job.canned) {
        (_, Some(p)) => (0..p.len()).take(5).map(|i| json!({ "resultUrl": format!("/services/data/v{version}/jobs/query/{id}/results?locator={}", encode_locator(i)) })).collect(),
        (Some((_, rows)), _) => {
            let size = org.bulk_page_size.max(1);
            (0..rows.len().div_ceil(size).max(1))
                .take(5)
                .map(|i| json!({ "resultUrl": format!("/services/data/v{version}/jobs/query/{id}/results?locator={}&maxRecords={size}", encode_locator(i * size)) }))
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(json_response(
        200,
        &json!({ "resultPages": pages, "nextRecordsUrl": null, "done": true }),
    ))
}

fn create_ingest_job(state: &AppState, body: &[u8], version: &str) -> Handled {
    let request = parse_body(body)?;
    let operation = request["operation"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !matches!(
        operation.as_str(),
        "insert" | "update" | "upsert" | "delete"
    ) {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!("InvalidJob : Invalid operation {operation}"),
        ));
    }
    let mut org = state.org.lock().expect("lock");
    org.count("ingest_create");
    let object = org
        .object(request["object"].as_str().unwrap_or_default())?
        .clone();
    let external_id = request["externalIdFieldName"].as_str().map(str::to_string);
    if operation == "upsert" {
        let ok = external_id
            .as_deref()
            .and_then(|e| object.field(e))
            .is_some_and(|f| f.external_id || f.name == "Id");
        if !ok {
            return Err(ApiError::new(400, "INVALIDJOB", format!("InvalidJob : Field name provided, {}, is not an External ID or indexed field for {}", external_id.unwrap_or_default(), object.name)));
        }
    }
    let id = org.new_id("750");
    let created = org.tick();
    let job = Job {
        id: id.clone(),
        operation,
        object: object.name.clone(),
        state: "Open".into(),
        version: version.to_string(),
        created,
        polls_left: 1,
        error: None,
        result: None,
        canned: None,
        external_id: external_id.map(|e| object.field(&e).map(|f| f.name.clone()).unwrap_or(e)),
        upload: None,
        outcome: None,
        counts: (0, 0),
    };
    let info = job_json(&job, false);
    org.jobs.insert(id, job);
    Ok(json_response(200, &info))
}

fn upload(state: &AppState, id: &str, body: &[u8]) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("ingest_upload");
    let job = org
        .jobs
        .get_mut(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    if job.state != "Open" {
        return Err(ApiError::new(
            400,
            "INVALIDJOBSTATE",
            format!("Job {id} is not Open"),
        ));
    }
    if job.upload.is_some() {
        return Err(ApiError::new(400, "INVALIDJOBSTATE", "Found multiple contents for job: <".to_string() + id + ">, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a given Job."));
    }
    if body.len() > 150_000_000 {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "The upload is larger than 150 MB",
        ));
    }
    job.upload = Some(body.to_vec());
    Ok(respond(201, "text/plain", ""))
}

fn ingest_results(state: &AppState, id: &str, which: &str) -> Handled {
    let mut org = state.org.lock().expect("lock");
    org.count("ingest_results");
    let job = org
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("Job {id} not found")))?;
    let (ok, failed, unprocessed) = job.outcome.clone().unwrap_or_default();
    Ok(respond(
        200,
        "text/csv",
        match which {
            "successfulResults" => ok,
            "failedResults" => failed,
            _ => unprocessed,
        },
    ))
}

fn collections_upsert(state: &AppState, object: &str, external_id: &str, body: &[u8]) -> Handled {
    let request = parse_body(body)?;
    let records = request["records"].as_array().cloned().unwrap_or_default();
    if records.len() > 200 {
        return Err(ApiError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ));
    }
    let mut org = state.org.lock().expect("lock");
    org.count("collections");
    let def = org.object(object)?.clone();
    let key = def.field(external_id).filter(|f| f.external_id).ok_or_else(|| {
        ApiError::new(400, "INVALID_FIELD", format!("Field name provided, {external_id} is not an External ID or indexed field for {}", def.name))
    })?.name.clone();
    let mut results = Vec::new();
    for record in records {
        let outcome = super::ingest::upsert_json(&mut org, &def, &key, &record);
        results.push(match outcome {
            Ok((id, created)) => json!({ "id": id, "success": true, "errors": [], "created": created }),
            Err((code, message, fields)) => json!({ "success": false, "errors": [{ "statusCode": code, "message": message, "fields": fields }] }),
        });
    }
    org.persist(&def.name);
    Ok(json_response(200, &Value::Array(results)))
}

/// Every `/__emulator/…` request (no auth: a test and demo control surface).
fn admin(state: &AppState, method: Method, path: &str, query: &str, body: &[u8]) -> Response {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut org = state.org.lock().expect("lock");
    let result: Handled = match (method, parts.as_slice()) {
        (Method::GET, ["stats"]) => Ok(json_response(200, &json!(org.stats))),
        (Method::POST, ["faults"]) => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(given)) => {
                let mut merged =
                    serde_json::to_value(FaultsView::from(&org.faults)).unwrap_or(json!({}));
                for (k, v) in given {
                    // The fault's old name.
                    let k = if k == "limit_exceeded_calls" {
                        "concurrent_limit_calls".to_string()
                    } else {
                        k
                    };
                    merged[k] = v;
                }
                match serde_json::from_value::<Faults>(merged) {
                    Ok(f) => {
                        org.faults = f;
                        Ok(respond(204, "application/json", ""))
                    }
                    Err(e) => Err(ApiError::new(400, "BAD_FAULT", e.to_string())),
                }
            }
            _ => Err(ApiError::new(400, "BAD_FAULT", "expected a JSON object")),
        },
        (Method::GET, ["limits"]) => Ok(json_response(200, &json!(org.allowance))),
        (Method::POST, ["limits"]) => match serde_json::from_slice::<LimitsUpdate>(body) {
            Ok(update) => {
                if let Some(max) = update.daily_api_requests {
                    org.allowance.max = max;
                }
                if let Some(used) = update.used {
                    org.allowance.used = used;
                }
                Ok(json_response(200, &json!(org.allowance)))
            }
            Err(e) => Err(ApiError::new(400, "BAD_LIMITS", e.to_string())),
        },
        (Method::DELETE, ["faults"]) => {
            org.faults = Faults::default();
            Ok(respond(204, "application/json", ""))
        }
        (Method::GET, ["objects", object, "records"]) => {
            org.object(object).map(|d| d.name.clone()).map(|name| {
                json_response(
                    200,
                    &json!(org.records.get(&name).cloned().unwrap_or_default()),
                )
            })
        }
        (m @ (Method::PUT | Method::POST), ["objects", object, "records"]) => {
            match serde_json::from_slice::<Vec<Record>>(body) {
                Ok(rows) => org
                    .upsert_admin(object, rows, m == Method::PUT)
                    .map(|n| json_response(200, &json!({ "written": n }))),
                Err(e) => Err(ApiError::new(400, "JSON_PARSER_ERROR", e.to_string())),
            }
        }
        (Method::DELETE, ["objects", object, "records", id]) => {
            let name = org.object(object).map(|d| d.name.clone());
            name.and_then(|name| {
                let index = org
                    .records
                    .get(&name)
                    .and_then(|rs| {
                        rs.iter()
                            .position(|r| r.get("Id").and_then(Value::as_str) == Some(id))
                    })
                    .ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("no record {id}")))?;
                let at = org.tick();
                org.mark_deleted(&name, index, at);
                org.persist(&name);
                Ok(respond(204, "application/json", ""))
            })
        }
        (Method::PATCH, ["objects", object, "records", id]) => {
            let touch = url_decode_pairs(query)
                .get("touch")
                .is_none_or(|t| t != "false");
            match serde_json::from_slice::<Record>(body) {
                Ok(values) => org
                    .patch_admin(object, id, values, touch)
                    .map(|()| respond(204, "application/json", "")),
                Err(e) => Err(ApiError::new(400, "JSON_PARSER_ERROR", e.to_string())),
            }
        }
        (Method::GET, ["clock"]) => Ok(clock_json(&org)),
        (Method::POST, ["clock"]) => match serde_json::from_slice::<ClockUpdate>(body) {
            Ok(ClockUpdate { advance_days }) if advance_days >= 0.0 && advance_days.is_finite() => {
                org.clock_offset += (advance_days * super::org::DAY_MS as f64).round() as i64;
                org.purge_recycle_bin();
                Ok(clock_json(&org))
            }
            Ok(_) => Err(ApiError::new(
                400,
                "BAD_CLOCK",
                "advance_days must be a number of days, 0 or more (the clock never goes back)",
            )),
            Err(e) => Err(ApiError::new(400, "BAD_CLOCK", e.to_string())),
        },
        _ => Err(ApiError::new(404, "NOT_FOUND", "unknown admin resource")),
    };
    result.unwrap_or_else(api_error)
}

/// `POST /__emulator/clock`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockUpdate {
    advance_days: f64,
}

/// `{"now": "<ISO-8601 UTC>"}`: the emulated now.
fn clock_json(org: &Org) -> Response {
    json_response(200, &json!({ "now": wire::format_datetime(org.now()) }))
}

/// `POST /__emulator/limits`: either key may be left out.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsUpdate {
    daily_api_requests: Option<u64>,
    used: Option<u64>,
}

/// Faults as JSON (to merge partial updates).
#[derive(serde::Serialize)]
struct FaultsView {
    expire_tokens_after_calls: Option<u64>,
    concurrent_limit_calls: u64,
    server_error_calls: u64,
    status: Option<u16>,
    fail_next_query_job: Option<String>,
    bulk_fail_above_records: Option<u64>,
    slow_job_polls: u32,
    fail_ingest_rows_matching: Option<Value>,
    corrupt_page: Option<PageFault>,
}

impl From<&Faults> for FaultsView {
    fn from(f: &Faults) -> Self {
        FaultsView {
            expire_tokens_after_calls: f.expire_tokens_after_calls,
            concurrent_limit_calls: f.concurrent_limit_calls,
            server_error_calls: f.server_error_calls,
            status: f.status,
            fail_next_query_job: f.fail_next_query_job.clone(),
            bulk_fail_above_records: f.bulk_fail_above_records,
            slow_job_polls: f.slow_job_polls,
            fail_ingest_rows_matching: f
                .fail_ingest_rows_matching
                .as_ref()
                .map(|r| json!({ "field": r.field, "value": r.value, "error": r.error })),
            corrupt_page: f.corrupt_page.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00Dcx0000000001!test";

    /// A seeded org behind the dispatcher, with one live access token.
    fn app() -> AppState {
        let mut org = Org {
            bulk_page_size: 50_000,
            ..Org::default()
        };
        let config = crate::EmulatorConfig {
            seed: true,
            ..crate::EmulatorConfig::default()
        };
        crate::load_objects(&mut org, &config).unwrap();
        org.tokens.insert(TOKEN.into());
        AppState {
            org: Arc::new(Mutex::new(org)),
            credentials: Arc::new(OrgCredentials::default()),
            base_url: Arc::new(Mutex::new("http://127.0.0.1:1".into())),
        }
    }

    struct Answer {
        status: u16,
        headers: HeaderMap,
        text: String,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
    }

    async fn call(state: &AppState, method: Method, uri: &str, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        );
        let response = dispatch(
            State(state.clone()),
            method,
            uri.parse().unwrap(),
            headers,
            Bytes::from(body.to_string()),
        )
        .await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(state: &AppState, uri: &str) -> Answer {
        call(state, Method::GET, uri, "").await
    }

    async fn create_job(state: &AppState, soql: &str) -> Answer {
        let body = json!({ "operation": "queryAll", "query": soql }).to_string();
        call(
            state,
            Method::POST,
            "/services/data/v62.0/jobs/query",
            &body,
        )
        .await
    }

    /// Polls a query job until it is no longer queued or running.
    async fn finish(state: &AppState, id: &str) -> Value {
        for _ in 0..10 {
            let info = get(state, &format!("/services/data/v62.0/jobs/query/{id}"))
                .await
                .json();
            if !matches!(
                info["state"].as_str(),
                Some("UploadComplete" | "InProgress")
            ) {
                return info;
            }
        }
        panic!("job {id} never finished");
    }

    #[tokio::test]
    async fn the_daily_allowance_counts_data_calls_and_refuses_when_spent() {
        let state = app();
        let post = |body: Value| {
            let state = state.clone();
            async move {
                call(
                    &state,
                    Method::POST,
                    "/__emulator/limits",
                    &body.to_string(),
                )
                .await
            }
        };
        assert_eq!(
            get(&state, "/__emulator/limits").await.json(),
            json!({"daily_api_requests": 100000, "used": 0})
        );
        let first = get(&state, "/services/data/v62.0/sobjects").await;
        assert_eq!(
            first.header("Sforce-Limit-Info"),
            Some("api-usage=1/100000")
        );
        let limits = get(&state, "/services/data/v62.0/limits").await;
        assert_eq!(
            limits.header("Sforce-Limit-Info"),
            Some("api-usage=2/100000")
        );
        let limits = limits.json();
        assert_eq!(
            limits["DailyApiRequests"],
            json!({"Max": 100000, "Remaining": 99998})
        );
        assert!(limits["DailyBulkV2QueryJobs"]["Max"].is_number());
        // Token calls and the versions list do not count.
        let versions = get(&state, "/services/data").await;
        assert_eq!(versions.status, 200);
        assert_eq!(versions.header("Sforce-Limit-Info"), None);
        assert_eq!(
            post(json!({"daily_api_requests": 10})).await.json(),
            json!({"daily_api_requests": 10, "used": 2})
        );
        assert_eq!(
            post(json!({"used": 9})).await.json(),
            json!({"daily_api_requests": 10, "used": 9})
        );
        let last = get(&state, "/services/data/v62.0/limits").await;
        assert_eq!(last.status, 200);
        assert_eq!(last.header("Sforce-Limit-Info"), Some("api-usage=10/10"));
        assert_eq!(
            last.json()["DailyApiRequests"],
            json!({"Max": 10, "Remaining": 0})
        );
        for _ in 0..2 {
            let refused = get(&state, "/services/data/v62.0/sobjects").await;
            assert_eq!(refused.status, 403);
            assert_eq!(
                refused.json(),
                json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                        "message": "TotalRequests Limit exceeded."}])
            );
            assert_eq!(refused.header("Sforce-Limit-Info"), Some("api-usage=10/10"));
        }
        assert_eq!(get(&state, "/services/data").await.status, 200);
        let token = call(
            &state,
            Method::POST,
            "/services/oauth2/token?grant_type=client_credentials&client_id=cxlake-demo-client&client_secret=cxlake-demo-secret",
            "",
        )
        .await;
        assert_eq!(token.status, 200, "{}", token.text);
        // Lowering the used count (or raising Max) lifts the refusal; Remaining never goes negative.
        post(json!({"used": 20})).await;
        assert_eq!(get(&state, "/__emulator/limits").await.json()["used"], 20);
        post(json!({"daily_api_requests": 30})).await;
        let again = get(&state, "/services/data/v62.0/limits").await;
        assert_eq!(
            again.json()["DailyApiRequests"],
            json!({"Max": 30, "Remaining": 9})
        );
        post(json!({"daily_api_requests": 5})).await;
        assert_eq!(post(json!({"bogus": 1})).await.status, 400);
        assert_eq!(
            get(&state, "/services/data/v62.0/sobjects").await.status,
            403
        );
        post(json!({"used": 0})).await;
        let ok = get(&state, "/services/data/v62.0/sobjects").await;
        assert_eq!(
            (ok.status, ok.header("Sforce-Limit-Info")),
            (200, Some("api-usage=1/5"))
        );
    }

    fn minute(ms: i64) -> i64 {
        ms.div_euclid(60_000) * 60_000
    }

    fn sf_date(ms: i64) -> String {
        wire::rest_datetime(&stamp(ms))
    }

    async fn advance(state: &AppState, days: f64) -> i64 {
        let body = json!({ "advance_days": days }).to_string();
        let answer = call(state, Method::POST, "/__emulator/clock", &body).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        wire::parse_datetime(answer.json()["now"].as_str().unwrap()).unwrap()
    }

    async fn deleted(state: &AppState, object: &str, start: i64, end: i64) -> Answer {
        get(
            state,
            &format!(
                "/services/data/v62.0/sobjects/{object}/deleted/?start={}&end={}",
                // `+` escaped, as a client should; an unescaped one is tolerated too.
                sf_date(start).replace('+', "%2B"),
                sf_date(end)
            ),
        )
        .await
    }

    async fn account_ids(state: &AppState) -> Vec<String> {
        get(
            state,
            "/services/data/v62.0/queryAll?q=SELECT+Id+FROM+Account",
        )
        .await
        .json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn the_clock_moves_modstamps_and_empties_the_recycle_bin_after_15_days() {
        let state = app();
        let real = chrono::Utc::now().timestamp_millis();
        let now = wire::parse_datetime(
            get(&state, "/__emulator/clock").await.json()["now"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!((now - real).abs() < 60_000);
        let seeded_deleted = crate::model::make_id("001", 8);
        assert!(
            account_ids(&state).await.contains(&seeded_deleted),
            "records seeded deleted count as deleted at start, not 30 days ago"
        );
        let now = advance(&state, 2.0).await;
        assert!(now - real >= 2 * 86_400_000);
        let created = call(
            &state,
            Method::POST,
            "/services/data/v62.0/sobjects/Account",
            r#"{"Name": "Doomed"}"#,
        )
        .await
        .json();
        let id = created["id"].as_str().unwrap().to_string();
        let record = get(
            &state,
            &format!("/services/data/v62.0/sobjects/Account/{id}"),
        )
        .await
        .json();
        let created_at = wire::parse_datetime(record["CreatedDate"].as_str().unwrap()).unwrap();
        assert!(created_at >= now, "CreatedDate follows the emulated clock");
        let gone = call(
            &state,
            Method::DELETE,
            &format!("/services/data/v62.0/sobjects/Account/{id}"),
            "",
        )
        .await;
        assert_eq!(gone.status, 204);
        let deleted_at = state.org.lock().unwrap().deleted_at[&("Account".to_string(), id.clone())];
        // The delete log covers up to the current minute: a minute later it reports the record.
        let now = advance(&state, 1.0 / 1440.0).await;
        let earliest = minute(now - 15 * 86_400_000);
        let answer = deleted(&state, "Account", earliest, now + 3_600_000).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let answer = answer.json();
        assert_eq!(answer["earliestDateAvailable"], sf_date(earliest));
        assert_eq!(answer["latestDateCovered"], sf_date(minute(now)));
        assert!(
            answer["deletedRecords"]
                .as_array()
                .unwrap()
                .contains(&json!({ "id": id, "deletedDate": sf_date(deleted_at) })),
            "{answer}"
        );
        assert!(sf_date(deleted_at).ends_with("+0000") && sf_date(deleted_at).contains('.'));
        // A window after the deletion reports nothing.
        let later = deleted(&state, "Account", deleted_at + 1, now).await.json();
        assert!(!later["deletedRecords"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id));
        // 14 days on, still in the bin; past 15 days, purged from queryAll and getDeleted.
        advance(&state, 14.0).await;
        assert!(account_ids(&state).await.contains(&id));
        let now = advance(&state, 1.1).await;
        let ids = account_ids(&state).await;
        assert!(
            !ids.contains(&id) && !ids.contains(&seeded_deleted),
            "purged"
        );
        assert_eq!(ids.len(), 49);
        let earliest = minute(now - 15 * 86_400_000);
        let too_early = deleted(&state, "Account", earliest - 60_000, now).await;
        assert_eq!(too_early.status, 400);
        assert_eq!(
            too_early.json(),
            json!([{"errorCode": "INVALID_REPLICATION_DATE",
                    "message": "startDate before org replication enabled date"}])
        );
        let answer = deleted(&state, "Account", earliest, now).await.json();
        assert_eq!(answer["deletedRecords"], json!([]));
        assert_eq!(answer["earliestDateAvailable"], sf_date(earliest));
    }

    #[tokio::test]
    async fn get_deleted_refuses_bad_windows_and_a_young_org_starts_at_its_creation() {
        let state = app();
        let now = state.org.lock().unwrap().now();
        let started = {
            let mut org = state.org.lock().unwrap();
            // An org created 3 days ago covers no more than those 3 days.
            org.started = now - 3 * 86_400_000 + 30_000;
            org.started
        };
        let answer = deleted(&state, "Account", minute(started), now).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(
            answer.json()["earliestDateAvailable"],
            sf_date(minute(started))
        );
        assert_eq!(
            deleted(&state, "Account", minute(started) - 1, now)
                .await
                .status,
            400
        );
        for (start, end) in [(now - 60_000, now - 60_000), (now - 60_000, now - 120_000)] {
            let bad = deleted(&state, "Account", start, end).await;
            assert_eq!(bad.status, 400);
            assert_eq!(bad.json()[0]["errorCode"], "INVALID_REPLICATION_DATE");
        }
        for query in [
            "start=yesterday&end=2030-01-01T00:00:00Z",
            "end=2030-01-01T00:00:00Z",
            "",
        ] {
            let bad = get(
                &state,
                &format!("/services/data/v62.0/sobjects/Account/deleted/?{query}"),
            )
            .await;
            assert_eq!(bad.status, 400, "{query}");
            assert_eq!(bad.json()[0]["errorCode"], "INVALID_REPLICATION_DATE");
        }
        // More than 30 days is fine; an unescaped `+` in an offset is read as one.
        let wide = get(
            &state,
            &format!(
                "/services/data/v62.0/sobjects/Account/deleted/?start={}&end=2099-01-01T00:00:00+00:00",
                sf_date(minute(started)).replace('+', "%2B")
            ),
        )
        .await;
        assert_eq!(wide.status, 200, "{}", wide.text);
        assert_eq!(
            deleted(&state, "Nope__c", now - 60_000, now).await.status,
            400
        );
    }

    #[tokio::test]
    async fn admin_patch_can_leave_modstamps_alone() {
        let state = app();
        let id = crate::model::make_id("001", 1);
        let read = |state: AppState| {
            let id = id.clone();
            async move {
                get(
                    &state,
                    &format!("/services/data/v62.0/sobjects/Account/{id}"),
                )
                .await
                .json()
            }
        };
        let before = read(state.clone()).await;
        let uri = format!("/__emulator/objects/Account/records/{id}");
        let silent = call(
            &state,
            Method::PATCH,
            &format!("{uri}?touch=false"),
            r#"{"Rating": "Cold"}"#,
        )
        .await;
        assert_eq!(silent.status, 204, "{}", silent.text);
        let after = read(state.clone()).await;
        assert_eq!(after["Rating"], "Cold");
        for stamp in ["SystemModstamp", "LastModifiedDate"] {
            assert_eq!(after[stamp], before[stamp]);
        }
        let touched = call(&state, Method::PATCH, &uri, r#"{"Rating": "Hot"}"#).await;
        assert_eq!(touched.status, 204);
        let after = read(state.clone()).await;
        assert_eq!(after["Rating"], "Hot");
        assert_ne!(after["SystemModstamp"], before["SystemModstamp"]);
        let bad = call(&state, Method::PATCH, &uri, r#"{"Nope__c": 1}"#).await;
        assert_eq!(bad.status, 400);
        let missing = call(
            &state,
            Method::PATCH,
            "/__emulator/objects/Account/records/001x",
            "{}",
        )
        .await;
        assert_eq!(missing.status, 404);
        let back = call(
            &state,
            Method::POST,
            "/__emulator/clock",
            r#"{"advance_days": -1}"#,
        )
        .await;
        assert_eq!(back.status, 400);
    }

    #[tokio::test]
    async fn formula_fields_are_described_computed_and_refused_on_writes() {
        let state = app();
        let describe = get(
            &state,
            "/services/data/v62.0/sobjects/CX_Interaction__c/describe",
        )
        .await
        .json();
        let field = describe["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "Handle_Minutes__c")
            .unwrap()
            .clone();
        assert_eq!(field["calculated"], true);
        assert_eq!(field["calculatedFormula"], "Handle_Seconds__c / 60");
        assert_eq!(
            (field["createable"].clone(), field["updateable"].clone()),
            (json!(false), json!(false))
        );
        let plain = describe["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "Name")
            .unwrap()
            .clone();
        assert_eq!(plain["calculated"], false);
        {
            let org = state.org.lock().unwrap();
            for r in &org.records["CX_Interaction__c"] {
                match r["Handle_Seconds__c"].as_f64() {
                    None => assert!(r["Handle_Minutes__c"].is_null()),
                    Some(s) => {
                        let m = r["Handle_Minutes__c"].as_f64().unwrap();
                        assert!((m - s / 60.0).abs() <= 0.005 + 1e-9, "{s} {m}");
                    }
                }
            }
        }
        let refused = call(
            &state,
            Method::POST,
            "/services/data/v62.0/sobjects/CX_Interaction__c",
            r#"{"Name": "X", "Handle_Minutes__c": 3}"#,
        )
        .await;
        assert_eq!(refused.status, 400);
        assert_eq!(
            refused.json()[0]["errorCode"],
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        );
        let created = call(
            &state,
            Method::POST,
            "/services/data/v62.0/sobjects/CX_Interaction__c",
            r#"{"Name": "X", "Handle_Seconds__c": 90}"#,
        )
        .await
        .json();
        let id = created["id"].as_str().unwrap();
        let record = get(
            &state,
            &format!(
                "/services/data/v62.0/sobjects/CX_Interaction__c/{id}?fields=Handle_Minutes__c"
            ),
        )
        .await
        .json();
        assert_eq!(record["Handle_Minutes__c"], 1.5, "recomputed on write");
        let collections = call(
            &state,
            Method::PATCH,
            "/services/data/v62.0/composite/sobjects/CX_Interaction__c/External_Key__c",
            r#"{"records": [{"attributes": {"type": "CX_Interaction__c"}, "External_Key__c": "EXT-1", "Handle_Minutes__c": 2}]}"#,
        )
        .await;
        assert_eq!(collections.status, 200);
        assert_eq!(
            collections.json()[0]["errors"][0]["statusCode"],
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        );
    }

    #[tokio::test]
    async fn refresh_tokens_are_url_safe_and_work() {
        let state = app();
        let login = call(
            &state,
            Method::POST,
            "/services/oauth2/token",
            "grant_type=password&client_id=cxlake-demo-client&client_secret=cxlake-demo-secret\
             &username=integration%40cxlake.demo&password=cxlake-demo-password",
        )
        .await;
        assert_eq!(login.status, 200, "{}", login.text);
        let refresh = login.json()["refresh_token"].as_str().unwrap().to_string();
        assert!(refresh
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
        let again = call(
            &state,
            Method::POST,
            "/services/oauth2/token",
            &format!("grant_type=refresh_token&client_id=cxlake-demo-client&client_secret=cxlake-demo-secret&refresh_token={refresh}"),
        )
        .await;
        assert_eq!(again.status, 200, "{}", again.text);
    }

    #[test]
    fn decoding_of_queries_forms_and_paths() {
        let pairs = url_decode_pairs("q=SELECT+Id+FROM+A%20B&x&a=1&a=%2B2&=&bad=%zz");
        assert_eq!(pairs["q"], "SELECT Id FROM A B");
        assert_eq!(pairs["x"], "");
        assert_eq!(pairs["a"], "+2", "the last value wins");
        assert_eq!(pairs["bad"], "%zz");
        assert_eq!(decode_path_segment("EXT+1%20a%C3%A9"), "EXT+1 a\u{e9}");
        assert_eq!(form_value("my+id%2B"), "my id+");
    }

    #[test]
    fn seeded_decimals_carry_at_most_their_scale() {
        let state = app();
        let org = state.org.lock().unwrap();
        for (object, records) in &org.records {
            let def = org.object(object).unwrap();
            for field in def
                .fields
                .iter()
                .filter(|f| matches!(f.ftype.as_str(), "double" | "currency" | "percent"))
            {
                let Some(scale) = field.raw.get("scale").and_then(Value::as_u64) else {
                    continue;
                };
                for r in records {
                    if let Some(x) = r.get(&field.name).and_then(Value::as_f64) {
                        let text = x.to_string();
                        let digits = text.split_once('.').map_or(0, |(_, f)| f.len());
                        assert!(
                            digits as u64 <= scale || text.contains('e'),
                            "{object}.{} = {text} (scale {scale})",
                            field.name
                        );
                    }
                }
            }
        }
    }

    async fn faults(state: &AppState, body: Value) {
        let answer = call(state, Method::POST, "/__emulator/faults", &body.to_string()).await;
        assert_eq!(answer.status, 204, "{}", answer.text);
    }

    #[tokio::test]
    async fn concurrency_limit_answers_clear_after_n_calls() {
        let state = app();
        faults(&state, json!({ "concurrent_limit_calls": 2 })).await;
        for _ in 0..2 {
            let refused = get(&state, "/services/data/v62.0/limits").await;
            assert_eq!(refused.status, 403);
            assert_eq!(
                refused.json(),
                json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                        "message": "ConcurrentPerOrgLongTxn Limit exceeded."}])
            );
            assert_eq!(
                refused.header("Sforce-Limit-Info"),
                Some("api-usage=0/100000")
            );
        }
        assert_eq!(get(&state, "/services/data/v62.0/limits").await.status, 200);
        // The old name still sets the same fault.
        faults(&state, json!({ "limit_exceeded_calls": 1 })).await;
        assert_eq!(get(&state, "/services/data/v62.0/limits").await.status, 403);
        assert_eq!(get(&state, "/services/data/v62.0/limits").await.status, 200);
    }

    #[tokio::test]
    async fn query_jobs_over_the_record_threshold_fail_while_it_is_set() {
        let state = app();
        // 50 Accounts seeded (one deleted: queryAll sees it), 5 case statuses; Case has 80.
        faults(&state, json!({ "bulk_fail_above_records": 50 })).await;
        for _ in 0..2 {
            let job = create_job(&state, "SELECT Id FROM Case").await.json();
            let info = finish(&state, job["id"].as_str().unwrap()).await;
            assert_eq!(info["state"], "Failed", "persistent, not once: {info}");
            assert_eq!(
                info["errorMessage"],
                "Retried more than 15 times. Please see the Bulk API troubleshooting documentation."
            );
        }
        let job = create_job(&state, "SELECT Id FROM Account").await.json();
        let info = finish(&state, job["id"].as_str().unwrap()).await;
        assert_eq!(info["state"], "JobComplete", "at the threshold: {info}");
        assert_eq!(info["numberRecordsProcessed"], 50);
        let view = get(&state, "/__emulator/faults").await;
        assert_eq!(view.status, 404, "faults are write-only");
        faults(&state, json!({ "bulk_fail_above_records": null })).await;
        let job = create_job(&state, "SELECT Id FROM Case").await.json();
        let info = finish(&state, job["id"].as_str().unwrap()).await;
        assert_eq!(info["state"], "JobComplete");
        // The one-shot fault still fails exactly one job.
        faults(&state, json!({ "fail_next_query_job": "boom" })).await;
        let job = create_job(&state, "SELECT Id FROM Case").await.json();
        let info = finish(&state, job["id"].as_str().unwrap()).await;
        assert_eq!(
            (info["state"].as_str(), info["errorMessage"].as_str()),
            (Some("Failed"), Some("boom"))
        );
        let job = create_job(&state, "SELECT Id FROM Case").await.json();
        assert_eq!(
            finish(&state, job["id"].as_str().unwrap()).await["state"],
            "JobComplete"
        );
    }

    #[tokio::test]
    async fn bulk_refuses_objects_marked_not_bulk_queryable() {
        let state = app();
        let refused = create_job(&state, "SELECT Id, MasterLabel FROM CaseStatus").await;
        assert_eq!(refused.status, 400);
        assert_eq!(
            refused.json(),
            json!([{"errorCode": "INVALIDENTITY",
                    "message": "Entity 'CaseStatus' is not supported by the Bulk API."}])
        );
        let rest = get(
            &state,
            "/services/data/v62.0/queryAll?q=SELECT+Id,MasterLabel,IsClosed+FROM+CaseStatus",
        )
        .await;
        assert_eq!(rest.status, 200);
        let labels: Vec<Value> = rest.json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["MasterLabel"].clone())
            .collect();
        assert_eq!(
            labels,
            json!(["New", "Working", "Escalated", "On Hold", "Closed"])
                .as_array()
                .unwrap()
                .clone()
        );
        let describe = get(&state, "/services/data/v62.0/sobjects/CaseStatus/describe")
            .await
            .json();
        assert_eq!(describe["keyPrefix"], "01J");
        assert!(describe.get("bulkQueryable").is_none(), "an emulator key");
        let global = get(&state, "/services/data/v62.0/sobjects").await.json();
        assert!(global["sobjects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o.get("bulkQueryable").is_none()));
        let ok = create_job(&state, "SELECT Id FROM Account").await;
        assert_eq!(ok.status, 200, "{}", ok.text);
    }
}
