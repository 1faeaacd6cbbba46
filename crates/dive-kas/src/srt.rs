//! The signed request token (SRT) of a rewrap: a JWT whose `requestBody` claim carries the
//! request, signed by the client's ephemeral key.
//!
//! How the KAS checks the signature, in OpenTDF's terms:
//! - the access token is bound to a key (`cnf.jkt`, RFC 9449): the SRT must carry that key in its
//!   `jwk` header and verify with it (proof of possession);
//! - otherwise, when the SRT carries its public key in the `jwk` header (DIVE's client does), the
//!   signature must verify with it — this binds the request body to the key that signed it;
//! - otherwise (OpenTDF SDKs with a bearer token sign with a key they never announce) the
//!   signature cannot be checked and is not: OpenTDF's KAS does the same. The bearer token is what
//!   authenticates the caller, and the claims (`iat`, `exp`) are still enforced.
//!
//! `exp` is required; `iat` may not lie in the future (both with the configured leeway).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dive_jose::{Jwk, VerifyingKey};
use serde_json::{Map, Value, json};

use crate::wire::RequestError;

const FIELD: &str = "signedRequestToken";

/// How the SRT's signature was established (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrtKey {
    /// Verified with the key in the `jwk` header; RFC 7638 thumbprint.
    Verified { thumbprint: String },
    /// No key to verify with (bearer token, no `jwk` header).
    Unverified,
}

impl SrtKey {
    pub fn describe(&self) -> String {
        match self {
            SrtKey::Verified { thumbprint } => format!("jwk:{thumbprint}"),
            SrtKey::Unverified => "unverified".to_string(),
        }
    }
}

/// A checked SRT: its request body (still JSON text) and how it was signed.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub request_body: String,
    pub key: SrtKey,
}

fn bad(reason: impl Into<String>) -> RequestError {
    RequestError::new(FIELD, reason)
}

fn part(s: &str, what: &str) -> Result<Map<String, Value>, RequestError> {
    let raw = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad(format!("{what} is not a JSON object"))),
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA or EC public JWK.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    // Members in lexicographic order, no whitespace: serde_json's Map keeps keys sorted.
    let canonical = match s("kty")? {
        "RSA" => json!({"e": s("e")?, "kty": "RSA", "n": s("n")?}),
        "EC" => json!({"crv": s("crv")?, "kty": "EC", "x": s("x")?, "y": s("y")?}),
        "OKP" => json!({"crv": s("crv")?, "kty": "OKP", "x": s("x")?}),
        _ => return None,
    };
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    Some(URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Check an SRT. `bound_jkt` is the access token's `cnf.jkt` when it has one.
pub fn verify(
    token: &str,
    bound_jkt: Option<&str>,
    now: i64,
    leeway: i64,
) -> Result<SignedRequest, RequestError> {
    if token.is_empty() {
        return Err(bad("is required"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad("is not a compact JWS (three dot-separated parts)"));
    };
    let header = part(h, "the header")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("header has no \"alg\""))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(bad("an unsigned (alg \"none\") token is not accepted"));
    }
    let header_jwk = header.get("jwk").and_then(Value::as_object);
    let (claims, key) = match header_jwk {
        Some(jwk) => {
            let thumbprint =
                jwk_thumbprint(jwk).ok_or_else(|| bad("the \"jwk\" header is not a public key"))?;
            if let Some(jkt) = bound_jkt
                && jkt != thumbprint
            {
                return Err(bad(
                    "signed by a key other than the one the access token is bound to (cnf.jkt)",
                ));
            }
            let parsed: Jwk = serde_json::from_value(Value::Object(jwk.clone()))
                .map_err(|_| bad("the \"jwk\" header is not a JWK"))?;
            let vk = VerifyingKey::from_jwk(&parsed)
                .map_err(|e| bad(format!("the \"jwk\" header: {e}")))?;
            let claims = dive_jose::verify_token(token, |_| Ok(&vk))
                .map_err(|e| bad(format!("signature check failed: {e}")))?;
            (claims, SrtKey::Verified { thumbprint })
        }
        None => {
            if bound_jkt.is_some() {
                return Err(bad(
                    "the access token is bound to a key (cnf.jkt) but the token carries no \"jwk\" header to prove it",
                ));
            }
            (part(p, "the payload")?, SrtKey::Unverified)
        }
    };
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("claim \"exp\" (seconds) is required"))?;
    if now > exp + leeway {
        return Err(bad("expired (\"exp\" is in the past)"));
    }
    if let Some(iat) = claims.get("iat") {
        let iat = iat
            .as_i64()
            .ok_or_else(|| bad("claim \"iat\" must be seconds"))?;
        if iat > now + leeway {
            return Err(bad("issued in the future (\"iat\")"));
        }
    }
    let request_body = match claims.get("requestBody") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("claim \"requestBody\" must be a JSON string")),
        None => return Err(bad("claim \"requestBody\" is required")),
    };
    Ok(SignedRequest { request_body, key })
}

