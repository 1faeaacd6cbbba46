//! The resolved, validated form of a compose-format stack file.
//!
//! Everything here has already been interpolated, defaulted and checked: the scheduler and the
//! supervisor never see raw YAML. Source positions are kept so that later errors (for example a
//! dependency cycle found by the planner) can still name the file and line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A position in a stack file (1-based line and column).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A whole stack: every service defined in the file, including profile-only ones.
/// Use `plan::Plan::build` to select the services of the active profiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackSpec {
    /// Stack name: `-p NAME` if given, else the file's top-level `name`, else the file's directory name.
    pub name: String,
    /// The stack file this was read from.
    pub source: PathBuf,
    /// Services by name (sorted, so iteration order is deterministic).
    pub services: BTreeMap<String, ServiceSpec>,
    /// Keys accepted for compose compatibility but meaningless to the process runtime
    /// (`image`, `ports`, `volumes`, `networks`, ...).
    pub ignored: Vec<IgnoredKey>,
    /// Things worth telling the operator that are not errors (e.g. a missing class label).
    pub notices: Vec<Notice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredKey {
    /// `None` for top-level keys (`networks`, `volumes`, ...).
    pub service: Option<String>,
    pub key: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub service: Option<String>,
    pub pos: Pos,
    pub message: String,
}

/// How much a service matters to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceClass {
    /// Its failure fails the deployment.
    Core,
    /// Wanted; its failure degrades the deployment.
    Stretch,
    /// Nice to have; its failure degrades the deployment.
    Optional,
    /// A one-shot job that must run to completion.
    Init,
}

impl ServiceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceClass::Core => "core",
            ServiceClass::Stretch => "stretch",
            ServiceClass::Optional => "optional",
            ServiceClass::Init => "init",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// `service_started`: the dependency's process has been spawned.
    Started,
    /// `service_healthy`: the dependency's health probe has passed.
    Healthy,
    /// `service_completed_successfully`: the dependency ran and exited 0.
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: DependencyCondition,
    /// Compose `required` (default true). A non-required dependency that is not part of the
    /// plan (e.g. excluded by profile) is ignored; a required one is an error.
    pub required: bool,
    pub pos: Pos,
}

/// What a health probe runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// `["CMD", prog, args...]`: exec directly; healthy on exit 0.
    Cmd(Vec<String>),
    /// `["CMD-SHELL", "..."]` or a plain string: run with `/bin/sh -c`; healthy on exit 0.
    Shell(String),
    /// Label `dive.health.http`: GET this URL; healthy on a 2xx/3xx answer. No subprocess.
    /// With label `dive.health.ca` (a PEM file), an `https` URL is verified against those
    /// certificates only (e.g. DIVE's installation CA) instead of the system's roots.
    Http {
        url: String,
        ca_file: Option<PathBuf>,
    },
    /// Label `dive.health.tcp`: `host:port` accepts a TCP connection. No subprocess.
    Tcp(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Compose default 30 s: the steady-state period between probes once healthy.
    pub interval: Duration,
    /// Compose default 30 s: one probe taking longer than this fails.
    pub timeout: Duration,
    /// Compose default 3: consecutive failures (after `start_period`) that make it unhealthy.
    pub retries: u32,
    /// Compose default 0: failures during this period do not count.
    pub start_period: Duration,
    /// Compose `start_interval` (default 5 s): the most the scheduler waits between probes while
    /// starting. DIVE polls faster than this at first and backs off towards it.
    pub start_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy", content = "max_retries")]
pub enum RestartPolicy {
    No,
    Always,
    /// `on-failure[:N]`; `None` = no limit from the file (the supervisor's own limit applies).
    OnFailure(Option<u32>),
    UnlessStopped,
}

/// One service, fully resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Where `services.<name>` is defined.
    pub pos: Pos,
    /// The argv to exec: `entrypoint` followed by `command` (each a list, or a string split with
    /// shell-word rules as compose does). Never empty: with no image to supply a default, a
    /// service with neither is a spec error.
    pub argv: Vec<String>,
    /// `env_file` entries (in order) overlaid by `environment`. Values already interpolated.
    pub environment: BTreeMap<String, String>,
    /// Absolute; relative paths are resolved against the stack file's directory; default: that directory.
    pub working_dir: PathBuf,
    pub depends_on: Vec<Dependency>,
    /// `None` when there is no healthcheck, it is `["NONE"]`, or `disable: true`
    /// (and no native probe label).
    pub healthcheck: Option<HealthCheck>,
    pub restart: RestartPolicy,
    pub profiles: Vec<String>,
    /// Compose default 10 s.
    pub stop_grace_period: Duration,
    /// Signal number (`SIGTERM` = 15 by default; names with or without `SIG`, or numbers).
    pub stop_signal: i32,
    pub class: ServiceClass,
    /// False when `dive.service.class` was missing and `Optional` was assumed (a notice is recorded).
    pub class_explicit: bool,
    /// `dive.service.description`.
    pub description: Option<String>,
    /// `dive.service.timeout`: maximum time from spawn to healthy (or to completion for `init`).
    pub start_timeout: Option<Duration>,
    /// All labels as written (map or list form), including the `dive.*` ones.
    pub labels: BTreeMap<String, String>,
}
