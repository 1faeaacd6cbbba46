//! Claim validation and the relying party's JWKS-caching verifier.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::jws::{VerifyingKey, verify_token};
use crate::{JoseError, Jwks, now};

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Exact `iss`.
    pub issuer: String,
    /// If set, `aud` (string or array) must contain it.
    pub audience: Option<String>,
    /// If set, the header's `typ` must equal it (e.g. `at+jwt` for access tokens, RFC 9068).
    pub typ: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: i64,
}

impl Validation {
    pub fn new(issuer: impl Into<String>) -> Validation {
        Validation {
            issuer: issuer.into(),
            audience: None,
            typ: None,
            leeway: 30,
        }
    }

    pub fn with_audience(mut self, aud: impl Into<String>) -> Validation {
        self.audience = Some(aud.into());
        self
    }

    pub fn with_typ(mut self, typ: impl Into<String>) -> Validation {
        self.typ = Some(typ.into());
        self
    }

    /// Check `iss`, `aud`, `exp` (required) and `nbf` against now.
    pub fn check(&self, claims: &Map<String, Value>) -> Result<(), JoseError> {
        self.check_at(claims, now())
    }

    pub fn check_at(&self, claims: &Map<String, Value>, now: i64) -> Result<(), JoseError> {
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(JoseError::MissingClaim("iss"))?;
        if iss != self.issuer {
            return Err(JoseError::WrongIssuer {
                expected: self.issuer.clone(),
                got: iss.to_string(),
            });
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JoseError::MissingClaim("exp"))?;
        if now > exp + self.leeway {
            return Err(JoseError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or(JoseError::MissingClaim("nbf"))?;
            if now + self.leeway < nbf {
                return Err(JoseError::NotYetValid);
            }
        }
        if let Some(want) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => s == want,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
                _ => false,
            };
            if !ok {
                return Err(JoseError::WrongAudience(want.clone()));
            }
        }
        Ok(())
    }
}

/// A set of verifying keys, looked up by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Parse every usable signing key of a JWKS; keys DIVE cannot use are skipped.
    pub fn from_jwks(jwks: &Jwks) -> KeySet {
        KeySet {
            keys: jwks
                .keys
                .iter()
                .filter_map(|k| VerifyingKey::from_jwk(k).ok())
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: Option<&str>) -> bool {
        self.find(kid).is_ok()
    }

    pub fn find(&self, kid: Option<&str>) -> Result<&VerifyingKey, JoseError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid() == Some(kid))
                .ok_or_else(|| JoseError::UnknownKid(kid.to_string())),
            None if self.keys.len() == 1 => Ok(&self.keys[0]),
            None => Err(JoseError::AmbiguousKey),
        }
    }

    /// Verify signature and claims.
    pub fn verify(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<Map<String, Value>, JoseError> {
        let claims = verify_token(token, |kid| self.find(kid))?;
        check_typ(token, validation)?;
        validation.check(&claims)?;
        Ok(claims)
    }
}

fn check_typ(token: &str, validation: &Validation) -> Result<(), JoseError> {
    if let Some(want) = &validation.typ {
        let got = crate::decode_header(token)?.typ.unwrap_or_default();
        // Media types compare case-insensitively, with an optional "application/" prefix.
        let norm = |s: &str| {
            s.to_ascii_lowercase()
                .trim_start_matches("application/")
                .to_string()
        };
        if norm(&got) != norm(want) {
            return Err(JoseError::WrongType {
                expected: want.clone(),
                got,
            });
        }
    }
    Ok(())
}

/// Least time between two fetches triggered by unknown `kid`s: a flood of tokens with random
/// `kid`s must not become a flood of requests to the issuer.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// A relying party's verifier for one issuer: caches the issuer's JWKS and refetches it when a
/// token carries a `kid` the cache does not know (the issuer rotated its keys).
pub struct JwksVerifier {
    jwks_uri: String,
    http: reqwest::Client,
    validation: Validation,
    cache: RwLock<(Arc<KeySet>, Option<Instant>)>,
    refresh: tokio::sync::Mutex<()>,
    min_refresh: Duration,
}

impl JwksVerifier {
    /// `http` should trust the issuer's CA (see `dive_pki::Pki::client_config`).
    pub fn new(jwks_uri: impl Into<String>, http: reqwest::Client, validation: Validation) -> Self {
        JwksVerifier {
            jwks_uri: jwks_uri.into(),
            http,
            validation,
            cache: RwLock::new((Arc::new(KeySet::default()), None)),
            refresh: tokio::sync::Mutex::new(()),
            min_refresh: MIN_REFRESH_INTERVAL,
        }
    }

