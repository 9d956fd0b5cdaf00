//! Which API reads an object: Bulk API 2.0 where Bulk serves it, REST `queryAll` where Bulk
//! refuses it. Known refusals are routed up front (`schemas/salesforce_routing.toml`); a refusal
//! at job creation switches the object to REST at once and is remembered in its state, so later
//! runs do not spend a failing call to learn it again (reference: salesforce-scale.md §2).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::ApiChoice;
use crate::salesforce::SalesforceError;

const ROUTING_TOML: &str = include_str!("../../schemas/salesforce_routing.toml");

/// Objects Bulk API 2.0 is known to refuse.
fn rest_only() -> &'static BTreeSet<String> {
    static LIST: OnceLock<BTreeSet<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        #[derive(Deserialize)]
        struct File {
            rest_only: Vec<String>,
        }
        let file: File = toml::from_str(ROUTING_TOML)
            .expect("schemas/salesforce_routing.toml is valid (unit test)");
        file.rest_only.into_iter().collect()
    })
}

/// A remembered routing decision (kept in the object's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMemo {
    /// `rest`.
    pub api: String,
    /// Why, in Salesforce's words.
    pub reason: String,
    /// When it was learnt.
    pub decided: DateTime<Utc>,
}

/// How an object is read this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// As the job's `salesforce.api` says (`auto` picks by record count).
    AsConfigured(ApiChoice),
    /// REST only: Bulk refuses this object.
    RestOnly(String),
}

impl Route {
    /// The route of `object` for the job's choice and what its state remembers.
    pub fn of(object: &str, choice: ApiChoice, memo: Option<&RouteMemo>) -> Route {
        if choice == ApiChoice::Rest {
            return Route::AsConfigured(ApiChoice::Rest);
        }
        if let Some(memo) = memo.filter(|m| m.api == "rest") {
            return Route::RestOnly(memo.reason.clone());
        }
        if rest_only().contains(object) {
            return Route::RestOnly("known not to be supported by Bulk API 2.0".to_string());
        }
        Route::AsConfigured(choice)
    }

    /// The reason, for the run summary, `--dry-run` and the reconciliation row.
    pub fn describe(&self) -> String {
        match self {
            Route::AsConfigured(ApiChoice::Auto) => {
                "auto: Bulk at the threshold, REST below".into()
            }
            Route::AsConfigured(ApiChoice::Bulk) => "bulk (salesforce.api)".into(),
            Route::AsConfigured(ApiChoice::Rest) => "rest (salesforce.api)".into(),
            Route::RestOnly(reason) => format!("rest: {reason}"),
        }
    }
}

/// Salesforce's refusal of a Bulk query job on this object (not a passing failure), in its words.
pub fn bulk_refusal(error: &SalesforceError) -> Option<String> {
    let SalesforceError::Api {
        status,
        code,
        message,
        ..
    } = error
    else {
        return None;
    };
    let refused = (code == "INVALIDENTITY" && message.contains("not supported by the Bulk API"))
        || (*status == 400
            && message
                .trim_end_matches('.')
                .ends_with("does not support query"))
        || message.contains("compound data not supported in Bulk Query");
    refused.then(|| format!("{code}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: u16, code: &str, message: &str) -> SalesforceError {
        SalesforceError::Api {
            status,
            url: "https://x/services/data/v66.0/jobs/query".into(),
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn refusals_in_salesforces_documented_words() {
        // airbyte#13088, airbyte#7518, ForceCLI/force#531 (reference §2).
        for (code, message) in [
            (
                "INVALIDENTITY",
                "Entity 'CaseStatus' is not supported by the Bulk API.",
            ),
            (
                "INVALIDENTITY",
                "Entity 'Foo__Share' is not supported by the Bulk API.",
            ),
            (
                "API_ERROR",
                "Entity 'UserRecordAccess' does not support query",
            ),
            (
                "API_ERROR",
                "FUNCTIONALITY_NOT_ENABLED: Selecting compound data not supported in Bulk Query",
            ),
        ] {
            assert!(
                bulk_refusal(&api_error(400, code, message)).is_some(),
                "{message}"
            );
        }
        assert!(bulk_refusal(&api_error(400, "MALFORMED_QUERY", "unexpected token")).is_none());
        assert!(bulk_refusal(&api_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded."
        ))
        .is_none());
    }

    #[test]
    fn known_and_learnt_refusals_route_to_rest() {
        assert!(matches!(
            Route::of("TaskStatus", ApiChoice::Auto, None),
            Route::RestOnly(_)
        ));
        assert_eq!(
            Route::of("Account", ApiChoice::Bulk, None),
            Route::AsConfigured(ApiChoice::Bulk)
        );
        let memo = RouteMemo {
            api: "rest".into(),
            reason: "INVALIDENTITY".into(),
            decided: Utc::now(),
        };
        assert!(matches!(
            Route::of("Feed__c", ApiChoice::Auto, Some(&memo)),
            Route::RestOnly(_)
        ));
        assert_eq!(
            Route::of("TaskStatus", ApiChoice::Rest, None),
            Route::AsConfigured(ApiChoice::Rest)
        );
    }
}
