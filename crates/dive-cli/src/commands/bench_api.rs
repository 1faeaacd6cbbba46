//! `dive bench api`: the resource service under load, in a temporary DIVE_HOME. A real IdP issues
//! the tokens (three users of different clearances, MFA where required), a corpus of real ZTDFs
//! is seeded through the store's `replace_seeded`, and the real HTTPS service answers:
//!
//! * seeding: `replace_seeded` of the corpus (documents/s);
//! * cold access views: the first search of a subject after a catalog or policy change computes
//!   its view (one PDP decision per access class), measured on a fresh PDP without cache;
//! * GET with decision: `GET /api/resources/{id}` over N keep-alive HTTPS connections, ids and
//!   users cycled, allow and deny both counted as answered decisions;
//! * search: `GET /api/resources?…` with a mix of filters, at 1 and at 8 connections;
//! * with `--wrk`, the same GET load once more from `wrk` (a separate C process): the service's
//!   own tail, without the in-process client's share of the two cores and its scheduling;
//! * for both GET loads, the handler's own time (the audit log's `latency_us`), so that the
//!   client's latency can be told apart into the service's work and queueing for the cores.
//!
//! The service and the IdP run on their own Tokio runtime (2 worker threads), the load generator
//! on another, in one process: the machine's cores are shared as they would be between processes.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine;
use clap::Args;
use dive_core::{CountryCode, Equivalency, OrganizationType, SubjectAttributes};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use dive_orchestrator::process::cpu_seconds;
use serde_json::{Value, json};

