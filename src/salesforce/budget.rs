//! The org's daily API allowance, shared by every integration of the company: read from
//! `/limits` (`DailyApiRequests`) at the start and from `Sforce-Limit-Info: api-usage=USED/MAX`
//! on every response, and a rule that stops the run before it spends more than its share
//! (reference: salesforce-scale.md §3; tap-salesforce stops the same way).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the run stopped spending API calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetStop {
    /// This run's own calls reached its share.
    #[error("stopped at the API budget: this run made {calls} calls, its share is {percent}% of the org's {max} daily API requests")]
    RunShare {
        /// Calls made by this run.
        calls: u64,
        /// `salesforce.budget_run_percent`.
        percent: u32,
        /// `DailyApiRequests` Max.
        max: u64,
    },
    /// The org as a whole reached the configured usage.
    #[error("stopped at the API budget: the org has used {used} of its {max} daily API requests, at or above salesforce.budget_total_percent = {percent}%")]
    OrgUsage {
        /// Used by every integration.
        used: u64,
        /// `DailyApiRequests` Max.
        max: u64,
        /// `salesforce.budget_total_percent`.
        percent: u32,
    },
    /// Salesforce refused the call: the allowance is spent (`REQUEST_LIMIT_EXCEEDED`, `TotalRequests`).
    #[error("stopped at the API budget: Salesforce answered {0}")]
    Spent(String),
}

/// The allowance as last seen, and the share this run may use.
#[derive(Debug)]
pub struct ApiBudget {
    run_percent: u32,
    total_percent: u32,
    max: AtomicU64,
    used: AtomicU64,
}

impl ApiBudget {
    /// A budget with the job's shares; the allowance is unknown until observed.
    pub fn new(run_percent: u32, total_percent: u32) -> ApiBudget {
        ApiBudget {
            run_percent,
            total_percent,
            max: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// Records usage: `used` of `max` daily requests.
    pub fn observe(&self, used: u64, max: u64) {
        self.max.store(max, Ordering::Relaxed);
        self.used.store(used, Ordering::Relaxed);
    }

    /// Records a `Sforce-Limit-Info` header value (`api-usage=25/5000`, maybe `; api-bursts=…`).
    pub fn observe_header(&self, value: &str) {
        if let Some((used, max)) = parse_usage(value) {
            self.observe(used, max);
        }
    }

    /// (used, max) as last seen; max is 0 while unknown.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.used.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
        )
    }

    /// Calls this run may still make (`None` while the allowance is unknown).
    pub fn remaining(&self, calls: u64) -> Option<u64> {
        let (used, max) = self.usage();
        if max == 0 {
            return None;
        }
        let run = share(max, self.run_percent).saturating_sub(calls);
        let total = share(max, self.total_percent).saturating_sub(used);
        Some(run.min(total))
    }

    /// Whether one more call is within the budget, given the calls this run made so far.
    pub fn check(&self, calls: u64) -> Result<(), BudgetStop> {
        let (used, max) = self.usage();
        if max == 0 {
            return Ok(());
        }
        if calls >= share(max, self.run_percent) {
            return Err(BudgetStop::RunShare {
                calls,
                percent: self.run_percent,
                max,
            });
        }
        if used >= share(max, self.total_percent) {
            return Err(BudgetStop::OrgUsage {
                used,
                max,
                percent: self.total_percent,
            });
        }
        Ok(())
    }
}

/// `percent` of `max`, rounded down.
fn share(max: u64, percent: u32) -> u64 {
    max.saturating_mul(u64::from(percent)) / 100
}

/// `api-usage=USED/MAX` from a `Sforce-Limit-Info` value.
pub fn parse_usage(value: &str) -> Option<(u64, u64)> {
    value.split(';').find_map(|part| {
        let (used, max) = part.trim().strip_prefix("api-usage=")?.split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

/// Whether a `REQUEST_LIMIT_EXCEEDED` answer means the daily allowance is spent (stop) rather
/// than a concurrency limit that clears by itself (back off and retry).
pub fn is_daily_limit(message: &str) -> bool {
    message.contains("TotalRequests")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_header_forms_from_the_docs() {
        assert_eq!(parse_usage("api-usage=25/5000"), Some((25, 5000)));
        assert_eq!(
            parse_usage("api-usage=18/5000; per-app-api-usage=17/250(appName=sample-app)"),
            Some((18, 5000))
        );
        assert_eq!(parse_usage("api-bursts=1/2"), None);
        assert_eq!(parse_usage("api-usage=x/5000"), None);
    }

    #[test]
    fn stops_at_the_run_share_or_the_org_total() {
        let budget = ApiBudget::new(10, 80);
        assert_eq!(
            budget.check(1_000_000),
            Ok(()),
            "unknown allowance: no stop"
        );
        budget.observe(100, 1000);
        assert_eq!(budget.check(99), Ok(()));
        assert_eq!(budget.remaining(99), Some(1));
        assert!(matches!(
            budget.check(100),
            Err(BudgetStop::RunShare { .. })
        ));
        budget.observe(800, 1000);
        assert!(matches!(budget.check(0), Err(BudgetStop::OrgUsage { .. })));
        assert_eq!(budget.remaining(0), Some(0));
    }

    #[test]
    fn only_total_requests_is_the_daily_limit() {
        assert!(is_daily_limit("TotalRequests Limit exceeded."));
        assert!(!is_daily_limit("ConcurrentPerOrgLongTxn Limit exceeded."));
        assert!(!is_daily_limit(
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded"
        ));
    }
}
