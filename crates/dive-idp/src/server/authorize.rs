//! The authorization endpoint and the login pages: password, second factor, TOTP enrolment.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Shared, pages};
use crate::bruteforce;
use crate::clients::GrantType;
use crate::tokens::{CODE_TTL, Grant, SCOPES, SESSION_MAX};
use crate::users::User;
use crate::util::{now, random_token, sha256_hex};

pub const SESSION_COOKIE: &str = "dive_idp_session";
pub const CSRF_COOKIE: &str = "dive_idp_csrf";

/// A cookie's name for this instance (`dive_idp_csrf_usa`): browsers do not separate cookies by
/// port, so instances on one host (a local hub and spokes brokering each other) would otherwise
/// overwrite each other's login and session cookies in the middle of a brokered login.
pub(crate) fn cookie_name(state: &Shared, base: &str) -> String {
    format!("{base}_{}", state.instance.as_str().to_lowercase())
}
/// How long a user has to complete the login pages.
const REQUEST_TTL: i64 = 600;

/// The authorization request (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub acr_values: Option<String>,
    pub response_mode: Option<String>,
    /// Go straight to this upstream IdP (its alias), skipping the login page's choice.
    pub idp_hint: Option<String>,
    /// Keycloak's name for `idp_hint`, accepted for clients written for Keycloak.
    pub kc_idp_hint: Option<String>,
}

/// A validated request: what the login pages carry along.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    client_id: String,
    redirect_uri: String,
    scope: Vec<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    pub(super) require_otp: bool,
    login_hint: Option<String>,
}

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub(super) fn set_cookie(r: &mut Response, name: &str, value: &str, max_age: i64) {
    let c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Redirect back to the client with parameters (and `iss`, RFC 9207).
fn redirect_to(state: &Shared, uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "bad redirect_uri",
            );
        }
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &state.issuer);
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn redirect_error(
    state: &Shared,
    p: &Pending,
    error: &str,
    description: &str,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = &p.state {
        params.push(("state", s));
    }
    redirect_to(state, &p.redirect_uri, &params)
}

pub async fn authorize(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<AuthParams>,
) -> Response {
    handle(&state, &headers, params).await
}

pub async fn authorize_post(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(params): Form<AuthParams>,
) -> Response {
    handle(&state, &headers, params).await
}

