//! The orchestration state store: deployments and their state machine, transitions, per-phase
//! steps (checkpoints), per-service results and events, errors, circuit breakers, metrics and
//! deployment locks — on SQLite (a file in `DIVE_HOME`, the default) or PostgreSQL, with one
//! schema and one migration path (`migrations/`) through sqlx's `Any` driver.

mod breaker;
mod breakers;
mod connect;
mod deployments;
mod error;
mod ids;
mod lock;
mod machine;
mod records;
mod stats;
mod summary;

pub use breaker::{BreakerConfig, BreakerOpen, BreakerPermit, BreakerRecord, BreakerState};
pub use breakers::BreakerEntry;
pub use connect::Backend;
pub use deployments::{
    DeploymentRecord, PhaseCheckpoint, StepRecord, StepState, StepStatus, TransitionRecord,
};
pub use error::StateError;
pub use ids::{DeploymentId, UnixMillis, format_millis, now_millis};
pub use lock::{LockGuard, LockOptions, LockOwner, LockRecord, advisory_key};
pub use machine::{DeploymentState, UnknownState};
pub use records::{ErrorRecord, EventRecord, ServiceResult, Severity};
pub use stats::{DeploymentDuration, MetricSample, Percentiles, ServiceDuration, percentiles};
pub use summary::{StoreSummary, TableCount};

use sqlx::AnyPool;

/// A handle on the state store; cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
    /// The location as given (used to open dedicated lock connections).
    url: String,
    /// The location for display: the file path, or the URL with its password redacted.
    described: String,
}

impl StateStore {
    /// Which database engine holds the state.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the state is, for display: a file path or a URL without its password.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
