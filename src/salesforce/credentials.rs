//! Salesforce credentials: from AWS Secrets Manager (JSON with the CTI adapter's keys), a JSON
//! file, or environment variables on a laptop. Values never reach logs: `Debug` masks them.

use std::fmt;

use serde::Deserialize;

/// Where credentials come from (the job's `salesforce.credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `SALESFORCE_*` environment variables.
    Env,
    /// A JSON file with the same keys as the secret.
    File(String),
    /// An AWS Secrets Manager secret (ARN or name) holding JSON.
    SecretsManager(String),
}

impl CredentialSource {
    /// Parses `env`, `file:<path>`, `secretsmanager:<name-or-arn>` or a bare secret ARN.
    pub fn parse(text: &str) -> Result<CredentialSource, String> {
        if text == "env" {
            Ok(CredentialSource::Env)
        } else if let Some(path) = text.strip_prefix("file:") {
            Ok(CredentialSource::File(path.to_string()))
        } else if let Some(id) = text.strip_prefix("secretsmanager:") {
            Ok(CredentialSource::SecretsManager(id.to_string()))
        } else if text.starts_with("arn:aws:secretsmanager:") {
            Ok(CredentialSource::SecretsManager(text.to_string()))
        } else {
            Err(format!(
                "expected \"env\", \"file:<path>\", \"secretsmanager:<name>\" or a secret ARN, got {text:?}"
            ))
        }
    }
}

/// Credentials for the four OAuth flows. JSON keys follow the Amazon Connect CTI adapter's
/// secret (`ConsumerKey`, `ConsumerSecret`, `Password`, `AccessToken` = security token), plus
/// `PrivateKey` (PEM, JWT flow), `Username` and `RefreshToken`.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    /// Connected app consumer key (OAuth client id).
    #[serde(default)]
    pub consumer_key: Option<String>,
    /// Connected app consumer secret.
    #[serde(default)]
    pub consumer_secret: Option<String>,
    /// Integration user name (may also come from the job file).
    #[serde(default)]
    pub username: Option<String>,
    /// Integration user password.
    #[serde(default)]
    pub password: Option<String>,
    /// Security token appended to the password (the CTI adapter calls it `AccessToken`).
    #[serde(default)]
    pub access_token: Option<String>,
    /// PEM private key for the JWT bearer flow.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Refresh token for the refresh-token flow.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |v: &Option<String>| if v.is_some() { "***" } else { "-" };
        f.debug_struct("Credentials")
            .field("consumer_key", &mask(&self.consumer_key))
            .field("consumer_secret", &mask(&self.consumer_secret))
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .field("access_token", &mask(&self.access_token))
            .field("private_key", &mask(&self.private_key))
            .field("refresh_token", &mask(&self.refresh_token))
            .finish()
    }
}

