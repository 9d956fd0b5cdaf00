//! The HTTP side: one reqwest client (rustls, gzip), login, and a request loop that
//! re-authenticates once on 401 `INVALID_SESSION_ID` and backs off on limit errors and
//! transient statuses (5xx, 406, 420, 429), honouring `Retry-After` (reference §4.5, §6.3).
//!
//! Transport errors (a reset, a stalled answer, a cut body) are retried under the process's
//! [`crate::net::RetryPolicy`] when a second attempt cannot apply a change twice: every method
//! but POST (GET, DELETE, and the PUT/PATCH of an upload or an upsert on an external ID), and a
//! POST only when its connection never opened. The token request is retried like a GET: a
//! second token is harmless.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::auth::{self, AuthFlow, Session, TokenError, TokenResponse};
use super::credentials::Credentials;
use super::SalesforceError;

/// How to reach and log in to an org.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Token host, e.g. `https://login.salesforce.com` or a My Domain URL.
    pub login_url: String,
    /// OAuth flow.
    pub flow: AuthFlow,
    /// API version without the `v`, e.g. `66.0`.
    pub api_version: String,
    /// Extra trusted CA (PEM file), e.g. the emulator's self-signed certificate.
    pub ca_file: Option<String>,
    /// Accept gzip responses.
    pub compression: bool,
    /// Retries and timeouts (shared with S3 and Glue).
    pub policy: crate::net::RetryPolicy,
}

/// Longest wait a `Retry-After` answer can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest time one Salesforce request may take, body included (a large Bulk results page on a
/// slow link); a stall is cut sooner by the policy's read timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// API calls made, by kind (the run summary and the API budget of push-back).
#[derive(Debug, Default)]
pub struct CallCounts {
    /// Token requests.
    pub token: AtomicU64,
    /// Data API requests (everything under `/services/data`).
    pub api: AtomicU64,
    /// Retries after limit errors or transient statuses.
    pub retries: AtomicU64,
    /// Re-logins after an expired session.
    pub relogins: AtomicU64,
}

impl CallCounts {
    /// (token, api, retries, relogins).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.token.load(Ordering::Relaxed),
            self.api.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.relogins.load(Ordering::Relaxed),
        )
    }
}

/// A logged-in (lazily) Salesforce API client.
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    credentials: Credentials,
    session: RwLock<Option<Session>>,
    counts: CallCounts,
    budget: Option<std::sync::Arc<super::budget::ApiBudget>>,
}

/// One element of a REST error body `[{"errorCode","message"}]`.
#[derive(Debug, Deserialize)]
struct ApiErrorItem {
    #[serde(default, rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// What to do with a failed response.
enum Verdict {
    Relogin,
    /// The org's daily allowance is spent: retrying spends more of what every integration shares.
    Stop,
    Retry,
    Fail,
}

impl Client {
    /// Builds the client; no network call happens until the first request.
    pub fn new(config: ClientConfig, credentials: Credentials) -> Result<Client, SalesforceError> {
        let missing = auth::missing(config.flow, &credentials);
        if !missing.is_empty() {
            return Err(SalesforceError::Config(format!(
                "the {} flow needs credential keys {} (see salesforce.credentials)",
                config.flow.name(),
                missing.join(", ")
            )));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("cxlake/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.policy.connect_timeout)
            .read_timeout(config.policy.read_timeout)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(8)
            .gzip(config.compression);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| SalesforceError::Config(format!("salesforce.ca_file {path}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                SalesforceError::Config(format!(
                    "salesforce.ca_file {path}: not a PEM certificate: {e}"
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| SalesforceError::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            config,
            credentials,
            session: RwLock::new(None),
            counts: CallCounts::default(),
            budget: None,
        })
    }

    /// Spends calls only within `budget`: a call beyond it fails with
    /// [`SalesforceError::Budget`] before it is sent, and every response's `Sforce-Limit-Info`
    /// updates it.
    pub fn with_budget(mut self, budget: std::sync::Arc<super::budget::ApiBudget>) -> Client {
        self.budget = Some(budget);
        self
    }

    /// The budget, when the client has one.
    pub fn budget(&self) -> Option<&super::budget::ApiBudget> {
        self.budget.as_deref()
    }

    /// Calls made so far.
    pub fn counts(&self) -> &CallCounts {
        &self.counts
    }

    /// The API version in use.
    pub fn api_version(&self) -> &str {
        &self.config.api_version
    }

    /// `/services/data/vXX.X` + `rest`.
    pub fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}{rest}", self.config.api_version)
    }

