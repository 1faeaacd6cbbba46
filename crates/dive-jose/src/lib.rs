//! Compact JWS (RFC 7515) for DIVE's tokens on aws-lc-rs: RS256 (default) and ES256 signing keys,
//! JWK/JWKS (RFC 7517) publication, verification with strict algorithm binding (no `none`, no HMAC,
//! the header's `alg` must be the key's own), registered-claim checks (RFC 7519: `iss`, `aud`,
//! `exp`, `nbf` with a small leeway), and a relying-party [`JwksVerifier`] that caches an issuer's
//! JWKS and refreshes it when a token names an unknown `kid`.

pub mod jwk;
pub mod jws;
pub mod verifier;

pub use jwk::{Jwk, Jwks};
pub use jws::{
    Alg, Header, SigningKey, VerifyingKey, decode_header, half_hash, sign_with, verify_token,
};
pub use verifier::{JwksVerifier, KeySet, Validation};

/// Why a token or key was refused. Messages name what is wrong, never the token itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoseError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted")]
    UnsupportedAlg(String),
    #[error("algorithm {token:?} does not match the key's algorithm {key}")]
    AlgMismatch { token: String, key: &'static str },
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("token has no kid and the key set holds more than one key")]
    AmbiguousKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("issuer {got:?} is not the expected {expected:?}")]
    WrongIssuer { expected: String, got: String },
    #[error("audience does not include {0:?}")]
    WrongAudience(String),
    #[error("token type {got:?} is not the expected {expected:?}")]
    WrongType { expected: String, got: String },
    #[error("required claim {0:?} is missing or has the wrong type")]
    MissingClaim(&'static str),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("cannot fetch the key set: {0}")]
    Fetch(String),
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, JoseError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JoseError::Malformed("invalid base64url"))
}