async fn handle(state: &Shared, headers: &HeaderMap, p: AuthParams) -> Response {
    // Until client and redirect URI are known good, errors are shown here: redirecting to an
    // unverified URI would make us an open redirector.
    let bad = |msg: &str| pages::error(StatusCode::BAD_REQUEST, "Invalid request", msg);
    let Some(client_id) = p.client_id.as_deref() else {
        return bad("missing client_id");
    };
    let client = match crate::clients::find(&state.db, client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad("unknown client_id"),
        Err(e) => return super::OAuthError::server(e).into_response(),
    };
    let Some(redirect_uri) = p.redirect_uri.clone() else {
        return bad("missing redirect_uri");
    };
    if !client.redirect_uris.contains(&redirect_uri) {
        return bad("redirect_uri is not registered for this client");
    }
    let scope: Vec<String> = p
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let acr_two = p
        .acr_values
        .as_deref()
        .is_some_and(|a| a.split_whitespace().any(|v| v == "2"));
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri,
        scope: scope.clone(),
        state: p.state.clone(),
        nonce: p.nonce.clone(),
        code_challenge: p.code_challenge.clone(),
        require_otp: acr_two,
        login_hint: p.login_hint.clone(),
    };
    let fail = |e: &str, d: &str| redirect_error(state, &pending, e, d);
    if p.response_type.as_deref() != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if p.response_mode.as_deref().is_some_and(|m| m != "query") {
        return fail("invalid_request", "only response_mode=query is supported");
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "client may not use the authorization code flow",
        );
    }
    if let Some(s) = scope.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return fail("invalid_scope", &format!("unknown scope {s}"));
    }
    match (&p.code_challenge, p.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) => {
            if c.len() != 43
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return fail(
                    "invalid_request",
                    "code_challenge must be a base64url SHA-256",
                );
            }
        }
        (Some(_), _) => {
            return fail("invalid_request", "code_challenge_method must be S256");
        }
        (None, _) if client.is_public() => {
            return fail(
                "invalid_request",
                "PKCE (S256) is required for public clients",
            );
        }
        (None, _) => {}
    }
    let prompts: Vec<&str> = p
        .prompt
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none cannot be combined");
    }
    let max_age = match p.max_age.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(m)) if m >= 0 => Some(m),
        Some(_) => return fail("invalid_request", "max_age must be a non-negative integer"),
    };
    // An existing SSO session may answer without showing the login page.
    if !prompts.contains(&"login")
        && let Some(session) = current_session(state, headers).await
    {
        let fresh = max_age.is_none_or(|m| now() - session.auth_time <= m);
        let strong = !pending.require_otp || session.acr == "2";
        if fresh && strong {
            return issue_code(state, &pending, &session, None).await;
        }
    }
    if prompts.contains(&"none") {
        return fail("login_required", "no current login session");
    }
    // An upstream named by idp_hint must exist and be enabled; then the login page is skipped.
    let hint = p
        .idp_hint
        .as_deref()
        .or(p.kc_idp_hint.as_deref())
        .filter(|h| !h.is_empty());
    let upstream = match hint {
        None => None,
        Some(alias) => match crate::upstreams::find(&state.db, alias).await {
            Ok(Some(u)) if u.enabled => Some(u),
            Ok(_) => {
                return fail(
                    "invalid_request",
                    &format!("identity provider {alias:?} is unknown or disabled"),
                );
            }
            Err(e) => return super::OAuthError::server(e).into_response(),
        },
    };
    let request_id = random_token(24);
    let csrf = random_token(24);
    let stored = sqlx::query(
        "INSERT INTO idp_auth_requests (id, csrf, params, user_id, stage, pending_secret, \
         expires_at) VALUES ($1, $2, $3, NULL, 'password', NULL, $4)",
    )
    .bind(&request_id)
    .bind(&csrf)
    .bind(serde_json::to_string(&pending).unwrap_or_default())
    .bind(now() + REQUEST_TTL)
    .execute(&state.db.pool)
    .await;
    if let Err(e) = stored {
        return super::OAuthError::from(e).into_response();
    }
    let mut r = match upstream {
        Some(u) => super::broker::redirect_upstream(state, &u, &request_id, &pending).await,
        None => {
            login_page(
                state,
                &request_id,
                &csrf,
                p.login_hint.as_deref().unwrap_or(""),
                None,
            )
            .await
        }
    };
    set_cookie(&mut r, &cookie_name(state, CSRF_COOKIE), &csrf, REQUEST_TTL);
    r
}

/// The login page, offering every enabled upstream IdP besides the password form.
async fn login_page(
    state: &Shared,
    request_id: &str,
    csrf: &str,
    hint: &str,
    error: Option<String>,
) -> Response {
    let upstreams: Vec<pages::Broker> = match crate::upstreams::list(&state.db).await {
        Ok(list) => list
            .into_iter()
            .filter(|u| u.enabled)
            .map(|u| pages::Broker {
                unavailable: super::broker::not_answering(state, &u.alias),
                alias: u.alias,
                name: u.display_name,
            })
            .collect(),
        Err(e) => return super::OAuthError::server(e).into_response(),
    };
    pages::login(
        state.instance.as_str(),
        request_id,
        csrf,
        hint,
        &upstreams,
        error,
    )
}

/// An authenticated browser session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub id: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
}