    async fn login(&self) -> Result<Session, SalesforceError> {
        let audience = self.config.login_url.trim_end_matches('/').to_string();
        let form = auth::token_form(self.config.flow, &self.credentials, &audience)
            .map_err(SalesforceError::Config)?;
        let url = format!("{audience}/services/oauth2/token");
        let mut attempt = 0u32;
        let (status, body) = loop {
            self.counts.token.fetch_add(1, Ordering::Relaxed);
            let answer = match self.http.post(&url).form(&form).send().await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|body| (status, body))
                }
                Err(e) => Err(e),
            };
            let reason = match answer {
                Ok((status, _)) if status.is_server_error() || status.as_u16() == 429 => {
                    status.to_string()
                }
                Ok(answer) => break answer,
                Err(e) => transport_reason(&e),
            };
            if attempt >= self.config.policy.max_retries {
                return Err(SalesforceError::Http {
                    url,
                    message: format!("{reason} (gave up after {attempt} retries)"),
                });
            }
            attempt += 1;
            self.wait(attempt, None, &url, &reason).await;
        };
        if status.is_success() {
            let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                SalesforceError::Protocol(format!("{url}: unexpected token response: {e}"))
            })?;
            return Ok(Session {
                access_token: token.access_token,
                instance_url: token.instance_url.trim_end_matches('/').to_string(),
            });
        }
        let (error, description) = match serde_json::from_slice::<TokenError>(&body) {
            Ok(e) => (e.error, e.error_description),
            Err(_) => (format!("HTTP {status}"), String::new()),
        };
        Err(SalesforceError::Auth {
            flow: self.config.flow.name(),
            url,
            error,
            description,
        })
    }

    async fn session(&self) -> Result<Session, SalesforceError> {
        if let Some(session) = self.session.read().await.as_ref() {
            return Ok(session.clone());
        }
        let mut slot = self.session.write().await;
        if let Some(session) = slot.as_ref() {
            return Ok(session.clone());
        }
        let session = self.login().await?;
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn relogin(&self, stale: &Session) -> Result<Session, SalesforceError> {
        let mut slot = self.session.write().await;
        if let Some(current) = slot.as_ref() {
            if current.access_token != stale.access_token {
                return Ok(current.clone());
            }
        }
        self.counts.relogins.fetch_add(1, Ordering::Relaxed);
        let session = self.login().await?;
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Sends a request to `path_or_url` (a path below the instance, or a full URL), with
    /// re-login and retries. `build` adds the body and headers. Non-success statuses that are
    /// not retried become [`SalesforceError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SalesforceError> {
        let mut session = self.session().await?;
        let mut relogged = false;
        let mut attempt = 0u32;
        loop {
            let url = if path_or_url.starts_with("http") {
                path_or_url.to_string()
            } else {
                format!("{}{path_or_url}", session.instance_url)
            };
            if let Some(budget) = &self.budget {
                budget.check(self.counts.api.load(Ordering::Relaxed))?;
            }
            self.counts.api.fetch_add(1, Ordering::Relaxed);
            let request = build(
                self.http
                    .request(method.clone(), &url)
                    .bearer_auth(&session.access_token),
            );
            let result = request.send().await;
            let response = match result {
                Ok(r) => r,
                Err(e)
                    if attempt < self.config.policy.max_retries
                        && (method != Method::POST || e.is_connect()) =>
                {
                    attempt += 1;
                    self.wait(attempt, None, &url, &transport_reason(&e)).await;
                    continue;
                }
                Err(e) => return Err(SalesforceError::http(&url, e)),
            };
            let status = response.status();
            if let (Some(budget), Some(usage)) = (
                &self.budget,
                response
                    .headers()
                    .get("Sforce-Limit-Info")
                    .and_then(|v| v.to_str().ok()),
            ) {
                budget.observe_header(usage);
            }
            if status.is_success() {
                return Ok(response);
            }
            let retry_after = retry_after(&response);
            let body = response.bytes().await.unwrap_or_default();
            let items: Vec<ApiErrorItem> = serde_json::from_slice(&body).unwrap_or_default();
            let code = items
                .first()
                .map(|i| i.error_code.clone())
                .unwrap_or_default();
            let message = items.first().map(|i| i.message.clone()).unwrap_or_else(|| {
                String::from_utf8_lossy(&body[..body.len().min(300)])
                    .trim()
                    .to_string()
            });
            match verdict(status, &code, &message, relogged) {
                Verdict::Stop => {
                    return Err(SalesforceError::Budget(super::budget::BudgetStop::Spent(
                        format!("HTTP {} {code}: {message}", status.as_u16()),
                    )))
                }
                Verdict::Relogin => {
                    relogged = true;
                    tracing::info!(url = %strip_query(&url), "session expired; logging in again");
                    session = self.relogin(&session).await?;
                }
                Verdict::Retry if attempt >= self.config.policy.max_retries => {
                    return Err(SalesforceError::Api {
                        status: status.as_u16(),
                        url: strip_query(&url),
                        code,
                        message: format!("{message} (gave up after {attempt} retries)"),
                    })
                }
                Verdict::Retry => {
                    attempt += 1;
                    let reason = if code.is_empty() {
                        status.to_string()
                    } else {
                        code.clone()
                    };
                    self.wait(attempt, retry_after, &url, &reason).await;
                }
                Verdict::Fail => {
                    return Err(SalesforceError::Api {
                        status: status.as_u16(),
                        url: strip_query(&url),
                        code,
                        message,
                    })
                }
            }
        }
    }

    async fn wait(&self, attempt: u32, retry_after: Option<Duration>, url: &str, reason: &str) {
        self.counts.retries.fetch_add(1, Ordering::Relaxed);
        let backoff = self.config.policy.backoff_for(attempt);
        let delay = retry_after.map_or(backoff, |wait| wait.min(MAX_RETRY_AFTER));
        tracing::warn!(url = %strip_query(url), reason, attempt, delay_ms = delay.as_millis() as u64, "retrying Salesforce call");
        tokio::time::sleep(delay).await;
    }

    /// GET a JSON document.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_or_url: &str,
    ) -> Result<T, SalesforceError> {
        self.send_json(Method::GET, path_or_url, |r| r).await
    }

    /// [`Client::send`] and the whole body: a body cut short is asked for again (a new request,
    /// retries counted) unless the method is POST, whose second attempt could apply twice.
    pub async fn send_read(
        &self,
        method: Method,
        path_or_url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Bytes, SalesforceError> {
        let mut attempt = 0u32;
        loop {
            let response = self.send(method.clone(), path_or_url, &build).await?;
            match response.bytes().await {
                Ok(body) => return Ok(body),
                Err(e) if method != Method::POST && attempt < self.config.policy.max_retries => {
                    attempt += 1;
                    let reason = format!("body: {}", transport_reason(&e));
                    self.wait(attempt, None, path_or_url, &reason).await;
                }
                Err(e) => return Err(SalesforceError::http(path_or_url, e)),
            }
        }
    }

    /// [`Client::send_read`] parsed as JSON, naming the resource on failure.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path_or_url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<T, SalesforceError> {
        let body = self.send_read(method, path_or_url, build).await?;
        parse_json(&body, path_or_url)
    }

    /// The body of a Bulk results page; a download cut short asks for the same page again
    /// (the locator names it), up to the policy's retries.
    pub async fn page_body(
        &self,
        page: super::bulk::PendingPage,
    ) -> Result<Bytes, SalesforceError> {
        let mut attempt = 0u32;
        let mut page = page;
        loop {
            let (request, response) = page.into_parts();
            match response.bytes().await {
                Ok(body) => return Ok(body),
                Err(e) if attempt < self.config.policy.max_retries => {
                    attempt += 1;
                    let reason = format!("results body: {}", transport_reason(&e));
                    self.wait(attempt, None, &request.path, &reason).await;
                    page = self.query_page(request).await?;
                }
                Err(e) => return Err(SalesforceError::http(&request.path, e)),
            }
        }
    }
}

