//! The AWS SDK configuration (credential chain: env, profile, SSO, web identity, ECS task role,
//! IMDS) shared by Glue and by object_store, whose own chain lacks profiles and SSO.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::AwsCredential;
use object_store::CredentialProvider;
use tokio::sync::Mutex;

/// Loads the SDK configuration with the process's retry policy ([`crate::net`]); `region`
/// overrides the chain's region. `AWS_ENDPOINT_URL`
/// (the SDK's own variable) points every client at another endpoint, e.g. moto in tests.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let policy = crate::net::RetryPolicy::current();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(policy.aws_retry())
        .timeout_config(policy.aws_timeouts());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

/// Hands aws-config credentials to object_store, refreshing them before they expire.
#[derive(Debug)]
pub struct SdkCredentials {
    config: SdkConfig,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentials {
    /// Wraps the credentials provider of `config`.
    pub fn new(config: SdkConfig) -> Self {
        SdkCredentials {
            config,
            cached: Mutex::new(None),
        }
    }
}

/// Credentials are refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|at| SystemTime::now() + REFRESH_MARGIN < at);
            if fresh {
                return Ok(credential.clone());
            }
        }
        let generic = |message: String| object_store::Error::Generic {
            store: "S3",
            source: message.into(),
        };
        let provider = self
            .config
            .credentials_provider()
            .ok_or_else(|| generic("no AWS credentials provider configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| generic(format!("cannot load AWS credentials: {e}")))?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_string(),
            secret_key: credentials.secret_access_key().to_string(),
            token: credentials.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), credentials.expiry()));
        Ok(credential)
    }
}

/// A Glue client with the process's retry policy that also retries
/// `ConcurrentModificationException`: Glue's answer when two writers update the same table or
/// partition at once, which a second attempt resolves (the SDK's standard classifiers retry
/// throttling and 5xx only).
pub fn glue_client(config: &SdkConfig) -> aws_sdk_glue::Client {
    let glue = aws_sdk_glue::config::Builder::from(config)
        .retry_classifier(ConcurrentModificationRetry)
        .build();
    aws_sdk_glue::Client::from_conf(glue)
}

/// Retries an answer whose error type is `ConcurrentModificationException`.
#[derive(Debug)]
struct ConcurrentModificationRetry;

const CONCURRENT_MODIFICATION: &str = "ConcurrentModificationException";

impl aws_sdk_glue::config::retry::ClassifyRetry for ConcurrentModificationRetry {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_sdk_glue::config::retry::RetryAction {
        use aws_sdk_glue::config::retry::RetryAction;
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if response.status().as_u16() != 400 {
            return RetryAction::NoActionIndicated;
        }
        // awsJson 1.1 names the error in `x-amzn-ErrorType` or in the body's `__type`.
        let header = response
            .headers()
            .get("x-amzn-ErrorType")
            .is_some_and(|t| t.starts_with(CONCURRENT_MODIFICATION));
        let body = response.body().bytes().is_some_and(|b| {
            serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| {
                v.get("__type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.rsplit('#').next() == Some(CONCURRENT_MODIFICATION))
            })
        });
        if header || body {
            RetryAction::transient_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "Glue ConcurrentModificationException"
    }
}
