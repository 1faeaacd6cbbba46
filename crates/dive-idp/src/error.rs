//! Library errors of the identity provider.

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error(transparent)]
    Db(#[from] dive_db::DbError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The token endpoint's writes could not be committed (nothing was issued).
    #[error("recording issued tokens: {0}")]
    Store(String),
    #[error(transparent)]
    Jose(#[from] dive_jose::JoseError),
    #[error(transparent)]
    Pki(#[from] dive_pki::PkiError),
    #[error(transparent)]
    Http(#[from] dive_http::HttpError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

impl IdpError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> IdpError {
        IdpError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