    /// Change the least time between refreshes triggered by unknown `kid`s (default 10 s).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    fn keys(&self) -> (Arc<KeySet>, Option<Instant>) {
        match self.cache.read() {
            Ok(g) => (g.0.clone(), g.1),
            Err(p) => (p.get_ref().0.clone(), p.get_ref().1),
        }
    }

    /// Verify a token: signature with the issuer's current keys, then the claims.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, JoseError> {
        let kid = crate::decode_header(token)?.kid;
        let (keys, fetched) = self.keys();
        if keys.contains(kid.as_deref()) {
            return keys.verify(token, &self.validation);
        }
        let stale = fetched.is_none_or(|t| t.elapsed() >= self.min_refresh);
        if !stale {
            return keys.verify(token, &self.validation);
        }
        let keys = self.refresh(fetched).await?;
        keys.verify(token, &self.validation)
    }

    /// Fetch the JWKS unless another task already did since `seen`.
    async fn refresh(&self, seen: Option<Instant>) -> Result<Arc<KeySet>, JoseError> {
        let _guard = self.refresh.lock().await;
        let (keys, fetched) = self.keys();
        if fetched != seen {
            return Ok(keys);
        }
        let jwks: Jwks = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| JoseError::Fetch(e.to_string()))?
            .json()
            .await
            .map_err(|e| JoseError::Fetch(e.to_string()))?;
        let set = Arc::new(KeySet::from_jwks(&jwks));
        tracing::debug!(uri = %self.jwks_uri, keys = set.len(), "refreshed JWKS");
        let mut g = match self.cache.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = (set.clone(), Some(Instant::now()));
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Alg, SigningKey};
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn issuer_audience_and_times_are_checked_with_leeway() {
        let v = Validation::new("https://idp").with_audience("api");
        let ok = claims(json!({"iss": "https://idp", "aud": ["x", "api"], "exp": 1000}));
        assert!(v.check_at(&ok, 1000).is_ok());
        assert!(v.check_at(&ok, 1030).is_ok(), "within leeway");
        assert_eq!(v.check_at(&ok, 1031).unwrap_err(), JoseError::Expired);
        let wrong_iss = claims(json!({"iss": "https://evil", "aud": "api", "exp": 2000}));
        assert!(matches!(
            v.check_at(&wrong_iss, 1000).unwrap_err(),
            JoseError::WrongIssuer { .. }
        ));
        let wrong_aud = claims(json!({"iss": "https://idp", "aud": "other", "exp": 2000}));
        assert_eq!(
            v.check_at(&wrong_aud, 1000).unwrap_err(),
            JoseError::WrongAudience("api".to_string())
        );
        let no_exp = claims(json!({"iss": "https://idp", "aud": "api"}));
        assert_eq!(
            v.check_at(&no_exp, 1000).unwrap_err(),
            JoseError::MissingClaim("exp")
        );
        let future = claims(json!({"iss": "https://idp", "aud": "api", "exp": 5000, "nbf": 2000}));
        assert_eq!(
            v.check_at(&future, 1000).unwrap_err(),
            JoseError::NotYetValid
        );
    }

    #[test]
    fn keyset_checks_typ_and_needs_kid_when_ambiguous() {
        let a = SigningKey::generate("a", Alg::ES256).unwrap();
        let b = SigningKey::generate("b", Alg::RS256).unwrap();
        let set = KeySet::from_jwks(&Jwks {
            keys: vec![a.public_jwk(), b.public_jwk()],
        });
        let v = Validation::new("i").with_typ("at+jwt");
        let body = json!({"iss": "i", "exp": now() + 60});
        assert!(set.verify(&b.sign("at+jwt", &body).unwrap(), &v).is_ok());
        assert!(matches!(
            set.verify(&b.sign("JWT", &body).unwrap(), &v).unwrap_err(),
            JoseError::WrongType { .. }
        ));
        let c = SigningKey::generate("c", Alg::RS256).unwrap();
        assert_eq!(
            set.verify(&c.sign("at+jwt", &body).unwrap(), &v)
                .unwrap_err(),
            JoseError::UnknownKid("c".to_string())
        );
    }
}