pub(crate) async fn current_session(state: &Shared, headers: &HeaderMap) -> Option<Session> {
    let id = cookie(headers, &cookie_name(state, SESSION_COOKIE))?;
    let row = sqlx::query(
        "SELECT user_id, auth_time, amr, acr FROM idp_sessions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(sha256_hex(&id))
    .bind(now())
    .fetch_optional(&state.db.pool)
    .await
    .ok()??;
    let user_id: String = row.try_get("user_id").ok()?;
    let user = crate::users::find_by_id(&state.db, &user_id).await.ok()??;
    if !user.enabled {
        return None;
    }
    Some(Session {
        id,
        user_id,
        auth_time: row.try_get("auth_time").ok()?,
        amr: serde_json::from_str(&row.try_get::<String, _>("amr").ok()?).ok()?,
        acr: row.try_get("acr").ok()?,
    })
}

async fn issue_code(
    state: &Shared,
    pending: &Pending,
    session: &Session,
    new_session_cookie: Option<&str>,
) -> Response {
    let code = random_token(32);
    let grant = Grant {
        client_id: pending.client_id.clone(),
        user_id: Some(session.user_id.clone()),
        scope: pending.scope.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        acr: session.acr.clone(),
        nonce: pending.nonce.clone(),
        redirect_uri: Some(pending.redirect_uri.clone()),
        code_challenge: pending.code_challenge.clone(),
        sid: Some(sha256_hex(&session.id)[..16].to_string()),
    };
    let stored = sqlx::query(
        "INSERT INTO idp_codes (code_hash, client_id, grant_data, used, family, expires_at) \
         VALUES ($1, $2, $3, 0, $4, $5)",
    )
    .bind(sha256_hex(&code))
    .bind(&pending.client_id)
    .bind(serde_json::to_string(&grant).unwrap_or_default())
    .bind(random_token(16))
    .bind(now() + CODE_TTL)
    .execute(&state.db.pool)
    .await;
    if let Err(e) = stored {
        return super::OAuthError::from(e).into_response();
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &pending.state {
        params.push(("state", s));
    }
    let mut r = redirect_to(state, &pending.redirect_uri, &params);
    if let Some(sid) = new_session_cookie {
        set_cookie(
            &mut r,
            &cookie_name(state, SESSION_COOKIE),
            sid,
            SESSION_MAX,
        );
    }
    r
}

/// A login-page request loaded and checked against its CSRF token (form field and cookie).
pub(super) struct Stage {
    pub(super) id: String,
    pub(super) csrf: String,
    pub(super) pending: Pending,
    user_id: Option<String>,
    stage: String,
    pending_secret: Option<String>,
    /// A brokered login: the upstream's `amr`, to which the local second factor is added.
    broker_amr: Option<Vec<String>>,
}

pub(super) async fn load_stage(
    state: &Shared,
    headers: &HeaderMap,
    request_id: &str,
    csrf: &str,
    expected: &str,
) -> Result<Stage, Response> {
    let expired = || {
        pages::error(
            StatusCode::BAD_REQUEST,
            "Login expired",
            "This login request is unknown or expired; go back to the application and start again.",
        )
    };
    let row = sqlx::query(
        "SELECT csrf, params, user_id, stage, pending_secret, broker_amr FROM idp_auth_requests \
         WHERE id = $1 AND expires_at > $2",
    )
    .bind(request_id)
    .bind(now())
    .fetch_optional(&state.db.pool)
    .await
    .map_err(|e| super::OAuthError::from(e).into_response())?
    .ok_or_else(expired)?;
    let stored_csrf: String = row.try_get("csrf").map_err(|_| expired())?;
    let cookie_ok = cookie(headers, &cookie_name(state, CSRF_COOKIE))
        .is_some_and(|c| crate::util::ct_eq(&c, csrf));
    if !crate::util::ct_eq(&stored_csrf, csrf) || !cookie_ok {
        return Err(pages::error(
            StatusCode::FORBIDDEN,
            "Request refused",
            "The form's CSRF token is missing or wrong; reload the login page.",
        ));
    }
    let stage: String = row.try_get("stage").map_err(|_| expired())?;
    if stage != expected {
        return Err(expired());
    }
    Ok(Stage {
        id: request_id.to_string(),
        csrf: stored_csrf,
        pending: serde_json::from_str(&row.try_get::<String, _>("params").map_err(|_| expired())?)
            .map_err(|_| expired())?,
        user_id: row.try_get("user_id").map_err(|_| expired())?,
        stage,
        pending_secret: row.try_get("pending_secret").map_err(|_| expired())?,
        broker_amr: row
            .try_get::<Option<String>, _>("broker_amr")
            .map_err(|_| expired())?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|_| expired())?,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    request_id: String,
    csrf: String,
    username: String,
    password: String,
}

const BAD_CREDENTIALS: &str = "Invalid username or password.";

pub async fn login(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let st = match load_stage(&state, &headers, &f.request_id, &f.csrf, "password").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let page = |msg: String| login_page(&state, &st.id, &st.csrf, &f.username, Some(msg));
    let account = bruteforce::account_key(&f.username);
    let address = bruteforce::address_key(&peer.ip());
    for subject in [&account, &address] {
        match bruteforce::locked_for(&state.db, subject).await {
            Ok(Some(wait)) => {
                state.count_login("locked");
                return page(format!(
                    "Too many failed attempts. Try again in {wait} seconds."
                ))
                .await;
            }
            Ok(None) => {}
            Err(e) => return super::OAuthError::server(e).into_response(),
        }
    }
    let user = match crate::users::find_by_username(&state.db, &f.username).await {
        Ok(u) => u,
        Err(e) => return super::OAuthError::server(e).into_response(),
    };
    // Always run one argon2 verification so unknown users take as long as known ones.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let password = f.password.clone();
    let matches = tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(u) if matches && u.enabled => u,
        _ => {
            state.count_login("failure");
            let _ = bruteforce::record_failure(&state.db, &account, bruteforce::ACCOUNT).await;
            let _ = bruteforce::record_failure(&state.db, &address, bruteforce::ADDRESS).await;
            return page(BAD_CREDENTIALS.to_string()).await;
        }
    };
    let _ = bruteforce::clear(&state.db, &account).await;
    if !(user.requires_otp() || st.pending.require_otp) {
        return finish(&state, &st, &user, vec!["pwd".to_string()], "1").await;
    }
    second_factor(&state, &st, &user).await
}

/// Ask for the TOTP code, or enrol the user at their first login.
pub(super) async fn second_factor(state: &Shared, st: &Stage, user: &User) -> Response {
    if user.totp_enrolled() {
        if let Err(r) = advance(state, &st.id, &user.id, "otp", None).await {
            return r;
        }
        return pages::otp(&st.id, &st.csrf, None);
    }
    let secret = crate::totp::generate_secret();
    let recovery: Vec<String> = (0..10).map(|_| recovery_code()).collect();
    let blob = serde_json::json!({"secret": secret, "recovery": recovery}).to_string();
    if let Err(r) = advance(state, &st.id, &user.id, "enrol", Some(&blob)).await {
        return r;
    }
    enrol_page(state, st, user, &secret, &recovery, None)
}

fn enrol_page(
    state: &Shared,
    st: &Stage,
    user: &User,
    secret: &str,
    recovery: &[String],
    error: Option<&str>,
) -> Response {
    let uri = crate::totp::otpauth_uri(
        &format!("DIVE {}", state.instance.as_str()),
        &user.username,
        secret,
    );
    let svg = crate::totp::qr_svg(&uri).unwrap_or_default();
    pages::enrol(&st.id, &st.csrf, secret, &svg, recovery, error)
}

fn recovery_code() -> String {
    let raw = crate::util::hex_encode(&crate::util::random_bytes(6));
    format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12])
}

