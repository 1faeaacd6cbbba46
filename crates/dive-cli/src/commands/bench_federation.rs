//! `dive bench federated-search`: latency of `POST /api/resources/federated-search` on a running
//! instance of this installation (its active partners are asked in parallel), as a test user of
//! that instance logged in through its real IdP. Run it against a hub and spokes deployed and
//! linked (`scripts/bench-federation.sh` does that, then repeats the run with a partner stopped
//! and with a partner hanging, to show the cost of a partner that is down is bounded).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dive_idp::login_helper::{self, LoginRequest};
use dive_instance::{InstancePaths, secrets};
use serde_json::{Value, json};

use super::bench_load::{Load, clients, deployed_instance, load};
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct FederatedSearchBenchArgs {
    /// The instance whose API is asked (default: the installation's hub).
    #[arg(long)]
    pub instance: Option<String>,
    /// The test user of that instance who searches (default `testuser-<code>-1`, no MFA).
    #[arg(long)]
    pub user: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The per-partner timeout each search asks for (`timeoutMs`).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    instance: String,
    user: String,
    connections: usize,
    timeout_ms: u64,
    load: Load,
    /// Answers that said `partial: true` (a partner did not answer).
    partial: u64,
    /// Per-instance status of one search after the load.
    instances: Value,
}

pub fn run(ctx: &Context, a: FederatedSearchBenchArgs) -> anyhow::Result<ExitCode> {
    if a.connections == 0 || a.duration == 0 {
        return Err(bad_input("--connections and --duration must be at least 1"));
    }
    let cfg = deployed_instance(ctx, a.instance.as_deref(), "deploy a hub and spokes first")?;
    let paths = InstancePaths::new(&ctx.home, cfg.code);
    let user = a
        .user
        .clone()
        .unwrap_or_else(|| format!("testuser-{}-1", cfg.code.as_str().to_ascii_lowercase()));
    let passwords: Value = serde_json::from_slice(
        &std::fs::read(paths.test_users())
            .with_context(|| format!("reading {}", paths.test_users().display()))?,
    )?;
    let password = passwords[&user]
        .as_str()
        .ok_or_else(|| bad_input(format!("no test user {user} at {}", cfg.code)))?
        .to_string();
    let ca_pem = std::fs::read(ctx.home.join("pki/ca/cert.pem"))?;
    let url = format!("{}/api/resources/federated-search", cfg.urls.api);
    let body = json!({"limit": 20, "timeoutMs": a.timeout_ms}).to_string();

    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let http = clients(&ca_pem, 1)?.remove(0);
        let req = LoginRequest {
            issuer: cfg.urls.issuer.clone(),
            client_id: secrets::CLI_CLIENT_ID.into(),
            client_secret: None,
            redirect_uri: secrets::CLI_REDIRECT_URI.into(),
            scope: "openid profile coalition".into(),
            username: user.clone(),
            password,
            totp_secret: None,
            extra: vec![],
        };
        let (tokens, _) = login_helper::login(&http, &req)
            .await
            .map_err(|e| anyhow::anyhow!("login as {user}: {e}"))?;
        let token = Arc::new(
            tokens["access_token"]
                .as_str()
                .context("no access token")?
                .to_string(),
        );
        let partial = Arc::new(AtomicU64::new(0));
        let make = {
            let (url, body, token) = (url.clone(), body.clone(), token.clone());
            Arc::new(move |c: &reqwest::Client, _conn: usize, _seq: usize| {
                c.post(&url)
                    .bearer_auth(token.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
        };
        let accept = {
            let partial = partial.clone();
            Arc::new(move |s: u16, b: &[u8]| {
                // A partial answer is still an answer, within the partner's timeout.
                if says_partial(b) {
                    partial.fetch_add(1, Ordering::Relaxed);
                }
                s == 200
            })
        };
        let l = load(
            clients(&ca_pem, a.connections)?,
            Duration::from_secs(a.duration),
            make,
            accept,
        )
        .await;
        let last: Value = http
            .post(&url)
            .bearer_auth(token.as_str())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(Report {
            instance: cfg.code.to_string(),
            user,
            connections: a.connections,
            timeout_ms: a.timeout_ms,
            load: l,
            partial: partial.load(Ordering::Relaxed),
            instances: last["instances"].clone(),
        })
    })?;
    print(&report, a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Whether an answer body says `"partial":true` (the service writes compact JSON).
fn says_partial(body: &[u8]) -> bool {
    body.windows(14).any(|w| w == b"\"partial\":true")
}

fn print(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let l = &r.load;
    println!(
        "federated search at {} as {}, {} connections, timeoutMs {}",
        r.instance, r.user, r.connections, r.timeout_ms
    );
    println!(
        "  {:.0} searches/s, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         ({} answered, {} errors, {} partial)",
        l.per_second, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.requests, l.errors, r.partial
    );
    for i in r.instances.as_array().into_iter().flatten() {
        println!(
            "  {:<4} {:<13} {:>6} ms  breaker {}{}",
            i["instance"].as_str().unwrap_or("?"),
            i["status"].as_str().unwrap_or("?"),
            i["latencyMs"],
            i["breaker"].as_str().unwrap_or("?"),
            i["error"]
                .as_str()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
