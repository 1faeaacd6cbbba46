//! Tearing an instance down (`dive nuke hub|spoke CODE`): its processes, its recorded state,
//! its stack directory (logs, reports) and its instance directory (configuration, secrets,
//! databases, policy data) — then checking that nothing of it is left. The installation PKI is
//! shared by every instance and stays (`dive nuke all` removes it).

use std::time::Duration;

use dive_core::CountryCode;
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::state::StateStore;
use dive_orchestrator::supervisor::{shutdown_stack, supervisor_alive};

use crate::config::{self, InstancePaths, stack_name};
use crate::error::{InstanceError, io};

/// What removing an instance did and found.
#[derive(Debug, Default)]
pub struct Removal {
    /// The supervisor was running and stopped its services.
    pub stopped: bool,
    /// Services of a dead supervisor that were still running and were killed.
    pub orphans: Vec<String>,
    pub deployments_deleted: bool,
    pub removed: Vec<String>,
    /// What is still there afterwards (empty when the removal is complete).
    pub left: Vec<String>,
}

/// What would be removed, for a dry run.
pub fn plan(home: &std::path::Path, code: CountryCode) -> Vec<String> {
    let paths = InstancePaths::new(home, code);
    let stack = StackPaths::new(home, &stack_name(code));
    vec![
        format!(
            "the processes of stack {} (supervisor and services)",
            stack.name
        ),
        format!("its recorded deployments, locks and breakers"),
        format!("{} (logs, reports)", stack.dir.display()),
        format!(
            "{} (configuration, secrets, databases, policy data)",
            paths.dir.display()
        ),
    ]
}

/// Remove the instance `code`. `store` is the orchestration state store (when it can be
/// opened).
pub async fn remove(
    home: &std::path::Path,
    code: CountryCode,
    store: Option<&StateStore>,
) -> Result<Removal, InstanceError> {
    let paths = InstancePaths::new(home, code);
    let cfg = config::load(&paths).ok().flatten();
    let name = stack_name(code);
    let stack = StackPaths::new(home, &name);
    let mut r = Removal::default();
    let (stopped, orphans) = shutdown_stack(&stack).await?;
    r.stopped = stopped;
    r.orphans = orphans.killed;
    if let Some(store) = store {
        store.delete_stack(&name).await?;
        r.deployments_deleted = true;
    }
    for dir in [&stack.dir, &paths.dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io("remove", dir))?;
            r.removed.push(dir.display().to_string());
        }
    }

    // Verify.
    if supervisor_alive(&stack) {
        r.left.push(format!("the supervisor of stack {name}"));
    }
    for dir in [&stack.dir, &paths.dir] {
        if dir.exists() {
            r.left.push(dir.display().to_string());
        }
    }
    if let Some(store) = store {
        if !store.list_deployments(Some(&name), 1).await?.is_empty() {
            r.left.push(format!("recorded deployments of stack {name}"));
        }
        if store.active_locks().await?.iter().any(|l| l.stack == name) {
            r.left.push(format!("a deployment lock of stack {name}"));
        }
    }
    if let Some(cfg) = cfg {
        for (service, port) in cfg.ports.iter() {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                r.left.push(format!(
                    "something still listens on port {port} ({service} of {code})"
                ));
            }
        }
    }
    Ok(r)
}
