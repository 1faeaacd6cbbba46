//! Throughput of the real IdP over HTTPS on loopback: client_credentials grants, refresh grants
//! and complete password logins (login page, argon2id at OWASP parameters, code exchange).
//! Run: `cargo bench -p dive-idp --bench load` (DIVE_BENCH_SECS, DIVE_BENCH_CONCURRENCY,
//! DIVE_BENCH_ALG=rs256|es256).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;

const PASSWORD: &str = "Correct-Horse-Battery-42!";
const REDIRECT: &str = "https://app.example/cb";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `op` from `concurrency` tasks for `secs`; returns operations per second.
async fn measure<F, Fut>(secs: u64, concurrency: u64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (op, done, failed) = (op.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if op(worker).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let f = failed.load(Ordering::Relaxed);
    assert_eq!(f, 0, "{f} operations failed");
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let secs = env_or("DIVE_BENCH_SECS", 5);
    let conc = env_or("DIVE_BENCH_CONCURRENCY", 32);
    let home = tempfile::tempdir().unwrap();
    let mut cfg = dive_idp::IdpConfig::new(CountryCode::new("FRA").unwrap(), home.path().into());
    cfg.alg = match std::env::var("DIVE_BENCH_ALG").as_deref() {
        Ok("es256") | Ok("ES256") => dive_idp::server::Alg::ES256,
        _ => dive_idp::server::Alg::RS256,
    };
    println!("signing algorithm: {:?}", cfg.alg);
    let idp = dive_idp::start(cfg, false).await.unwrap();
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "bench".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
            ],
        },
    )
    .await
    .unwrap();
    let secret = secret.unwrap();
    for i in 0..conc {
        dive_idp::users::create(
            &idp.db,
            &NewUser {
                username: format!("bench-{i}"),
                password: PASSWORD.into(),
                unique_id: None,
                clearance: "NON CLASSIFIÉ".into(),
                country: CountryCode::new("FRA").unwrap(),
                coi: vec![],
                organization_type: OrganizationType::Mil,
                roles: vec![],
            },
        )
        .await
        .unwrap();
    }
    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let http = dive_http::https_client(&pki).unwrap();
    let issuer = idp.issuer.clone();
    let req = move |i: u64| LoginRequest {
        issuer: issuer.clone(),
        client_id: "bench".into(),
        client_secret: Some(secret.clone()),
        redirect_uri: REDIRECT.into(),
        scope: "openid coalition".into(),
        username: format!("bench-{i}"),
        password: PASSWORD.into(),
        totp_secret: None,
        extra: vec![],
    };
    let token_url = format!("{}/token", idp.issuer);

    let (h, r, u) = (http.clone(), req.clone(), token_url.clone());
    let cc = measure(secs, conc, move |_| {
        let (h, r, u) = (h.clone(), r(0), u.clone());
        async move {
            h.post(&u)
                .basic_auth(&r.client_id, r.client_secret.as_ref())
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .is_ok_and(|x| x.status() == 200)
        }
    })
    .await;
    println!("client_credentials grants/s: {cc:.0}");

    // One refresh chain per worker: each grant consumes the previous refresh token.
    let chains: Arc<Vec<tokio::sync::Mutex<String>>> = {
        let mut v = Vec::new();
        for i in 0..conc {
            let (t, _) = login_helper::login(&http, &req(i)).await.unwrap();
            v.push(tokio::sync::Mutex::new(
                t["refresh_token"].as_str().unwrap().to_string(),
            ));
        }
        Arc::new(v)
    };
    let (h, r, u) = (http.clone(), req.clone(), token_url.clone());
    let rf = measure(secs, conc, move |w| {
        let (h, r, u, chains) = (h.clone(), r(w), u.clone(), chains.clone());
        async move {
            let mut slot = chains[w as usize].lock().await;
            let resp = h
                .post(&u)
                .basic_auth(&r.client_id, r.client_secret.as_ref())
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", slot.as_str()),
                ])
                .send()
                .await;
            match resp {
                Ok(x) if x.status() == 200 => {
                    let v: serde_json::Value = x.json().await.unwrap_or_default();
                    *slot = v["refresh_token"].as_str().unwrap_or_default().to_string();
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    println!("refresh grants/s: {rf:.0}");

    let (h, r) = (http.clone(), req.clone());
    let logins = measure(secs, conc, move |w| {
        let (h, r) = (h.clone(), r(w));
        async move { login_helper::login(&h, &r).await.is_ok() }
    })
    .await;
    println!("password logins/s (argon2id m=19456 KiB, t=2, p=1, full code flow): {logins:.1}");
    idp.stop().await;
}
