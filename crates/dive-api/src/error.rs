//! Library errors of the resource service.

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Db(#[from] dive_db::DbError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    /// A document handed to the store is not acceptable; names the document and the field.
    #[error("resource {id:?}: {field}: {reason}")]
    InvalidResource {
        id: String,
        field: &'static str,
        reason: String,
    },
    #[error("resource {0:?} already exists")]
    Exists(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Pki(#[from] dive_pki::PkiError),
    #[error(transparent)]
    Http(#[from] dive_http::HttpError),
    #[error(transparent)]
    Policy(#[from] dive_policy::PolicyError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("KAS {url}: {why}")]
    Kas { url: String, why: String },
    #[error("configuration: {0}")]
    Config(String),
}

impl ApiError {
    pub fn invalid(id: &str, field: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidResource {
            id: id.to_string(),
            field,
            reason: reason.into(),
        }
    }
}
