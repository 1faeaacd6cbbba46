//! What can go wrong with an instance, each error naming the file, field or port at fault.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Bad input from the operator (flags, environment, a hand-edited file): exit code 2.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Corrupt { path: String, why: String },
    #[error(transparent)]
    Pki(#[from] dive_pki::PkiError),
    #[error(transparent)]
    Idp(#[from] dive_idp::IdpError),
    #[error(transparent)]
    Policy(#[from] dive_policy::PolicyError),
    #[error(transparent)]
    Spec(#[from] dive_orchestrator::spec::SpecError),
    #[error(transparent)]
    Deploy(#[from] dive_orchestrator::deploy::DeployError),
    #[error(transparent)]
    State(#[from] dive_orchestrator::state::StateError),
    #[error(transparent)]
    Supervisor(#[from] dive_orchestrator::supervisor::SupervisorError),
    #[error(transparent)]
    Http(#[from] dive_http::HttpError),
    /// A phase could not be completed; the message says what to do.
    #[error("{phase}: {message}")]
    Phase {
        phase: &'static str,
        message: String,
    },
}

impl InstanceError {
    pub fn invalid(msg: impl Into<String>) -> InstanceError {
        InstanceError::Invalid(msg.into())
    }

    /// Whether the operator's input is at fault (the CLI exits with 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, InstanceError::Invalid(_) | InstanceError::Spec(_))
    }
}

pub(crate) fn io(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> InstanceError {
    let path = path.display().to_string();
    move |source| InstanceError::Io {
        action,
        path,
        source,
    }
}

pub(crate) fn corrupt(path: &Path, why: impl std::fmt::Display) -> InstanceError {
    InstanceError::Corrupt {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}
