//! The UI as an OpenID Connect relying party of its instance's IdP: discovery, the authorization
//! request (code flow, PKCE S256, state, nonce, optional `idp_hint`), the code exchange and
//! refresh with `client_secret_basic`, ID token validation (signature, `iss`, `aud`, `exp`, `typ`
//! through `dive_jose::JwksVerifier`; then `nonce`, `azp`, `at_hash`), and RP-initiated logout.

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::config::Settings;

/// The scopes the UI asks for: identity, the coalition attributes the pages show, roles.
pub const SCOPE: &str = "openid profile coalition roles";

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider at {issuer} cannot be reached: {detail}")]
    Unreachable { issuer: String, detail: String },
    #[error("the identity provider's discovery document is unusable: {0}")]
    Discovery(String),
    #[error("the identity provider refused the {grant} grant: {detail}")]
    Refused { grant: &'static str, detail: String },
    #[error("the ID token is not acceptable: {0}")]
    IdToken(String),
}

/// The parts of the discovery document the UI uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

struct Discovered {
    meta: Metadata,
    verifier: dive_jose::JwksVerifier,
}

/// The relying party. Discovery happens on first use and is kept (a failure is retried on the
/// next use), so the UI can start before its IdP answers.
pub struct RelyingParty {
    settings: Settings,
    http: reqwest::Client,
    discovered: OnceCell<Discovered>,
}

/// What a sign-in needs to remember until the callback.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

