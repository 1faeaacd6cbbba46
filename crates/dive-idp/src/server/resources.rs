//! Discovery, JWKS, userinfo, introspection (RFC 7662), revocation (RFC 7009), the revocation
//! list for the instance's services, and RP-initiated logout.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::Row;

use super::client_auth::{Params, authenticate};
use super::{OAuthError, Shared, pages};
use crate::tokens::{ACCESS_TYP, COALITION_CLAIMS, SCOPES};
use crate::util::{now, sha256_hex};

pub async fn discovery(State(state): State<Shared>) -> Response {
    let e = |p: &str| state.endpoint(p);
    let mut claims: Vec<&str> = vec![
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "preferred_username",
        "roles",
    ];
    claims.extend_from_slice(COALITION_CLAIMS);
    axum::Json(json!({
        "issuer": state.issuer,
        "authorization_endpoint": e("/authorize"),
        "token_endpoint": e("/token"),
        "userinfo_endpoint": e("/userinfo"),
        "jwks_uri": e("/jwks"),
        "introspection_endpoint": e("/introspect"),
        "revocation_endpoint": e("/revoke"),
        "end_session_endpoint": e("/logout"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [state.keys.alg().as_str()],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "introspection_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "acr_values_supported": ["1", "2"],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
    }))
    .into_response()
}

pub async fn jwks(State(state): State<Shared>) -> Response {
    let mut r = axum::Json(state.keys.jwks()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// Whether the user signed out (or was revoked) at or after `since`.
pub(crate) async fn subject_revoked_since(
    state: &Shared,
    sub: &str,
    since: i64,
) -> Result<bool, OAuthError> {
    let row = sqlx::query("SELECT revoked_before FROM idp_revoked_subjects WHERE sub = $1")
        .bind(sub)
        .fetch_optional(&state.db.pool)
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64, _>("revoked_before")? >= since,
        None => false,
    })
}

/// A valid, unrevoked access token's claims.
pub(crate) async fn check_access_token(state: &Shared, token: &str) -> Option<Map<String, Value>> {
    let v = dive_jose::Validation::new(&state.issuer)
        .with_audience(&state.audience)
        .with_typ(ACCESS_TYP);
    let claims = state.keys.keyset().verify(token, &v).ok()?;
    let jti = claims.get("jti")?.as_str()?;
    let revoked = sqlx::query("SELECT 1 AS x FROM idp_revoked WHERE jti = $1")
        .bind(jti)
        .fetch_optional(&state.db.pool)
        .await
        .ok()?;
    if revoked.is_some() {
        return None;
    }
    let sub = claims.get("sub")?.as_str()?;
    let iat = claims.get("iat")?.as_i64()?;
    if subject_revoked_since(state, sub, iat).await.ok()? {
        return None;
    }
    Some(claims)
}

fn bearer_error(description: &str) -> Response {
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    let v = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

pub async fn userinfo(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let Some(claims) = check_access_token(&state, token.trim()).await else {
        return bearer_error("the access token is invalid, expired or revoked");
    };
    let scope: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !scope.iter().any(|s| s == "openid") {
        let mut r = StatusCode::FORBIDDEN.into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"insufficient_scope\", scope=\"openid\""),
        );
        return r;
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let user = match crate::users::find_by_id(&state.db, sub).await {
        Ok(Some(u)) if u.enabled => u,
        _ => return bearer_error("the user no longer exists or is disabled"),
    };
    let mut out = crate::tokens::user_claims(&user, &scope);
    out.insert("sub".into(), json!(user.id));
    let mut r = axum::Json(out).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn introspect(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let run = async {
        let params = Params::parse(&body)?;
        authenticate(&state, &headers, &params, true).await?;
        let token = params.require("token")?;
        if let Some(mut claims) = check_access_token(&state, token).await {
            claims.insert("active".into(), json!(true));
            claims.insert("token_type".into(), json!("Bearer"));
            return Ok::<Value, OAuthError>(Value::Object(claims));
        }
        let row = sqlx::query(
            "SELECT client_id, grant_data, used, revoked, expires_at FROM idp_refresh_tokens \
             WHERE token_hash = $1",
        )
        .bind(sha256_hex(token))
        .fetch_optional(&state.db.pool)
        .await?;
        if let Some(r) = row {
            let active = r.try_get::<i64, _>("used")? == 0
                && r.try_get::<i64, _>("revoked")? == 0
                && r.try_get::<i64, _>("expires_at")? > now();
            if active {
                let grant: crate::tokens::Grant =
                    serde_json::from_str(&r.try_get::<String, _>("grant_data")?)
                        .map_err(|e| OAuthError::server(crate::IdpError::Corrupt(e.to_string())))?;
                return Ok(json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "client_id": grant.client_id,
                    "sub": grant.user_id,
                    "scope": grant.scope.join(" "),
                    "exp": r.try_get::<i64, _>("expires_at")?,
                    "iss": state.issuer,
                }));
            }
        }
        Ok(json!({"active": false}))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn revoke(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let run = async {
        let params = Params::parse(&body)?;
        let client = authenticate(&state, &headers, &params, false).await?;
        let token = params.require("token")?;
        let row =
            sqlx::query("SELECT family, client_id FROM idp_refresh_tokens WHERE token_hash = $1")
                .bind(sha256_hex(token))
                .fetch_optional(&state.db.pool)
                .await?;
        if let Some(r) = row {
            if r.try_get::<String, _>("client_id")? == client.client_id {
                super::token::revoke_family(&state, &r.try_get::<String, _>("family")?).await?;
            }
            return Ok(());
        }
        if let Some(claims) = check_access_token(&state, token).await
            && claims.get("client_id").and_then(Value::as_str) == Some(&client.client_id)
        {
            revoke_jti(&state, &claims).await?;
        }
        // RFC 7009 §2.2: unknown or foreign tokens also get 200.
        Ok::<(), OAuthError>(())
    };
    match run.await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn revoke_jti(state: &Shared, claims: &Map<String, Value>) -> Result<(), OAuthError> {
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO idp_revoked (jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(exp)
    .bind(now())
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct SinceQuery {
    since: Option<i64>,
}

/// The instance's revocation list: revoked access-token `jti`s that have not expired yet and
/// users whose tokens issued before a time are revoked. Confidential clients only.
pub async fn revocations(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<SinceQuery>,
) -> Response {
    let run = async {
        authenticate(&state, &headers, &Params::parse(b"")?, true).await?;
        let t = now();
        let since = q.since.unwrap_or(0);
        let jtis = sqlx::query(
            "SELECT jti, expires_at FROM idp_revoked WHERE expires_at > $1 AND revoked_at >= $2",
        )
        .bind(t)
        .bind(since)
        .fetch_all(&state.db.pool)
        .await?;
        let subjects = sqlx::query(
            "SELECT sub, revoked_before FROM idp_revoked_subjects WHERE revoked_before >= $1",
        )
        .bind(since.max(t - crate::tokens::ACCESS_TTL - 60))
        .fetch_all(&state.db.pool)
        .await?;
        let jtis: Result<Vec<Value>, sqlx::Error> = jtis
            .iter()
            .map(|r| Ok(json!({"jti": r.try_get::<String, _>("jti")?, "exp": r.try_get::<i64, _>("expires_at")?})))
            .collect();
        let subjects: Result<Vec<Value>, sqlx::Error> = subjects
            .iter()
            .map(|r| Ok(json!({"sub": r.try_get::<String, _>("sub")?, "revoked_before": r.try_get::<i64, _>("revoked_before")?})))
            .collect();
        Ok::<Value, OAuthError>(json!({"generated_at": t, "jtis": jtis?, "subjects": subjects?}))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// RP-initiated logout: end the SSO session, revoke the user's tokens, and return to a
/// registered post-logout URI.
pub async fn logout(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<LogoutQuery>,
) -> Response {
    let bad = |m: &str| pages::error(StatusCode::BAD_REQUEST, "Invalid logout request", m);
    // The hint may be expired; only its signature and issuer matter here.
    let hint = match &q.id_token_hint {
        Some(t) => {
            let keys = state.keys.keyset();
            match dive_jose::verify_token(t, |kid| keys.find(kid)) {
                Ok(c) if c.get("iss").and_then(Value::as_str) == Some(&state.issuer) => Some(c),
                _ => return bad("id_token_hint is not a token of this provider"),
            }
        }
        None => None,
    };
    let client_id = q.client_id.clone().or_else(|| {
        hint.as_ref()
            .and_then(|c| c.get("aud"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let session = super::authorize::current_session(&state, &headers).await;
    let sub = session.as_ref().map(|s| s.user_id.clone()).or_else(|| {
        hint.as_ref()
            .and_then(|c| c.get("sub")?.as_str().map(str::to_string))
    });
    let redirect = match &q.post_logout_redirect_uri {
        Some(uri) => {
            let Some(cid) = &client_id else {
                return bad("post_logout_redirect_uri needs id_token_hint or client_id");
            };
            match crate::clients::find(&state.db, cid).await {
                Ok(Some(c)) if c.post_logout_redirect_uris.contains(uri) => Some(uri.clone()),
                _ => return bad("post_logout_redirect_uri is not registered for this client"),
            }
        }
        None => None,
    };
    if let Some(s) = &session {
        let _ = sqlx::query("DELETE FROM idp_sessions WHERE id_hash = $1")
            .bind(sha256_hex(&s.id))
            .execute(&state.db.pool)
            .await;
    }
    if let Some(sub) = &sub {
        let _ = sqlx::query(
            "INSERT INTO idp_revoked_subjects (sub, revoked_before) VALUES ($1, $2) \
             ON CONFLICT (sub) DO UPDATE SET revoked_before = excluded.revoked_before",
        )
        .bind(sub)
        .bind(now())
        .execute(&state.db.pool)
        .await;
    }
    let mut r = match redirect {
        Some(uri) => match url::Url::parse(&uri) {
            Ok(mut u) => {
                if let Some(s) = &q.state {
                    u.query_pairs_mut().append_pair("state", s);
                }
                let mut r = StatusCode::SEE_OTHER.into_response();
                if let Ok(v) = HeaderValue::from_str(u.as_str()) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Err(_) => bad("post_logout_redirect_uri is not a URL"),
        },
        None => pages::signed_out(),
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
        super::authorize::cookie_name(&state, super::authorize::SESSION_COOKIE)
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
