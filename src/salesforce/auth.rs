//! OAuth 2.0 token requests for the four flows (reference §5): JWT bearer (the server default),
//! refresh token, client credentials and username-password.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::credentials::Credentials;

/// The OAuth flow a job uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFlow {
    /// JWT bearer: consumer key + username + RSA private key; no secret crosses the wire.
    Jwt,
    /// Refresh token: consumer key/secret + refresh token.
    RefreshToken,
    /// Client credentials: consumer key/secret, runs as the app's integration user (My Domain only).
    ClientCredentials,
    /// Username-password: consumer key/secret + username + password (+ security token).
    Password,
}

impl AuthFlow {
    /// Parses the job file spelling.
    pub fn parse(text: &str) -> Option<AuthFlow> {
        Some(match text {
            "jwt" => AuthFlow::Jwt,
            "refresh-token" => AuthFlow::RefreshToken,
            "client-credentials" => AuthFlow::ClientCredentials,
            "password" => AuthFlow::Password,
            _ => return None,
        })
    }

    /// The job file spelling.
    pub fn name(self) -> &'static str {
        match self {
            AuthFlow::Jwt => "jwt",
            AuthFlow::RefreshToken => "refresh-token",
            AuthFlow::ClientCredentials => "client-credentials",
            AuthFlow::Password => "password",
        }
    }
}

/// A logged-in session.
#[derive(Clone)]
pub struct Session {
    /// Bearer token.
    pub access_token: String,
    /// API host, e.g. `https://acme.my.salesforce.com`.
    pub instance_url: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"***")
            .field("instance_url", &self.instance_url)
            .finish()
    }
}

/// The token endpoint's success body (only what we use; `expires_in` is never sent).
#[derive(Deserialize)]
pub struct TokenResponse {
    /// Bearer token.
    pub access_token: String,
    /// API host.
    pub instance_url: String,
}

/// The token endpoint's error body: `{"error", "error_description"}`.
#[derive(Debug, Deserialize)]
pub struct TokenError {
    /// e.g. `invalid_grant`.
    pub error: String,
    /// e.g. `authentication failure`.
    #[serde(default)]
    pub error_description: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// What is missing for a flow, named by credential key.
pub fn missing(flow: AuthFlow, credentials: &Credentials) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut need = |present: bool, key: &'static str| {
        if !present {
            out.push(key);
        }
    };
    need(credentials.consumer_key.is_some(), "ConsumerKey");
    match flow {
        AuthFlow::Jwt => {
            need(credentials.username.is_some(), "Username");
            need(credentials.private_key.is_some(), "PrivateKey");
        }
        AuthFlow::RefreshToken => {
            need(credentials.consumer_secret.is_some(), "ConsumerSecret");
            need(credentials.refresh_token.is_some(), "RefreshToken");
        }
        AuthFlow::ClientCredentials => {
            need(credentials.consumer_secret.is_some(), "ConsumerSecret");
        }
        AuthFlow::Password => {
            need(credentials.consumer_secret.is_some(), "ConsumerSecret");
            need(credentials.username.is_some(), "Username");
            need(credentials.password.is_some(), "Password");
        }
    }
    out
}

/// The form of a token request. `audience` is the JWT `aud` (the login host).
pub fn token_form(
    flow: AuthFlow,
    credentials: &Credentials,
    audience: &str,
) -> Result<Vec<(&'static str, String)>, String> {
    let get = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(match flow {
        AuthFlow::Jwt => {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(
                credentials.private_key.as_deref().unwrap_or("").as_bytes(),
            )
            .map_err(|_| "PrivateKey is not an RSA private key in PEM form".to_string())?;
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                + 170;
            let claims = Claims {
                iss: credentials.consumer_key.as_deref().unwrap_or(""),
                sub: credentials.username.as_deref().unwrap_or(""),
                aud: audience,
                exp,
            };
            let assertion = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &key,
            )
            .map_err(|e| format!("cannot sign the JWT assertion: {e}"))?;
            vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                ),
                ("assertion", assertion),
            ]
        }
        AuthFlow::RefreshToken => vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", get(&credentials.consumer_key)),
            ("client_secret", get(&credentials.consumer_secret)),
            ("refresh_token", get(&credentials.refresh_token)),
        ],
        AuthFlow::ClientCredentials => vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", get(&credentials.consumer_key)),
            ("client_secret", get(&credentials.consumer_secret)),
        ],
        AuthFlow::Password => vec![
            ("grant_type", "password".to_string()),
            ("client_id", get(&credentials.consumer_key)),
            ("client_secret", get(&credentials.consumer_secret)),
            ("username", get(&credentials.username)),
            (
                "password",
                format!(
                    "{}{}",
                    get(&credentials.password),
                    get(&credentials.access_token)
                ),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_per_flow() {
        let creds = Credentials {
            consumer_key: Some("ck".into()),
            consumer_secret: Some("cs".into()),
            ..Default::default()
        };
        assert!(missing(AuthFlow::ClientCredentials, &creds).is_empty());
        assert_eq!(
            missing(AuthFlow::Password, &creds),
            ["Username", "Password"]
        );
        assert_eq!(missing(AuthFlow::Jwt, &creds), ["Username", "PrivateKey"]);
        assert_eq!(missing(AuthFlow::RefreshToken, &creds), ["RefreshToken"]);
    }

    #[test]
    fn password_flow_appends_the_security_token() {
        let creds = Credentials {
            consumer_key: Some("ck".into()),
            consumer_secret: Some("cs".into()),
            username: Some("u".into()),
            password: Some("pw".into()),
            access_token: Some("TOKEN".into()),
            ..Default::default()
        };
        let form = token_form(AuthFlow::Password, &creds, "x").unwrap();
        assert!(form.contains(&("password", "pwTOKEN".to_string())));
        let bad_jwt = token_form(AuthFlow::Jwt, &creds, "x").unwrap_err();
        assert!(bad_jwt.contains("PrivateKey"));
    }
}
