//! Errors of the state store.

use super::breaker::BreakerOpen;
use super::lock::LockOwner;
use super::machine::DeploymentState;

/// Everything that can go wrong when reading or writing orchestration state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid state store location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },
    #[error("cannot open the state store at {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the directory {path} for the state store: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migrating the state store at {location} failed: {source}")]
    Migrate {
        location: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("state store query failed ({what}): {source}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("the state store holds a value it cannot read ({what}): {value:?}")]
    Corrupt { what: &'static str, value: String },
    #[error("unknown deployment {0}")]
    UnknownDeployment(String),
    #[error("deployment cannot go from {from} to {to}")]
    InvalidTransition {
        from: DeploymentState,
        to: DeploymentState,
    },
    #[error(
        "{0} is not a final state; a deployment finishes as COMPLETE, DEGRADED, FAILED or INTERRUPTED"
    )]
    NotFinal(DeploymentState),
    #[error("deployment {id} changed state concurrently (expected {expected}); retry")]
    Conflict {
        id: String,
        expected: DeploymentState,
    },
    #[error("{}", lock_held_message(.stack, .owner.as_ref()))]
    LockHeld {
        stack: String,
        /// Who holds it, when the holder recorded itself (on PostgreSQL a session may hold the
        /// advisory lock without a description row).
        owner: Option<LockOwner>,
    },
    #[error(transparent)]
    BreakerOpen(#[from] BreakerOpen),
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },
}

fn lock_held_message(stack: &str, owner: Option<&LockOwner>) -> String {
    match owner {
        Some(o) => format!(
            "stack {stack} is being deployed by deployment {} (pid {} on {}, since {}); wait for it to finish or stop it",
            o.deployment_id,
            o.pid,
            o.host,
            super::ids::format_millis(o.since)
        ),
        None => format!(
            "stack {stack} is locked by another PostgreSQL session that did not describe itself; wait for it to finish"
        ),
    }
}

impl StateError {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> StateError {
        move |source| StateError::Query { what, source }
    }
}
