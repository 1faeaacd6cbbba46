//! Brokering: log a user in at an upstream OpenID Provider (authorization code + PKCE, `state`
//! and `nonce` bound to the original authorization request), validate its ID token, map and
//! normalise its claims through dive-core, re-sync the local federated account, ask for the local
//! second factor when the upstream did not assert one and policy needs it, then complete the
//! original request with this IdP's own code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dive_core::{Equivalency, SubjectAttributes};
use dive_http::Permit;
use dive_jose::{JwksVerifier, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::authorize::{CSRF_COOKIE, Pending, cookie, cookie_name, load_stage, redirect_error};
use super::{Shared, pages};
use crate::upstreams::Upstream;
use crate::util::{ct_eq, now, pkce_s256, random_token, sha256_hex};

/// How long a user has to finish at the upstream (same as the local login pages).
const STATE_TTL: i64 = 600;
/// Discovery documents are re-read at least this often.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// What the broker needs of an upstream, built from its discovery document.
pub(crate) struct Resolved {
    updated_at: i64,
    fetched: Instant,
    http: reqwest::Client,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    verifier: JwksVerifier,
}

/// Resolved upstreams by alias. An entry is rebuilt when the upstream's configuration changed
/// (its `updated_at`, e.g. through the admin API or the CLI) or after [`DISCOVERY_TTL`].
#[derive(Default)]
pub(crate) struct UpstreamCache(Mutex<HashMap<String, Arc<Resolved>>>);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

fn https_url(field: &str, v: &str) -> Result<(), String> {
    match url::Url::parse(v) {
        Ok(u) if u.scheme() == "https" => Ok(()),
        _ => Err(format!(
            "discovery document: {field} {v:?} is not an https URL"
        )),
    }
}

/// The upstream's endpoints, from the cache or, when `fresh`, the cache is stale or the upstream
/// was reconfigured, from its discovery document. A fetch's outcome counts towards the
/// upstream's circuit breaker.
async fn resolve(state: &Shared, up: &Upstream, fresh: bool) -> Result<Arc<Resolved>, String> {
    if !fresh {
        let map = state.upstreams.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(&up.alias)
            && r.updated_at == up.updated_at
            && r.fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok(r.clone());
        }
    }
    let outcome = discover(state, up).await;
    state
        .upstream_breakers
        .record(&up.alias, outcome.is_ok(), Instant::now());
    outcome
}

async fn discover(state: &Shared, up: &Upstream) -> Result<Arc<Resolved>, String> {
    let http = up.http_client(&state.home).map_err(|e| e.to_string())?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        up.issuer.trim_end_matches('/')
    );
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    let d: Discovery = resp
        .json()
        .await
        .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
    // OIDC Discovery §4.3: the document's issuer must be exactly the configured one.
    if d.issuer != up.issuer {
        return Err(format!(
            "discovery document names issuer {:?}, configured {:?}",
            d.issuer, up.issuer
        ));
    }
    https_url("authorization_endpoint", &d.authorization_endpoint)?;
    https_url("token_endpoint", &d.token_endpoint)?;
    https_url("jwks_uri", &d.jwks_uri)?;
    if let Some(u) = &d.userinfo_endpoint {
        https_url("userinfo_endpoint", u)?;
    }
    let verifier = JwksVerifier::new(
        d.jwks_uri,
        http.clone(),
        Validation::new(&up.issuer).with_audience(&up.client_id),
    );
    let r = Arc::new(Resolved {
        updated_at: up.updated_at,
        fetched: Instant::now(),
        http,
        authorization_endpoint: d.authorization_endpoint,
        token_endpoint: d.token_endpoint,
        userinfo_endpoint: d.userinfo_endpoint,
        verifier,
    });
    state
        .upstreams
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(up.alias.clone(), r.clone());
    Ok(r)
}

