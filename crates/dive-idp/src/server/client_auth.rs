//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt`, or none for public clients.

use axum::http::{HeaderMap, header};
use base64::Engine;
use serde_json::Value;

use super::{OAuthError, Shared};
use crate::clients::{Client, ClientAuth};
use crate::util::now;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Form parameters, refusing repeated ones (RFC 6749 §3.2).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(body: &[u8]) -> Result<Params, OAuthError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} is repeated"
                )));
            }
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        let mut e = OAuthError::invalid_client("malformed Basic credentials");
        e.basic_challenge = true;
        e
    };
    let v = value.to_str().map_err(|_| bad())?;
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

/// Authenticate the calling client. Public clients pass with `client_id` alone unless
/// `confidential_only`.
pub async fn authenticate(
    state: &Shared,
    headers: &HeaderMap,
    params: &Params,
    confidential_only: bool,
) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let post_secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let methods = [basic.is_some(), post_secret.is_some(), assertion.is_some()]
        .iter()
        .filter(|m| **m)
        .count();
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use exactly one client authentication method",
        ));
    }
    let unknown = |basic: bool| {
        let mut e = OAuthError::invalid_client("client authentication failed");
        e.basic_challenge = basic;
        e
    };
    if let Some((id, secret)) = &basic {
        if params.get("client_id").is_some_and(|c| c != id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the credentials",
            ));
        }
        return check_secret(state, id, secret)
            .await?
            .ok_or_else(|| unknown(true));
    }
    if let Some(secret) = post_secret {
        let id = params.require("client_id")?;
        return check_secret(state, id, secret)
            .await?
            .ok_or_else(|| unknown(false));
    }
    if let Some(assertion) = assertion {
        if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {ASSERTION_TYPE}"
            )));
        }
        return check_assertion(state, params.get("client_id"), assertion).await;
    }
    let id = params
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client("no client authentication"))?;
    let client = state
        .clients
        .find(&state.db, id)
        .await?
        .ok_or_else(|| unknown(false))?;
    if !client.is_public() || confidential_only {
        return Err(unknown(false));
    }
    Ok(client)
}

async fn check_secret(
    state: &Shared,
    id: &str,
    secret: &str,
) -> Result<Option<Client>, OAuthError> {
    let matches = |c: &Client| c.secret_matches(secret);
    let Some(client) = state.clients.find(&state.db, id).await? else {
        return Ok(None);
    };
    if matches(&client) {
        return Ok(Some(client));
    }
    // The cached record may predate a secret rotation: decide on the database's copy.
    state.clients.forget(id);
    Ok(state
        .clients
        .find(&state.db, id)
        .await?
        .filter(|c| matches(c)))
}

/// RFC 7523 §3: iss = sub = client_id, aud names us, unexpired, `jti` never seen before.
async fn check_assertion(
    state: &Shared,
    claimed_id: Option<&str>,
    assertion: &str,
) -> Result<Client, OAuthError> {
    let fail = |why: &str| OAuthError::invalid_client(format!("client assertion: {why}"));
    let unverified: Value = assertion
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail("malformed"))?;
    let sub = unverified["sub"].as_str().ok_or_else(|| fail("no sub"))?;
    if claimed_id.is_some_and(|c| c != sub) {
        return Err(fail("sub is not client_id"));
    }
    // Read fresh: a client's registered keys may have just been rotated.
    let client = crate::clients::find(&state.db, sub)
        .await?
        .ok_or_else(|| fail("unknown client"))?;
    let ClientAuth::PrivateKeyJwt { jwks } = &client.auth else {
        return Err(fail("client is not registered for private_key_jwt"));
    };
    let keyset = dive_jose::KeySet::from_jwks(jwks);
    let claims = dive_jose::verify_token(assertion, |kid| keyset.find(kid))
        .map_err(|e| fail(&e.to_string()))?;
    if claims.get("iss").and_then(Value::as_str) != Some(sub) {
        return Err(fail("iss must equal sub"));
    }
    let token_endpoint = state.endpoint("/token");
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == token_endpoint || *a == state.issuer,
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str() == Some(&token_endpoint) || v.as_str() == Some(&state.issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(fail("aud must be the token endpoint or the issuer"));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| fail("no exp"))?;
    if exp + 30 < now() {
        return Err(fail("expired"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("no jti"))?;
    let inserted = sqlx::query(
        "INSERT INTO idp_client_assertions (jti, expires_at) VALUES ($1, $2) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(format!("{sub}:{jti}"))
    .bind(exp)
    .execute(&state.db.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(fail("jti was already used"));
    }
    Ok(client)
}