impl RelyingParty {
    pub fn new(settings: Settings, http: reqwest::Client) -> RelyingParty {
        RelyingParty {
            settings,
            http,
            discovered: OnceCell::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn discovered(&self) -> Result<&Discovered, OidcError> {
        self.discovered
            .get_or_try_init(|| async {
                let issuer = &self.settings.issuer;
                let url = format!("{issuer}/.well-known/openid-configuration");
                let unreachable = |e: reqwest::Error| OidcError::Unreachable {
                    issuer: issuer.clone(),
                    detail: e.to_string(),
                };
                let meta: Metadata = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(unreachable)?
                    .json()
                    .await
                    .map_err(|e| OidcError::Discovery(e.to_string()))?;
                if meta.issuer != *issuer {
                    return Err(OidcError::Discovery(format!(
                        "it names issuer {:?}, expected {issuer:?}",
                        meta.issuer
                    )));
                }
                let validation = dive_jose::Validation::new(issuer.clone())
                    .with_audience(self.settings.client_id.clone())
                    .with_typ("JWT");
                let verifier =
                    dive_jose::JwksVerifier::new(&meta.jwks_uri, self.http.clone(), validation);
                Ok(Discovered { meta, verifier })
            })
            .await
    }

    /// The authorization request for a new sign-in; `idp_hint` names a brokered partner IdP.
    pub async fn authorization_request(
        &self,
        idp_hint: Option<&str>,
    ) -> Result<AuthRequest, OidcError> {
        let d = self.discovered().await?;
        let state = dive_idp::util::random_token(24);
        let nonce = dive_idp::util::random_token(24);
        let code_verifier = dive_idp::util::random_token(32);
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri())
            .append_pair("scope", SCOPE)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &dive_idp::util::pkce_s256(&code_verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(h) = idp_hint {
            q.append_pair("idp_hint", h);
        }
        Ok(AuthRequest {
            url: format!("{}?{}", d.meta.authorization_endpoint, q.finish()),
            state,
            nonce,
            code_verifier,
        })
    }

    async fn token_request(
        &self,
        grant: &'static str,
        form: &[(&str, &str)],
    ) -> Result<TokenSet, OidcError> {
        let d = self.discovered().await?;
        let resp = self
            .http
            .post(&d.meta.token_endpoint)
            .basic_auth(&self.settings.client_id, Some(&self.settings.client_secret))
            .form(form)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable {
                issuer: self.settings.issuer.clone(),
                detail: e.to_string(),
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = match (body["error"].as_str(), body["error_description"].as_str()) {
                (Some(e), Some(d)) => format!("{e}: {d}"),
                (Some(e), None) => e.to_string(),
                _ => format!("status {status}"),
            };
            return Err(OidcError::Refused { grant, detail });
        }
        serde_json::from_value(body).map_err(|e| OidcError::Refused {
            grant,
            detail: format!("unusable token response: {e}"),
        })
    }

    /// Redeem an authorization code (with its PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
    ) -> Result<TokenSet, OidcError> {
        let redirect = self.settings.redirect_uri();
        self.token_request(
            "authorization_code",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect),
                ("code_verifier", code_verifier),
            ],
        )
        .await
    }

    /// Use a refresh token (single use at the IdP: the answer carries the next one).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, OidcError> {
        self.token_request(
            "refresh_token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Validate an ID token issued with `access_token`: signature and standard claims through
    /// the JWKS verifier, then `nonce` (when one was sent), `azp`, `at_hash`, and — on refresh —
    /// the same `sub` as the session's.
    pub async fn validate_id_token(
        &self,
        id_token: &str,
        access_token: &str,
        nonce: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Map<String, Value>, OidcError> {
        let d = self.discovered().await?;
        let claims = d
            .verifier
            .verify(id_token)
            .await
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
        check_id_claims(&claims, &self.settings.client_id, access_token, nonce, sub)?;
        Ok(claims)
    }

    /// The IdP's logout URL for RP-initiated logout, returning to the UI's start page.
    pub async fn logout_url(&self, id_token_hint: Option<&str>) -> Result<String, OidcError> {
        let d = self.discovered().await?;
        let end = d.meta.end_session_endpoint.clone().ok_or_else(|| {
            OidcError::Discovery("it has no end_session_endpoint for sign-out".into())
        })?;
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("client_id", &self.settings.client_id)
            .append_pair("post_logout_redirect_uri", &self.settings.post_logout_uri());
        if let Some(h) = id_token_hint {
            q.append_pair("id_token_hint", h);
        }
        Ok(format!("{end}?{}", q.finish()))
    }
}

/// The ID token checks beyond signature, `iss`, `aud`, `exp` and `typ` (OIDC Core 3.1.3.7).
fn check_id_claims(
    claims: &Map<String, Value>,
    client_id: &str,
    access_token: &str,
    nonce: Option<&str>,
    sub: Option<&str>,
) -> Result<(), OidcError> {
    let bad = |m: String| Err(OidcError::IdToken(m));
    if let Some(want) = nonce {
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if dive_idp::util::ct_eq(n, want) => {}
            _ => return bad("nonce does not match the one this sign-in sent".into()),
        }
    }
    if let Some(azp) = claims.get("azp").and_then(Value::as_str)
        && azp != client_id
    {
        return bad(format!("azp {azp:?} is not this client"));
    }
    match claims.get("at_hash").and_then(Value::as_str) {
        Some(h) if h == dive_jose::half_hash(access_token) => {}
        Some(_) => return bad("at_hash does not match the access token".into()),
        None => return bad("at_hash is missing".into()),
    }
    let token_sub = claims.get("sub").and_then(Value::as_str);
    match (token_sub, sub) {
        (None, _) => bad("sub is missing".into()),
        (Some(t), Some(s)) if t != s => bad("sub changed on refresh".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn nonce_azp_at_hash_and_sub_are_checked() {
        let at = "access.token.value";
        let good = claims(json!({
            "sub": "u1", "nonce": "n1", "azp": "dive-web", "at_hash": dive_jose::half_hash(at)
        }));
        assert!(check_id_claims(&good, "dive-web", at, Some("n1"), None).is_ok());
        assert!(check_id_claims(&good, "dive-web", at, None, Some("u1")).is_ok());
        let e = |r: Result<(), OidcError>| r.unwrap_err().to_string();
        assert!(e(check_id_claims(&good, "dive-web", at, Some("n2"), None)).contains("nonce"));
        assert!(e(check_id_claims(&good, "other", at, Some("n1"), None)).contains("azp"));
        assert!(
            e(check_id_claims(
                &good,
                "dive-web",
                "x.y.z",
                Some("n1"),
                None
            ))
            .contains("at_hash")
        );
        assert!(e(check_id_claims(&good, "dive-web", at, None, Some("u2"))).contains("sub"));
        let no_hash = claims(json!({"sub": "u1", "nonce": "n1"}));
        assert!(e(check_id_claims(&no_hash, "dive-web", at, Some("n1"), None)).contains("at_hash"));
    }
}
