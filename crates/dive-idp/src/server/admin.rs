//! The admin API (`/admin/...`, JSON) for federation tooling: upstream IdPs and OAuth clients.
//!
//! Authentication: `Authorization: Bearer <access token>` issued by this IdP through
//! client_credentials with scope `admin`, to a confidential client registered with that scope
//! (`dive idp clients add NAME --client-credentials --admin`). The client is re-checked on every
//! call, so removing it (or its scope) ends its access at once, not when the token expires.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shared;
use crate::clients::{ADMIN_SCOPE, GrantType, NewClient, NewClientAuth};
use crate::error::IdpError;
use crate::upstreams::{self, UpstreamPatch, UpstreamSpec};

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description.into()}),
    )
}

fn bearer_refused(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = error(status, code, description);
    let challenge =
        format!("Bearer realm=\"dive-idp-admin\", error=\"{code}\", scope=\"{ADMIN_SCOPE}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A library error as an API answer: validation errors name the field.
fn from_idp(e: IdpError) -> Response {
    match e {
        IdpError::Invalid { field, reason } => json_response(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_request",
                "field": field,
                "error_description": format!("invalid {field}: {reason}"),
            }),
        ),
        IdpError::NotFound(what) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        ),
        IdpError::Exists(what) => error(
            StatusCode::CONFLICT,
            "conflict",
            format!("{what} already exists"),
        ),
        other => super::OAuthError::server(other).into_response(),
    }
}

/// Parse a JSON body; serde's message names the unknown, missing or mistyped field.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("body")
            .to_string();
        Box::new(json_response(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_request",
                "field": field,
                "error_description": format!("request body: {msg}"),
            }),
        ))
    })
}

/// A PUT body whose identifier `field` comes from the path: a body value must agree with `id`,
/// an absent one is filled in; then the body is read as `T` (errors name the field).
fn with_path_id<T: DeserializeOwned>(
    body: &[u8],
    field: &'static str,
    id: &str,
) -> Result<T, Box<Response>> {
    let mut raw: Value = parse(body)?;
    if let Some(obj) = raw.as_object_mut() {
        match obj.get(field).and_then(Value::as_str) {
            Some(given) if given != id => {
                return Err(Box::new(from_idp(IdpError::invalid(
                    field,
                    format!("body says {given:?} but the path says {id:?}"),
                ))));
            }
            _ => {
                obj.insert(field.into(), json!(id));
            }
        }
    }
    parse(raw.to_string().as_bytes())
}

/// Check the bearer token: valid, unrevoked, scope `admin`, and its client still holds the scope.
async fn require_admin(state: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(bearer_refused(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "an admin access token is required (Authorization: Bearer)",
        ));
    };
    let Some(claims) = super::resources::check_access_token(state, token).await else {
        return Err(bearer_refused(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid, expired or revoked",
        ));
    };
    let has_scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .is_some_and(|s| s.split_whitespace().any(|x| x == ADMIN_SCOPE));
    let client_id = claims
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Only client_credentials tokens (sub = client) can carry the scope; check anyway.
    let is_client = claims.get("sub").and_then(Value::as_str) == Some(client_id.as_str());
    if !has_scope || !is_client {
        return Err(bearer_refused(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token lacks the admin scope",
        ));
    }
    match crate::clients::find(&state.db, &client_id).await {
        Ok(Some(c)) if c.scopes.iter().any(|s| s == ADMIN_SCOPE) => Ok(client_id),
        Ok(_) => Err(bearer_refused(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token's client no longer holds the admin scope",
        )),
        Err(e) => Err(super::OAuthError::server(e).into_response()),
    }
}

macro_rules! admin {
    ($state:expr, $headers:expr) => {
        match require_admin(&$state, &$headers).await {
            Ok(who) => who,
            Err(r) => return r,
        }
    };
}

fn upstream_json(u: &upstreams::Upstream) -> Value {
    let mut v = serde_json::to_value(u).unwrap_or_default();
    v["client_secret_set"] = json!(!u.client_secret.is_empty());
    v
}