/// The client's request-signing key: a fresh P-256 ECDSA key whose public half travels in the
/// SRT's `jwk` header.
pub struct RequestSigner {
    key: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
}

impl std::fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestSigner({})", self.thumbprint)
    }
}

impl RequestSigner {
    pub fn generate() -> Result<RequestSigner, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "ECDSA key generation failed".to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| "ECDSA key generation failed".to_string())?;
        let point = key.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256",
                         "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                         "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        let thumbprint = jwk
            .as_object()
            .and_then(jwk_thumbprint)
            .ok_or("cannot compute the key thumbprint")?;
        Ok(RequestSigner {
            key,
            jwk,
            thumbprint,
        })
    }

    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// An SRT for `request_body` valid from `now` for `ttl` seconds.
    pub fn sign(&self, request_body: &str, now: i64, ttl: i64) -> Result<String, String> {
        let header = json!({"alg": "ES256", "typ": "JWT", "jwk": self.jwk});
        let claims = json!({"requestBody": request_body, "iat": now, "exp": now + ttl});
        let mut out = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), out.as_bytes())
            .map_err(|_| "ECDSA signing failed".to_string())?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn signed_with_header_key_round_trips_and_tampering_fails() {
        let s = RequestSigner::generate().unwrap();
        let t = s.sign("{\"a\":1}", NOW, 60).unwrap();
        let r = verify(&t, None, NOW, 30).unwrap();
        assert_eq!(r.request_body, "{\"a\":1}");
        assert_eq!(
            r.key,
            SrtKey::Verified {
                thumbprint: s.thumbprint().to_string()
            }
        );
        // Bound to this key: accepted; bound to another: refused.
        assert!(verify(&t, Some(s.thumbprint()), NOW, 30).is_ok());
        let other = RequestSigner::generate().unwrap();
        assert!(verify(&t, Some(other.thumbprint()), NOW, 30).is_err());
        // A changed payload no longer verifies.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD
            .encode(json!({"requestBody": "{\"a\":2}", "iat": NOW, "exp": NOW + 60}).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        let e = verify(&tampered, None, NOW, 30).unwrap_err();
        assert_eq!(e.field, "signedRequestToken");
        assert!(e.reason.contains("signature"), "{e}");
    }

    #[test]
    fn time_claims_are_enforced() {
        let s = RequestSigner::generate().unwrap();
        let t = s.sign("{}", NOW - 120, 60).unwrap();
        assert!(
            verify(&t, None, NOW, 30)
                .unwrap_err()
                .reason
                .contains("expired")
        );
        let t = s.sign("{}", NOW + 120, 60).unwrap();
        assert!(
            verify(&t, None, NOW, 30)
                .unwrap_err()
                .reason
                .contains("future")
        );
    }

    #[test]
    fn unannounced_key_is_unverified_like_opentdf_but_alg_none_is_refused() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = enc(json!({"requestBody": "{}", "iat": NOW, "exp": NOW + 60}));
        let rs = format!(
            "{}.{claims}.c2ln",
            enc(json!({"alg": "RS256", "typ": "JWT"}))
        );
        assert_eq!(verify(&rs, None, NOW, 30).unwrap().key, SrtKey::Unverified);
        assert!(verify(&rs, Some("jkt"), NOW, 30).is_err());
        let none = format!("{}.{claims}.", enc(json!({"alg": "none"})));
        assert!(verify(&none, None, NOW, 30).is_err());
        let no_exp = format!(
            "{}.{}.c2ln",
            enc(json!({"alg": "RS256"})),
            enc(json!({"requestBody": "{}"}))
        );
        assert!(
            verify(&no_exp, None, NOW, 30)
                .unwrap_err()
                .reason
                .contains("exp")
        );
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            jwk_thumbprint(jwk.as_object().unwrap()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
