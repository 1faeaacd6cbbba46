//! Operations pages, for the instance's administrators only: the stack's services (from its
//! supervisor), federation links with a verify action, deployment history (from the
//! orchestration state store and the deployments' reports), the API's decision audit log and
//! the KAS's key releases.
//! Who is an administrator is decided here, on the server, from the session's validated ID token.

mod audit;
mod deployments;
mod federation;
mod keys;
mod status;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use dive_core::{Equivalency, SubjectAttributes};
use serde_json::{Map, Value};

use super::*;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ops", get(status::page))
        .route("/ops/federation", get(federation::page))
        .route("/ops/federation/verify", post(federation::verify))
        .route("/ops/deployments", get(deployments::page))
        .route("/ops/audit", get(audit::page))
        .route("/ops/keys", get(keys::page))
}

/// Whether the holder of these ID-token claims administers this instance: the policy's admin
/// role, signed in at this instance's own IdP. A user brokered from a partner (`home_issuer`) is
/// never an administrator here, whatever roles their home gives them; claims that do not parse
/// as coalition attributes make nobody an administrator.
pub(crate) fn is_admin(claims: &Map<String, Value>) -> bool {
    if claims.contains_key("home_issuer") {
        return false;
    }
    SubjectAttributes::from_claims(&Value::Object(claims.clone()), Equivalency::builtin())
        .is_ok_and(|a| a.roles.iter().any(|r| r == dive_core::ADMIN_ROLE))
}

/// The signed-in administrator, a redirect to sign in, or a 403 page saying why.
pub(super) async fn require_admin(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<User, Response> {
    let u = require_user(s, headers, uri).await?;
    if is_admin(&u.claims) {
        Ok(u)
    } else {
        Err(error_page(
            s,
            Some(&u),
            StatusCode::FORBIDDEN,
            "Administrators only",
            format!(
                "The operations pages are for this instance's administrators (role {}, signed in at this instance's own identity provider). Your sign-in does not carry that role.",
                dive_core::ADMIN_ROLE
            ),
        ))
    }
}

/// Unix milliseconds as `2026-11-24 07:31:02 UTC`.
pub(crate) fn when(ms: i64) -> String {
    let t = dive_orchestrator::fmt::rfc3339_ms(ms);
    format!(
        "{} {} UTC",
        &t[..10.min(t.len())],
        t.get(11..19).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn user(roles: Value) -> Value {
        json!({
            "sub": "u1", "uniqueID": "admin-usa", "clearance": "SECRET",
            "countryOfAffiliation": "USA", "acpCOI": ["NATO"], "roles": roles,
            "organizationType": "GOV", "iss": "https://localhost:8443",
        })
    }

    #[test]
    fn only_the_admin_role_of_this_instance_administers_it() {
        assert!(is_admin(&claims(user(json!(["user", "dive-admin"])))));
        assert!(!is_admin(&claims(user(json!(["user"])))));
        assert!(!is_admin(&claims(user(json!([])))));
        let mut brokered = user(json!(["dive-admin"]));
        brokered["home_issuer"] = json!("https://localhost:9443");
        assert!(
            !is_admin(&claims(brokered)),
            "a partner's admin is not ours"
        );
        // Unusable attributes: nobody.
        assert!(!is_admin(&claims(json!({"roles": ["dive-admin"]}))));
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    }
}
