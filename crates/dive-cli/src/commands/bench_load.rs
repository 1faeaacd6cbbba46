//! Shared load generation for the HTTP benchmarks: N keep-alive HTTPS connections (one client
//! each, so exactly N sockets) issuing requests back to back for a duration, with latency
//! percentiles of the answers counted as successes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether an answer (status, body) counts as a success; may also tally what it saw.
pub type Accept = Arc<dyn Fn(u16, &[u8]) -> bool + Send + Sync>;

/// Builds request `seq` of connection `conn` on that connection's client.
pub type MakeRequest =
    Arc<dyn Fn(&reqwest::Client, usize, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Latency statistics of one load run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Load {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// The server's own time for the successful answers that carried a `Server-Timing` header
    /// (`app;dur=<ms>`, the web UI's), else `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerTime>,
}

/// Percentiles of the server-measured time, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerTime {
    pub answers: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The first `dur=` of a `Server-Timing` header, in milliseconds.
pub fn server_timing_ms(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let v = headers.get("server-timing")?.to_str().ok()?;
    v.split(';')
        .find_map(|p| p.trim().strip_prefix("dur="))
        .and_then(|d| d.parse().ok())
}

/// Percentiles of server-side times in milliseconds (`None` when there are none).
pub fn server_time(mut ms: Vec<f64>) -> Option<ServerTime> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[(((ms.len() - 1) as f64) * p).round() as usize];
    Some(ServerTime {
        answers: ms.len() as u64,
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: ms[ms.len() - 1],
    })
}

pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// One client per connection (exactly `n` sockets), trusting the installation CA.
pub fn clients(ca_pem: &[u8], n: usize) -> anyhow::Result<Vec<reqwest::Client>> {
    (0..n)
        .map(|_| {
            let ca = reqwest::Certificate::from_pem(ca_pem)?;
            // Redirects are not followed: the login helper reads the code from the IdP's
            // redirect to the (unresolvable) client callback itself.
            Ok(reqwest::Client::builder()
                .tls_certs_only([ca])
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()?)
        })
        .collect()
}

/// Run `make`'s requests on every client until `duration` has passed, each connection sending
/// its next request as soon as the previous answer arrived (closed loop: the most the service
/// can do, and the latency at saturation); an answer counts (and its latency is kept) when
/// `ok(status, body)`.
pub async fn load(
    clients: Vec<reqwest::Client>,
    duration: Duration,
    make: MakeRequest,
    ok: Accept,
) -> Load {
    run(clients, duration, None, make, ok).await
}

/// Like [`load`], but at a fixed offered rate (requests per second over all connections): each
/// connection has a schedule of send times, evenly spaced and staggered between connections,
/// and a request's latency is measured from its *scheduled* time, so that an answer that makes
/// the following requests late counts against them too (no coordinated omission). The latency
/// at a given throughput, as a service level is stated.
pub async fn load_at_rate(
    clients: Vec<reqwest::Client>,
    duration: Duration,
    per_second: f64,
    make: MakeRequest,
    ok: Accept,
) -> Load {
    run(clients, duration, Some(per_second), make, ok).await
}

async fn run(
    clients: Vec<reqwest::Client>,
    duration: Duration,
    rate: Option<f64>,
    make: MakeRequest,
    ok: Accept,
) -> Load {
    let started = Instant::now();
    let deadline = started + duration;
    let n = clients.len().max(1);
    // Each connection's interval between sends, when paced.
    let interval = rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(n as f64 / r));
    let mut tasks = Vec::new();
    for (conn, client) in clients.into_iter().enumerate() {
        let (make, ok) = (make.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(50_000);
            let mut server = Vec::new();
            let mut statuses = BTreeMap::new();
            let mut errors = 0u64;
            let mut seq = 0;
            loop {
                let t = match interval {
                    Some(every) => {
                        let due = started + every.mul_f64(seq as f64 + conn as f64 / n as f64);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None if Instant::now() < deadline => Instant::now(),
                    None => break,
                };
                let req = make(&client, conn, seq);
                seq += 1;
                match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let timing = server_timing_ms(r.headers());
                        match r.bytes().await {
                            Ok(body) if ok(s, &body) => {
                                lat.push(t.elapsed());
                                server.extend(timing);
                            }
                            _ => errors += 1,
                        }
                        *statuses.entry(s).or_insert(0u64) += 1;
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, server, statuses, errors)
        }));
    }
    let mut all = Vec::new();
    let mut server_all = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, server, st, e)) = t.await {
            all.extend(lat);
            server_all.extend(server);
            for (k, v) in st {
                *statuses.entry(k).or_insert(0) += v;
            }
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    Load {
        requests: all.len() as u64,
        errors,
        seconds,
        per_second: all.len() as f64 / seconds.max(1e-9),
        p50_ms: pct(&all, 0.50),
        p90_ms: pct(&all, 0.90),
        p99_ms: pct(&all, 0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        statuses,
        server: server_time(server_all),
    }
}

/// The deployed instance a bench runs against: `--instance CODE`, or the hub. `deploy_hint`
/// says what to deploy first when there is none.
pub fn deployed_instance(
    ctx: &crate::context::Context,
    code: Option<&str>,
    deploy_hint: &str,
) -> anyhow::Result<dive_instance::InstanceConfig> {
    let all = dive_instance::config::all(&ctx.home)?;
    match code {
        Some(c) => {
            let c = dive_core::CountryCode::new(c)
                .map_err(|e| crate::exit::bad_input(format!("--instance: {e}")))?;
            all.into_iter().find(|i| i.code == c)
        }
        None => all.into_iter().find(|i| i.role == dive_instance::Role::Hub),
    }
    .ok_or_else(|| {
        crate::exit::bad_input(format!(
            "no such instance in {} ({deploy_hint})",
            ctx.home.display()
        ))
    })
}
