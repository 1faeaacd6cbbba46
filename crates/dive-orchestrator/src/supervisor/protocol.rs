//! The supervisor's wire protocol: one JSON object per line over a Unix socket.
//!
//! A connection carries requests and their single responses in turn; after `Subscribe` it
//! carries only events, in order, until either side closes it.

use serde::{Deserialize, Serialize};

use crate::process::ProcessId;
use crate::spec::{ServiceClass, ServiceSpec};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Ping,
    /// Start a service; a running one with a different definition is stopped and replaced,
    /// a running one with the same definition is left alone (answered `AlreadyRunning`).
    /// With `restart`, a running service is replaced even when its definition is unchanged
    /// (a retry after a failed start).
    Start {
        service: Box<ServiceSpec>,
        #[serde(default)]
        restart: bool,
    },
    /// Stop these services, one after another, in this order.
    Stop {
        services: Vec<String>,
    },
    /// Forget stopped services (they no longer appear in status).
    Forget {
        services: Vec<String>,
    },
    Status,
    /// Turn this connection into an event stream.
    Subscribe,
    /// Stop every service in reverse dependency order, then exit.
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Pong {
        pid: u32,
        stack: String,
    },
    Started {
        service: String,
        generation: u64,
    },
    /// The service already runs (or has completed) with the same definition.
    AlreadyRunning {
        service: String,
        generation: u64,
        state: ServiceState,
        health: Health,
    },
    Status(StackStatus),
    Error {
        message: String,
    },
}

/// Where a supervised service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Spawned, not yet healthy (services with a health probe).
    Starting,
    /// Running: healthy, or started with no health probe.
    Running,
    /// Was healthy, now failing its probe.
    Unhealthy,
    /// Waiting to be restarted after an exit.
    BackingOff,
    /// Asked to stop; waiting for it to exit.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Exited and will not be restarted (policy, or restart limit reached).
    Exited,
    /// An `init` job that exited 0.
    Completed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::BackingOff => "backing-off",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Exited => "exited",
            ServiceState::Completed => "completed",
        }
    }

    /// A process exists for the service (or will again shortly).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ServiceState::Starting
                | ServiceState::Running
                | ServiceState::Unhealthy
                | ServiceState::BackingOff
                | ServiceState::Stopping
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No probe configured.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::None => "-",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when the process exited normally.
    pub code: Option<i32>,
    /// Signal number, when it was killed by one.
    pub signal: Option<i32>,
    /// Unix millis.
    pub at_ms: i64,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by {}", crate::process::signal_name(s)),
            (None, None) => "exited".to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub class: ServiceClass,
    /// The `dive.service.description` label.
    #[serde(default)]
    pub description: Option<String>,
    pub state: ServiceState,
    pub health: Health,
    pub pid: Option<u32>,
    /// Unix millis of the current process's start.
    pub started_at_ms: Option<i64>,
    /// Restarts performed by the supervisor's restart policy (not scheduler retries).
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub definition_hash: String,
    /// Increases with every spawn; events carry it.
    pub generation: u64,
    /// Why the service is in its state, when that is not obvious (e.g. "restart limit reached").
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackStatus {
    pub stack: String,
    pub supervisor: ProcessId,
    /// Unix millis.
    pub supervisor_started_at_ms: i64,
    pub services: Vec<ServiceStatus>,
}

/// Something that happened to a service, pushed to subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Spawned {
        service: String,
        generation: u64,
        pid: u32,
    },
    SpawnFailed {
        service: String,
        generation: u64,
        error: String,
    },
    Healthy {
        service: String,
        generation: u64,
    },
    Unhealthy {
        service: String,
        generation: u64,
        reason: String,
    },
    Exited {
        service: String,
        generation: u64,
        exit: ExitInfo,
        /// The restart policy will start it again.
        restarting: bool,
    },
    Stopped {
        service: String,
        generation: u64,
    },
}

impl Event {
    pub fn service(&self) -> &str {
        match self {
            Event::Spawned { service, .. }
            | Event::SpawnFailed { service, .. }
            | Event::Healthy { service, .. }
            | Event::Unhealthy { service, .. }
            | Event::Exited { service, .. }
            | Event::Stopped { service, .. } => service,
        }
    }

    pub fn generation(&self) -> u64 {
        match self {
            Event::Spawned { generation, .. }
            | Event::SpawnFailed { generation, .. }
            | Event::Healthy { generation, .. }
            | Event::Unhealthy { generation, .. }
            | Event::Exited { generation, .. }
            | Event::Stopped { generation, .. } => *generation,
        }
    }
}
