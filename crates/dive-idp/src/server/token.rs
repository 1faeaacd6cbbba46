//! The token endpoint: authorization_code (with PKCE), refresh_token (rotation and reuse
//! detection), client_credentials.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::Row;

use super::client_auth::{Params, authenticate};
use super::{OAuthError, Shared};
use crate::clients::{Client, GrantType};
use crate::tokens::{ACCESS_TTL, Grant, SESSION_MAX, mint};
use crate::util::{now, pkce_s256, random_token, sha256_hex};

pub async fn token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(v) => {
            let mut r = axum::Json(v).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let params = Params::parse(body)?;
    let grant_type = params.require("grant_type")?;
    let client = authenticate(state, headers, &params, false).await?;
    let grant = GrantType::parse(grant_type).ok_or_else(|| {
        OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant_type} is not supported"),
        )
    })?;
    if !client.allows(grant) {
        return Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("client may not use {grant_type}"),
        ));
    }
    let out = match grant {
        GrantType::AuthorizationCode => authorization_code(state, &client, &params).await?,
        GrantType::RefreshToken => refresh(state, &client, &params).await?,
        GrantType::ClientCredentials => client_credentials(state, &client, &params).await?,
    };
    state.count_token(grant.as_str());
    Ok(out)
}

async fn client_credentials(
    state: &Shared,
    client: &Client,
    params: &Params,
) -> Result<Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "public clients cannot use client_credentials",
        ));
    }
    // Only "roles" makes sense without a user, plus the privileged scopes the client was
    // registered with (e.g. "admin"); other requested scopes are refused.
    let scope: Vec<String> = params
        .get("scope")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if let Some(bad) = scope
        .iter()
        .find(|s| s.as_str() != "roles" && !client.scopes.contains(s))
    {
        let why = if crate::clients::PRIVILEGED_SCOPES.contains(&bad.as_str()) {
            format!("client is not registered for scope {bad}")
        } else {
            format!("scope {bad} needs a user")
        };
        return Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_scope",
            why,
        ));
    }
    let grant = Grant {
        client_id: client.client_id.clone(),
        user_id: None,
        scope,
        auth_time: now(),
        amr: vec![],
        acr: "0".to_string(),
        nonce: None,
        redirect_uri: None,
        code_challenge: None,
        sid: None,
    };
    let minted = mint(&state.keys, &state.issuer, &state.audience, &grant, None)?;
    let mut out = json!({
        "access_token": minted.access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL,
    });
    if !grant.scope.is_empty() {
        out["scope"] = json!(grant.scope.join(" "));
    }
    Ok(out)
}

/// Revoke every refresh token of a family and every access token issued from it.
pub(crate) async fn revoke_family(state: &Shared, family: &str) -> Result<(), OAuthError> {
    let t = now();
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("UPDATE idp_refresh_tokens SET revoked = 1 WHERE family = $1")
        .bind(family)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO idp_revoked (jti, expires_at, revoked_at) \
         SELECT jti, expires_at, $2 FROM idp_issued WHERE family = $1 \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(family)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::warn!(family, "token family revoked");
    Ok(())
}

