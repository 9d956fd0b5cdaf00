//! Salesforce: OAuth, REST and Bulk API 2.0 queries, describe, and normalization of both
//! APIs' formats into one canonical Arrow form (reference: salesforce-api.md).

pub mod auth;
pub mod budget;
pub mod bulk;
pub mod client;
pub mod credentials;
pub mod describe;
pub mod ingest;
pub mod normalize;
pub mod rest;

pub use client::{Client, ClientConfig};

/// Salesforce errors. None of them carries a secret: URLs lose their query strings and
/// token-endpoint errors carry only Salesforce's `error`/`error_description`.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// Settings or credentials are unusable.
    #[error("{0}")]
    Config(String),
    /// Loading credentials failed.
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
    /// The token endpoint refused the login.
    #[error("Salesforce login ({flow} flow) at {url} failed: {error}: {description}")]
    Auth {
        /// Flow name.
        flow: &'static str,
        /// Token URL.
        url: String,
        /// OAuth `error`.
        error: String,
        /// OAuth `error_description`.
        description: String,
    },
    /// A transport error (connect, TLS, timeout, body).
    #[error("{url}: {message}")]
    Http {
        /// URL without query.
        url: String,
        /// The error chain.
        message: String,
    },
    /// The API answered with an error status.
    #[error("{url}: HTTP {status} {code}: {message}")]
    Api {
        /// Status code.
        status: u16,
        /// URL without query.
        url: String,
        /// Salesforce `errorCode`.
        code: String,
        /// Salesforce `message`.
        message: String,
    },
    /// A response did not have the documented shape.
    #[error("{0}")]
    Protocol(String),
    /// A Bulk job ended Failed or Aborted.
    #[error("Bulk API job {id} for {object} ended {state}: {message}")]
    JobFailed {
        /// Job id.
        id: String,
        /// Object.
        object: String,
        /// Final state.
        state: String,
        /// `errorMessage`.
        message: String,
    },
    /// Values that do not fit their fields.
    #[error(transparent)]
    Normalize(#[from] normalize::NormalizeError),
    /// The run reached its share of the org's daily API allowance (or the allowance is spent).
    #[error(transparent)]
    Budget(#[from] budget::BudgetStop),
}

impl SalesforceError {
    /// Whether this is a stop at the API budget (nothing lost; the next run resumes).
    pub fn is_budget_stop(&self) -> bool {
        matches!(self, SalesforceError::Budget(_))
    }

    /// A transport error with its cause chain, URL without the query string.
    pub fn http(url: &str, error: reqwest::Error) -> SalesforceError {
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        SalesforceError::Http {
            url: client::strip_query(url),
            message,
        }
    }
}