pub async fn list_upstreams(State(state): State<Shared>, headers: HeaderMap) -> Response {
    admin!(state, headers);
    match upstreams::list(&state.db).await {
        Ok(list) => json_response(
            StatusCode::OK,
            json!({"upstreams": list.iter().map(upstream_json).collect::<Vec<_>>()}),
        ),
        Err(e) => from_idp(e),
    }
}

pub async fn create_upstream(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = admin!(state, headers);
    let spec: UpstreamSpec = match parse(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match upstreams::create(&state.db, spec).await {
        Ok(u) => {
            tracing::info!(admin = %who, alias = %u.alias, issuer = %u.issuer, "upstream added");
            json_response(StatusCode::CREATED, upstream_json(&u))
        }
        Err(e) => from_idp(e),
    }
}

pub async fn get_upstream(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(alias): Path<String>,
) -> Response {
    admin!(state, headers);
    match upstreams::find(&state.db, &alias).await {
        Ok(Some(u)) => json_response(StatusCode::OK, upstream_json(&u)),
        Ok(None) => from_idp(IdpError::NotFound(format!("upstream {alias}"))),
        Err(e) => from_idp(e),
    }
}

/// PUT: create or fully replace (the alias comes from the path; a body alias must agree).
pub async fn put_upstream(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(alias): Path<String>,
    body: Bytes,
) -> Response {
    let who = admin!(state, headers);
    let spec: UpstreamSpec = match with_path_id(&body, "alias", &alias) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match upstreams::put(&state.db, spec).await {
        Ok((u, created)) => {
            tracing::info!(admin = %who, alias = %u.alias, created, "upstream stored");
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(status, upstream_json(&u))
        }
        Err(e) => from_idp(e),
    }
}

pub async fn patch_upstream(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(alias): Path<String>,
    body: Bytes,
) -> Response {
    let who = admin!(state, headers);
    let patch: UpstreamPatch = match parse(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match upstreams::update(&state.db, &alias, patch).await {
        Ok(u) => {
            tracing::info!(admin = %who, alias = %u.alias, enabled = u.enabled, "upstream updated");
            json_response(StatusCode::OK, upstream_json(&u))
        }
        Err(e) => from_idp(e),
    }
}

pub async fn delete_upstream(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(alias): Path<String>,
) -> Response {
    let who = admin!(state, headers);
    match upstreams::remove(&state.db, &alias).await {
        Ok(()) => {
            tracing::info!(admin = %who, %alias, "upstream removed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => from_idp(e),
    }
}

/// A client to register. `kind` `confidential` (default) gets a generated secret returned once,
/// unless `client_secret` gives one agreed with a partner (≥ 32 characters).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientSpec {
    client_id: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
}

pub async fn list_clients(State(state): State<Shared>, headers: HeaderMap) -> Response {
    admin!(state, headers);
    match crate::clients::list(&state.db).await {
        Ok(list) => json_response(StatusCode::OK, json!({"clients": list})),
        Err(e) => from_idp(e),
    }
}

pub async fn get_client(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin!(state, headers);
    match crate::clients::find(&state.db, &id).await {
        Ok(Some(c)) => json_response(StatusCode::OK, json!(c)),
        Ok(None) => from_idp(IdpError::NotFound(format!("client {id}"))),
        Err(e) => from_idp(e),
    }
}

/// Turn a request into a validated registration and its privileged scopes.
fn build_client(spec: ClientSpec) -> Result<(NewClient, Vec<String>), IdpError> {
    let auth = match (
        spec.kind.as_deref().unwrap_or("confidential"),
        spec.client_secret,
    ) {
        ("confidential", None) => NewClientAuth::GenerateSecret,
        ("confidential", Some(s)) => NewClientAuth::Secret(s),
        ("public", None) => NewClientAuth::Public,
        ("public", Some(_)) => {
            return Err(IdpError::invalid(
                "client_secret",
                "a public client has no secret",
            ));
        }
        (k, _) => {
            return Err(IdpError::invalid(
                "kind",
                format!("{k:?}: expected \"confidential\" or \"public\""),
            ));
        }
    };
    let grant_types = match spec.grant_types {
        Some(list) => {
            let mut out = Vec::new();
            for g in &list {
                out.push(GrantType::parse(g).ok_or_else(|| {
                    IdpError::invalid(
                        "grant_types",
                        format!(
                            "unknown grant {g:?} (authorization_code, refresh_token, client_credentials)"
                        ),
                    )
                })?);
            }
            out
        }
        None if spec.redirect_uris.is_empty() => vec![GrantType::ClientCredentials],
        None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
    };
    if grant_types.is_empty() {
        return Err(IdpError::invalid("grant_types", "at least one grant"));
    }
    if let Some(bad) = spec
        .scopes
        .iter()
        .find(|s| !crate::clients::PRIVILEGED_SCOPES.contains(&s.as_str()))
    {
        return Err(IdpError::invalid(
            "scopes",
            format!("unknown scope {bad:?}"),
        ));
    }
    if !spec.scopes.is_empty()
        && (matches!(auth, NewClientAuth::Public)
            || !grant_types.contains(&GrantType::ClientCredentials))
    {
        return Err(IdpError::invalid(
            "scopes",
            "privileged scopes need a confidential client with the client_credentials grant",
        ));
    }
    let new = NewClient {
        client_id: spec.client_id,
        auth,
        redirect_uris: spec.redirect_uris,
        post_logout_redirect_uris: spec.post_logout_redirect_uris,
        grant_types,
    };
    new.validate()?;
    Ok((new, spec.scopes))
}

/// Register a validated client; the answer carries a generated secret, once.
async fn register(
    state: &Shared,
    who: &str,
    new: NewClient,
    scopes: Vec<String>,
    replace: bool,
) -> Result<(Value, bool), IdpError> {
    let existed = crate::clients::find(&state.db, &new.client_id)
        .await?
        .is_some();
    if existed && replace {
        crate::clients::remove(&state.db, &new.client_id).await?;
    }
    let (mut client, secret) = crate::clients::create(&state.db, &new).await?;
    if !scopes.is_empty() {
        client = crate::clients::set_scopes(&state.db, &client.client_id, &scopes).await?;
    }
    state.clients.forget(&client.client_id);
    tracing::info!(admin = %who, client = %client.client_id, replaced = existed, "client registered");
    let mut out = json!(client);
    if let Some(s) = secret {
        // Shown once: only its hash is stored.
        out["client_secret"] = json!(s);
    }
    Ok((out, existed))
}

pub async fn create_client(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = admin!(state, headers);
    let spec: ClientSpec = match parse(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (new, scopes) = match build_client(spec) {
        Ok(v) => v,
        Err(e) => return from_idp(e),
    };
    match register(&state, &who, new, scopes, false).await {
        Ok((out, _)) => json_response(StatusCode::CREATED, out),
        Err(e) => from_idp(e),
    }
}

/// PUT: register or replace (idempotent with an agreed `client_secret`; a generated one is new
/// each time). The client id comes from the path; a body `client_id` must agree.
pub async fn put_client(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let who = admin!(state, headers);
    let spec: ClientSpec = match with_path_id(&body, "client_id", &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (new, scopes) = match build_client(spec) {
        Ok(v) => v,
        Err(e) => return from_idp(e),
    };
    match register(&state, &who, new, scopes, true).await {
        Ok((out, true)) => json_response(StatusCode::OK, out),
        Ok((out, false)) => json_response(StatusCode::CREATED, out),
        Err(e) => from_idp(e),
    }
}

pub async fn delete_client(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = admin!(state, headers);
    match crate::clients::remove(&state.db, &id).await {
        Ok(()) => {
            state.clients.forget(&id);
            tracing::info!(admin = %who, client = %id, "client removed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => from_idp(e),
    }
}