async fn authorization_code(
    state: &Shared,
    client: &Client,
    params: &Params,
) -> Result<Value, OAuthError> {
    let code = params.require("code")?;
    let hash = sha256_hex(code);
    let row = sqlx::query(
        "SELECT client_id, grant_data, used, family, expires_at FROM idp_codes WHERE code_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| OAuthError::invalid_grant("unknown or expired authorization code"))?;
    let family: String = row.try_get("family")?;
    let owner: String = row.try_get("client_id")?;
    if owner != client.client_id {
        return Err(OAuthError::invalid_grant(
            "code was issued to another client",
        ));
    }
    // Single use, atomically: a second redemption revokes what the first one obtained.
    let claimed = sqlx::query("UPDATE idp_codes SET used = 1 WHERE code_hash = $1 AND used = 0")
        .bind(&hash)
        .execute(&state.db.pool)
        .await?;
    if claimed.rows_affected() == 0 {
        revoke_family(state, &family).await?;
        return Err(OAuthError::invalid_grant(
            "authorization code was already used; tokens issued from it are revoked",
        ));
    }
    if row.try_get::<i64, _>("expires_at")? < now() {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    let grant: Grant = serde_json::from_str(&row.try_get::<String, _>("grant_data")?)
        .map_err(|e| OAuthError::server(crate::IdpError::Corrupt(e.to_string())))?;
    if params.get("redirect_uri") != grant.redirect_uri.as_deref() {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&grant.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let ok_shape = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !ok_shape {
                return Err(OAuthError::invalid_request(
                    "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]",
                ));
            }
            if !crate::util::ct_eq(&pkce_s256(verifier), challenge) {
                return Err(OAuthError::invalid_grant("PKCE verification failed"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_request("missing code_verifier")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    issue_user_tokens(state, grant, &family, None).await
}

/// Mint and record an access token (and ID token) with a new refresh token of `family`. When
/// `rotating` names the refresh token being exchanged, it is claimed in the same transaction:
/// if another request claimed it first, nothing is issued and the family is revoked (reuse).
async fn issue_user_tokens(
    state: &Shared,
    grant: Grant,
    family: &str,
    rotating: Option<&str>,
) -> Result<Value, OAuthError> {
    let user_id = grant
        .user_id
        .clone()
        .ok_or_else(|| OAuthError::invalid_grant("grant has no user"))?;
    let user = crate::users::find_by_id(&state.db, &user_id)
        .await?
        .filter(|u| u.enabled)
        .ok_or_else(|| OAuthError::invalid_grant("user is disabled or removed"))?;
    let minted = mint(
        &state.keys,
        &state.issuer,
        &state.audience,
        &grant,
        Some(&user),
    )?;
    let refresh = random_token(32);
    let recorded = state
        .issue_log
        .record(super::issue_log::Issue {
            rotating: rotating.map(str::to_string),
            family: family.to_string(),
            jti: minted.jti.clone(),
            access_expires_at: now() + ACCESS_TTL,
            refresh_hash: sha256_hex(&refresh),
            client_id: grant.client_id.clone(),
            grant_data: serde_json::to_string(&grant).unwrap_or_default(),
            refresh_expires_at: grant.auth_time + SESSION_MAX,
        })
        .await?;
    if recorded == super::issue_log::Recorded::Reused {
        // Reuse of a rotated token: someone holds a stolen copy. End the whole family.
        revoke_family(state, family).await?;
        return Err(OAuthError::invalid_grant(
            "refresh token reuse detected; the session's tokens are revoked",
        ));
    }
    let mut out = json!({
        "access_token": minted.access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL,
        "refresh_token": refresh,
        "scope": grant.scope.join(" "),
    });
    if let Some(id) = minted.id_token {
        out["id_token"] = json!(id);
    }
    Ok(out)
}

async fn refresh(state: &Shared, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let token = params.require("refresh_token")?;
    let hash = sha256_hex(token);
    let row = sqlx::query(
        "SELECT family, client_id, grant_data, used, revoked, expires_at FROM idp_refresh_tokens \
         WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    let family: String = row.try_get("family")?;
    if row.try_get::<String, _>("client_id")? != client.client_id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    if row.try_get::<i64, _>("revoked")? != 0 {
        return Err(OAuthError::invalid_grant("refresh token revoked"));
    }
    if row.try_get::<i64, _>("used")? != 0 {
        // Reuse of a rotated token: someone holds a stolen copy. End the whole family.
        revoke_family(state, &family).await?;
        return Err(OAuthError::invalid_grant(
            "refresh token reuse detected; the session's tokens are revoked",
        ));
    }
    if row.try_get::<i64, _>("expires_at")? < now() {
        return Err(OAuthError::invalid_grant("refresh token expired"));
    }
    let mut grant: Grant = serde_json::from_str(&row.try_get::<String, _>("grant_data")?)
        .map_err(|e| OAuthError::server(crate::IdpError::Corrupt(e.to_string())))?;
    if let Some(uid) = &grant.user_id
        && super::resources::subject_revoked_since(state, uid, grant.auth_time).await?
    {
        return Err(OAuthError::invalid_grant(
            "the user signed out; sign in again",
        ));
    }
    if let Some(requested) = params.get("scope") {
        let requested: Vec<String> = requested.split_whitespace().map(str::to_string).collect();
        if let Some(extra) = requested.iter().find(|s| !grant.scope.contains(s)) {
            return Err(OAuthError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {extra} was not granted originally"),
            ));
        }
        grant.scope = requested;
    }
    grant.nonce = None;
    issue_user_tokens(state, grant, &family, Some(&hash)).await
}
