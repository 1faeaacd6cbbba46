//! Brokering between two real instances of DIVE's IdP over HTTPS on loopback, each with its own
//! installation CA: upstream FRA (a TOTP-protected SECRET DÉFENSE user), downstream USA. Plus a
//! hostile upstream that returns bad ID tokens, and the admin API.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, BrokerRequest, LoginError, LoginRequest};
use dive_idp::upstreams::{ClaimMapping, UpstreamSpec};
use dive_idp::users::NewUser;
use dive_idp::{IdpConfig, Running};
use dive_jose::{Alg, JwksVerifier, SigningKey, Validation};
use serde_json::{Value, json};

const APP: &str = "https://app.usa.example/cb";
const PASSWORD: &str = "Correct-Horse-Battery-42!";
/// The client USA holds at FRA.
const BROKER_CLIENT: &str = "dive-usa-broker";

struct Env {
    _fra_home: tempfile::TempDir,
    _usa_home: tempfile::TempDir,
    fra: Running,
    usa: Running,
    /// Trusts both installation CAs (like a browser that trusts both partners).
    http: reqwest::Client,
    fra_ca: String,
    broker_secret: String,
    app_secret: String,
}

fn pem(home: &std::path::Path) -> String {
    let pki = dive_pki::Pki::open(home).unwrap();
    std::fs::read_to_string(pki.ca_cert_path()).unwrap()
}

