//! A temporary DIVE_HOME and stack directory for tests that deploy stacks of small shell
//! services through the real `dive` binary.

use std::path::{Path, PathBuf};
use std::process::Output;

pub use super::instance::Env;

/// Stack helpers on the shared test environment.
impl Env {
    pub fn stack(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.yml"));
        std::fs::write(&p, yaml).unwrap();
        p
    }

    pub fn up(&self, name: &str, file: &Path) -> Output {
        self.run(&["stack", "up", "-p", name, "-f", file.to_str().unwrap()])
    }

    pub fn status_json(&self, name: &str) -> serde_json::Value {
        let out = self.run(&["stack", "status", "-p", name, "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn last_report(&self, name: &str) -> serde_json::Value {
        let dir = self.home.join("stacks").join(name).join("deployments");
        let mut ids: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        ids.sort();
        let last = ids.last().expect("a deployment directory");
        serde_json::from_slice(&std::fs::read(last.join("report.json")).unwrap()).unwrap()
    }

    pub fn down(&self, name: &str) {
        let _ = self.run(&["stack", "down", "-p", name]);
    }
}

pub fn service<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("service {name} not in status {status}"))
}

pub fn report_service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in report"))
}

/// A service that becomes healthy `secs` after it starts (probe: a marker file).
pub fn ready_after(name: &str, secs: f64, class: &str, deps: &[(&str, &str)]) -> String {
    let mut y = format!(
        "  {name}:\n    command: [\"sh\", \"-c\", \"rm -f {name}.ready; sleep {secs}; touch {name}.ready; exec sleep 60\"]\n    stop_grace_period: 1s\n    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"{name}.ready\"]\n      interval: 1s\n    labels:\n      dive.service.class: {class}\n      dive.service.retry_backoff: 100ms\n"
    );
    if !deps.is_empty() {
        y.push_str("    depends_on:\n");
        for (d, cond) in deps {
            y.push_str(&format!("      {d}:\n        condition: {cond}\n"));
        }
    }
    y
}
