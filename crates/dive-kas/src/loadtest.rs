//! A rewrap load generator for `dive bench kas`: concurrent clients, each with its own ephemeral
//! key and request-signing key, posting rewraps of the same KAOs to the REST endpoint.
//!
//! Each client first does one full rewrap through [`RemoteKas`] and decrypts the returned shares
//! (so a run that would not actually release keys fails loudly), then repeats its signed request
//! — re-signed every 30 s — so the client's own signing cost stays out of the KAS's figure. The
//! KAS does the whole work on every request: token check, signature check of the request,
//! unwrap, binding, decision, rewrap and audit.
//!
//! The loop speaks HTTP/1.1 over TLS on hyper's connection-level client (one connection per
//! client, no pool), which costs the shared cores far less per request than reqwest. Every
//! answer must permit every KAO; the first answer on each connection and every
//! [`DECRYPT_EVERY`]th one are decrypted and must give back the warm-up's shares (an EC answer
//! costs the client an ECDH to open, as much as the KAS's own, so not every one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dive_ztdf::{KeyAccessObject, KeyUnwrapper};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;
use zeroize::Zeroizing;

use crate::client::{ClientError, ClientKeyKind, RemoteKas};

/// Re-sign the request after this long (signed requests live 60 s).
const RESIGN: Duration = Duration::from_secs(30);
/// Decrypt one answer in this many (and the first of each connection).
pub const DECRYPT_EVERY: u64 = 16;

#[derive(Clone)]
pub struct LoadConfig {
    /// Trusts the KAS's CA (the warm-up rewrap goes through [`RemoteKas`]).
    pub http: reqwest::Client,
    /// The same trust for the load loop's own TLS connections.
    pub tls: Arc<rustls::ClientConfig>,
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
    /// Successful answers that were also decrypted and checked.
    pub decrypted: u64,
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
    /// Answers decrypted and checked against the warm-up's shares.
    decrypted: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

/// Where the load loop connects: `host:port`, the TLS server name and the request path.
struct Target {
    addr: String,
    server_name: rustls_pki_types::ServerName<'static>,
    authority: String,
    path: String,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Target, ClientError> {
        let bad = || ClientError::Url(endpoint.to_string());
        let rest = endpoint.strip_prefix("https://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let host = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => authority,
        };
        if host.is_empty() {
            return Err(bad());
        }
        let addr = if host.len() == authority.len() {
            format!("{authority}:443")
        } else {
            authority.to_string()
        };
        let server_name = rustls_pki_types::ServerName::try_from(
            host.trim_start_matches('[').trim_end_matches(']'),
        )
        .map_err(|_| bad())?
        .to_owned();
        Ok(Target {
            addr,
            server_name,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
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
        let shares = shares(&got, cfg)?;
        clients.push((kas, shares));
    }
    let target = Arc::new(Target::parse(&clients[0].0.rewrap_endpoint())?);
    let mut tls = (*cfg.tls).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut tasks = Vec::with_capacity(clients.len());
    for (kas, expected) in clients {
        let cfg = cfg.clone();
        let target = target.clone();
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = Worker {
                ok: 0,
                errors: 0,
                decrypted: 0,
                latencies: Vec::with_capacity(64 * 1024),
                first_error: None,
            };
            let client = Client {
                kas: &kas,
                cfg: &cfg,
                target: &target,
                expected: &expected,
                bearer: format!("Bearer {}", cfg.token),
            };
            client.run(&connector, deadline, &mut w).await?;
            Ok::<Worker, ClientError>(w)
        }));
    }
    let mut report = LoadReport {
        requests: 0,
        errors: 0,
        decrypted: 0,
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
        report.decrypted += w.decrypted;
        report.latencies.extend(w.latencies);
        if report.first_error.is_none() {
            report.first_error = w.first_error;
        }
    }
    report.elapsed = start.elapsed();
    report.latencies.sort_unstable();
    Ok(report)
}