fn client_trusting(pems: &[&str]) -> reqwest::Client {
    let certs: Vec<reqwest::Certificate> = pems
        .iter()
        .map(|p| reqwest::Certificate::from_pem(p.as_bytes()).unwrap())
        .collect();
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn add_user(db: &dive_idp::Db, name: &str, clearance: &str, country: &str, coi: &[&str]) {
    dive_idp::users::create(
        db,
        &NewUser {
            username: name.to_string(),
            password: PASSWORD.to_string(),
            unique_id: Some(format!("{name}@defense.gouv.fr")),
            clearance: clearance.to_string(),
            country: CountryCode::new(country).unwrap(),
            coi: coi.iter().map(|s| s.to_string()).collect(),
            organization_type: OrganizationType::Mil,
            roles: vec!["user".to_string()],
        },
    )
    .await
    .unwrap();
}

impl Env {
    async fn new() -> Env {
        Env::with_usa(|_| {}).await
    }

    /// Both IdPs, USA's configuration adjusted by `usa_config`.
    async fn with_usa(usa_config: impl FnOnce(&mut IdpConfig)) -> Env {
        let fra_home = tempfile::tempdir().unwrap();
        let usa_home = tempfile::tempdir().unwrap();
        let fra = dive_idp::start(
            IdpConfig::new(CountryCode::new("FRA").unwrap(), fra_home.path().into()),
            false,
        )
        .await
        .unwrap();
        let mut usa_cfg = IdpConfig::new(CountryCode::new("USA").unwrap(), usa_home.path().into());
        usa_config(&mut usa_cfg);
        let usa = dive_idp::start(usa_cfg, false).await.unwrap();
        // FRA registers USA's broker client, one redirect URI per alias USA uses for FRA.
        let (_, broker_secret) = dive_idp::clients::create(
            &fra.db,
            &NewClient {
                client_id: BROKER_CLIENT.to_string(),
                auth: NewClientAuth::GenerateSecret,
                redirect_uris: ["fra-idp", "fra-nomfa", "fra-off", "fra-down"]
                    .iter()
                    .map(|a| format!("{}/broker/{a}/callback", usa.issuer))
                    .collect(),
                post_logout_redirect_uris: vec![],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            },
        )
        .await
        .unwrap();
        add_user(&fra.db, "pierre", "SECRET DÉFENSE", "FRA", &["NATO"]).await;
        add_user(&fra.db, "claire", "NON CLASSIFIÉ", "FRA", &[]).await;
        let (_, app_secret) = dive_idp::clients::create(
            &usa.db,
            &NewClient {
                client_id: "portal".to_string(),
                auth: NewClientAuth::GenerateSecret,
                redirect_uris: vec![APP.to_string()],
                post_logout_redirect_uris: vec![],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            },
        )
        .await
        .unwrap();
        let fra_ca = pem(fra_home.path());
        let usa_ca = pem(usa_home.path());
        assert_ne!(fra_ca, usa_ca, "each instance has its own CA");
        Env {
            http: client_trusting(&[&fra_ca, &usa_ca]),
            _fra_home: fra_home,
            _usa_home: usa_home,
            fra,
            usa,
            fra_ca,
            broker_secret: broker_secret.unwrap(),
            app_secret: app_secret.unwrap(),
        }
    }

    fn upstream(&self, alias: &str) -> UpstreamSpec {
        UpstreamSpec {
            alias: alias.to_string(),
            display_name: None,
            issuer: self.fra.issuer.clone(),
            client_id: BROKER_CLIENT.to_string(),
            client_secret: self.broker_secret.clone(),
            scopes: None,
            claim_mapping: None,
            country: Some("FRA".to_string()),
            ca_pem: Some(self.fra_ca.clone()),
            enabled: None,
        }
    }

    fn broker(&self, alias: &str, user: &str, use_hint: bool) -> BrokerRequest {
        BrokerRequest {
            login: LoginRequest {
                issuer: self.usa.issuer.clone(),
                client_id: "portal".to_string(),
                client_secret: Some(self.app_secret.clone()),
                redirect_uri: APP.to_string(),
                scope: "openid profile coalition roles".to_string(),
                username: user.to_string(),
                password: PASSWORD.to_string(),
                totp_secret: None,
                extra: vec![],
            },
            alias: alias.to_string(),
            use_hint,
            local_totp_secret: None,
        }
    }

    /// USA's login page, as a browser sees it when no upstream is hinted.
    async fn login_page(&self) -> String {
        self.http
            .get(login_helper::authorization_url(&self.broker("fra-idp", "claire", false).login).0)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn usa_claims(&self, token: &str, aud: &str) -> serde_json::Map<String, Value> {
        JwksVerifier::new(
            format!("{}/jwks", self.usa.issuer),
            self.http.clone(),
            Validation::new(&self.usa.issuer).with_audience(aud),
        )
        .verify(token)
        .await
        .unwrap()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&vec![])
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn brokered_login_carries_upstream_claims_and_resyncs() {
    let e = Env::new().await;
    dive_idp::upstreams::create(&e.usa.db, e.upstream("fra-idp"))
        .await
        .unwrap();
    // First login through idp_hint: FRA enrols pierre's TOTP (SECRET DÉFENSE needs it) and so
    // asserts a second factor; USA must not ask again.
    let (tokens, out) = login_helper::broker_login(&e.http, &e.broker("fra-idp", "pierre", true))
        .await
        .unwrap();
    let fra_totp = out
        .upstream_enrolled_totp_secret
        .clone()
        .expect("FRA enrolled the user");
    assert!(!out.local_second_factor, "the upstream asserted MFA");
    assert_eq!(out.outcome.iss.as_deref(), Some(e.usa.issuer.as_str()));
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    assert_eq!(at["iss"], json!(e.usa.issuer), "USA issues its own tokens");
    assert_eq!(at["clearance"], "SECRET DÉFENSE", "original label kept");
    assert_eq!(at["countryOfAffiliation"], "FRA");
    assert_eq!(at["acpCOI"], json!(["NATO"]));
    assert_eq!(at["uniqueID"], "pierre@defense.gouv.fr");
    assert_eq!(at["organizationType"], "MIL");
    assert_eq!(at["home_issuer"], json!(e.fra.issuer));
    assert_eq!(at["idp"], "fra-idp");
    assert_eq!(at["acr"], "2");
    assert!(strings(&at["amr"]).contains(&"otp".to_string()), "{at:?}");
    let username = at["preferred_username"].as_str().unwrap().to_string();
    assert!(username.starts_with("fra-idp:"), "{username}");
    let id = e
        .usa_claims(tokens["id_token"].as_str().unwrap(), "portal")
        .await;
    assert_eq!(id["nonce"], json!(out.outcome.nonce));
    assert_eq!(id["clearance"], "SECRET DÉFENSE");

    // The claims change at home; the next login (through the page's button) re-syncs them.
    sqlx::query(
        "UPDATE idp_users SET clearance = 'TRÈS SECRET DÉFENSE', coi = '[\"NATO\",\"FRA-US\"]' \
         WHERE username = 'pierre'",
    )
    .execute(&e.fra.db.pool)
    .await
    .unwrap();
    let mut again = e.broker("fra-idp", "pierre", false);
    again.login.totp_secret = Some(fra_totp);
    let (tokens, out) = login_helper::broker_login(&e.http, &again).await.unwrap();
    assert!(!out.local_second_factor);
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    assert_eq!(at["clearance"], "TRÈS SECRET DÉFENSE");
    assert_eq!(at["acpCOI"], json!(["NATO", "FRA-US"]));
    assert_eq!(
        at["preferred_username"],
        json!(username),
        "same local account"
    );
    let local = dive_idp::users::find_by_username(&e.usa.db, &username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(local.clearance, "TRÈS SECRET DÉFENSE");
    assert_eq!(local.home_issuer.as_deref(), Some(e.fra.issuer.as_str()));
    assert!(
        !dive_idp::password::verify("", &local.password_hash),
        "no local password"
    );
    // A local password login as the federated user is impossible.
    let local_login = LoginRequest {
        username: username.clone(),
        ..e.broker("fra-idp", "pierre", false).login
    };
    assert!(login_helper::login(&e.http, &local_login).await.is_err());

    // A disabled federated account is refused even though the upstream vouches for it.
    let claire = e.broker("fra-idp", "claire", true);
    let (tokens, _) = login_helper::broker_login(&e.http, &claire).await.unwrap();
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    let claire_local = at["preferred_username"].as_str().unwrap().to_string();
    dive_idp::users::set_enabled(&e.usa.db, &claire_local, false)
        .await
        .unwrap();
    match login_helper::broker_login(&e.http, &claire).await {
        Err(LoginError::Denied { error, description }) => {
            assert_eq!(error, "access_denied");
            assert!(description.contains("disabled"), "{description}");
        }
        other => panic!("expected access_denied, got {other:?}"),
    }
}

#[tokio::test]
async fn local_mfa_asked_when_upstream_did_not_assert_it() {
    let e = Env::new().await;
    // This upstream's acr is mapped from a claim FRA never sends: USA cannot see FRA's second
    // factor, so policy (SECRET DÉFENSE) needs the local TOTP.
    let mut spec = e.upstream("fra-nomfa");
    spec.claim_mapping = Some(ClaimMapping {
        acr: "loa".to_string(),
        ..Default::default()
    });
    dive_idp::upstreams::create(&e.usa.db, spec).await.unwrap();
    let (tokens, out) = login_helper::broker_login(&e.http, &e.broker("fra-nomfa", "pierre", true))
        .await
        .unwrap();
    assert!(out.local_second_factor, "USA asked for its own factor");
    let local_totp = out
        .outcome
        .enrolled_totp_secret
        .clone()
        .expect("enrolled locally at first login");
    assert_eq!(out.outcome.recovery_codes.len(), 10);
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    assert_eq!(at["acr"], "2");
    let amr = strings(&at["amr"]);
    assert!(
        amr.contains(&"otp".to_string()) && amr.contains(&"pwd".to_string()),
        "{amr:?}"
    );

    // Next login: the code is asked (no enrolment).
    let mut again = e.broker("fra-nomfa", "pierre", true);
    again.login.totp_secret = out.upstream_enrolled_totp_secret.clone();
    again.local_totp_secret = Some(local_totp);
    let (_, out) = login_helper::broker_login(&e.http, &again).await.unwrap();
    assert!(out.local_second_factor);
    assert!(out.outcome.enrolled_totp_secret.is_none());

    // An UNCLASSIFIED user needs no second factor: acr 1, the upstream's amr.
    let (tokens, out) = login_helper::broker_login(&e.http, &e.broker("fra-nomfa", "claire", true))
        .await
        .unwrap();
    assert!(!out.local_second_factor);
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    assert_eq!(at["acr"], "1");
    assert_eq!(strings(&at["amr"]), vec!["pwd".to_string()]);
    assert_eq!(at["clearance"], "NON CLASSIFIÉ");
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    u.to_string()
}

/// A TCP listener that accepts and drops every connection (an upstream whose host answers but
/// whose service is broken); counts the connections.
async fn dead_upstream() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, seen)
}

fn denied(r: Result<login_helper::BrokerStart, LoginError>) -> (String, String) {
    match r {
        Err(LoginError::Denied { error, description }) => (error, description),
        other => panic!(
            "expected a refusal, got {:?}",
            other.map(|s| s.upstream_url)
        ),
    }
}

#[tokio::test]
async fn an_upstream_that_is_down_opens_its_breaker_and_is_tried_again_after_the_cooldown() {
    use std::sync::atomic::Ordering::SeqCst;
    let cooldown = std::time::Duration::from_millis(800);
    let e = Env::with_usa(|c| {
        c.upstream_breaker_threshold = 2;
        c.upstream_breaker_cooldown = cooldown;
    })
    .await;
    let (port, connections) = dead_upstream().await;
    let mut spec = e.upstream("fra-down");
    spec.issuer = format!("https://127.0.0.1:{port}");
    dive_idp::upstreams::create(&e.usa.db, spec).await.unwrap();
    let req = e.broker("fra-down", "claire", true);

    // Two failures reach the upstream and are refused as temporarily unavailable.
    for n in 1..=2 {
        let (error, description) = denied(login_helper::broker_start(&e.http, &req).await);
        assert_eq!(error, "temporarily_unavailable");
        assert!(description.contains("fra-down"), "{description}");
        assert_eq!(
            connections.load(SeqCst),
            n,
            "attempt {n} reached the upstream"
        );
    }
    // The breaker is open: refused at once, the upstream not contacted, the reason given.
    let (error, description) = denied(login_helper::broker_start(&e.http, &req).await);
    assert_eq!(error, "temporarily_unavailable");
    assert!(
        description.contains("not answering") && description.contains("last 2 attempts"),
        "{description}"
    );
    assert_eq!(connections.load(SeqCst), 2, "an open breaker calls nobody");
    // The login page still lists it, with its button disabled and why.
    let page = e.login_page().await;
    assert!(
        page.contains("disabled>Log in with") && page.contains("not answering"),
        "{page}"
    );

    // After the cooldown one trial goes through; it fails, so the breaker opens again.
    tokio::time::sleep(cooldown + std::time::Duration::from_millis(100)).await;
    let (error, _) = denied(login_helper::broker_start(&e.http, &req).await);
    assert_eq!(error, "temporarily_unavailable");
    assert_eq!(connections.load(SeqCst), 3, "the half-open trial");
    let (_, description) = denied(login_helper::broker_start(&e.http, &req).await);
    assert!(description.contains("not answering"), "{description}");
    assert_eq!(connections.load(SeqCst), 3);

    // The upstream is back (here: reconfigured to the real FRA). The next trial after the
    // cooldown succeeds, closes the breaker, and the brokered login completes.
    dive_idp::upstreams::put(&e.usa.db, e.upstream("fra-down"))
        .await
        .unwrap();
    tokio::time::sleep(cooldown + std::time::Duration::from_millis(100)).await;
    let (_, out) = login_helper::broker_login(&e.http, &req).await.unwrap();
    assert!(!out.outcome.code.is_empty());
    let page = e.login_page().await;
    assert!(!page.contains("not answering"), "{page}");
}

#[tokio::test]
async fn bad_state_replay_upstream_errors_and_disabled_upstreams_are_refused() {
    let e = Env::new().await;
    dive_idp::upstreams::create(&e.usa.db, e.upstream("fra-idp"))
        .await
        .unwrap();
    dive_idp::upstreams::create(&e.usa.db, e.upstream("fra-off"))
        .await
        .unwrap();
    let req = e.broker("fra-idp", "claire", true);

    // A callback with a state USA never issued: error page, no code.
    let start = login_helper::broker_start(&e.http, &req).await.unwrap();
    // Per-instance cookie names: FRA's login cookie on the same host cannot overwrite USA's.
    assert!(
        start.csrf_cookie.starts_with("dive_idp_csrf_usa="),
        "{}",
        start.csrf_cookie
    );
    let (callback, _) =
        login_helper::upstream_login(&e.http, &start.upstream_url, "claire", PASSWORD, None)
            .await
            .unwrap();
    assert!(callback.starts_with(&format!("{}/broker/fra-idp/callback", e.usa.issuer)));
    let forged = with_param(&callback, "state", "not-the-state");
    let r = e
        .http
        .get(&forged)
        .header(header::COOKIE.as_str(), &start.csrf_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.headers().get("location").is_none());
    // The callback in another browser (without the CSRF cookie that started it, or with
    // another one): refused, without using up the state.
    let r = e.http.get(&callback).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let other = login_helper::broker_start(&e.http, &req).await.unwrap();
    let r = e
        .http
        .get(&callback)
        .header(header::COOKIE.as_str(), &other.csrf_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The genuine browser then completes the login.
    let done = login_helper::broker_finish(&e.http, &start, &callback, None)
        .await
        .unwrap();
    assert!(!done.outcome.code.is_empty());

    // Replay: a completed callback used a second time.
    let start = login_helper::broker_start(&e.http, &req).await.unwrap();
    let (callback, _) =
        login_helper::upstream_login(&e.http, &start.upstream_url, "claire", PASSWORD, None)
            .await
            .unwrap();
    let done = login_helper::broker_finish(&e.http, &start, &callback, None)
        .await
        .unwrap();
    assert!(!done.outcome.code.is_empty());
    let err = login_helper::broker_finish(&e.http, &start, &callback, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LoginError::Unexpected { status: 400, detail, .. } if detail.contains("already used")),
        "{err:?}"
    );

    // The upstream answers with an error: the client gets access_denied, with its state.
    let start = login_helper::broker_start(&e.http, &req).await.unwrap();
    let st = query_param(&start.upstream_url, "state").unwrap();
    let url = format!(
        "{}/broker/fra-idp/callback?error=access_denied&error_description=user+cancelled&state={st}",
        e.usa.issuer
    );
    let r = e
        .http
        .get(&url)
        .header(header::COOKIE.as_str(), &start.csrf_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(APP), "{loc}");
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        query_param(&loc, "state").as_deref(),
        Some(start.state.as_str())
    );
    assert!(query_param(&loc, "code").is_none());

    // A mix-up: the callback names another issuer.
    let start = login_helper::broker_start(&e.http, &req).await.unwrap();
    let (callback, _) =
        login_helper::upstream_login(&e.http, &start.upstream_url, "claire", PASSWORD, None)
            .await
            .unwrap();
    let mixed = with_param(&callback, "iss", "https://evil.example");
    match login_helper::broker_finish(&e.http, &start, &mixed, None).await {
        Err(LoginError::Denied { error, .. }) => assert_eq!(error, "access_denied"),
        other => panic!("expected access_denied, got {other:?}"),
    }

    // Disabled upstream: not offered, refused by hint, and an in-flight login is refused.
    let offered = e.login_page().await;
    assert!(
        offered.contains("/broker/fra-off/login"),
        "offered while enabled"
    );
    assert!(offered.contains("Log in with FRA"));
    let in_flight = login_helper::broker_start(&e.http, &e.broker("fra-off", "claire", true))
        .await
        .unwrap();
    let (callback, _) =
        login_helper::upstream_login(&e.http, &in_flight.upstream_url, "claire", PASSWORD, None)
            .await
            .unwrap();
    dive_idp::upstreams::set_enabled(&e.usa.db, "fra-off", false)
        .await
        .unwrap();
    let page = e.login_page().await;
    assert!(
        !page.contains("/broker/fra-off/login"),
        "disabled upstream offered"
    );
    assert!(page.contains("/broker/fra-idp/login"));
    match login_helper::broker_start(&e.http, &e.broker("fra-off", "claire", true)).await {
        Err(LoginError::Denied { error, description }) => {
            assert_eq!(error, "invalid_request");
            assert!(description.contains("fra-off"), "{description}");
        }
        other => panic!("expected invalid_request, got {other:?}"),
    }
    assert!(
        login_helper::broker_start(&e.http, &e.broker("fra-off", "claire", false))
            .await
            .is_err()
    );
    match login_helper::broker_finish(&e.http, &in_flight, &callback, None).await {
        Err(LoginError::Denied { error, description }) => {
            assert_eq!(error, "access_denied");
            assert!(description.contains("disabled"), "{description}");
        }
        other => panic!("expected access_denied, got {other:?}"),
    }
    // Keycloak's kc_idp_hint works too: straight to the upstream.
    let mut kc = req.login.clone();
    kc.extra
        .push(("kc_idp_hint".to_string(), "fra-idp".to_string()));
    let r = e
        .http
        .get(login_helper::authorization_url(&kc).0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to.starts_with(&format!("{}/authorize?", e.fra.issuer)),
        "{to}"
    );
    assert_eq!(
        query_param(&to, "client_id").as_deref(),
        Some(BROKER_CLIENT)
    );
    assert_eq!(
        query_param(&to, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&to, "nonce").is_some_and(|n| n.len() >= 32));
    // Refused brokered logins are counted.
    let metrics = e
        .http
        .get(format!("{}/metrics", e.usa.issuer))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outcome=\"broker_failure\""), "{metrics}");
    // An unknown hint.
    assert!(matches!(
        login_helper::broker_start(&e.http, &e.broker("nowhere", "claire", true)).await,
        Err(LoginError::Denied { .. })
    ));
}

