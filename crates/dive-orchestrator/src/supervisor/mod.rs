//! The per-stack supervisor: a detached daemon that owns a stack's processes, and the client
//! the CLI uses to talk to it.

mod client;
pub mod daemon;
pub mod protocol;

use serde::{Deserialize, Serialize};

pub use client::{
    Client, EventStream, OrphanCleanup, SpawnDaemon, cleanup_orphans, ensure_running,
    shutdown_stack, supervisor_alive,
};

use crate::process::ProcessId;

/// Written by a running supervisor to `supervisor.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorIdentity {
    pub process: ProcessId,
    pub stack: String,
    pub started_at_ms: i64,
}

/// A service process the supervisor started, recorded in `services.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrphanRecord {
    pub service: String,
    /// The service's process; its pid is also its process group id.
    pub process: ProcessId,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the supervisor of stack {stack:?} is not running")]
    NotRunning { stack: String },
    #[error("cannot talk to the supervisor of stack {stack:?}: {source}")]
    Io {
        stack: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the supervisor of stack {stack:?} did not start within {waited_ms} ms; see {log}")]
    StartTimeout {
        stack: String,
        waited_ms: u128,
        log: String,
    },
    #[error("the supervisor of stack {stack:?} answered: {message}")]
    Remote { stack: String, message: String },
    #[error("unexpected answer from the supervisor of stack {stack:?}: {answer}")]
    Protocol { stack: String, answer: String },
    #[error(
        "the socket path {path} is too long for a Unix socket ({len} bytes, limit 107): use a shorter DIVE_HOME"
    )]
    SocketPathTooLong { path: String, len: usize },
}
