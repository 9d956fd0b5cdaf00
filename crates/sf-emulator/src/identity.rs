//! Who the token belongs to: the identity URL (`GET /id/<org>/<user>`, the `id` of every token
//! response), OpenID Connect `GET /services/oauth2/userinfo`, and the resource list of one API
//! version (`GET /services/data/vNN.N`, whose `identity` entry clients follow).

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use crate::org::{ApiError, Org};
use crate::server::{api_error, bearer, check_session, json_response, AppState};
use crate::{ORG_ID, USER_ID};

/// The integration user's record fields that identity answers carry.
fn user_fields(org: &Org) -> (String, String, String, String) {
    let user = org
        .records
        .get("User")
        .and_then(|rs| {
            rs.iter()
                .find(|r| r.get("Id").and_then(Value::as_str) == Some(USER_ID))
        })
        .cloned()
        .unwrap_or_default();
    let text = |k: &str| {
        user.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (
        text("Username"),
        text("FirstName"),
        text("LastName"),
        text("Email"),
    )
}

/// The `urls` of an identity answer; Salesforce writes the API version as the literal
/// placeholder `{version}` for the client to fill in.
fn urls(base: &str) -> Value {
    let data = format!("{base}/services/data/v{{version}}");
    json!({
        "enterprise": format!("{base}/services/Soap/c/{{version}}/{ORG_ID}"),
        "metadata": format!("{base}/services/Soap/m/{{version}}/{ORG_ID}"),
        "partner": format!("{base}/services/Soap/u/{{version}}/{ORG_ID}"),
        "rest": format!("{data}/"),
        "sobjects": format!("{data}/sobjects/"),
        "search": format!("{data}/search/"),
        "query": format!("{data}/query/"),
        "recent": format!("{data}/recent/"),
        "tooling_soap": format!("{base}/services/Soap/T/{{version}}/{ORG_ID}"),
        "tooling_rest": format!("{data}/tooling/"),
        "profile": format!("{base}/{USER_ID}"),
        "feeds": format!("{data}/chatter/feeds"),
        "groups": format!("{data}/chatter/groups"),
        "users": format!("{data}/chatter/users"),
        "feed_items": format!("{data}/chatter/feed-items"),
        "feed_elements": format!("{data}/chatter/feed-elements"),
        "custom_domain": base,
    })
}

fn session(state: &AppState, headers: &HeaderMap, query: &str) -> Result<String, ApiError> {
    let mut org = state.org.lock().expect("lock");
    org.count("identity");
    // The identity URL also takes the token as `oauth_token` in the query string.
    let from_query = crate::server::url_decode_pairs(query)
        .remove("oauth_token")
        .unwrap_or_default();
    let token = match bearer(headers) {
        "" => from_query.as_str(),
        t => t,
    };
    check_session(&mut org, token)?;
    Ok(state.base_url.lock().expect("lock").clone())
}

/// `GET /id/<org>/<user>`: the identity service's answer for the integration user.
pub fn identity_url(state: &AppState, headers: &HeaderMap, rest: &str, query: &str) -> Response {
    let base = match session(state, headers, query) {
        Ok(base) => base,
        Err(e) => return api_error(e),
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() != 2 || parts[0] != ORG_ID || parts[1] != USER_ID {
        return json_response(403, &json!("Bad_Id"));
    }
    let org = state.org.lock().expect("lock");
    let (username, first, last, email) = user_fields(&org);
    json_response(
        200,
        &json!({
            "id": format!("{base}/id/{ORG_ID}/{USER_ID}"),
            "asserted_user": true,
            "user_id": USER_ID,
            "organization_id": ORG_ID,
            "username": username,
            "nick_name": username.split('@').next().unwrap_or_default(),
            "display_name": format!("{first} {last}").trim(),
            "email": email,
            "email_verified": true,
            "first_name": first,
            "last_name": last,
            "timezone": "GMT",
            "photos": {},
            "addr_street": null, "addr_city": null, "addr_state": null, "addr_country": null,
            "addr_zip": null, "mobile_phone": null, "mobile_phone_verified": false,
            "is_lightning_login_user": false,
            "status": { "created_date": null, "body": null },
            "urls": urls(&base),
            "active": true,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "last_modified_date": "2024-01-01T00:00:00Z",
            "is_app_installed": true,
        }),
    )
}

/// `GET /services/oauth2/userinfo`: the OpenID Connect claims of the integration user.
pub fn userinfo(state: &AppState, headers: &HeaderMap) -> Response {
    let base = match session(state, headers, "") {
        Ok(base) => base,
        Err(e) => return api_error(e),
    };
    let org = state.org.lock().expect("lock");
    let (username, first, last, email) = user_fields(&org);
    json_response(
        200,
        &json!({
            "sub": format!("{base}/id/{ORG_ID}/{USER_ID}"),
            "user_id": USER_ID,
            "organization_id": ORG_ID,
            "preferred_username": username,
            "nickname": username.split('@').next().unwrap_or_default(),
            "name": format!("{first} {last}").trim(),
            "email": email,
            "email_verified": true,
            "given_name": first,
            "family_name": last,
            "zoneinfo": "GMT",
            "photos": {},
            "profile": format!("{base}/{USER_ID}"),
            "picture": null,
            "address": {},
            "is_salesforce_integration_user": false,
            "urls": urls(&base),
            "active": true,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "updated_at": "2024-01-01T00:00:00Z",
            "is_app_installed": true,
        }),
    )
}

/// `GET /services/data/vNN.N`: the resources of one version, by name.
pub fn version_resources(base: &str, version: &str) -> Response {
    let path = |name: &str| format!("/services/data/v{version}/{name}");
    let mut resources = serde_json::Map::new();
    for name in [
        "tooling",
        "metadata",
        "jobs",
        "limits",
        "query",
        "queryAll",
        "search",
        "sobjects",
        "composite",
        "recent",
        "tabs",
        "theme",
        "async-queries",
    ] {
        resources.insert(name.into(), json!(path(name)));
    }
    resources.insert(
        "identity".into(),
        json!(format!("{base}/id/{ORG_ID}/{USER_ID}")),
    );
    json_response(200, &Value::Object(resources))
}