async fn advance(
    state: &Shared,
    id: &str,
    user_id: &str,
    stage: &str,
    secret: Option<&str>,
) -> Result<(), Response> {
    sqlx::query(
        "UPDATE idp_auth_requests SET stage = $1, user_id = $2, pending_secret = $3 WHERE id = $4",
    )
    .bind(stage)
    .bind(user_id)
    .bind(secret)
    .bind(id)
    .execute(&state.db.pool)
    .await
    .map(|_| ())
    .map_err(|e| super::OAuthError::from(e).into_response())
}

/// Remember the upstream's `amr` of a brokered login that now needs the local second factor.
pub(super) async fn set_broker_amr(
    state: &Shared,
    id: &str,
    amr: &[String],
) -> Result<(), Response> {
    sqlx::query("UPDATE idp_auth_requests SET broker_amr = $1 WHERE id = $2")
        .bind(serde_json::to_string(amr).unwrap_or_default())
        .bind(id)
        .execute(&state.db.pool)
        .await
        .map(|_| ())
        .map_err(|e| super::OAuthError::from(e).into_response())
}

/// `amr` after a successful local second factor: the upstream's methods for a brokered login,
/// otherwise the local password.
fn amr_with_otp(st: &Stage) -> Vec<String> {
    let mut amr = st
        .broker_amr
        .clone()
        .unwrap_or_else(|| vec!["pwd".to_string()]);
    if !amr.iter().any(|m| m == "otp") {
        amr.push("otp".to_string());
    }
    amr
}

