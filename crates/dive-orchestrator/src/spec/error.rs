//! Spec errors: every one names the file, line, column and key path.

use std::fmt;
use std::path::PathBuf;

use super::types::Pos;

/// An error in a stack file. Displays as `FILE:LINE:COL: KEY.PATH: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    /// Line 0 means "the file as a whole" (e.g. it could not be read).
    pub pos: Pos,
    /// Dotted key path, e.g. `services.api.depends_on.db`; empty for the document itself.
    pub path: String,
    pub kind: SpecErrorKind,
}

/// What went wrong, for callers (and tests) that need to tell errors apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecErrorKind {
    #[error("cannot read: {0}")]
    Io(String),
    #[error("{0}")]
    Yaml(String),
    #[error("unknown key \"{0}\"")]
    UnknownKey(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("unknown service \"{0}\"")]
    UnknownService(String),
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("invalid duration \"{0}\": {1}")]
    InvalidDuration(String, String),
    #[error("invalid class \"{0}\": expected core, stretch, optional or init")]
    InvalidClass(String),
    #[error(
        "invalid restart policy \"{0}\": expected no, always, on-failure[:N] or unless-stopped"
    )]
    InvalidRestart(String),
    #[error("no command: set `command` and/or `entrypoint` (there is no image to supply one)")]
    EmptyCommand,
    #[error("condition service_healthy, but service \"{0}\" has no healthcheck")]
    HealthyWithoutHealthcheck(String),
    #[error(
        "invalid stack name \"{0}\": use lowercase letters, digits, '-' and '_', starting with a letter or digit"
    )]
    BadName(String),
    #[error("required variable {0}")]
    MissingVariable(String),
    #[error("invalid interpolation: {0}")]
    BadInterpolation(String),
    #[error(
        "required dependency \"{service}\" is not enabled by the active profiles (it needs profile {needs})"
    )]
    DependencyNotEnabled { service: String, needs: String },
}

impl SpecError {
    pub fn new(
        file: impl Into<PathBuf>,
        pos: Pos,
        path: impl Into<String>,
        kind: SpecErrorKind,
    ) -> Self {
        SpecError {
            file: file.into(),
            pos,
            path: path.into(),
            kind,
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for SpecError {}
