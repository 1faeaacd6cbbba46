//! Compact JWS (RFC 7515) with HS256, the binding method of DEK-signed assertions. Small enough to
//! own: the header is fixed and verification must reject every other `alg` (no `none`, no
//! algorithm confusion), which is simplest to guarantee here.

use serde_json::{Map, Value};

use crate::crypto::{self, b64};

const HEADER_HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Sign `claims` with HMAC-SHA256 under `key`.
pub fn sign_hs256(claims: &impl serde::Serialize, key: &[u8]) -> String {
    // Claims are plain data; serialising them cannot fail.
    sign_hs256_json(&serde_json::to_vec(claims).unwrap_or_default(), key)
}

/// Sign claims already serialised as a JSON object.
pub(crate) fn sign_hs256_json(claims_json: &[u8], key: &[u8]) -> String {
    use base64::Engine;
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut token = String::with_capacity(64 + claims_json.len() * 4 / 3);
    engine.encode_string(HEADER_HS256, &mut token);
    token.push('.');
    engine.encode_string(claims_json, &mut token);
    let sig = crypto::hmac_sha256(key, token.as_bytes());
    token.push('.');
    engine.encode_string(sig, &mut token);
    token
}

/// Why a JWS did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("JWS header alg {0:?} cannot be verified with the data key (only HS256)")]
    UnsupportedAlg(String),
    #[error("JWS signature does not verify")]
    BadSignature,
    #[error("JWS payload is not a JSON object")]
    BadPayload,
}

/// Header `alg` of a compact JWS, without verifying it.
pub fn header_alg(token: &str) -> Result<String, JwsError> {
    let h = token.split('.').next().ok_or(JwsError::Malformed)?;
    let header: Value = serde_json::from_slice(&b64::url_decode(h).ok_or(JwsError::Malformed)?)
        .map_err(|_| JwsError::Malformed)?;
    header
        .get("alg")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(JwsError::Malformed)
}

/// Verify an HS256 compact JWS and return its claims.
pub fn verify_hs256(token: &str, key: &[u8]) -> Result<Map<String, Value>, JwsError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let alg = header_alg(token)?;
    if alg != "HS256" {
        return Err(JwsError::UnsupportedAlg(alg));
    }
    let sig = b64::url_decode(s).ok_or(JwsError::Malformed)?;
    let input_len = h.len() + 1 + p.len();
    if !crypto::hmac_sha256_verify(key, &token.as_bytes()[..input_len], &sig) {
        return Err(JwsError::BadSignature);
    }
    let payload = b64::url_decode(p).ok_or(JwsError::Malformed)?;
    match serde_json::from_slice(&payload) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwsError::BadPayload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let mut c = Map::new();
        c.insert("a".into(), "b".into());
        let t = sign_hs256(&c, b"k1");
        assert_eq!(verify_hs256(&t, b"k1").unwrap(), c);
        assert_eq!(verify_hs256(&t, b"k2").unwrap_err(), JwsError::BadSignature);
        let none = format!(
            "{}.{}.",
            b64::url_encode(r#"{"alg":"none"}"#),
            t.split('.').nth(1).unwrap()
        );
        assert_eq!(
            verify_hs256(&none, b"k1").unwrap_err(),
            JwsError::UnsupportedAlg("none".into())
        );
        assert_eq!(verify_hs256("a.b", b"k1").unwrap_err(), JwsError::Malformed);
        // The direct form signs the same bytes.
        assert_eq!(sign_hs256_json(&serde_json::to_vec(&c).unwrap(), b"k1"), t);
    }
}