/// Create the SSO session and send the browser back with a code.
pub(super) async fn finish(
    state: &Shared,
    st: &Stage,
    user: &User,
    amr: Vec<String>,
    acr: &str,
) -> Response {
    let _ = sqlx::query("DELETE FROM idp_auth_requests WHERE id = $1")
        .bind(&st.id)
        .execute(&state.db.pool)
        .await;
    let sid = random_token(32);
    let t = now();
    let stored = sqlx::query(
        "INSERT INTO idp_sessions (id_hash, user_id, auth_time, amr, acr, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(&sid))
    .bind(&user.id)
    .bind(t)
    .bind(serde_json::to_string(&amr).unwrap_or_default())
    .bind(acr)
    .bind(t + SESSION_MAX)
    .execute(&state.db.pool)
    .await;
    if let Err(e) = stored {
        return super::OAuthError::from(e).into_response();
    }
    state.count_login("success");
    tracing::info!(user = %user.username, acr, "login");
    let session = Session {
        id: sid.clone(),
        user_id: user.id.clone(),
        auth_time: t,
        amr,
        acr: acr.to_string(),
    };
    issue_code(state, &st.pending, &session, Some(&sid)).await
}

#[derive(Deserialize)]
pub struct CodeForm {
    request_id: String,
    csrf: String,
    code: String,
}

async fn stage_user(state: &Shared, st: &Stage) -> Result<User, Response> {
    let expired = || pages::error(StatusCode::BAD_REQUEST, "Login expired", "Start again.");
    let id = st.user_id.as_deref().ok_or_else(expired)?;
    crate::users::find_by_id(&state.db, id)
        .await
        .ok()
        .flatten()
        .filter(|u| u.enabled)
        .ok_or_else(expired)
}

pub async fn otp(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let st = match load_stage(&state, &headers, &f.request_id, &f.csrf, "otp").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = match stage_user(&state, &st).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let account = bruteforce::account_key(&user.username);
    if let Ok(Some(wait)) = bruteforce::locked_for(&state.db, &account).await {
        state.count_login("locked");
        return pages::otp(
            &st.id,
            &st.csrf,
            Some(&format!(
                "Too many failed attempts. Try again in {wait} seconds."
            )),
        );
    }
    let code = f.code.trim();
    let mut ok = false;
    if let Some(secret) = &user.totp_secret
        && let Some(step) = crate::totp::verify(secret, code, now(), user.totp_last_step)
    {
        // Record the step atomically: a concurrent use of the same code loses.
        ok = sqlx::query(
            "UPDATE idp_users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
        )
        .bind(step)
        .bind(&user.id)
        .execute(&state.db.pool)
        .await
        .is_ok_and(|r| r.rows_affected() == 1);
    }
    if !ok && code.len() == 14 {
        ok = sqlx::query("DELETE FROM idp_recovery_codes WHERE user_id = $1 AND code_hash = $2")
            .bind(&user.id)
            .bind(sha256_hex(&code.to_ascii_lowercase()))
            .execute(&state.db.pool)
            .await
            .is_ok_and(|r| r.rows_affected() == 1);
    }
    if !ok {
        state.count_login("otp_failure");
        let _ = bruteforce::record_failure(&state.db, &account, bruteforce::ACCOUNT).await;
        return pages::otp(&st.id, &st.csrf, Some("Invalid or already used code."));
    }
    let _ = bruteforce::clear(&state.db, &account).await;
    finish(&state, &st, &user, amr_with_otp(&st), "2").await
}

pub async fn enrol(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let st = match load_stage(&state, &headers, &f.request_id, &f.csrf, "enrol").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = match stage_user(&state, &st).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let blob: serde_json::Value = st
        .pending_secret
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let secret = blob["secret"].as_str().unwrap_or_default().to_string();
    let recovery: Vec<String> = blob["recovery"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let Some(step) = crate::totp::verify(&secret, &f.code, now(), 0) else {
        state.count_login("otp_failure");
        return enrol_page(
            &state,
            &st,
            &user,
            &secret,
            &recovery,
            Some("Invalid code; try again."),
        );
    };
    let saved: Result<(), sqlx::Error> = async {
        let mut tx = state.db.pool.begin().await?;
        sqlx::query(
            "UPDATE idp_users SET totp_secret = $1, totp_last_step = $2 WHERE id = $3 \
             AND totp_secret IS NULL",
        )
        .bind(&secret)
        .bind(step)
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
        for code in &recovery {
            sqlx::query("INSERT INTO idp_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(&user.id)
                .bind(sha256_hex(code))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = saved {
        return super::OAuthError::from(e).into_response();
    }
    let _ = &st.stage;
    finish(&state, &st, &user, amr_with_otp(&st), "2").await
}
