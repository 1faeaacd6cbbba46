//! Prometheus text exposition (format 0.0.4) of the orchestrator's state: deployment durations
//! and states from the store, and live service facts from the supervisors.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::supervisor::protocol::{Health, ServiceState, StackStatus};

/// Deployment duration histogram buckets, in seconds.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What the store knows, flattened for rendering.
#[derive(Debug, Default, Clone)]
pub struct StoreFacts {
    /// (stack, final state, duration ms) of finished deployments.
    pub deployments: Vec<(String, String, i64)>,
    /// Latest state per stack.
    pub latest_state: BTreeMap<String, String>,
    /// (stack, service, time to healthy ms) from each stack's latest deployment.
    pub time_to_healthy: Vec<(String, String, i64)>,
    /// (stack, service, state) where state is closed | half_open | open.
    pub breakers: Vec<(String, String, String)>,
    /// Stacks with an active deployment lock.
    pub locks: Vec<String>,
    /// (stack, severity, count).
    pub errors: Vec<(String, String, i64)>,
}

/// All deployment states, so that the state gauge is one-hot over a fixed set.
pub const STATES: [&str; 11] = [
    "PENDING",
    "INITIALIZING",
    "DEPLOYING",
    "CONFIGURING",
    "VERIFYING",
    "COMPLETE",
    "DEGRADED",
    "FAILED",
    "INTERRUPTED",
    "ROLLING_BACK",
    "CLEANUP",
];

/// Gather [`StoreFacts`] from the state store (the most recent 1,000 deployments).
pub async fn collect(
    store: &crate::state::StateStore,
) -> Result<StoreFacts, crate::state::StateError> {
    use crate::state::{BreakerConfig, now_millis};
    let mut facts = StoreFacts::default();
    let deployments = store.list_deployments(None, 1000).await?;
    for d in &deployments {
        if let Some(ms) = d.duration_ms {
            facts
                .deployments
                .push((d.stack.clone(), d.state.to_string(), ms));
        }
        // Newest first: the first seen per stack is its latest.
        if !facts.latest_state.contains_key(&d.stack) {
            facts
                .latest_state
                .insert(d.stack.clone(), d.state.to_string());
            for r in store.service_results(&d.id).await? {
                if let Some(ms) = r.time_to_healthy_ms {
                    facts.time_to_healthy.push((d.stack.clone(), r.service, ms));
                }
            }
        }
        let mut by_severity: BTreeMap<String, i64> = BTreeMap::new();
        for e in store.errors(&d.id).await? {
            *by_severity
                .entry(e.severity.as_str().to_string())
                .or_default() += 1;
        }
        for (severity, n) in by_severity {
            match facts
                .errors
                .iter_mut()
                .find(|(st, sv, _)| *st == d.stack && *sv == severity)
            {
                Some(entry) => entry.2 += n,
                None => facts.errors.push((d.stack.clone(), severity, n)),
            }
        }
    }
    let now = now_millis();
    let cfg = BreakerConfig::default();
    for b in store.list_breakers(None).await? {
        let state = b.record.effective_state(now, &cfg).as_str().to_lowercase();
        facts.breakers.push((b.stack, b.service, state));
    }
    facts.locks = store
        .active_locks()
        .await?
        .into_iter()
        .filter(|l| !l.stale)
        .map(|l| l.stack)
        .collect();
    Ok(facts)
}

