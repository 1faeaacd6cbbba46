//! `dive bench web`: the browser UI of a deployed instance, driven like browsers do — each
//! simulated user signs in through the UI and the IdP's real pages and keeps its own session
//! cookie — measuring:
//!
//! * pages under load: home, the documents list and one document's page, each for `--duration`
//!   seconds at `--users` concurrent users (one connection and session each), with the server's
//!   own time per page from the UI's `Server-Timing` header and the client's latency;
//! * the bytes of a 50-item documents list page (body and headers as sent);
//! * opening a 1 MiB text document (download from the API, KAS rewrap with the user's token,
//!   decrypt, render), one at a time, server time and client latency. The document is uploaded
//!   through the UI first (UNCLASSIFIED, releasable to the instance's own country) and stays.
//!
//! The load users are `testuser-<code>-1` (no second factor, so any number of sessions can be
//! opened at once); the list and the open use `testuser-<code>-5` (TOTP from the instance's
//! enrolment file), who may read every seeded document.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use dive_core::CountryCode;
use dive_instance::{InstanceConfig, InstancePaths};
use serde_json::{Value, json};

use super::bench_load::{Load, clients, deployed_instance, load, pct, server_timing_ms};
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct WebBenchArgs {
    /// The instance whose UI is measured (default: the installation's hub).
    #[arg(long)]
    pub instance: Option<String>,
    /// Concurrent users (one session and connection each).
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Seconds of load per page.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// How many times the 1 MiB document is opened.
    #[arg(long, default_value_t = 30)]
    pub opens: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Bytes of the document opened.
const OPEN_BYTES: usize = 1 << 20;

#[derive(Debug, serde::Serialize)]
struct PageLoad {
    page: String,
    path: String,
    load: Load,
}

#[derive(Debug, serde::Serialize)]
struct Timing {
    runs: usize,
    server_p50_ms: f64,
    server_p95_ms: f64,
    server_max_ms: f64,
    client_p50_ms: f64,
    client_p95_ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    instance: String,
    users: usize,
    duration_s: u64,
    pages: Vec<PageLoad>,
    list_items: usize,
    list_body_bytes: usize,
    list_header_bytes: usize,
    open_bytes: usize,
    open: Timing,
}

/// The UI as one browser: its own client (no redirects followed) and its cookies.
struct Session {
    http: reqwest::Client,
    web: String,
    cookies: Vec<(String, String)>,
}

impl Session {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(line) = v.to_str() else { continue };
            let kv = line.split(';').next().unwrap_or_default();
            if let Some((k, val)) = kv.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                if !val.is_empty() {
                    self.cookies.push((k.to_string(), val.to_string()));
                }
            }
        }
    }

    async fn get(&mut self, url: &str) -> anyhow::Result<reqwest::Response> {
        let r = self
            .http
            .get(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await?;
        self.keep_cookies(&r);
        Ok(r)
    }

    /// Sign in through the UI: its redirect to the IdP, the IdP's pages, the callback.
    async fn sign_in(
        http: reqwest::Client,
        cfg: &InstanceConfig,
        user: &str,
        password: &str,
        totp_secret: Option<&str>,
    ) -> anyhow::Result<Session> {
        let web = cfg.urls.web.trim_end_matches('/').to_string();
        let mut s = Session {
            http,
            web,
            cookies: Vec::new(),
        };
        let start = s
            .get(&format!("{}/auth/login?return_to=%2F", s.web))
            .await?;
        let authorize = location(&start).context("the UI's sign-in did not redirect")?;
        let pages = dive_idp::login_helper::login_at(
            &s.http,
            &cfg.urls.issuer,
            &authorize,
            user,
            password,
            totp_secret,
        )
        .await
        .map_err(|e| anyhow::anyhow!("signing in as {user}: {e}"))?;
        let done = s.get(&pages.location).await?;
        if done.status() != reqwest::StatusCode::SEE_OTHER {
            bail!("the UI's callback answered {} for {user}", done.status());
        }
        Ok(s)
    }
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// Document ids linked from a documents page, in order.
fn doc_ids(html: &str) -> Vec<String> {
    html.split("<td><a href=\"/documents/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.split('?').next().unwrap_or(s).to_string())
        .collect()
}

/// The cleared user's session. TOTP codes are single use, and the IdP accepts a step of clock
/// drift, so a code may be refused as used (the deployment's verification signed this user in a
/// moment ago): then try again at the next steps.
async fn cleared_session(
    http: reqwest::Client,
    cfg: &InstanceConfig,
    user: &str,
    password: &str,
    secret: &str,
) -> anyhow::Result<Session> {
    let step = dive_idp::totp::STEP_SECS;
    let mut attempt = 0;
    loop {
        match Session::sign_in(http.clone(), cfg, user, password, Some(secret)).await {
            Ok(s) => return Ok(s),
            Err(e) if attempt >= 3 => return Err(e),
            Err(_) => attempt += 1,
        }
        let wait = step - dive_idp::util::now() % step;
        tokio::time::sleep(Duration::from_secs(wait as u64 + 1)).await;
    }
}

/// Upload a 1 MiB text document through the UI's form; its id.
async fn upload_large(s: &mut Session, country: CountryCode) -> anyhow::Result<String> {
    let form = s.get(&format!("{}/upload", s.web)).await?.text().await?;
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .context("no CSRF token on the upload form")?
        .to_string();
    let line = "DIVE web benchmark: a line of plain text to open, decrypt and render.\n";
    let mut text = line.repeat(OPEN_BYTES / line.len() + 1);
    text.truncate(OPEN_BYTES);
    let boundary = "----dive-bench-web-7b1c";
    let mut body = Vec::new();
    for (k, v) in [
        ("csrf", csrf.as_str()),
        ("action", "upload"),
        ("title", "dive bench web: 1 MiB text"),
        (
            "description",
            "Uploaded by `dive bench web` to measure opening a 1 MiB document.",
        ),
        ("classification", "UNCLASSIFIED"),
        ("releasable_to", country.as_str()),
        ("coi", ""),
        ("coi_operator", "ALL"),
        ("caveats", ""),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench-1mib.txt\"\r\nContent-Type: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = s
        .http
        .post(format!("{}/upload", s.web))
        .header(reqwest::header::COOKIE, s.cookie_header())
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await?;
    let to = location(&r);
    let status = r.status();
    let id = to
        .as_deref()
        .and_then(|l| l.strip_prefix("/documents/"))
        .map(|l| l.split('?').next().unwrap_or(l).to_string());
    match id {
        Some(id) => Ok(id),
        None => bail!(
            "the upload was refused ({status}): {}",
            r.text().await.unwrap_or_default()
        ),
    }
}

/// Open the document `runs` times, one after the other.
async fn opens(s: &mut Session, id: &str, runs: usize) -> anyhow::Result<Timing> {
    let url = format!("{}/documents/{id}/open", s.web);
    let (mut server, mut client) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let r = s.get(&url).await?;
        let status = r.status();
        let timing = server_timing_ms(r.headers());
        let body = r.bytes().await?;
        client.push(t.elapsed());
        if !status.is_success() || body.len() < OPEN_BYTES {
            bail!("opening {id} answered {status} with {} bytes", body.len());
        }
        server.push(timing.context("no Server-Timing header on the open page")?);
    }
    client.sort();
    server.sort_by(f64::total_cmp);
    let at = |p: f64| server[(((server.len() - 1) as f64) * p).round() as usize];
    Ok(Timing {
        runs,
        server_p50_ms: at(0.5),
        server_p95_ms: at(0.95),
        server_max_ms: server[server.len() - 1],
        client_p50_ms: pct(&client, 0.5),
        client_p95_ms: pct(&client, 0.95),
    })
}

pub fn run(ctx: &Context, a: WebBenchArgs) -> anyhow::Result<ExitCode> {
    if a.users == 0 || a.duration == 0 || a.opens == 0 {
        return Err(bad_input(
            "--users, --duration and --opens must be at least 1",
        ));
    }
    let cfg = deployed_instance(
        ctx,
        a.instance.as_deref(),
        "deploy one first: `dive hub deploy`",
    )?;
    let paths = InstancePaths::new(&ctx.home, cfg.code);
    let read_json = |p: std::path::PathBuf| -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?)
    };
    let passwords = read_json(paths.test_users())?;
    let totp = read_json(paths.test_users_totp())?;
    let lower = cfg.code.as_str().to_ascii_lowercase();
    let (plain, cleared) = (format!("testuser-{lower}-1"), format!("testuser-{lower}-5"));
    let pw = |u: &str| -> anyhow::Result<String> {
        passwords[u]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad_input(format!("no test user {u} at {}", cfg.code)))
    };
    let secret = totp[&cleared]["secret"]
        .as_str()
        .ok_or_else(|| bad_input(format!("{cleared} has no TOTP enrolment at {}", cfg.code)))?
        .to_string();
    let ca_pem = std::fs::read(ctx.home.join("pki/ca/cert.pem"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        // Sessions of the load users, each with its own client (one connection each).
        let conns = clients(&ca_pem, a.users)?;
        let plain_pw = pw(&plain)?;
        let mut cookies = Vec::new();
        for c in &conns {
            let s = Session::sign_in(c.clone(), &cfg, &plain, &plain_pw, None).await?;
            cookies.push(s.cookie_header());
        }
        let mut probe = Session::sign_in(
            clients(&ca_pem, 1)?.remove(0),
            &cfg,
            &plain,
            &plain_pw,
            None,
        )
        .await?;
        let list = probe
            .get(&format!("{}/documents", probe.web))
            .await?
            .text()
            .await?;
        let doc = doc_ids(&list)
            .into_iter()
            .next()
            .with_context(|| format!("{plain} can read no document at {}", cfg.code))?;
        let cookies = Arc::new(cookies);
        let mut pages = Vec::new();
        for (page, path) in [
            ("home", "/".to_string()),
            ("documents list (20)", "/documents".to_string()),
            ("a document", format!("/documents/{doc}")),
        ] {
            let url = format!("{}{path}", probe.web);
            let cookies = cookies.clone();
            let make = Arc::new(move |c: &reqwest::Client, conn: usize, _seq: usize| {
                c.get(&url)
                    .header(reqwest::header::COOKIE, &cookies[conn % cookies.len()])
            });
            let l = load(
                conns.clone(),
                Duration::from_secs(a.duration),
                make,
                Arc::new(|s, _b: &[u8]| s == 200),
            )
            .await;
            pages.push(PageLoad {
                page: page.into(),
                path,
                load: l,
            });
        }

        // A 50-item list and the 1 MiB open, as the cleared user.
        let mut top = cleared_session(
            clients(&ca_pem, 1)?.remove(0),
            &cfg,
            &cleared,
            &pw(&cleared)?,
            &secret,
        )
        .await?;
        let r = top
            .get(&format!("{}/documents?per_page=50", top.web))
            .await?;
        let header_bytes: usize = r
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.as_bytes().len() + 4)
            .sum::<usize>()
            + "HTTP/1.1 200 OK\r\n\r\n".len();
        let body = r.text().await?;
        let list_items = doc_ids(&body).len();
        let id = upload_large(&mut top, cfg.code).await?;
        let open = opens(&mut top, &id, a.opens).await?;
        anyhow::Ok(Report {
            instance: cfg.code.to_string(),
            users: a.users,
            duration_s: a.duration,
            pages,
            list_items,
            list_body_bytes: body.len(),
            list_header_bytes: header_bytes,
            open_bytes: OPEN_BYTES,
            open,
        })
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!(report))?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    println!(
        "web UI of {}: {} concurrent users, {} s per page (server time from Server-Timing; client latency over loopback HTTPS)",
        r.instance, r.users, r.duration_s
    );
    println!(
        "{:<22} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "page", "answers", "errors", "req/s", "srv p50", "srv p99", "cli p50", "cli p99"
    );
    for p in &r.pages {
        let l = &p.load;
        let (s50, s99) = l
            .server
            .as_ref()
            .map_or((f64::NAN, f64::NAN), |s| (s.p50_ms, s.p99_ms));
        println!(
            "{:<22} {:>8} {:>8} {:>10.1} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            p.page, l.requests, l.errors, l.per_second, s50, s99, l.p50_ms, l.p99_ms
        );
    }
    println!("goal: server time per page p99 < 30 ms");
    println!(
        "documents list of {} items: {} bytes body + {} bytes headers = {:.1} KB (goal < 150 KB)",
        r.list_items,
        r.list_body_bytes,
        r.list_header_bytes,
        (r.list_body_bytes + r.list_header_bytes) as f64 / 1000.0
    );
    let o = &r.open;
    println!(
        "open a {} byte text document ({} runs): server p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; client p50 {:.1} ms, p95 {:.1} ms (goal < 100 ms server time)",
        r.open_bytes,
        o.runs,
        o.server_p50_ms,
        o.server_p95_ms,
        o.server_max_ms,
        o.client_p50_ms,
        o.client_p95_ms
    );
}
