//! The network policy: one set of retry and timeout settings shared by every remote call —
//! S3 through object_store, Glue and Secrets Manager through the AWS SDK, and Salesforce
//! through reqwest — so a flaky network is absorbed the same way everywhere and every call is
//! bounded in time.
//!
//! The defaults suit an ECS task talking to S3, Glue and Salesforce; each can be changed from
//! the environment (`CXLAKE_NET_*`, see [`RetryPolicy::from_env`]), which is how the
//! network-fault tests make a run give up in seconds rather than minutes.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

/// How calls are retried and how long each may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (5xx, throttling, resets, cut bodies, timeouts).
    pub max_retries: u32,
    /// First backoff; doubles on each retry (with jitter on S3 and Glue).
    pub backoff: Duration,
    /// Longest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest time one call may take with all its retries (S3, Glue; Salesforce counts retries).
    pub call_timeout: Duration,
    /// Longest wait for the next bytes of an answer: a stalled connection is dropped and retried.
    pub read_timeout: Duration,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            call_timeout: Duration::from_secs(180),
            read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The environment variables of the policy, with what each sets.
pub const ENV_VARIABLES: &[(&str, &str)] = &[
    ("CXLAKE_NET_MAX_RETRIES", "retries after the first attempt"),
    ("CXLAKE_NET_BACKOFF_MS", "first backoff, doubled per retry"),
    ("CXLAKE_NET_MAX_BACKOFF_MS", "longest backoff"),
    (
        "CXLAKE_NET_CALL_TIMEOUT_MS",
        "one call with all its retries",
    ),
    ("CXLAKE_NET_READ_TIMEOUT_MS", "a stalled answer"),
    ("CXLAKE_NET_CONNECT_TIMEOUT_MS", "opening a connection"),
];

static CURRENT: OnceLock<RetryPolicy> = OnceLock::new();

impl RetryPolicy {
    /// The defaults with `CXLAKE_NET_*` variables laid over them; a value that is not a whole
    /// number (or a zero timeout) is an error naming the variable.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<RetryPolicy, String> {
        let mut policy = RetryPolicy::default();
        for (name, _) in ENV_VARIABLES {
            let Some(raw) = env.get(*name) else { continue };
            let value: u64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("{name}={raw:?} is not a whole number"))?;
            let ms = Duration::from_millis(value);
            if value == 0 && name.ends_with("TIMEOUT_MS") {
                return Err(format!("{name} must be above 0"));
            }
            match *name {
                "CXLAKE_NET_MAX_RETRIES" => {
                    policy.max_retries =
                        u32::try_from(value).map_err(|_| format!("{name}={raw:?} is too large"))?
                }
                "CXLAKE_NET_BACKOFF_MS" => policy.backoff = ms,
                "CXLAKE_NET_MAX_BACKOFF_MS" => policy.max_backoff = ms,
                "CXLAKE_NET_CALL_TIMEOUT_MS" => policy.call_timeout = ms,
                "CXLAKE_NET_READ_TIMEOUT_MS" => policy.read_timeout = ms,
                _ => policy.connect_timeout = ms,
            }
        }
        Ok(policy)
    }

    /// Sets the policy of this process (once, at start-up); later calls keep the first.
    pub fn install(self) {
        let _ = CURRENT.set(self);
    }

    /// The policy of this process: the installed one, or the defaults.
    pub fn current() -> RetryPolicy {
        *CURRENT.get_or_init(RetryPolicy::default)
    }

    /// The backoff before retry number `attempt` (1-based), without jitter.
    pub fn backoff_for(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff)
    }

    /// object_store's retry settings.
    pub fn object_store_retry(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: self.backoff,
                max_backoff: self.max_backoff,
                base: 2.0,
            },
            max_retries: self.max_retries as usize,
            retry_timeout: self.call_timeout,
        }
    }

    /// object_store's HTTP client settings. One attempt may last up to the call timeout (a
    /// 32 MiB PUT on a slow link); a stall is cut by the read timeout.
    pub fn object_store_client(&self) -> object_store::ClientOptions {
        object_store::ClientOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_read_timeout(self.read_timeout)
            .with_timeout(self.call_timeout)
    }

    /// The AWS SDK's retry settings (standard mode: 5xx, throttling and transient errors).
    pub fn aws_retry(&self) -> aws_config::retry::RetryConfig {
        aws_config::retry::RetryConfig::standard()
            .with_max_attempts(self.max_retries + 1)
            .with_initial_backoff(self.backoff)
            .with_max_backoff(self.max_backoff)
    }

    /// The AWS SDK's timeouts: Glue and Secrets Manager answers are small, so one attempt gets
    /// the read timeout and the whole operation the call timeout.
    pub fn aws_timeouts(&self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .operation_attempt_timeout(self.read_timeout)
            .operation_timeout(self.call_timeout)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_rejects_bad_values() {
        let env = BTreeMap::from([
            ("CXLAKE_NET_MAX_RETRIES".to_string(), "3".to_string()),
            ("CXLAKE_NET_READ_TIMEOUT_MS".to_string(), "750".to_string()),
        ]);
        let policy = RetryPolicy::from_env(&env).unwrap();
        assert_eq!(policy.max_retries, 3);
        assert_eq!(policy.read_timeout, Duration::from_millis(750));
        assert_eq!(policy.backoff, RetryPolicy::default().backoff);
        let bad = BTreeMap::from([("CXLAKE_NET_BACKOFF_MS".to_string(), "fast".to_string())]);
        assert!(RetryPolicy::from_env(&bad)
            .unwrap_err()
            .contains("CXLAKE_NET_BACKOFF_MS"));
        let zero = BTreeMap::from([("CXLAKE_NET_CALL_TIMEOUT_MS".to_string(), "0".to_string())]);
        assert!(RetryPolicy::from_env(&zero).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_for(1), Duration::from_millis(100));
        assert_eq!(policy.backoff_for(3), Duration::from_millis(400));
        assert_eq!(policy.backoff_for(30), Duration::from_secs(10));
    }
}
