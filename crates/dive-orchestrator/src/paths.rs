//! Where a stack's runtime files live under `DIVE_HOME`.

use std::path::{Path, PathBuf};

/// `$DIVE_HOME/stacks/<name>/`: supervisor socket and pid, service logs, deployment reports.
#[derive(Debug, Clone)]
pub struct StackPaths {
    pub name: String,
    pub dir: PathBuf,
}

impl StackPaths {
    pub fn new(home: &Path, name: &str) -> StackPaths {
        StackPaths {
            name: name.to_string(),
            dir: home.join("stacks").join(name),
        }
    }

    /// All stacks that have a directory under `home`, sorted by name.
    pub fn all(home: &Path) -> std::io::Result<Vec<StackPaths>> {
        let root = home.join("stacks");
        let mut out = Vec::new();
        match std::fs::read_dir(&root) {
            Ok(entries) => {
                for e in entries {
                    let e = e?;
                    if e.file_type()?.is_dir()
                        && let Some(name) = e.file_name().to_str()
                    {
                        out.push(StackPaths::new(home, name));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("supervisor.sock")
    }
    /// The supervisor's identity (pid and process start time), for liveness checks.
    pub fn supervisor_file(&self) -> PathBuf {
        self.dir.join("supervisor.json")
    }
    /// The supervisor's own log (its stderr).
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// Pids of the services the supervisor started: what to clean up if it dies.
    pub fn services_file(&self) -> PathBuf {
        self.dir.join("services.json")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn service_log(&self, service: &str) -> PathBuf {
        self.logs_dir().join(format!("{service}.log"))
    }
    pub fn deployments_dir(&self) -> PathBuf {
        self.dir.join("deployments")
    }
    pub fn deployment_dir(&self, id: &str) -> PathBuf {
        self.deployments_dir().join(id)
    }
}