/// What the hostile upstream puts in its ID token.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Good,
    Forged,
    Unsigned,
    WrongAudience,
    WrongNonce,
    WrongIssuer,
    Expired,
    NoIdToken,
    /// The ID token has only the protocol claims; UserInfo has the coalition claims.
    ClaimsAtUserinfo,
    /// As above, but UserInfo speaks for another subject.
    UserinfoOtherSub,
}

struct Hostile {
    issuer: Mutex<String>,
    key: SigningKey,
    /// Another key under the published key's kid: its signatures must not verify.
    forger: SigningKey,
    mode: Mutex<Mode>,
    nonce: Mutex<String>,
}

async fn h_discovery(State(h): State<Arc<Hostile>>) -> Response {
    let i = h.issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "userinfo_endpoint": format!("{i}/userinfo"),
    }))
    .into_response()
}

async fn h_jwks(State(h): State<Arc<Hostile>>) -> Response {
    axum::Json(json!({"keys": [h.key.public_jwk()]})).into_response()
}

/// Logs anyone in at once: straight back to the broker with a code.
async fn h_authorize(
    State(h): State<Arc<Hostile>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    *h.nonce.lock().unwrap() = q.get("nonce").cloned().unwrap_or_default();
    let mut to = url::Url::parse(&q["redirect_uri"]).unwrap();
    to.query_pairs_mut()
        .append_pair("code", "evil-code")
        .append_pair("state", &q["state"]);
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to.as_str()).unwrap(),
    );
    r
}