/// The released share of every KAO, in order.
fn shares(
    got: &crate::Rewrapped,
    cfg: &LoadConfig,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ClientError> {
    cfg.kaos
        .iter()
        .map(|k| {
            got.unwrap_share(k, &cfg.policy_b64)
                .map_err(|e| ClientError::Crypto(format!("not released: {e}")))
        })
        .collect()
}

struct Client<'a> {
    kas: &'a RemoteKas,
    cfg: &'a LoadConfig,
    target: &'a Target,
    expected: &'a [Zeroizing<Vec<u8>>],
    bearer: String,
}

impl Client<'_> {
    /// The closed loop until `deadline`. A broken connection is counted as an error and reopened.
    async fn run(
        &self,
        connector: &tokio_rustls::TlsConnector,
        deadline: Instant,
        w: &mut Worker,
    ) -> Result<(), ClientError> {
        let mut signed_at = Instant::now();
        let mut body = self.sign()?;
        let mut n = 0u64;
        'connect: while Instant::now() < deadline {
            let mut sender = match self.connect(connector).await {
                Ok(s) => s,
                Err(e) => {
                    w.errors += 1;
                    w.first_error.get_or_insert(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // The first answer on every connection is decrypted.
            let mut on_connection = 0u64;
            while Instant::now() < deadline {
                if signed_at.elapsed() > RESIGN {
                    body = self.sign()?;
                    signed_at = Instant::now();
                }
                let req = hyper::Request::post(self.target.path.as_str())
                    .header(hyper::header::HOST, self.target.authority.as_str())
                    .header(hyper::header::AUTHORIZATION, self.bearer.as_str())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body.clone()))
                    .map_err(|e| ClientError::Crypto(format!("request: {e}")))?;
                let t = Instant::now();
                let resp = match sender.send_request(req).await {
                    Ok(r) => r,
                    Err(e) => {
                        w.errors += 1;
                        w.first_error.get_or_insert(e.to_string());
                        continue 'connect;
                    }
                };
                let status = resp.status();
                let bytes = match resp.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        w.errors += 1;
                        w.first_error.get_or_insert(e.to_string());
                        continue 'connect;
                    }
                };
                let decrypt = on_connection == 0 || n.is_multiple_of(DECRYPT_EVERY);
                on_connection += 1;
                n += 1;
                let outcome = if !status.is_success() {
                    Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ))
                } else if permits(&bytes) != self.cfg.kaos.len() {
                    Err(format!(
                        "not every KAO permitted: {}",
                        String::from_utf8_lossy(&bytes)
                    ))
                } else if decrypt {
                    self.check_shares(&bytes).map(|()| w.decrypted += 1)
                } else {
                    Ok(())
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
        }
        Ok(())
    }

    async fn connect(
        &self,
        connector: &tokio_rustls::TlsConnector,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect(&self.target.addr)
            .await
            .map_err(|e| format!("{}: {e}", self.target.addr))?;
        let _ = tcp.set_nodelay(true);
        let tls = connector
            .connect(self.target.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
        // The connection's driver ends with the connection (when `sender` is dropped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn sign(&self) -> Result<Bytes, ClientError> {
        let srt = self
            .kas
            .signed_request(&self.cfg.policy_b64, &self.cfg.kaos)?;
        Ok(Bytes::from(
            json!({"signedRequestToken": srt}).to_string().into_bytes(),
        ))
    }

    /// Decrypt an answer and compare its shares with the warm-up's.
    fn check_shares(&self, body: &[u8]) -> Result<(), String> {
        let got = self
            .kas
            .open_json_response(&self.cfg.kaos, body)
            .map_err(|e| e.to_string())?;
        for (kao, want) in self.cfg.kaos.iter().zip(self.expected) {
            let share = got
                .unwrap_share(kao, &self.cfg.policy_b64)
                .map_err(|e| format!("answer does not decrypt: {e}"))?;
            if share.as_slice() != want.as_slice() {
                return Err("the answer decrypts to another share than the warm-up's".into());
            }
        }
        Ok(())
    }
}

/// Count `"status":"permit"` in a response without parsing it (keeps the client cheap).
fn permits(body: &[u8]) -> usize {
    let needle = b"\"status\":\"permit\"";
    body.windows(needle.len()).filter(|w| w == needle).count()
}
