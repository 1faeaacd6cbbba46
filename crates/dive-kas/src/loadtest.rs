//! A rewrap load generator for `dive bench kas`: concurrent clients, each with its own ephemeral
//! key and request-signing key, posting rewraps of the same KAOs to the REST endpoint.
//!
//! Each client first does one full rewrap and decrypts the returned shares (so a run that would
//! not actually release keys fails loudly), then repeats its signed request — re-signed every
//! 30 s — so the client's own signing cost stays out of the KAS's figure. The KAS does the whole
//! work on every request: token check, signature check of the request, unwrap, binding, decision,
//! rewrap and audit.

use std::time::{Duration, Instant};

use dive_ztdf::KeyAccessObject;
use serde_json::json;

use crate::client::{ClientError, ClientKeyKind, RemoteKas};

/// Re-sign the request after this long (signed requests live 60 s).
const RESIGN: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct LoadConfig {
    /// Trusts the KAS's CA.
    pub http: reqwest::Client,
    /// The KAS URL as in KAOs (`https://host:port/kas`).
    pub kas_url: String,
    pub token: String,
    pub connections: usize,
    pub duration: Duration,
    pub client_key: ClientKeyKind,
    /// The policy (base64, as stored) and the KAOs to rewrap in every request.
    pub policy_b64: String,
    pub kaos: Vec<KeyAccessObject>,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Successful rewraps (HTTP 200, every KAO permitted).
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted latencies of successful requests.
    pub latencies: Vec<Duration>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

struct Worker {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

/// Run the load; `Err` when the warm-up rewrap of any client does not release every KAO.
pub async fn run(cfg: &LoadConfig) -> Result<LoadReport, ClientError> {
    let mut clients = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        let kas = RemoteKas::new(cfg.http.clone(), &cfg.kas_url, &cfg.token)
            .with_client_key(cfg.client_key);
        let got = kas.rewrap_kaos(&cfg.policy_b64, &cfg.kaos).await?;
        if got.released() != cfg.kaos.len() {
            return Err(ClientError::Crypto(format!(
                "warm-up: the KAS released {} of {} KAOs ({got:?})",
                got.released(),
                cfg.kaos.len()
            )));
        }
        clients.push(kas);
    }
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut tasks = Vec::with_capacity(clients.len());
    for kas in clients {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = Worker {
                ok: 0,
                errors: 0,
                latencies: Vec::new(),
                first_error: None,
            };
            let url = kas.rewrap_endpoint();
            let mut signed_at = Instant::now();
            let mut body = sign(&kas, &cfg)?;
            while Instant::now() < deadline {
                if signed_at.elapsed() > RESIGN {
                    body = sign(&kas, &cfg)?;
                    signed_at = Instant::now();
                }
                let t = Instant::now();
                let r = cfg
                    .http
                    .post(&url)
                    .bearer_auth(&cfg.token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let outcome = match r {
                    Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                        Ok(b) if permits(&b) == cfg.kaos.len() => Ok(()),
                        Ok(b) => Err(format!(
                            "not every KAO permitted: {}",
                            String::from_utf8_lossy(&b)
                        )),
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(resp) => Err(format!("HTTP {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(()) => {
                        w.ok += 1;
                        w.latencies.push(t.elapsed());
                    }
                    Err(e) => {
                        w.errors += 1;
                        w.first_error.get_or_insert(e);
                    }
                }
            }
            Ok::<Worker, ClientError>(w)
        }));
    }
    let mut report = LoadReport {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        first_error: None,
    };
    for t in tasks {
        let w = t
            .await
            .map_err(|e| ClientError::Crypto(format!("load task failed: {e}")))??;
        report.requests += w.ok;
        report.errors += w.errors;
        report.latencies.extend(w.latencies);
        if report.first_error.is_none() {
            report.first_error = w.first_error;
        }
    }
    report.elapsed = start.elapsed();
    report.latencies.sort_unstable();
    Ok(report)
}

fn sign(kas: &RemoteKas, cfg: &LoadConfig) -> Result<Vec<u8>, ClientError> {
    let srt = kas.signed_request(&cfg.policy_b64, &cfg.kaos)?;
    Ok(json!({"signedRequestToken": srt}).to_string().into_bytes())
}

/// Count `"status":"permit"` in a response without parsing it (keeps the client cheap).
fn permits(body: &[u8]) -> usize {
    let needle = b"\"status\":\"permit\"";
    body.windows(needle.len()).filter(|w| w == needle).count()
}
