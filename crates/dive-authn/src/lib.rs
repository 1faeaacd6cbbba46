//! Access-token authentication for DIVE's resource servers (the KAS and the resource API).
//!
//! One [`Authenticator`] per service: it trusts exactly the issuers listed in the instance's
//! PDP data (`trusted_issuers.json`, re-read when it changes, so federation changes take effect
//! without a restart), discovers each issuer's JWKS through OpenID discovery, verifies signatures
//! and claims with `dive-jose` (JWKS cached, refetched on an unknown `kid`), honours the
//! instance IdP's revocation list, and turns the claims into `dive_core::SubjectAttributes`.
//!
//! Fail closed: an unknown issuer, an unreachable discovery document, a revocation list that
//! could not be fetched or has gone stale, or claims that do not form coalition attributes all
//! refuse the token, with a reason.

mod error;
mod issuers;
mod revocation;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use dive_core::{Equivalency, SubjectAttributes};
use dive_jose::{JwksVerifier, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use error::AuthnError;
pub use issuers::TrustedIssuers;
pub use revocation::RevocationSource;

use revocation::RevocationList;

/// Verified tokens kept before the cache is emptied (a bound on memory, not a tuning knob).
const TOKEN_CACHE_MAX: usize = 20_000;

/// How a service authenticates bearer tokens.
#[derive(Clone)]
pub struct AuthnConfig {
    /// Trusts the installation CA, and in a service also the partner CAs registered through
    /// federation (`dive_http::TrustedClient`, which follows them without a restart).
    pub http: dive_http::HttpsSource,
    /// `<policy data>/trusted_issuers.json`: an object keyed by issuer URL.
    pub trusted_issuers_file: PathBuf,
    /// The instance IdP's revocation list, polled with the service's client credentials.
    pub revocation: Option<RevocationSource>,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    pub leeway_secs: i64,
    /// When set, `aud` must contain it.
    pub audience: Option<String>,
    /// Only access tokens (`typ: at+jwt`, RFC 9068) are accepted unless this is false.
    pub require_access_token_type: bool,
    /// This service's instance, when it accepts federated tokens: a token from a trusted issuer
    /// of another instance (a federation partner) must then carry that partner's own audience
    /// (`dive-<partner>`, what its IdP issues for its services) instead of [`Self::audience`].
    /// Federated search and cross-instance decryption forward a user's home token this way.
    pub federated_instance: Option<String>,
}

impl AuthnConfig {
    pub fn new(
        http: impl Into<dive_http::HttpsSource>,
        trusted_issuers_file: impl Into<PathBuf>,
    ) -> AuthnConfig {
        AuthnConfig {
            http: http.into(),
            trusted_issuers_file: trusted_issuers_file.into(),
            revocation: None,
            leeway_secs: 30,
            audience: None,
            require_access_token_type: true,
            federated_instance: None,
        }
    }

    pub fn with_revocation(mut self, source: RevocationSource) -> AuthnConfig {
        self.revocation = Some(source);
        self
    }

    pub fn with_audience(mut self, audience: impl Into<String>) -> AuthnConfig {
        self.audience = Some(audience.into());
        self
    }

    /// Accept partners' tokens with their own audience (see [`Self::federated_instance`]).
    pub fn accepting_partner_tokens(mut self, own_instance: impl Into<String>) -> AuthnConfig {
        self.federated_instance = Some(own_instance.into());
        self
    }

    /// The audience a token from `issuer` (of instance `instance`) must carry.
    fn audience_for(&self, instance: Option<&str>) -> Option<String> {
        match (&self.federated_instance, instance) {
            (Some(own), Some(i)) if !i.eq_ignore_ascii_case(own) => {
                Some(format!("dive-{}", i.to_ascii_lowercase()))
            }
            _ => self.audience.clone(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    pub jti: Option<String>,
    pub issued_at: Option<i64>,
    pub expires_at: i64,
    pub claims: Map<String, Value>,
    /// The coalition attributes, clearance normalised through the subject's nation's table.
    pub attributes: SubjectAttributes,
}

impl Principal {
    /// The roles claim (`roles` or `realm_access.roles`), as normalised into the attributes.
    pub fn has_role(&self, role: &str) -> bool {
        self.attributes.roles.iter().any(|r| r == role)
    }
}

/// Verifies bearer tokens; cheap to clone and share between request handlers.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthnConfig,
    issuers: TrustedIssuers,
    /// Per issuer: its verifier and the generation of the HTTPS client it was built with.
    verifiers: tokio::sync::Mutex<HashMap<String, (u64, Arc<JwksVerifier>)>>,
    revocation: Option<Arc<RevocationList>>,
    /// SHA-256 of a token → its principal, so a token is verified once, not per request.
    verified: Mutex<HashMap<[u8; 32], Arc<Principal>>>,
}

impl Authenticator {
    /// Read the trusted issuers now (a missing or malformed file is an error naming it).
    pub fn new(config: AuthnConfig) -> Result<Authenticator, AuthnError> {
        let issuers = TrustedIssuers::open(&config.trusted_issuers_file)?;
        let revocation = config
            .revocation
            .clone()
            .map(|s| Arc::new(RevocationList::new(s, config.http.get())));
        Ok(Authenticator {
            inner: Arc::new(Inner {
                config,
                issuers,
                verifiers: tokio::sync::Mutex::new(HashMap::new()),
                revocation,
                verified: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The issuers trusted right now.
    pub fn trusted_issuers(&self) -> Vec<String> {
        self.inner.issuers.current().keys().cloned().collect()
    }

    /// Authenticate an `Authorization` header value (`Bearer …`).
    pub async fn authenticate_header(&self, header: Option<&str>) -> Result<Principal, AuthnError> {
        self.authenticate_header_shared(header)
            .await
            .map(|p| (*p).clone())
    }

    /// As [`Self::authenticate_header`], sharing the cached principal instead of copying it (its
    /// claims map and attributes): for services that authenticate on every request.
    pub async fn authenticate_header_shared(
        &self,
        header: Option<&str>,
    ) -> Result<Arc<Principal>, AuthnError> {
        let header = header.ok_or(AuthnError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthnError::Malformed("Authorization is not a Bearer token"))?;
        self.authenticate_shared(token.trim()).await
    }

    /// Verify a bearer token and build the caller's attributes.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthnError> {
        self.authenticate_shared(token).await.map(|p| (*p).clone())
    }

    /// As [`Self::authenticate`], sharing the cached principal.
    pub async fn authenticate_shared(&self, token: &str) -> Result<Arc<Principal>, AuthnError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cached(&key);
        let principal = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(self.verify(token).await?);
                self.remember(key, p.clone());
                p
            }
        };
        // Checked on every use: the token may have expired or been revoked since it was cached,
        // or its issuer may no longer be trusted.
        let now = dive_jose::now();
        if now > principal.expires_at + self.inner.config.leeway_secs {
            return Err(AuthnError::Expired);
        }
        if !self.inner.issuers.contains(&principal.issuer) {
            return Err(AuthnError::UntrustedIssuer(principal.issuer.clone()));
        }
        if let Some(list) = &self.inner.revocation
            && list.issuer() == principal.issuer
        {
            list.check(&principal).await?;
        }
        Ok(principal)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Arc<Principal>> {
        let map = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    fn remember(&self, key: [u8; 32], p: Arc<Principal>) {
        let mut map = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() >= TOKEN_CACHE_MAX {
            let now = dive_jose::now();
            map.retain(|_, v| v.expires_at > now);
            if map.len() >= TOKEN_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, p);
    }

    async fn verify(&self, token: &str) -> Result<Principal, AuthnError> {
        let issuer = unverified_issuer(token)?;
        if !self.inner.issuers.contains(&issuer) {
            return Err(AuthnError::UntrustedIssuer(issuer));
        }
        let verifier = self.verifier(&issuer).await?;
        let claims = verifier.verify(token).await?;
        let attributes =
            SubjectAttributes::from_claims(&Value::Object(claims.clone()), Equivalency::builtin())
                .map_err(AuthnError::Claims)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(AuthnError::Malformed("token has no sub"))?
            .to_string();
        Ok(Principal {
            issuer,
            subject,
            jti: claims
                .get("jti")
                .and_then(Value::as_str)
                .map(str::to_string),
            issued_at: claims.get("iat").and_then(Value::as_i64),
            expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
            claims,
            attributes,
        })
    }

    /// The verifier of `issuer`, discovering its JWKS on first use — and again after the HTTPS
    /// client changed (a partner CA added, replaced or removed): a partner that re-joined with a
    /// new CA is then fetched from with the client that trusts it, not the one of first use.
    async fn verifier(&self, issuer: &str) -> Result<Arc<JwksVerifier>, AuthnError> {
        let mut map = self.inner.verifiers.lock().await;
        let (http, generation) = self.inner.config.http.current();
        if let Some((g, v)) = map.get(issuer)
            && *g == generation
        {
            return Ok(v.clone());
        }
        let jwks_uri = discover_jwks_uri(&http, issuer).await?;
        let cfg = &self.inner.config;
        let mut validation = Validation::new(issuer);
        validation.leeway = cfg.leeway_secs;
        let instance = self.inner.issuers.instance_of(issuer);
        if let Some(aud) = cfg.audience_for(instance.as_deref()) {
            validation = validation.with_audience(aud);
        }
        if cfg.require_access_token_type {
            validation = validation.with_typ("at+jwt");
        }
        let v = Arc::new(
            JwksVerifier::new(jwks_uri, http, validation)
                .with_min_refresh_interval(Duration::from_secs(5)),
        );
        map.insert(issuer.to_string(), (generation, v.clone()));
        Ok(v)
    }
}

/// The `iss` of a token before verification: only used to choose the keys to verify with.
fn unverified_issuer(token: &str) -> Result<String, AuthnError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthnError::Malformed(
            "not a compact JWS (three dot-separated parts)",
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthnError::Malformed("payload is not base64url"))?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| AuthnError::Malformed("payload is not JSON"))?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(AuthnError::Malformed("token has no iss"))
}

async fn discover_jwks_uri(http: &reqwest::Client, issuer: &str) -> Result<String, AuthnError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let unavailable = |e: String| AuthnError::Unavailable(format!("discovery at {url}: {e}"));
    let doc: Value = http
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| unavailable(e.to_string()))?
        .json()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(unavailable(
            "the document names a different issuer".to_string(),
        ));
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| unavailable("no jwks_uri".to_string()))
}

#[cfg(test)]
mod audience_tests {
    use super::*;

    #[test]
    fn partner_tokens_carry_the_partner_audience_only_when_accepted() {
        let http = reqwest::Client::new();
        let cfg = AuthnConfig::new(http, "/nonexistent").with_audience("dive-fra");
        assert_eq!(cfg.audience_for(Some("USA")).as_deref(), Some("dive-fra"));
        let cfg = cfg.accepting_partner_tokens("FRA");
        assert_eq!(cfg.audience_for(Some("USA")).as_deref(), Some("dive-usa"));
        assert_eq!(cfg.audience_for(Some("FRA")).as_deref(), Some("dive-fra"));
        assert_eq!(cfg.audience_for(None).as_deref(), Some("dive-fra"));
    }
}