/// Why an upstream is not offered right now: its breaker is open after repeated failures.
pub(super) fn not_answering(state: &Shared, alias: &str) -> Option<String> {
    let wait = state
        .upstream_breakers
        .retry_in(&alias.to_string(), Instant::now())?;
    Some(format!(
        "identity provider {alias} is not answering (its last {} attempts failed); it is tried \
         again in {} s",
        state.upstream_breakers.failures(&alias.to_string()),
        wait.as_secs() + 1
    ))
}

/// Send the browser to the upstream's authorization endpoint for the stored request
/// `request_id`: fresh `state`, `nonce` and PKCE verifier, remembered for the callback.
pub(super) async fn redirect_upstream(
    state: &Shared,
    up: &Upstream,
    request_id: &str,
    pending: &Pending,
) -> Response {
    let permit = state.upstream_breakers.permit(&up.alias, Instant::now());
    if permit == Permit::Refused {
        tracing::info!(alias = %up.alias, "upstream not asked: its circuit breaker is open");
        return redirect_error(
            state,
            pending,
            "temporarily_unavailable",
            &not_answering(state, &up.alias)
                .unwrap_or_else(|| format!("identity provider {} is being tried again", up.alias)),
        );
    }
    // The half-open trial re-reads the discovery document: that fetch is what tells whether
    // the upstream is back.
    let resolved = match resolve(state, up, permit == Permit::Trial).await {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(alias = %up.alias, %why, "upstream unavailable");
            return redirect_error(
                state,
                pending,
                "temporarily_unavailable",
                &format!("identity provider {} is unavailable", up.alias),
            );
        }
    };
    let st = random_token(24);
    let nonce = random_token(24);
    let verifier = random_token(32);
    let stored = sqlx::query(
        "INSERT INTO idp_broker_states (state_hash, alias, request_id, nonce, code_verifier, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(&st))
    .bind(&up.alias)
    .bind(request_id)
    .bind(&nonce)
    .bind(&verifier)
    .bind(now() + STATE_TTL)
    .execute(&state.db.pool)
    .await;
    if let Err(e) = stored {
        return super::OAuthError::from(e).into_response();
    }
    let _ = sqlx::query("DELETE FROM idp_broker_states WHERE expires_at < $1")
        .bind(now())
        .execute(&state.db.pool)
        .await;
    let mut url = match url::Url::parse(&resolved.authorization_endpoint) {
        Ok(u) => u,
        Err(_) => {
            return redirect_error(
                state,
                pending,
                "temporarily_unavailable",
                "the identity provider's authorization endpoint is invalid",
            );
        }
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &up.client_id)
        .append_pair("redirect_uri", &up.redirect_uri(&state.issuer))
        .append_pair("scope", &up.scopes.join(" "))
        .append_pair("state", &st)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_s256(&verifier))
        .append_pair("code_challenge_method", "S256");
    // Forward a request for a second factor: the upstream is the better place to do it.
    if pending.require_otp {
        url.query_pairs_mut().append_pair("acr_values", "2");
    }
    tracing::info!(alias = %up.alias, "login brokered to upstream");
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
pub struct StartForm {
    request_id: String,
    csrf: String,
}

