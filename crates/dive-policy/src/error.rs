//! Errors of the PDP's setup (loading and compiling). Decisions themselves never error: they
//! fail closed into a deny with the cause as the reason.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {why}")]
    Io { path: String, why: String },
    #[error("data file {path}: {why}")]
    Data { path: String, why: String },
    #[error("policy {path}: {why}")]
    Parse { path: String, why: String },
    #[error("compiling entrypoint {entrypoint}: {why}")]
    Compile { entrypoint: String, why: String },
    #[error("no policy files (*.rego) in {0}")]
    NoPolicies(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error(transparent)]
    Core(#[from] dive_core::CoreError),
}

pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> PolicyError {
    PolicyError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}