const COALITION: &[&str] = &[
    "uniqueID",
    "clearance",
    "countryOfAffiliation",
    "acpCOI",
    "organizationType",
];

fn mallory() -> Value {
    json!({
        "sub": "mallory", "uniqueID": "mallory@evil", "clearance": "SECRET DÉFENSE",
        "countryOfAffiliation": "FRA", "acpCOI": "NATO,FRA-US", "organizationType": "mil",
    })
}

async fn h_userinfo(State(h): State<Arc<Hostile>>, headers: axum::http::HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer x") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut info = mallory();
    if *h.mode.lock().unwrap() == Mode::UserinfoOtherSub {
        info["sub"] = json!("someone-else");
    }
    axum::Json(info).into_response()
}

async fn h_token(State(h): State<Arc<Hostile>>) -> Response {
    let mode = *h.mode.lock().unwrap();
    let iss = h.issuer.lock().unwrap().clone();
    let now = dive_jose::now();
    let mut claims = json!({
        "iss": iss, "sub": "mallory", "aud": "usa-at-evil", "exp": now + 300, "iat": now,
        "nonce": h.nonce.lock().unwrap().clone(),
        "uniqueID": "mallory@evil", "clearance": "SECRET DÉFENSE", "countryOfAffiliation": "FRA",
        "acpCOI": "NATO,FRA-US", "organizationType": "mil", "acr": 2, "amr": ["pwd", "otp"],
    });
    match mode {
        Mode::WrongAudience => claims["aud"] = json!("someone-else"),
        Mode::WrongNonce => claims["nonce"] = json!("guess"),
        Mode::WrongIssuer => claims["iss"] = json!("https://fra.idp.example"),
        Mode::Expired => claims["exp"] = json!(now - 3600),
        Mode::ClaimsAtUserinfo | Mode::UserinfoOtherSub => {
            for c in COALITION {
                claims.as_object_mut().unwrap().remove(*c);
            }
        }
        _ => {}
    }
    let id_token = match mode {
        // Signed by a key that is not in the JWKS, under the published key's kid.
        Mode::Forged => h.forger.sign("JWT", &claims).unwrap(),
        Mode::Unsigned => {
            let b64 = |v: &Value| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            };
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims))
        }
        _ => h.key.sign("JWT", &claims).unwrap(),
    };
    let body = if mode == Mode::NoIdToken {
        json!({"access_token": "x", "token_type": "Bearer", "expires_in": 300})
    } else {
        json!({"access_token": "x", "token_type": "Bearer", "expires_in": 300, "id_token": id_token})
    };
    axum::Json(body).into_response()
}

