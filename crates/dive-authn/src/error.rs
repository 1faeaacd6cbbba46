//! Why a token was refused.

use dive_jose::JoseError;

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("no access token: send Authorization: Bearer <token>")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("issuer {0:?} is not trusted by this instance")]
    UntrustedIssuer(String),
    #[error("token rejected: {0}")]
    Token(#[from] JoseError),
    #[error("token expired")]
    Expired,
    #[error("token has been revoked")]
    Revoked,
    #[error("token claims do not describe a coalition user: {0}")]
    Claims(dive_core::CoreError),
    #[error("cannot verify tokens right now: {0}")]
    Unavailable(String),
    #[error("trusted issuers file {path}: {why}")]
    TrustedIssuersFile { path: String, why: String },
}

impl AuthnError {
    /// True when the failure is on this side (an issuer or revocation list out of reach), not
    /// the caller's token: services answer 503 rather than 401 for these.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            AuthnError::Unavailable(_) | AuthnError::Token(JoseError::Fetch(_))
        )
    }
}
