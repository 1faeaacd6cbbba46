//! A relying party's token validation rate on one core, as DIVE's services do it: the first use
//! of a token verifies its signature and claims; later uses of the same token (every request of
//! a session until it expires) re-check expiry, trust and revocation against the cached result.
//!
//! Run: `cargo bench -p dive-authn --bench validate` (DIVE_BENCH_SECS, default 3).

use std::time::{Duration, Instant};

use dive_authn::{Authenticator, AuthnConfig, RevocationSource};
use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use serde_json::json;

const REDIRECT: &str = "https://app.example/cb";
const PASSWORD: &str = "Correct-Horse-Battery-42!";

fn main() {
    let secs: u64 = std::env::var("DIVE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // One worker thread: the figure is per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(Duration::from_secs(secs)));
}

async fn run(window: Duration) {
    let home = tempfile::tempdir().unwrap();
    let cfg = dive_idp::IdpConfig::new(CountryCode::new("FRA").unwrap(), home.path().into());
    let idp = dive_idp::start(cfg, false).await.unwrap();
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "svc".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
        },
    )
    .await
    .unwrap();
    let secret = secret.unwrap();
    dive_idp::users::create(
        &idp.db,
        &NewUser {
            username: "alice".into(),
            password: PASSWORD.into(),
            unique_id: None,
            clearance: "NON CLASSIFIÉ".into(),
            country: CountryCode::new("FRA").unwrap(),
            coi: vec!["NATO".into()],
            organization_type: OrganizationType::Mil,
            roles: vec![],
        },
    )
    .await
    .unwrap();
    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let http = dive_http::https_client(&pki).unwrap();
    let file = home.path().join("trusted_issuers.json");
    std::fs::write(
        &file,
        json!({ &idp.issuer: {"instance": "FRA"} }).to_string(),
    )
    .unwrap();
    let auth = Authenticator::new(AuthnConfig::new(http.clone(), &file).with_revocation(
        RevocationSource {
            issuer: idp.issuer.clone(),
            client_id: "svc".into(),
            client_secret: secret.clone(),
        },
    ))
    .unwrap();
    let req = LoginRequest {
        issuer: idp.issuer.clone(),
        client_id: "svc".into(),
        client_secret: Some(secret),
        redirect_uri: REDIRECT.into(),
        scope: "openid coalition".into(),
        username: "alice".into(),
        password: PASSWORD.into(),
        totp_secret: None,
        extra: vec![],
    };
    let (tokens, _) = login_helper::login(&http, &req).await.unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_string();
    let first = Instant::now();
    auth.authenticate(&token).await.unwrap();
    println!(
        "first use (discovery + JWKS fetch + RS256 verify + claims): {:?}",
        first.elapsed()
    );
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        for _ in 0..1000 {
            auth.authenticate(&token).await.unwrap();
        }
        n += 1000;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("repeat validations/s on one core (expiry, trust, revocation re-checked): {rate:.0}");
    idp.stop().await;
}