#[tokio::test]
async fn hostile_upstream_id_tokens_are_refused() {
    let e = Env::new().await;
    let evil_home = tempfile::tempdir().unwrap();
    let pki = dive_pki::Pki::open(evil_home.path()).unwrap();
    let cert = pki.service("evil").unwrap();
    let h = Arc::new(Hostile {
        issuer: Mutex::new(String::new()),
        key: SigningKey::generate("evil-1", Alg::RS256).unwrap(),
        forger: SigningKey::generate("evil-1", Alg::RS256).unwrap(),
        mode: Mutex::new(Mode::Good),
        nonce: Mutex::new(String::new()),
    });
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(h_discovery),
        )
        .route("/jwks", axum::routing::get(h_jwks))
        .route("/authorize", axum::routing::get(h_authorize))
        .route("/token", axum::routing::post(h_token))
        .route("/userinfo", axum::routing::get(h_userinfo))
        .with_state(h.clone());
    let bound = dive_http::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        cert.server_config().unwrap(),
    )
    .await
    .unwrap();
    let issuer = format!("https://localhost:{}", bound.local_addr().port());
    *h.issuer.lock().unwrap() = issuer.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(app, async move {
        let _ = stop_rx.await;
    }));
    let evil_ca = pem(evil_home.path());
    dive_idp::upstreams::create(
        &e.usa.db,
        UpstreamSpec {
            alias: "evil".to_string(),
            issuer: issuer.clone(),
            client_id: "usa-at-evil".to_string(),
            client_secret: "evil-secret".to_string(),
            ca_pem: Some(evil_ca.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let http = client_trusting(&[&evil_ca, &pem(e._usa_home.path())]);
    let attempt = |mode: Mode| {
        let http = http.clone();
        let h = h.clone();
        let req = e.broker("evil", "mallory", true);
        async move {
            *h.mode.lock().unwrap() = mode;
            login_helper::broker_login(&http, &req).await
        }
    };
    // The harness itself works: a well-formed token from this upstream is accepted, and its
    // comma-joined acpCOI and lower-case organizationType are normalised.
    let (tokens, _) = attempt(Mode::Good)
        .await
        .expect("a valid token is accepted");
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    assert_eq!(at["acpCOI"], json!(["NATO", "FRA-US"]));
    assert_eq!(at["organizationType"], "MIL");
    assert_eq!(at["home_issuer"], json!(issuer));
    // Claims only at UserInfo (Keycloak without ID-token mappers): merged.
    let (tokens, _) = attempt(Mode::ClaimsAtUserinfo)
        .await
        .expect("claims from userinfo");
    let at = e
        .usa_claims(tokens["access_token"].as_str().unwrap(), "dive-usa")
        .await;
    assert_eq!(at["clearance"], mallory()["clearance"]);
    assert_eq!(at["uniqueID"], "mallory@evil");
    for (mode, why) in [
        (Mode::UserinfoOtherSub, "userinfo sub"),
        (Mode::Forged, "signature"),
        (Mode::Unsigned, "algorithm"),
        (Mode::WrongAudience, "audience"),
        (Mode::WrongNonce, "nonce"),
        (Mode::WrongIssuer, "issuer"),
        (Mode::Expired, "expired"),
        (Mode::NoIdToken, "id_token"),
    ] {
        match attempt(mode).await {
            Err(LoginError::Denied { error, description }) => {
                assert_eq!(error, "access_denied", "{mode:?}");
                assert!(description.contains(why), "{mode:?}: {description}");
            }
            other => panic!("{mode:?}: expected access_denied, got {other:?}"),
        }
    }
    let _ = stop_tx.send(());
    let _ = server.await;
}

async fn cc_token(e: &Env, id: &str, secret: &str, scope: &str) -> (u16, Value) {
    let r = e
        .http
        .post(format!("{}/token", e.usa.issuer))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn call(
    e: &Env,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut rb = e.http.request(method, format!("{}{path}", e.usa.issuer));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.unwrap_or(Value::Null), challenge)
}

#[tokio::test]
async fn admin_api_needs_an_admin_token_and_validates_input() {
    use reqwest::Method;
    let e = Env::new().await;
    let mk = |id: &str| NewClient {
        client_id: id.to_string(),
        auth: NewClientAuth::GenerateSecret,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
    };
    let (_, admin_secret) = dive_idp::clients::create(&e.usa.db, &mk("fed-admin"))
        .await
        .unwrap();
    let admin_secret = admin_secret.unwrap();
    dive_idp::clients::set_scopes(&e.usa.db, "fed-admin", &["admin".to_string()])
        .await
        .unwrap();
    let (_, plain_secret) = dive_idp::clients::create(&e.usa.db, &mk("plain"))
        .await
        .unwrap();
    let plain_secret = plain_secret.unwrap();
    // A public client cannot hold the admin scope.
    assert!(matches!(
        dive_idp::clients::set_scopes(&e.usa.db, "portal", &["admin".to_string()]).await,
        Err(dive_idp::IdpError::Invalid {
            field: "scopes",
            ..
        })
    ));

    // Only a client registered for it obtains the scope.
    let (s, body) = cc_token(&e, "plain", &plain_secret, "admin").await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_scope")));
    let (s, body) = cc_token(&e, "fed-admin", &admin_secret, "admin").await;
    assert_eq!(s, 200, "{body}");
    let admin = body["access_token"].as_str().unwrap().to_string();
    let (_, body) = cc_token(&e, "fed-admin", &admin_secret, "").await;
    let no_scope = body["access_token"].as_str().unwrap().to_string();
    let (_, body) = cc_token(&e, "plain", &plain_secret, "roles").await;
    let plain = body["access_token"].as_str().unwrap().to_string();

    // Missing, malformed, foreign and non-admin tokens are refused.
    let (s, body, challenge) = call(&e, Method::GET, "/admin/upstreams", None, None).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"], "invalid_token");
    assert!(challenge.unwrap().starts_with("Bearer"));
    let (s, _, _) = call(&e, Method::GET, "/admin/upstreams", Some("garbage"), None).await;
    assert_eq!(s, 401);
    let foreign = SigningKey::generate("x", Alg::RS256)
        .unwrap()
        .sign(
            "at+jwt",
            &json!({"iss": e.usa.issuer, "aud": "dive-usa", "sub": "fed-admin",
                    "client_id": "fed-admin", "scope": "admin", "jti": "j",
                    "iat": dive_jose::now(), "exp": dive_jose::now() + 300}),
        )
        .unwrap();
    let (s, _, _) = call(&e, Method::GET, "/admin/upstreams", Some(&foreign), None).await;
    assert_eq!(s, 401, "a token not signed by this IdP");
    for t in [&no_scope, &plain] {
        let (s, body, _) = call(&e, Method::GET, "/admin/clients", Some(t), None).await;
        assert_eq!(s, 403);
        assert_eq!(body["error"], "insufficient_scope");
    }
    // A user's token (even an admin user's) is not an admin API token.
    let (user_tokens, _) = login_helper::broker_login(&e.http, &{
        dive_idp::upstreams::create(&e.usa.db, e.upstream("fra-idp"))
            .await
            .unwrap();
        e.broker("fra-idp", "claire", true)
    })
    .await
    .unwrap();
    let (s, _, _) = call(
        &e,
        Method::GET,
        "/admin/upstreams",
        user_tokens["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(s, 403);

    // Upstreams: create, read (never the secret), conflict, validation naming the field.
    let spec = json!({
        "alias": "deu-idp", "issuer": "https://idp.deu.example", "client_id": "dive-usa",
        "client_secret": "a-secret-agreed-with-DEU-0123456789", "country": "DEU",
        "claim_mapping": {"clearance": "nationalClearance"}
    });
    let (s, body, _) = call(
        &e,
        Method::POST,
        "/admin/upstreams",
        Some(&admin),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["alias"], "deu-idp");
    assert_eq!(body["display_name"], "DEU");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["client_secret_set"], true);
    assert_eq!(body["claim_mapping"]["clearance"], "nationalClearance");
    assert_eq!(body["claim_mapping"]["uniqueID"], "uniqueID");
    assert!(body.get("client_secret").is_none());
    let (s, body, _) = call(&e, Method::GET, "/admin/upstreams", Some(&admin), None).await;
    assert_eq!(s, 200);
    assert!(
        !body.to_string().contains("agreed-with-DEU"),
        "secret leaked: {body}"
    );
    let aliases: Vec<&str> = body["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["alias"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, vec!["deu-idp", "fra-idp"]);
    let (s, body, _) = call(
        &e,
        Method::POST,
        "/admin/upstreams",
        Some(&admin),
        Some(spec.clone()),
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (409, Some("conflict")));
    for (bad, field) in [
        (json!({"issuer": "http://idp.deu.example"}), "issuer"),
        (json!({"alias": "DEU IdP"}), "alias"),
        (json!({"scopes": ["profile"]}), "scopes"),
        (json!({"ca_pem": "not a certificate"}), "ca_pem"),
        (json!({"country": "Germany"}), "country"),
        (json!({"client_secret": ""}), "client_secret"),
        (json!({"claim_mapping": {"clearence": "x"}}), "clearence"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let mut body = spec.clone();
        body["alias"] = json!("xyz-idp");
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, resp, _) = call(
            &e,
            Method::POST,
            "/admin/upstreams",
            Some(&admin),
            Some(body),
        )
        .await;
        assert_eq!(s, 400, "{field}: {resp}");
        assert_eq!(resp["error"], "invalid_request");
        assert_eq!(resp["field"], field, "{resp}");
    }
    let mut missing = spec.clone();
    missing.as_object_mut().unwrap().remove("issuer");
    missing["alias"] = json!("xyz-idp");
    let (s, resp, _) = call(
        &e,
        Method::POST,
        "/admin/upstreams",
        Some(&admin),
        Some(missing),
    )
    .await;
    assert_eq!((s, resp["field"].as_str()), (400, Some("issuer")));
    // Nothing was stored by the refused requests.
    let (s, _, _) = call(
        &e,
        Method::GET,
        "/admin/upstreams/xyz-idp",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // PATCH (partial), PUT (idempotent create-or-replace), DELETE.
    let (s, body, _) = call(
        &e,
        Method::PATCH,
        "/admin/upstreams/deu-idp",
        Some(&admin),
        Some(json!({"enabled": false, "display_name": "Germany"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["enabled"], false);
    assert_eq!(body["issuer"], "https://idp.deu.example");
    let stored = dive_idp::upstreams::find(&e.usa.db, "deu-idp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.client_secret, "a-secret-agreed-with-DEU-0123456789");
    let (s, body, _) = call(
        &e,
        Method::PUT,
        "/admin/upstreams/gbr-idp",
        Some(&admin),
        Some(
            json!({"issuer": "https://idp.gbr.example", "client_id": "dive-usa",
                    "client_secret": "gbr-secret"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body, _) = call(
        &e,
        Method::PUT,
        "/admin/upstreams/gbr-idp",
        Some(&admin),
        Some(
            json!({"issuer": "https://login.gbr.example", "client_id": "dive-usa",
                    "client_secret": "gbr-secret-2"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["issuer"], "https://login.gbr.example");
    let (s, body, _) = call(
        &e,
        Method::PUT,
        "/admin/upstreams/gbr-idp",
        Some(&admin),
        Some(
            json!({"alias": "fra-idp", "issuer": "https://x.example", "client_id": "a",
                    "client_secret": "b"}),
        ),
    )
    .await;
    assert_eq!((s, body["field"].as_str()), (400, Some("alias")));
    let (s, _, _) = call(
        &e,
        Method::DELETE,
        "/admin/upstreams/gbr-idp",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, body, _) = call(
        &e,
        Method::DELETE,
        "/admin/upstreams/gbr-idp",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (404, Some("not_found")));

    // Clients: the generated secret is returned once and works; validation names the field.
    let (s, body, _) = call(
        &e,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({"client_id": "dive-deu-broker",
                    "redirect_uris": ["https://idp.deu.example/broker/usa-idp/callback"]})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let secret = body["client_secret"].as_str().unwrap().to_string();
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    let (s, body, _) = call(
        &e,
        Method::GET,
        "/admin/clients/dive-deu-broker",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(!body.to_string().contains(&secret));
    let (s, body, _) = call(
        &e,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({"client_id": "svc", "grant_types": ["client_credentials"]})),
    )
    .await;
    assert_eq!(s, 201);
    let svc_secret = body["client_secret"].as_str().unwrap().to_string();
    assert_eq!(cc_token(&e, "svc", &svc_secret, "").await.0, 200);
    for (bad, field) in [
        (
            json!({"client_id": "c1", "redirect_uris": ["http://evil.example/cb"]}),
            "redirect_uri",
        ),
        (json!({"client_id": "bad id"}), "client_id"),
        (json!({"client_id": "c2", "kind": "secretive"}), "kind"),
        (
            json!({"client_id": "c3", "grant_types": ["password"]}),
            "grant_types",
        ),
        (json!({"client_id": "c4", "scopes": ["root"]}), "scopes"),
        (
            json!({"client_id": "c5", "client_secret": "short"}),
            "client_secret",
        ),
        (
            json!({"client_id": "c6", "redirect_uris": ["https://a.example/cb"], "scopes": ["admin"]}),
            "scopes",
        ),
    ] {
        let (s, resp, _) = call(&e, Method::POST, "/admin/clients", Some(&admin), Some(bad)).await;
        assert_eq!(s, 400, "{field}: {resp}");
        assert_eq!(resp["field"], field, "{resp}");
    }
    // PUT with an agreed secret: created, then replaced idempotently (same secret works).
    let agreed = "agreed-secret-with-the-partner-0123456789";
    let put = json!({"client_secret": agreed,
                     "redirect_uris": ["https://idp.gbr.example/broker/usa-idp/callback"]});
    let (s, body, _) = call(
        &e,
        Method::PUT,
        "/admin/clients/dive-gbr",
        Some(&admin),
        Some(put.clone()),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert!(
        body.get("client_secret").is_none(),
        "an agreed secret is not echoed"
    );
    let (s, _, _) = call(
        &e,
        Method::PUT,
        "/admin/clients/dive-gbr",
        Some(&admin),
        Some(put),
    )
    .await;
    assert_eq!(s, 200);
    let stored = dive_idp::clients::find(&e.usa.db, "dive-gbr")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.auth,
        dive_idp::clients::ClientAuth::Secret {
            hash: dive_idp::util::sha256_hex(agreed)
        }
    );
    let (s, body, _) = call(
        &e,
        Method::PUT,
        "/admin/clients/dive-gbr",
        Some(&admin),
        Some(json!({"redirect_uris": ["ftp://x/cb"]})),
    )
    .await;
    assert_eq!((s, body["field"].as_str()), (400, Some("redirect_uri")));
    assert!(
        dive_idp::clients::find(&e.usa.db, "dive-gbr")
            .await
            .unwrap()
            .is_some(),
        "a refused replacement keeps the old client"
    );
    let (s, _, _) = call(&e, Method::DELETE, "/admin/clients/svc", Some(&admin), None).await;
    assert_eq!(s, 204);
    assert_eq!(cc_token(&e, "svc", &svc_secret, "").await.0, 401);

    // Removing the admin client ends its access at once, before its token expires.
    dive_idp::clients::remove(&e.usa.db, "fed-admin")
        .await
        .unwrap();
    let (s, _, _) = call(&e, Method::GET, "/admin/clients", Some(&admin), None).await;
    assert_eq!(s, 403);
}