/// Credential loading errors (never containing a secret value).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file could not be read.
    #[error("credentials file {path}: {source}")]
    File {
        /// Path.
        path: String,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON does not have the expected shape (the serde message names keys, not values).
    #[error("{origin}: not a JSON object of credential keys ({reason})")]
    Json {
        /// File or secret.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Secrets Manager failed.
    #[error("Secrets Manager secret {secret}: {message}")]
    Secret {
        /// Secret id.
        secret: String,
        /// The SDK's message.
        message: String,
    },
}

/// Environment variables read by [`CredentialSource::Env`].
pub const ENV_KEYS: [(&str, &str); 8] = [
    ("SALESFORCE_CONSUMER_KEY", "ConsumerKey"),
    ("SALESFORCE_CONSUMER_SECRET", "ConsumerSecret"),
    ("SALESFORCE_USERNAME", "Username"),
    ("SALESFORCE_PASSWORD", "Password"),
    ("SALESFORCE_SECURITY_TOKEN", "AccessToken"),
    ("SALESFORCE_PRIVATE_KEY", "PrivateKey"),
    ("SALESFORCE_PRIVATE_KEY_FILE", "PrivateKey"),
    ("SALESFORCE_REFRESH_TOKEN", "RefreshToken"),
];

fn from_json(origin: &str, text: &str) -> Result<Credentials, CredentialError> {
    serde_json::from_str(text).map_err(|e| CredentialError::Json {
        origin: origin.to_string(),
        // serde's message can quote a value for type errors; keep only the position.
        reason: format!("line {} column {}", e.line(), e.column()),
    })
}

/// Loads credentials from `source`.
pub async fn load(source: &CredentialSource) -> Result<Credentials, CredentialError> {
    match source {
        CredentialSource::Env => from_env(|k| std::env::var(k).ok()),
        CredentialSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CredentialError::File {
                path: path.clone(),
                source,
            })?;
            from_json(path, &text)
        }
        CredentialSource::SecretsManager(secret) => {
            let config = crate::aws::sdk_config(None).await;
            let client = aws_sdk_secretsmanager::Client::new(&config);
            let out = client
                .get_secret_value()
                .secret_id(secret)
                .send()
                .await
                .map_err(|e| CredentialError::Secret {
                    secret: secret.clone(),
                    message: std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
                })?;
            let text = out.secret_string().ok_or_else(|| CredentialError::Secret {
                secret: secret.clone(),
                message: "the secret has no SecretString (binary secrets are not supported)".into(),
            })?;
            from_json(&format!("secret {secret}"), text)
        }
    }
}

/// Credentials from `SALESFORCE_*` variables (see [`ENV_KEYS`]); `get` reads one variable.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Credentials, CredentialError> {
    let private_key = match (
        get("SALESFORCE_PRIVATE_KEY"),
        get("SALESFORCE_PRIVATE_KEY_FILE"),
    ) {
        (Some(pem), _) => Some(pem),
        (None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|source| CredentialError::File { path, source })?,
        ),
        (None, None) => None,
    };
    Ok(Credentials {
        consumer_key: get("SALESFORCE_CONSUMER_KEY"),
        consumer_secret: get("SALESFORCE_CONSUMER_SECRET"),
        username: get("SALESFORCE_USERNAME"),
        password: get("SALESFORCE_PASSWORD"),
        access_token: get("SALESFORCE_SECURITY_TOKEN"),
        private_key,
        refresh_token: get("SALESFORCE_REFRESH_TOKEN"),
    })
}

/// Every secret value in `credentials` (for tests and log scrubbing).
pub fn secret_values(credentials: &Credentials) -> Vec<String> {
    [
        &credentials.consumer_secret,
        &credentials.password,
        &credentials.access_token,
        &credentials.private_key,
        &credentials.refresh_token,
    ]
    .into_iter()
    .flatten()
    .filter(|v| !v.is_empty())
    .cloned()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cti_adapter_secret_keys_parse_and_debug_masks_them() {
        let json = r#"{"ConsumerKey":"ck","ConsumerSecret":"cs-SECRET","Password":"pw-SECRET","AccessToken":"tok-SECRET","PrivateKey":"-----BEGIN PRIVATE KEY-----"}"#;
        let creds = from_json("t", json).unwrap();
        assert_eq!(creds.consumer_key.as_deref(), Some("ck"));
        assert_eq!(creds.access_token.as_deref(), Some("tok-SECRET"));
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert_eq!(secret_values(&creds).len(), 4);
    }

    #[test]
    fn json_errors_do_not_echo_values() {
        let err = from_json("secret x", r#"{"Password": 12345678}"#).unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");
    }

    #[test]
    fn sources_parse() {
        assert_eq!(CredentialSource::parse("env"), Ok(CredentialSource::Env));
        assert_eq!(
            CredentialSource::parse("arn:aws:secretsmanager:eu-west-1:1:secret:sf"),
            Ok(CredentialSource::SecretsManager(
                "arn:aws:secretsmanager:eu-west-1:1:secret:sf".into()
            ))
        );
        assert!(CredentialSource::parse("vault:x").is_err());
    }
}
