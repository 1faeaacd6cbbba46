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

/// Run the load: `connections` keep-alive HTTP/1.1 connections, each sending its next request as
/// soon as the previous response is read (closed loop), until the duration has passed.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, PolicyError> {
    if config.inputs.is_empty() || config.connections == 0 {
        return Err(PolicyError::Input(
            "load test needs at least one input and one connection".into(),
        ));
    }
    let target = Target::parse(&config.url)?;
    let bodies: Arc<Vec<hyper::body::Bytes>> = Arc::new(
        config
            .inputs
            .iter()
            .map(|i| serde_json::json!({ "input": i }).to_string().into())
            .collect(),
    );
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut tasks = Vec::new();
    for c in 0..config.connections {
        let (target, bodies) = (target.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            connection(&target, &bodies, c, deadline).await
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| PolicyError::Input(e.to_string()))??;
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

/// Where the load goes: `http://host:port/path` (the Data API is served over plain HTTP).
#[derive(Debug, Clone)]
struct Target {
    addr: String,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, PolicyError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            PolicyError::Input(format!("load test URL {url:?} must start with http://"))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(PolicyError::Input(format!(
                "load test URL {url:?} has no host"
            )));
        }
        let addr = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            addr,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// One connection's closed loop: latencies of successful requests, and the number of failures.
/// A failed connection is reopened (and counted as an error) so that a server restart mid-run
/// is measured rather than fatal.
async fn connection(
    target: &Target,
    bodies: &[hyper::body::Bytes],
    first: usize,
    deadline: Instant,
) -> Result<(Vec<Duration>, u64), PolicyError> {
    use http_body_util::{BodyExt, Full};
    let mut lat = Vec::with_capacity(100_000);
    let mut errors = 0u64;
    let mut i = first;
    'reconnect: while Instant::now() < deadline {
        let tcp = match tokio::net::TcpStream::connect(&target.addr).await {
            Ok(t) => t,
            Err(e) if lat.is_empty() && errors == 0 => {
                return Err(PolicyError::Input(format!("{}: {e}", target.addr)));
            }
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(tcp);
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
            errors += 1;
            continue;
        };
        let driver = tokio::spawn(conn);
        while Instant::now() < deadline {
            let body = bodies[i % bodies.len()].clone();
            i += 1;
            let req = hyper::Request::post(target.path.as_str())
                .header(hyper::header::HOST, target.authority.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| PolicyError::Input(e.to_string()))?;
            let t = Instant::now();
            let ok = match sender.send_request(req).await {
                Ok(r) if r.status().is_success() => r.into_body().collect().await.is_ok(),
                Ok(r) => {
                    // Read the error body so the connection stays usable; the request failed.
                    let _ = r.into_body().collect().await;
                    false
                }
                Err(_) => {
                    errors += 1;
                    driver.abort();
                    continue 'reconnect;
                }
            };
            if ok {
                lat.push(t.elapsed());
            } else {
                errors += 1;
            }
        }
        driver.abort();
    }
    Ok((lat, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_are_parsed_or_refused() {
        let t = Target::parse("http://127.0.0.1:8181/v1/data/dive/authz").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8181");
        assert_eq!(t.path, "/v1/data/dive/authz");
        assert_eq!(Target::parse("http://pdp").unwrap().addr, "pdp:80");
        assert!(Target::parse("https://127.0.0.1:1/").is_err());
        assert!(Target::parse("http:///x").is_err());
    }
}