pub fn render(facts: &StoreFacts, live: &[StackStatus]) -> String {
    let mut out = String::new();
    let mut w = Writer { out: &mut out };

    w.header(
        "dive_deployment_duration_seconds",
        "histogram",
        "Duration of finished deployments, by stack.",
    );
    let mut by_stack: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (stack, _, ms) in &facts.deployments {
        by_stack
            .entry(stack.as_str())
            .or_default()
            .push(*ms as f64 / 1000.0);
    }
    for (stack, values) in &by_stack {
        for le in DURATION_BUCKETS {
            let n = values.iter().filter(|v| **v <= le).count();
            w.sample(
                "dive_deployment_duration_seconds_bucket",
                &[("stack", stack), ("le", &fmt_float(le))],
                n as f64,
            );
        }
        w.sample(
            "dive_deployment_duration_seconds_bucket",
            &[("stack", stack), ("le", "+Inf")],
            values.len() as f64,
        );
        w.sample(
            "dive_deployment_duration_seconds_sum",
            &[("stack", stack)],
            values.iter().sum(),
        );
        w.sample(
            "dive_deployment_duration_seconds_count",
            &[("stack", stack)],
            values.len() as f64,
        );
    }

    w.header(
        "dive_deployments_total",
        "counter",
        "Finished deployments by stack and final state.",
    );
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (stack, state, _) in &facts.deployments {
        *counts.entry((stack.as_str(), state.as_str())).or_default() += 1;
    }
    for ((stack, state), n) in counts {
        w.sample(
            "dive_deployments_total",
            &[("stack", stack), ("state", state)],
            n as f64,
        );
    }

    w.header(
        "dive_deployment_state",
        "gauge",
        "1 for the state of each stack's latest deployment, 0 for the others.",
    );
    for (stack, current) in &facts.latest_state {
        for s in STATES {
            w.sample(
                "dive_deployment_state",
                &[("stack", stack), ("state", s)],
                if s == current { 1.0 } else { 0.0 },
            );
        }
    }

    w.header(
        "dive_service_time_to_healthy_seconds",
        "gauge",
        "Time from spawn to healthy (or completed) in each stack's latest deployment.",
    );
    for (stack, service, ms) in &facts.time_to_healthy {
        w.sample(
            "dive_service_time_to_healthy_seconds",
            &[("stack", stack), ("service", service)],
            *ms as f64 / 1000.0,
        );
    }

    w.header(
        "dive_circuit_breaker_state",
        "gauge",
        "Per-service start circuit breaker: 0 closed, 1 half-open, 2 open.",
    );
    for (stack, service, state) in &facts.breakers {
        let v = match state.as_str() {
            "open" => 2.0,
            "half_open" => 1.0,
            _ => 0.0,
        };
        w.sample(
            "dive_circuit_breaker_state",
            &[("stack", stack), ("service", service)],
            v,
        );
    }

    w.header(
        "dive_deployment_locks_active",
        "gauge",
        "Deployment locks currently held, by stack.",
    );
    let mut locks: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &facts.locks {
        *locks.entry(s.as_str()).or_default() += 1;
    }
    for (stack, n) in locks {
        w.sample(
            "dive_deployment_locks_active",
            &[("stack", stack)],
            n as f64,
        );
    }

    w.header(
        "dive_deployment_errors_total",
        "counter",
        "Errors recorded by deployments, by stack and severity.",
    );
    for (stack, severity, n) in &facts.errors {
        w.sample(
            "dive_deployment_errors_total",
            &[("stack", stack), ("severity", severity)],
            *n as f64,
        );
    }

    w.header(
        "dive_service_up",
        "gauge",
        "1 when a supervised service is running and healthy (or has no probe).",
    );
    for st in live {
        for s in &st.services {
            let up = s.state == ServiceState::Running
                && matches!(s.health, Health::Healthy | Health::None);
            w.sample(
                "dive_service_up",
                &[("stack", &st.stack), ("service", &s.name)],
                if up { 1.0 } else { 0.0 },
            );
        }
    }
    w.header(
        "dive_service_restarts_total",
        "counter",
        "Restarts performed by the supervisor's restart policy.",
    );
    for st in live {
        for s in &st.services {
            w.sample(
                "dive_service_restarts_total",
                &[("stack", &st.stack), ("service", &s.name)],
                s.restarts as f64,
            );
        }
    }
    out
}

struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", fmt_float(value));
    }
}

fn fmt_float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_labels_are_escaped() {
        let facts = StoreFacts {
            deployments: vec![
                ("a\"b".into(), "COMPLETE".into(), 300),
                ("a\"b".into(), "FAILED".into(), 2_000),
            ],
            latest_state: [("a\"b".to_string(), "FAILED".to_string())].into(),
            ..StoreFacts::default()
        };
        let text = render(&facts, &[]);
        assert!(
            text.contains(
                "dive_deployment_duration_seconds_bucket{stack=\"a\\\"b\",le=\"0.25\"} 0"
            )
        );
        assert!(
            text.contains("dive_deployment_duration_seconds_bucket{stack=\"a\\\"b\",le=\"0.5\"} 1")
        );
        assert!(
            text.contains(
                "dive_deployment_duration_seconds_bucket{stack=\"a\\\"b\",le=\"+Inf\"} 2"
            )
        );
        assert!(text.contains("dive_deployment_duration_seconds_sum{stack=\"a\\\"b\"} 2.3"));
        assert!(text.contains("dive_deployment_state{stack=\"a\\\"b\",state=\"FAILED\"} 1"));
        assert!(text.contains("dive_deployment_state{stack=\"a\\\"b\",state=\"COMPLETE\"} 0"));
        assert!(text.contains("# TYPE dive_deployment_duration_seconds histogram"));
        // Every non-comment line is `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        }
    }
}