use super::bench_load::{Load, MakeRequest, ServerTime, clients, load, load_at_rate, server_time};
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct ApiBenchArgs {
    /// Documents in the corpus.
    #[arg(long, default_value_t = 5000)]
    pub docs: usize,
    /// Concurrent connections for the GET load.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds of GET load (search runs for half as long at each concurrency).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Offered rate of the paced GET load (requests per second over all connections), whose
    /// p99 is the latency at that throughput; 0 skips it.
    #[arg(long, default_value_t = 10_000.0, value_name = "PER_SECOND")]
    pub rate: f64,
    /// Also run the GET load from wrk (`apt-get install wrk`), 2 threads, after the in-process one.
    #[arg(long)]
    pub wrk: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

const PASSWORD: &str = "Bench-Password-For-Dive-42!";
const REDIRECT: &str = "https://bench.invalid/cb";

/// GETs of `urls`, cycled, each of the `n` connections from its own offset, with
/// `tokens[connection % len]`.
fn gets(tokens: Arc<Vec<String>>, urls: Arc<Vec<String>>, n: usize) -> MakeRequest {
    Arc::new(move |client, conn, seq| {
        let url = &urls[(conn * urls.len() / n.max(1) + seq) % urls.len()];
        client.get(url).bearer_auth(&tokens[conn % tokens.len()])
    })
}

fn subject_of(token: &str) -> anyhow::Result<SubjectAttributes> {
    let payload = token.split('.').nth(1).context("token is not a JWS")?;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    Ok(SubjectAttributes::from_claims(
        &claims,
        Equivalency::builtin(),
    )?)
}

pub fn api(_ctx: &Context, a: ApiBenchArgs) -> anyhow::Result<ExitCode> {
    if a.docs == 0 || a.connections == 0 || a.duration == 0 {
        return Err(bad_input(
            "--docs, --connections and --duration must be at least 1",
        ));
    }
    if !a.rate.is_finite() || a.rate < 0.0 {
        return Err(bad_input(
            "--rate must be a number of requests per second, 0 or more",
        ));
    }
    let usa = CountryCode::new("USA")?;
    let home = tempfile::Builder::new()
        .prefix("dive-bench-api-")
        .tempdir()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;

    // --- IdP, users, policy data, corpus, service (on the server runtime)
    let home_path = home.path().to_path_buf();
    let docs = a.docs;
    let (idp, api, secret, seed_secs, corpus_secs) = server_rt.block_on(async move {
        let idp = dive_idp::start(dive_idp::IdpConfig::new(usa, home_path.clone()), false).await?;
        let (_, secret) = dive_idp::clients::create(
            &idp.db,
            &NewClient {
                client_id: "bench".into(),
                auth: NewClientAuth::GenerateSecret,
                redirect_uris: vec![REDIRECT.into()],
                post_logout_redirect_uris: vec![],
                grant_types: vec![GrantType::AuthorizationCode],
            },
        )
        .await?;
        for (name, clearance, coi) in [
            ("bench-u", "UNCLASSIFIED", vec![]),
            ("bench-s", "SECRET", vec!["FVEY", "NATO"]),
            (
                "bench-ts",
                "TOP SECRET",
                vec![
                    "FVEY",
                    "NATO",
                    "NATO-COSMIC",
                    "AUKUS",
                    "QUAD",
                    "EUCOM",
                    "PACOM",
                    "CAN-US",
                    "GBR-US",
                    "Alpha",
                ],
            ),
        ] {
            dive_idp::users::create(
                &idp.db,
                &NewUser {
                    username: name.into(),
                    password: PASSWORD.into(),
                    unique_id: None,
                    clearance: clearance.into(),
                    country: usa,
                    coi: coi.into_iter().map(str::to_string).collect(),
                    organization_type: OrganizationType::Mil,
                    roles: vec!["user".into()],
                },
            )
            .await?;
        }
        let policy = dive_api::instance_dir(&home_path, usa).join("policy");
        std::fs::create_dir_all(&policy)?;
        std::fs::write(
            policy.join("trusted_issuers.json"),
            json!({ idp.issuer.clone(): {"instance": "USA", "name": "bench IdP"} }).to_string(),
        )?;

        let (_, public_pem) = dive_ztdf::KasPrivateKey::generate_rsa_pem()?;
        let recipient = dive_ztdf::Recipient::new(
            "https://localhost:8445/kas",
            Some("bench".into()),
            dive_ztdf::KasPublicKey::from_pem(&public_pem)?,
        );
        let t = Instant::now();
        let corpus = tokio::task::spawn_blocking(move || {
            dive_api::corpus::generate(docs, 7, usa, &recipient, time::OffsetDateTime::now_utc())
        })
        .await??;
        let corpus_secs = t.elapsed().as_secs_f64();
        let store = dive_api::ResourceStore::open(
            dive_api::default_database(&home_path, usa)
                .to_str()
                .context("DIVE_HOME is not UTF-8")?,
        )
        .await?;
        let t = Instant::now();
        store.replace_seeded(corpus).await?;
        let seed_secs = t.elapsed().as_secs_f64();
        store.close().await;

        let cfg = dive_api::ApiConfig::new(usa, home_path.clone(), "https://localhost:8445/kas");
        let api = dive_api::start(cfg, false).await?;
        anyhow::Ok((
            idp,
            api,
            secret.context("client secret")?,
            seed_secs,
            corpus_secs,
        ))
    })?;

    // --- logins, then the load (on the client runtime)
    let pki = dive_pki::Pki::open(home.path())?;
    let ca_pem = std::fs::read(pki.ca_cert_path())?;
    let base = format!("https://localhost:{}", api.addr.port());
    let issuer = idp.issuer.clone();
    let conns = a.connections;
    let secs = a.duration;
    let rate = a.rate;
    let report = client_rt.block_on(async move {
        let http = clients(&ca_pem, 1)?.remove(0);
        let mut tokens = Vec::new();
        for user in ["bench-u", "bench-s", "bench-ts"] {
            let req = LoginRequest {
                issuer: issuer.clone(),
                client_id: "bench".into(),
                client_secret: Some(secret.clone()),
                redirect_uri: REDIRECT.into(),
                scope: "openid profile coalition roles".into(),
                username: user.into(),
                password: PASSWORD.into(),
                totp_secret: None,
                extra: vec![],
            };
            let (t, _) = login_helper::login(&http, &req).await?;
            tokens.push(
                t["access_token"]
                    .as_str()
                    .context("no access token")?
                    .to_string(),
            );
        }

        // What each user sees (their first search: a cold view in the service).
        let mut cold = Vec::new();
        let mut visible = Vec::new();
        for t in &tokens {
            let s = subject_of(t)?;
            let r = http
                .get(format!("{base}/api/resources?limit=1"))
                .bearer_auth(t)
                .send()
                .await?;
            let v: Value = r.json().await?;
            visible.push(v["total"].as_u64().unwrap_or(0));
            cold.push(s);
        }

        // GET with decision: every document, each connection from its own offset.
        let urls: Vec<String> = (0..docs)
            .map(|i| format!("{base}/api/resources/doc-{i:05}"))
            .collect();
        let paced_urls = urls.clone();
        let tokens = Arc::new(tokens);
        let cpu_before = cpu_seconds(std::process::id());
        let get_from = dive_api::store::now_ms();
        let get = load(
            clients(&ca_pem, conns)?,
            Duration::from_secs(secs),
            gets(tokens.clone(), Arc::new(urls), conns),
            Arc::new(|s, _| s == 200 || s == 403),
        )
        .await;
        let get_window = (get_from, dive_api::store::now_ms());
        // The same GETs at a fixed offered rate: the latency at that throughput.
        let paced = if rate > 0.0 {
            Some(
                load_at_rate(
                    clients(&ca_pem, conns)?,
                    Duration::from_secs(secs),
                    rate,
                    gets(tokens.clone(), Arc::new(paced_urls), conns),
                    Arc::new(|s, _| s == 200 || s == 403),
                )
                .await,
            )
        } else {
            None
        };
        // Service and in-process client together (compare the wrk run's service-only figure).
        let get_cpu_us = cpu_seconds(std::process::id())
            .zip(cpu_before)
            .filter(|_| get.requests > 0)
            .map(|(a, b)| (a - b) * 1e6 / get.requests as f64);

        // Search: a mix of filters.
        let queries: Vec<String> = [
            "",
            "classification=SECRET",
            "q=report",
            "country=GBR&limit=50",
            "coi=NATO&sort=title",
            "type=text/csv&from=2025-01-01",
            "classification=CONFIDENTIAL,UNCLASSIFIED&q=fuel",
            "sort=oldest&limit=100",
        ]
        .iter()
        .map(|q| format!("{base}/api/resources?{q}"))
        .collect();
        let queries = Arc::new(queries);
        let search1 = load(
            clients(&ca_pem, 1)?,
            Duration::from_secs((secs / 2).max(1)),
            gets(tokens.clone(), queries.clone(), 1),
            Arc::new(|s, _| s == 200),
        )
        .await;
        let search8 = load(
            clients(&ca_pem, 8)?,
            Duration::from_secs((secs / 2).max(1)),
            gets(tokens.clone(), queries, 8),
            Arc::new(|s, _| s == 200),
        )
        .await;
        anyhow::Ok((
            get, get_window, get_cpu_us, search1, search8, visible, cold, tokens, paced,
        ))
    })?;
    let (get, get_window, get_cpu_us, search1, search8, visible, cold_subjects, tokens, paced) =
        report;
    let mut wrk_window = None;
    let wrk = if a.wrk {
        let paths: Vec<String> = (0..a.docs)
            .map(|i| format!("/api/resources/doc-{i:05}"))
            .collect();
        // The process only serves while wrk runs: its CPU time is the service's.
        let cpu_before = cpu_seconds(std::process::id());
        let from = dive_api::store::now_ms();
        let r = super::bench_wrk::run_gets(
            &format!("https://localhost:{}", api.addr.port()),
            &paths,
            &tokens,
            2,
            a.connections,
            Duration::from_secs(a.duration),
        )?;
        wrk_window = Some((from, dive_api::store::now_ms()));
        let cpu = cpu_seconds(std::process::id())
            .zip(cpu_before)
            .map(|(a, b)| a - b);
        match r {
            None => {
                eprintln!("wrk is not installed (apt-get install wrk): skipping the wrk run");
                None
            }
            Some(mut w) => {
                w.service_cpu_us_per_request = cpu
                    .filter(|_| w.requests > 0)
                    .map(|c| c * 1e6 / w.requests as f64);
                Some(w)
            }
        }
    } else {
        None
    };

    // Cold views: each subject's first view on a fresh PDP, over the same catalog.
    let (catalog, view_ms) = server_rt.block_on(async {
        let store = dive_api::ResourceStore::open(
            dive_api::default_database(home.path(), usa)
                .to_str()
                .unwrap_or_default(),
        )
        .await?;
        let (generation, docs) = store.load_all().await?;
        store.close().await;
        let t = Instant::now();
        let catalog = dive_api::catalog::Catalog::build(generation, docs);
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        let data = dive_api::instance_dir(home.path(), usa).join("policy");
        let mut view_ms = Vec::new();
        for s in &cold_subjects {
            let pdp = Arc::new(dive_policy::Pdp::new(dive_policy::Sources {
                policy_dir: None,
                data_dir: Some(data.clone()),
            })?);
            let access = dive_api::access::Access::new(pdp)?;
            let t = Instant::now();
            let view = access.view(s, &catalog);
            view_ms.push((
                s.unique_id.clone(),
                t.elapsed().as_secs_f64() * 1e3,
                view.pdp_calls,
            ));
        }
        anyhow::Ok((
            (
                catalog.len(),
                catalog.decision_classes(false).len(),
                build_ms,
            ),
            view_ms,
        ))
    })?;

    // The handler's own time per GET (token check to audit record: the audit log's
    // `latency_us`), read once the service has stopped and flushed its log: beside the client's
    // latency it tells the service's work from queueing for the cores.
    let (get_handler, wrk_handler) = server_rt.block_on(async {
        api.stop().await;
        idp.stop().await;
        let store = dive_api::ResourceStore::open(
            dive_api::default_database(home.path(), usa)
                .to_str()
                .unwrap_or_default(),
        )
        .await?;
        let mut times = Vec::new();
        for window in [Some(get_window), wrk_window] {
            let Some((since, until)) = window else {
                times.push(None);
                continue;
            };
            let entries = store
                .audit_page(&dive_api::audit::AuditQuery {
                    action: Some("read".into()),
                    since_ms: Some(since),
                    until_ms: Some(until),
                    limit: 10_000_000,
                    ..Default::default()
                })
                .await?;
            times.push(server_time(
                entries.iter().map(|e| e.latency_us as f64 / 1e3).collect(),
            ));
        }
        store.close().await;
        let wrk = times.pop().flatten();
        anyhow::Ok((times.pop().flatten(), wrk))
    })?;

    let out = json!({
        "documents": a.docs,
        "corpus_encrypt_docs_per_s": a.docs as f64 / corpus_secs,
        "replace_seeded_ms": seed_secs * 1e3,
        "replace_seeded_docs_per_s": a.docs as f64 / seed_secs,
        "catalog": {"documents": catalog.0, "access_classes": catalog.1, "build_ms": catalog.2},
        "visible_per_user": {"UNCLASSIFIED": visible[0], "SECRET": visible[1], "TOP SECRET": visible[2]},
        "cold_view": view_ms.iter().map(|(u, ms, calls)| json!({"user": u, "ms": ms, "pdp_calls": calls})).collect::<Vec<_>>(),
        "get_with_decision": get,
        "get_with_decision_at_rate": paced.as_ref().map(|l| json!({"offered_per_second": a.rate, "load": l})),
        "get_handler_time": get_handler,
        "get_process_cpu_us_per_request": get_cpu_us,
        "search_1_connection": search1,
        "search_8_connections": search8,
        "connections": a.connections,
        "get_with_decision_wrk": wrk,
        "get_handler_time_wrk": wrk_handler,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "corpus: {} documents; replace_seeded {:.0} ms = {:.0} docs/s; catalog build {:.1} ms, {} access classes",
        a.docs,
        seed_secs * 1e3,
        a.docs as f64 / seed_secs,
        catalog.2,
        catalog.1
    );
    println!(
        "visible documents: UNCLASSIFIED user {}, SECRET user {}, TOP SECRET user {}",
        visible[0], visible[1], visible[2]
    );
    for (u, ms, calls) in &view_ms {
        println!("cold view {u}: {ms:.1} ms ({calls} PDP decisions)");
    }
    let line = |name: &str, l: &Load| {
        println!(
            "{name}: {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} requests, {} errors, statuses {:?})",
            l.per_second, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.requests, l.errors, l.statuses
        )
    };
    line(
        &format!("GET with decision, {} connections", a.connections),
        &get,
    );
    let handler = |t: &Option<ServerTime>| {
        if let Some(t) = t {
            println!(
                "  handler time (audit latency_us, {} GETs): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.1} ms",
                t.answers, t.p50_ms, t.p90_ms, t.p99_ms, t.max_ms
            );
        }
    };
    handler(&get_handler);
    if let Some(p) = &paced {
        line(
            &format!(
                "GET with decision at {:.0}/s offered, {} connections (latency from the scheduled send)",
                a.rate, a.connections
            ),
            p,
        );
    }
    if let Some(us) = get_cpu_us {
        println!("  process CPU (service + in-process client): {us:.0} µs per request");
    }
    line("search, 1 connection", &search1);
    line("search, 8 connections", &search8);
    if let Some(w) = &wrk {
        println!(
            "GET with decision from wrk ({} threads, {} connections): {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} requests, {} non-2xx, {} socket errors); service CPU {:.0} µs per request",
            w.threads,
            w.connections,
            w.per_second,
            w.p50_ms,
            w.p90_ms,
            w.p99_ms,
            w.max_ms,
            w.requests,
            w.non_2xx,
            w.socket_errors,
            w.service_cpu_us_per_request.unwrap_or(f64::NAN)
        );
        handler(&wrk_handler);
    }
    Ok(ExitCode::SUCCESS)
}