/// A transport error in a few words, for the retry log line.
fn transport_reason(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection error"
    } else if error.is_body() || error.is_decode() {
        "body cut short"
    } else {
        "connection lost"
    };
    kind.to_string()
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, SalesforceError> {
    serde_json::from_slice(bytes).map_err(|e| {
        SalesforceError::Protocol(format!("{}: unexpected response: {e}", strip_query(what)))
    })
}

/// Reads a JSON body, naming the resource on failure.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    response: Response,
    what: &str,
) -> Result<T, SalesforceError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SalesforceError::http(what, e))?;
    parse_json(&bytes, what)
}

fn verdict(status: StatusCode, code: &str, message: &str, relogged: bool) -> Verdict {
    match status.as_u16() {
        401 if !relogged => Verdict::Relogin,
        403 if code == "REQUEST_LIMIT_EXCEEDED" && super::budget::is_daily_limit(message) => {
            Verdict::Stop
        }
        // Concurrency limits (ConcurrentRequests, ConcurrentPerOrgLongTxn) clear by themselves.
        403 if code == "REQUEST_LIMIT_EXCEEDED" => Verdict::Retry,
        406 | 420 | 429 => Verdict::Retry,
        500..=599 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(300)))
}

/// A URL without its query string (SOQL can be long and is not needed in messages).
pub fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_documented_signals() {
        let v = |s: u16, c: &str, r: bool| {
            verdict(
                StatusCode::from_u16(s).unwrap(),
                c,
                "ConcurrentPerOrgLongTxn Limit exceeded.",
                r,
            )
        };
        assert!(matches!(
            verdict(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                false
            ),
            Verdict::Stop
        ));
        assert!(matches!(
            v(401, "INVALID_SESSION_ID", false),
            Verdict::Relogin
        ));
        assert!(matches!(v(401, "INVALID_SESSION_ID", true), Verdict::Fail));
        assert!(matches!(
            v(403, "REQUEST_LIMIT_EXCEEDED", false),
            Verdict::Retry
        ));
        assert!(matches!(
            v(403, "INSUFFICIENT_ACCESS", false),
            Verdict::Fail
        ));
        assert!(matches!(v(503, "", false), Verdict::Retry));
        assert!(matches!(v(420, "", false), Verdict::Retry));
        assert!(matches!(v(400, "MALFORMED_QUERY", false), Verdict::Fail));
        assert_eq!(strip_query("https://x/q?q=SELECT"), "https://x/q");
    }
}
