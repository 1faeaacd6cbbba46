//! `dive bench kas`: rewraps per second through the real HTTPS endpoint of a `dive serve kas`
//! child process, against the RSA-2048 private-operation rate `openssl speed` measures in the same
//! run (the floor of an RSA rewrap is one private operation per KAO).
//!
//! Set-up, all in a temporary DIVE_HOME: an IdP in this process with one SECRET user (logged in
//! through the real login pages), the KAS trusting it (and reading its revocation list), one RSA-
//! and one EC-wrapped ZTDF. Then, for each, `--connections` clients post rewraps for
//! `--seconds`; the KAS's CPU time is read from /proc to give rewraps per KAS core-second.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use dive_core::{CountryCode, OrganizationType};
use dive_kas::loadtest::{self, LoadConfig, LoadReport};
use dive_kas::{ClientKeyKind, KeyAlgorithm, RemoteKas};
use dive_orchestrator::process::cpu_ticks;
use serde_json::json;

use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct KasBenchArgs {
    /// Seconds of load per algorithm.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent clients (connections). 32 keep the KAS's two cores busy: with 16, about a
    /// third of a core stayed idle between answers and requests.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds `openssl speed` measures RSA-2048 for.
    #[arg(long, default_value_t = 3)]
    pub openssl_seconds: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `openssl speed -seconds N rsa2048`: private (sign) operations per second, one core.
fn openssl_rsa2048(seconds: u64) -> anyhow::Result<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .stderr(Stdio::null())
        .output()
        .context("running openssl speed (is openssl installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text
        .lines()
        .find(|l| l.contains("sign/s"))
        .context("openssl speed printed no sign/s column")?;
    let col = header
        .split_whitespace()
        .position(|c| c == "sign/s")
        .context("no sign/s column")?;
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa") && l.contains("2048 bits"))
        .context("openssl speed printed no rsa 2048 row")?;
    // The row has two label words ("2048 bits") more than the header's leading blank.
    let values: Vec<&str> = row
        .split("bits")
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    values
        .get(col)
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("cannot read sign/s from {row:?}"))
}

