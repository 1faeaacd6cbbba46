//! HTTP load generator for the Data API (`dive bench pdp`): N keep-alive connections posting
//! decision requests for a fixed time; reports throughput and latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::PolicyError;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Full URL, e.g. `http://127.0.0.1:8181/v1/data/dive/authz/decision`.
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    /// Request inputs, cycled through.
    pub inputs: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Run the load. Each connection is its own client so that exactly `connections` sockets are used.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, PolicyError> {
    if config.inputs.is_empty() || config.connections == 0 {
        return Err(PolicyError::Input(
            "load test needs at least one input and one connection".into(),
        ));
    }
    let bodies: Arc<Vec<String>> = Arc::new(
        config
            .inputs
            .iter()
            .map(|i| serde_json::json!({ "input": i }).to_string())
            .collect(),
    );
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut tasks = Vec::new();
    for c in 0..config.connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| PolicyError::Input(e.to_string()))?;
        let (url, bodies) = (config.url.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let t = Instant::now();
                let ok = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| PolicyError::Input(e.to_string()))?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(LoadReport {
        requests: all.len() as u64,
        errors,
        elapsed,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: all.last().copied().unwrap_or_default(),
    })
}