/// `POST /broker/{alias}/login`: the login page's "Log in with …" button.
pub async fn login(
    State(state): State<Shared>,
    Path(alias): Path<String>,
    headers: HeaderMap,
    Form(f): Form<StartForm>,
) -> Response {
    let st = match load_stage(&state, &headers, &f.request_id, &f.csrf, "password").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match crate::upstreams::find(&state.db, &alias).await {
        Ok(Some(up)) if up.enabled => redirect_upstream(&state, &up, &st.id, &st.pending).await,
        Ok(_) => redirect_error(
            &state,
            &st.pending,
            "invalid_request",
            &format!("identity provider {alias:?} is unknown or disabled"),
        ),
        Err(e) => super::OAuthError::server(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

fn refused(message: &str) -> Response {
    pages::error(StatusCode::BAD_REQUEST, "Sign-in refused", message)
}

/// `GET /broker/{alias}/callback`: the upstream's authorization response.
pub async fn callback(
    State(state): State<Shared>,
    Path(alias): Path<String>,
    headers: HeaderMap,
    Query(p): Query<CallbackParams>,
) -> Response {
    let Some(sent_state) = p.state.as_deref().filter(|s| !s.is_empty()) else {
        return refused(
            "The identity provider's response has no state; start again from the application.",
        );
    };
    let hash = sha256_hex(sent_state);
    let row = sqlx::query(
        "SELECT request_id, nonce, code_verifier, expires_at FROM idp_broker_states \
         WHERE state_hash = $1 AND alias = $2",
    )
    .bind(&hash)
    .bind(&alias)
    .fetch_optional(&state.db.pool)
    .await;
    let used = || {
        tracing::warn!(%alias, "broker callback with unknown or used state");
        refused(
            "This sign-in response is unknown, expired or was already used; start again from the application.",
        )
    };
    let row = match row {
        Ok(Some(r)) => r,
        Ok(None) => return used(),
        Err(e) => return super::OAuthError::from(e).into_response(),
    };
    let (request_id, nonce, verifier, expires_at) = match (
        row.try_get::<String, _>("request_id"),
        row.try_get::<String, _>("nonce"),
        row.try_get::<String, _>("code_verifier"),
        row.try_get::<i64, _>("expires_at"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => return used(),
    };
    if expires_at < now() {
        return refused("This sign-in took too long; start again from the application.");
    }
    // The state is bound to the request, the request to this browser by its CSRF cookie: a
    // response delivered to another browser is refused (and does not use up the state).
    let Some(browser) = cookie(&headers, &cookie_name(&state, CSRF_COOKIE)) else {
        return refused("This browser did not start this sign-in (no login cookie); start again.");
    };
    let st = match load_stage(&state, &headers, &request_id, &browser, "password").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Single use: only the request that deletes the row goes on, so a replayed (or concurrent)
    // callback is refused.
    match sqlx::query("DELETE FROM idp_broker_states WHERE state_hash = $1")
        .bind(&hash)
        .execute(&state.db.pool)
        .await
    {
        Ok(r) if r.rows_affected() == 1 => {}
        Ok(_) => return used(),
        Err(e) => return super::OAuthError::from(e).into_response(),
    }
    let deny = |d: String| {
        state.count_login("broker_failure");
        tracing::warn!(%alias, reason = %d, "brokered login refused");
        redirect_error(&state, &st.pending, "access_denied", &d)
    };
    let up = match crate::upstreams::find(&state.db, &alias).await {
        Ok(Some(u)) if u.enabled => u,
        Ok(_) => return deny(format!("identity provider {alias} is disabled")),
        Err(e) => return super::OAuthError::server(e).into_response(),
    };
    if let Some(e) = &p.error {
        return deny(format!(
            "identity provider {alias} answered {e}: {}",
            p.error_description.as_deref().unwrap_or("")
        ));
    }
    // RFC 9207: a response naming another issuer is a mix-up attempt.
    if let Some(iss) = &p.iss
        && iss != &up.issuer
    {
        return deny(format!("the response names issuer {iss:?}, not {alias}'s"));
    }
    let Some(code) = p.code.as_deref().filter(|c| !c.is_empty()) else {
        return deny(format!("identity provider {alias} returned no code"));
    };
    let resolved = match resolve(&state, &up, false).await {
        Ok(r) => r,
        Err(why) => return deny(format!("identity provider {alias} is unavailable: {why}")),
    };
    let claims = match redeem(&state, &up, &resolved, code, &verifier, &nonce).await {
        Ok(c) => c,
        Err(why) => return deny(format!("identity provider {alias}: {why}")),
    };
    let (sub, attrs) = match map_claims(&up, &claims) {
        Ok(v) => v,
        Err(why) => return deny(format!("identity provider {alias} asserted {why}")),
    };
    let user = match crate::users::upsert_federated(&state.db, &up.alias, &sub, &up.issuer, &attrs)
        .await
    {
        Ok(u) => u,
        Err(crate::IdpError::Invalid { field, reason }) => {
            return deny(format!(
                "identity provider {alias} asserted an invalid {field}: {reason}"
            ));
        }
        Err(e) => return super::OAuthError::server(e).into_response(),
    };
    if !user.enabled {
        return deny(format!("account {} is disabled here", user.username));
    }
    let amr = attrs.authentication.amr.clone();
    let upstream_mfa = asserted_mfa(attrs.authentication.acr.as_deref(), &amr);
    tracing::info!(%alias, user = %user.username, upstream_mfa, "brokered login");
    if upstream_mfa {
        return super::authorize::finish(&state, &st, &user, amr, "2").await;
    }
    if user.requires_otp() || st.pending.require_otp {
        if let Err(r) = super::authorize::set_broker_amr(&state, &st.id, &amr).await {
            return r;
        }
        return super::authorize::second_factor(&state, &st, &user).await;
    }
    super::authorize::finish(&state, &st, &user, amr, "1").await
}

/// Whether the upstream asserted a second factor: `amr` names one (`otp`, `mfa`, `hwk`) and
/// `acr` is at least 2. Anything less is treated as a single factor (fail closed).
fn asserted_mfa(acr: Option<&str>, amr: &[String]) -> bool {
    let acr_ok = acr
        .and_then(|a| a.trim().parse::<u32>().ok())
        .is_some_and(|a| a >= 2);
    acr_ok
        && amr
            .iter()
            .any(|m| matches!(m.as_str(), "otp" | "mfa" | "hwk"))
}

/// Exchange the code (client_secret_basic, PKCE) and validate the ID token: signature with the
/// upstream's JWKS, `iss`, `aud`, `exp`, `nonce`, `azp`. When the ID token lacks a mapped
/// identity claim (some IdPs, e.g. Keycloak without ID-token mappers, release them only at
/// UserInfo), the UserInfo response fills in what the ID token does not say.
async fn redeem(
    state: &Shared,
    up: &Upstream,
    resolved: &Resolved,
    code: &str,
    verifier: &str,
    nonce: &str,
) -> Result<Map<String, Value>, String> {
    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let redirect_uri = up.redirect_uri(&state.issuer);
    let resp = resolved
        .http
        .post(&resolved.token_endpoint)
        .basic_auth(enc(&up.client_id), Some(enc(&up.client_secret)))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await;
    // Not answering, or answering 5xx, counts towards the upstream's breaker; any other answer
    // (also a refusal of the code) shows it is up.
    let reached = matches!(&resp, Ok(r) if !r.status().is_server_error());
    state
        .upstream_breakers
        .record(&up.alias, reached, Instant::now());
    let resp = resp.map_err(|e| format!("token request failed: {e}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("token response is not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "token endpoint answered {status}: {} {}",
            body["error"].as_str().unwrap_or(""),
            body["error_description"].as_str().unwrap_or("")
        ));
    }
    let id_token = body["id_token"]
        .as_str()
        .ok_or("the token response has no id_token")?;
    let claims = resolved
        .verifier
        .verify(id_token)
        .await
        .map_err(|e| format!("invalid ID token: {e}"))?;
    match claims.get("nonce").and_then(Value::as_str) {
        Some(n) if ct_eq(n, nonce) => {}
        _ => return Err("invalid ID token: nonce does not match the request".to_string()),
    }
    // OIDC Core §3.1.3.7: with several audiences, azp must be this client.
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != up.client_id => {
            return Err(format!("invalid ID token: azp {azp:?} is not this client"));
        }
        None if several => return Err("invalid ID token: several audiences and no azp".into()),
        _ => {}
    }
    let m = &up.claim_mapping;
    let complete = [&m.unique_id, &m.clearance, &m.country_of_affiliation]
        .iter()
        .all(|name| claim_at(&claims, name).is_some());
    match (
        complete,
        &resolved.userinfo_endpoint,
        body["access_token"].as_str(),
    ) {
        (false, Some(endpoint), Some(at)) => userinfo(resolved, endpoint, at, claims).await,
        _ => Ok(claims),
    }
}

/// Merge the UserInfo claims into the ID token's (the ID token wins). OIDC Core §5.3.2: the
/// UserInfo `sub` must be the ID token's, or the response is refused.
async fn userinfo(
    resolved: &Resolved,
    endpoint: &str,
    access_token: &str,
    mut claims: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let resp = resolved
        .http
        .get(endpoint)
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|e| format!("userinfo request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("userinfo answered {}", resp.status()));
    }
    let info: Map<String, Value> = resp
        .json()
        .await
        .map_err(|e| format!("userinfo is not a JSON object: {e}"))?;
    if info.get("sub") != claims.get("sub") {
        return Err("userinfo sub differs from the ID token's".to_string());
    }
    for (k, v) in info {
        claims.entry(k).or_insert(v);
    }
    Ok(claims)
}

/// A claim by name, or by a dotted path into nested objects (Keycloak puts roles in
/// `realm_access.roles`) when no claim has the dotted name itself.
fn claim_at<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// The upstream's claims under local names, normalised: a comma-joined `acpCOI` string (an old
/// Keycloak mapper defect) becomes an array, `organizationType` upper case, a numeric `acr` a
/// string. Then dive-core checks the national clearance label against the country's table.
fn map_claims(
    up: &Upstream,
    claims: &Map<String, Value>,
) -> Result<(String, SubjectAttributes), String> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("no sub")?
        .to_string();
    let mut local = Map::new();
    for (name, upstream_name) in up.claim_mapping.pairs() {
        if let Some(v) = claim_at(claims, upstream_name) {
            local.insert(name.to_string(), v.clone());
        }
    }
    if let Some(Value::String(s)) = local.get("acpCOI") {
        let list: Vec<Value> = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Value::String(t.to_string()))
            .collect();
        local.insert("acpCOI".into(), Value::Array(list));
    }
    if let Some(Value::String(s)) = local.get("organizationType") {
        let upper = s.to_ascii_uppercase();
        local.insert("organizationType".into(), Value::String(upper));
    }
    if let Some(Value::Number(n)) = local.get("acr") {
        let s = n.to_string();
        local.insert("acr".into(), Value::String(s));
    }
    if let Some(Value::String(s)) = local.get("amr") {
        let one = s.clone();
        local.insert("amr".into(), Value::Array(vec![Value::String(one)]));
    }
    local.insert("iss".into(), Value::String(up.issuer.clone()));
    let attrs = SubjectAttributes::from_claims(&Value::Object(local), Equivalency::builtin())
        .map_err(|e| format!("unusable claims: {e}"))?;
    if let Some(country) = up.country
        && attrs.country_of_affiliation != country
    {
        return Err(format!(
            "countryOfAffiliation {} but may only assert {country}",
            attrs.country_of_affiliation
        ));
    }
    Ok((sub, attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_by_name_or_dotted_path() {
        let c = serde_json::json!({"realm_access": {"roles": ["user"]}, "a.b": 1, "a": {"b": 2}});
        let c = c.as_object().unwrap();
        assert_eq!(
            claim_at(c, "realm_access.roles"),
            Some(&serde_json::json!(["user"]))
        );
        assert_eq!(
            claim_at(c, "a.b"),
            Some(&serde_json::json!(1)),
            "exact name first"
        );
        assert_eq!(claim_at(c, "realm_access.groups"), None);
        assert_eq!(claim_at(c, "missing"), None);
    }

    #[test]
    fn mfa_needs_both_a_second_method_and_acr_two() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(asserted_mfa(Some("2"), &v(&["pwd", "otp"])));
        assert!(asserted_mfa(Some("3"), &v(&["hwk"])));
        assert!(!asserted_mfa(Some("1"), &v(&["pwd", "otp"])));
        assert!(!asserted_mfa(Some("2"), &v(&["pwd"])));
        assert!(!asserted_mfa(None, &v(&["pwd", "mfa"])));
        assert!(!asserted_mfa(Some("gold"), &v(&["otp"])));
    }
}