#[derive(Debug, serde::Serialize)]
struct Figure {
    name: String,
    rewraps_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// Answers decrypted and checked against the shares of the warm-up rewrap.
    decrypted: u64,
    kas_cpu_cores: f64,
    /// This process (the load generator; its IdP is idle during the run).
    client_cpu_cores: f64,
    rewraps_per_kas_core_s: f64,
    note: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn kas(a: KasBenchArgs) -> anyhow::Result<ExitCode> {
    if a.seconds == 0 || a.connections == 0 || a.openssl_seconds == 0 {
        return Err(bad_input(
            "--seconds, --connections and --openssl-seconds must be at least 1",
        ));
    }
    let openssl = openssl_rsa2048(a.openssl_seconds)?;
    let work = tempfile::Builder::new()
        .prefix("dive-bench-kas-")
        .tempdir()?;
    let home = work.path().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let usa = CountryCode::new("USA").map_err(|e| anyhow::anyhow!("{e}"))?;
    let (idp, http, tls, token, secret) = runtime.block_on(async {
        let idp = dive_idp::start(dive_idp::IdpConfig::new(usa, home.clone()), false).await?;
        let mk = |id: &str| dive_idp::clients::NewClient {
            client_id: id.to_string(),
            auth: dive_idp::clients::NewClientAuth::GenerateSecret,
            redirect_uris: vec!["https://bench.invalid/cb".to_string()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![
                dive_idp::clients::GrantType::AuthorizationCode,
                dive_idp::clients::GrantType::ClientCredentials,
            ],
        };
        let (_, web) = dive_idp::clients::create(&idp.db, &mk("web")).await?;
        let (_, kas_secret) = dive_idp::clients::create(&idp.db, &mk("kas")).await?;
        let password = "Correct-Horse-Staple-42!".to_string();
        dive_idp::users::create(
            &idp.db,
            &dive_idp::users::NewUser {
                username: "bench".into(),
                password: password.clone(),
                unique_id: None,
                clearance: "SECRET".into(),
                country: usa,
                coi: vec!["FVEY".into()],
                organization_type: OrganizationType::Mil,
                roles: vec!["user".into()],
            },
        )
        .await?;
        let pki = dive_pki_open(&home)?;
        let http = dive_http::https_client(&pki)?;
        let tls = std::sync::Arc::new(pki.client_config()?);
        let req = dive_idp::login_helper::LoginRequest {
            issuer: idp.issuer.clone(),
            client_id: "web".into(),
            client_secret: web.clone(),
            redirect_uri: "https://bench.invalid/cb".into(),
            scope: "openid coalition".into(),
            username: "bench".into(),
            password,
            totp_secret: None,
            extra: vec![],
        };
        let (tokens, _) = dive_idp::login_helper::login(&http, &req).await?;
        let token = tokens["access_token"]
            .as_str()
            .context("no access token")?
            .to_string();
        anyhow::Ok((idp, http, tls, token, kas_secret))
    })?;
    // The KAS trusts the bench IdP and reads its revocation list, as deployed.
    let inst = home.join("instances/usa");
    std::fs::create_dir_all(inst.join("policy"))?;
    std::fs::create_dir_all(inst.join("secrets"))?;
    std::fs::write(
        inst.join("policy/trusted_issuers.json"),
        json!({ idp.issuer.clone(): {"instance": "USA", "name": "bench IdP"} }).to_string(),
    )?;
    std::fs::write(
        inst.join("secrets/kas-client.json"),
        json!({"client_id": "kas", "client_secret": secret}).to_string(),
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(&home)
        .args(["serve", "kas", "--instance", "USA", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dive serve kas")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let kas_url = line
        .split("(KAS URL ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(str::to_string);
    let result = (|| -> anyhow::Result<Vec<Figure>> {
        let Some(kas_url) = kas_url else {
            bail!("dive serve kas did not start: {line:?}");
        };
        let pid = child.id();
        runtime.block_on(async {
            let mut figures = Vec::new();
            for (alg, kind) in [
                (KeyAlgorithm::Rsa2048, ClientKeyKind::Rsa2048),
                (KeyAlgorithm::EcP256, ClientKeyKind::EcP256),
            ] {
                let probe = RemoteKas::new(http.clone(), &kas_url, &token);
                let (pem, kid) = probe.public_key(alg).await?;
                let key = dive_ztdf::KasPublicKey::from_pem(&pem)?;
                let label = dive_ztdf::label::label_from_marking("SECRET//FVEY//REL TO USA")?;
                let plaintext = b"bench".to_vec();
                let opts = dive_ztdf::EncryptOptions::new(dive_ztdf::KeyAccessPlan::single(
                    dive_ztdf::Recipient::new(kas_url.clone(), Some(kid), key),
                ))
                .label(label)
                .plaintext_len(plaintext.len() as u64);
                let mut file = Vec::new();
                dive_ztdf::encrypt(plaintext.as_slice(), &mut file, &opts)?;
                let reader = dive_ztdf::TdfReader::open(std::io::Cursor::new(file))?;
                let cfg = LoadConfig {
                    http: http.clone(),
                    tls: tls.clone(),
                    kas_url: kas_url.clone(),
                    token: token.clone(),
                    connections: a.connections,
                    duration: Duration::from_secs(a.seconds),
                    client_key: kind,
                    policy_b64: reader.manifest().encryption_information.policy.clone(),
                    kaos: reader.key_access_objects().to_vec(),
                };
                let me = std::process::id();
                let (before, client_before) =
                    (cpu_ticks(pid).unwrap_or(0), cpu_ticks(me).unwrap_or(0));
                let report = loadtest::run(&cfg).await?;
                let (after, client_after) =
                    (cpu_ticks(pid).unwrap_or(0), cpu_ticks(me).unwrap_or(0));
                figures.push(figure(
                    alg,
                    kind,
                    &report,
                    (after - before, client_after - client_before),
                    openssl,
                ));
            }
            anyhow::Ok(figures)
        })
    })();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    runtime.block_on(idp.stop());
    let figures = result?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "openssl_rsa2048_sign_per_s": openssl,
                "connections": a.connections,
                "seconds": a.seconds,
                "figures": figures,
            }))?
        );
    } else {
        println!(
            "openssl speed -seconds {} rsa2048: {openssl:.0} private ops/s (one core)",
            a.openssl_seconds
        );
        println!(
            "{} clients, {} s per algorithm, REST rewrap of one KAO over HTTPS (HTTP/1.1); every \
             answer must permit, 1 in {} is decrypted and checked\n",
            a.connections,
            a.seconds,
            loadtest::DECRYPT_EVERY
        );
        println!(
            "| {:<38} | {:>10} | {:>8} | {:>8} | {:>6} | {:>9} | {:>9} | {:>12} | {:>14} | note",
            "measurement",
            "rewraps/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "decrypted",
            "KAS cores",
            "client cores",
            "per KAS core/s"
        );
        for f in &figures {
            println!(
                "| {:<38} | {:>10.0} | {:>8.2} | {:>8.2} | {:>6} | {:>9} | {:>9.2} | {:>12.2} | {:>14.0} | {}",
                f.name,
                f.rewraps_per_s,
                f.p50_ms,
                f.p99_ms,
                f.errors,
                f.decrypted,
                f.kas_cpu_cores,
                f.client_cpu_cores,
                f.rewraps_per_kas_core_s,
                f.note
            );
        }
    }
    if figures.iter().any(|f| f.errors > 0) {
        eprintln!("warning: some rewraps failed during the run");
    }
    Ok(ExitCode::SUCCESS)
}

fn dive_pki_open(home: &std::path::Path) -> anyhow::Result<dive_pki::Pki> {
    Ok(dive_pki::Pki::open(home)?)
}

fn figure(
    alg: KeyAlgorithm,
    kind: ClientKeyKind,
    r: &LoadReport,
    (kas_ticks, client_ticks): (u64, u64),
    openssl: f64,
) -> Figure {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = kas_ticks as f64 / hz;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let per_core = if cpu_s > 0.0 {
        r.requests as f64 / cpu_s
    } else {
        0.0
    };
    let rate = r.per_second();
    let note = match alg {
        KeyAlgorithm::Rsa2048 => format!(
            "{:.0}% of openssl's rate (goal >= 80%); per KAS core {:.0}%",
            100.0 * rate / openssl,
            100.0 * per_core / openssl
        ),
        KeyAlgorithm::EcP256 => format!(
            "goal >= 5000/s: {}",
            if rate >= 5000.0 { "met" } else { "not met" }
        ),
    };
    Figure {
        name: format!(
            "{} KAO, {} client key",
            alg.as_str(),
            match kind {
                ClientKeyKind::Rsa2048 => "RSA",
                ClientKeyKind::EcP256 => "EC",
            }
        ),
        rewraps_per_s: rate,
        p50_ms: ms(r.percentile(0.50)),
        p99_ms: ms(r.percentile(0.99)),
        errors: r.errors,
        decrypted: r.decrypted,
        kas_cpu_cores: cpu_s / secs,
        client_cpu_cores: client_ticks as f64 / hz / secs,
        rewraps_per_kas_core_s: per_core,
        note: match &r.first_error {
            Some(e) => format!("{note}; first error: {e}"),
            None => note,
        },
    }
}
