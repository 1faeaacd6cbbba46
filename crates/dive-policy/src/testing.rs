//! The Rego test runner behind `dive policy test`: every `test_*` rule of every module is
//! evaluated against the policies and data; a test passes when its rule is `true`.

use std::time::{Duration, Instant};

use crate::error::PolicyError;
use crate::pdp::new_engine;
use crate::sources::Snapshot;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The rule was false or undefined.
    Fail,
    /// Evaluation raised an error.
    Error(String),
}

#[derive(Debug, Clone)]
pub struct TestResult {
    /// Full rule path, e.g. `data.dive.authz_test.test_allows`.
    pub name: String,
    pub file: String,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// Run every test rule; `filter` keeps tests whose path contains it.
pub fn run_tests(
    snapshot: &Snapshot,
    filter: Option<&str>,
) -> Result<Vec<TestResult>, PolicyError> {
    let engine = new_engine(snapshot, regorus::Value::from(snapshot.data.clone()), true)?;
    let mut results = Vec::new();
    for file in &snapshot.policies {
        let Some(package) = package_of(&file.text) else {
            continue;
        };
        for rule in test_rules(&file.text) {
            let name = format!("data.{package}.{rule}");
            if filter.is_some_and(|f| !name.contains(f)) {
                continue;
            }
            // A fresh copy per test so that one test's evaluation state cannot leak into another.
            let mut engine = engine.clone();
            let started = Instant::now();
            let outcome = match engine.eval_rule(name.clone()) {
                Ok(regorus::Value::Bool(true)) => Outcome::Pass,
                Ok(_) => Outcome::Fail,
                Err(e) => Outcome::Error(e.to_string()),
            };
            results.push(TestResult {
                name,
                file: file.path.clone(),
                outcome,
                duration: started.elapsed(),
            });
        }
    }
    Ok(results)
}

fn package_of(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim().to_string())
}

/// Names of top-level rules starting with `test_` (a rule head starts at column 0 in formatted
/// Rego); each name once, in file order.
fn test_rules(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{PolicyFile, Sources};

    fn snapshot_with(test: &str) -> Snapshot {
        let mut snap = Sources::embedded().load().expect("embedded sources");
        snap.policies.push(PolicyFile {
            path: "x_test.rego".into(),
            text: test.into(),
        });
        snap
    }

    #[test]
    fn reports_pass_fail_and_error() {
        let snap = snapshot_with(
            "package x_test\nimport rego.v1\ntest_ok if { 1 == 1 }\ntest_bad if { 1 == 2 }\ntest_err if { 1 / 0 == 1 }\n",
        );
        let r = run_tests(&snap, None).expect("runs");
        let by = |n: &str| {
            r.iter()
                .find(|t| t.name.ends_with(n))
                .map(|t| t.outcome.clone())
        };
        assert_eq!(by("test_ok"), Some(Outcome::Pass));
        assert_eq!(by("test_bad"), Some(Outcome::Fail));
        assert!(matches!(
            by("test_err"),
            Some(Outcome::Fail | Outcome::Error(_))
        ));
        assert_eq!(
            run_tests(&snap, Some("test_ok")).map(|r| r.len()).ok(),
            Some(1)
        );
    }
}
