//! The authenticator against a real IdP over HTTPS on loopback: real tokens, discovery, JWKS,
//! revocation, trusted-issuer changes on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dive_authn::{Authenticator, AuthnConfig, AuthnError, RevocationSource};
use dive_core::{Clearance, CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use dive_idp::{IdpConfig, Running};
use dive_jose::{Alg, SigningKey};
use serde_json::json;

const REDIRECT: &str = "https://app.example/cb";
const PASSWORD: &str = "Correct-Horse-Battery-42!";

struct Env {
    home: tempfile::TempDir,
    idp: Running,
    http: reqwest::Client,
    secret: String,
}

impl Env {
    fn issuers_file(&self) -> PathBuf {
        self.home.path().join("trusted_issuers.json")
    }

    fn trust(&self, issuers: &[&str]) {
        let doc: serde_json::Map<String, serde_json::Value> = issuers
            .iter()
            .map(|i| (i.to_string(), json!({"instance": "FRA", "name": "test"})))
            .collect();
        write(&self.issuers_file(), &serde_json::to_string(&doc).unwrap());
    }

    fn authenticator(&self, revocation: bool) -> Authenticator {
        let mut cfg = AuthnConfig::new(self.http.clone(), self.issuers_file());
        if revocation {
            cfg = cfg.with_revocation(RevocationSource {
                issuer: self.idp.issuer.clone(),
                client_id: "svc".into(),
                client_secret: self.secret.clone(),
            });
        }
        Authenticator::new(cfg).unwrap()
    }

    async fn login(&self, user: &str) -> String {
        let req = LoginRequest {
            issuer: self.idp.issuer.clone(),
            client_id: "svc".into(),
            client_secret: Some(self.secret.clone()),
            redirect_uri: REDIRECT.into(),
            scope: "openid profile coalition roles".into(),
            username: user.into(),
            password: PASSWORD.into(),
            totp_secret: None,
            extra: vec![],
        };
        let (tokens, _) = login_helper::login(&self.http, &req).await.unwrap();
        tokens["access_token"].as_str().unwrap().to_string()
    }
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn env() -> Env {
    let home = tempfile::tempdir().unwrap();
    let cfg = IdpConfig::new(CountryCode::new("FRA").unwrap(), home.path().to_path_buf());
    let idp = dive_idp::start(cfg, false).await.unwrap();
    let secret = provision(&idp).await;
    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let http = dive_http::https_client(&pki).unwrap();
    let e = Env {
        home,
        idp,
        http,
        secret,
    };
    e.trust(&[&e.idp.issuer]);
    e
}

/// The client `svc` (its secret returned) and the user `alice` in `idp`'s database.
async fn provision(idp: &Running) -> String {
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "svc".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::ClientCredentials],
        },
    )
    .await
    .unwrap();
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
            roles: vec!["user".into()],
        },
    )
    .await
    .unwrap();
    secret.unwrap()
}

#[tokio::test]
async fn real_tokens_become_coalition_subjects() {
    let e = env().await;
    let auth = e.authenticator(true);
    let token = e.login("alice").await;
    let p = auth
        .authenticate_header(Some(&format!("Bearer {token}")))
        .await
        .unwrap();
    assert_eq!(p.issuer, e.idp.issuer);
    assert_eq!(p.attributes.clearance, Clearance::Unclassified);
    assert_eq!(p.attributes.clearance_original, "NON CLASSIFIÉ");
    assert_eq!(p.attributes.country_of_affiliation.as_str(), "FRA");
    assert!(p.has_role("user"));
    // A second use is served from the cache and still checked.
    assert_eq!(auth.authenticate(&token).await.unwrap().subject, p.subject);

    assert!(matches!(
        auth.authenticate_header(None).await,
        Err(AuthnError::Missing)
    ));
    assert!(matches!(
        auth.authenticate_header(Some("Basic abc")).await,
        Err(AuthnError::Malformed(_))
    ));
    assert!(matches!(
        auth.authenticate("not.a.jwt").await,
        Err(AuthnError::Malformed(_))
    ));
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused() {
    let e = env().await;
    let auth = e.authenticator(false);
    // Same issuer name, someone else's key.
    let forger = SigningKey::generate("k1", Alg::RS256).unwrap();
    let claims = json!({
        "iss": e.idp.issuer, "sub": "x", "exp": dive_jose::now() + 300, "uniqueID": "x",
        "clearance": "TRÈS SECRET DÉFENSE", "countryOfAffiliation": "FRA",
        "organizationType": "MIL",
    });
    let forged = forger.sign("at+jwt", &claims).unwrap();
    assert!(matches!(
        auth.authenticate(&forged).await,
        Err(AuthnError::Token(_))
    ));
    // An issuer the instance does not trust is refused before any network call.
    let mut foreign = claims.clone();
    foreign["iss"] = json!("https://evil.example");
    let foreign = forger.sign("at+jwt", &foreign).unwrap();
    match auth.authenticate(&foreign).await {
        Err(AuthnError::UntrustedIssuer(i)) => assert_eq!(i, "https://evil.example"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let e = env().await;
    let auth = e.authenticator(true);
    let token = e.login("alice").await;
    auth.authenticate(&token).await.unwrap();
    let r = e
        .http
        .post(format!("{}/revoke", e.idp.issuer))
        .basic_auth("svc", Some(&e.secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The list is refreshed at most every two seconds.
    let mut refused = false;
    for _ in 0..40 {
        if matches!(auth.authenticate(&token).await, Err(AuthnError::Revoked)) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "revoked token still accepted");
    // A fresh token of the same user is fine.
    auth.authenticate(&e.login("alice").await).await.unwrap();
}

#[tokio::test]
async fn unreachable_revocation_list_fails_closed() {
    let e = env().await;
    let token = e.login("alice").await;
    let cfg =
        AuthnConfig::new(e.http.clone(), e.issuers_file()).with_revocation(RevocationSource {
            issuer: e.idp.issuer.clone(),
            client_id: "svc".into(),
            client_secret: "wrong".into(),
        });
    let auth = Authenticator::new(cfg).unwrap();
    let err = auth.authenticate(&token).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn trust_follows_the_issuers_file() {
    let e = env().await;
    let auth = e.authenticator(false);
    let token = e.login("alice").await;
    auth.authenticate(&token).await.unwrap();
    e.trust(&["https://partner.example"]);
    let mut refused = false;
    for _ in 0..40 {
        if matches!(
            auth.authenticate(&token).await,
            Err(AuthnError::UntrustedIssuer(_))
        ) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "an issuer removed from the file is still trusted");
    assert_eq!(auth.trusted_issuers(), vec!["https://partner.example"]);
    // A broken file trusts no one rather than the last good list.
    write(&e.issuers_file(), "{ not json");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(auth.trusted_issuers().is_empty());
    // Constructing with a bad file is an error naming the file.
    let err = Authenticator::new(AuthnConfig::new(e.http.clone(), e.issuers_file()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("trusted_issuers.json"), "{err}");
}

/// A partner that re-joins with a new CA (a new installation at the same issuer URL, with new
/// signing keys): once its new CA is registered, its tokens are verified — the JWKS is fetched
/// with the client that trusts the new CA, not the one the issuer's verifier was first built
/// with — without restarting the authenticator.
#[tokio::test]
async fn a_partner_rejoining_with_a_new_ca_is_verified_without_restart() {
    let ours = tempfile::tempdir().unwrap();
    dive_pki::Pki::open(ours.path()).unwrap();
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fra = CountryCode::new("FRA").unwrap();
    let ca = |home: &Path| {
        std::fs::read_to_string(dive_pki::partners::installation_ca_path(home)).unwrap()
    };
    let login = |idp: &Running, secret: String, home: &Path| {
        let http = dive_http::https_client(&dive_pki::Pki::open(home).unwrap()).unwrap();
        let req = LoginRequest {
            issuer: idp.issuer.clone(),
            client_id: "svc".into(),
            client_secret: Some(secret),
            redirect_uri: REDIRECT.into(),
            scope: "openid profile coalition roles".into(),
            username: "alice".into(),
            password: PASSWORD.into(),
            totp_secret: None,
            extra: vec![],
        };
        async move {
            let (tokens, _) = login_helper::login(&http, &req).await.unwrap();
            tokens["access_token"].as_str().unwrap().to_string()
        }
    };

    let first = dive_idp::start(IdpConfig::new(fra, old.path().to_path_buf()), false)
        .await
        .unwrap();
    let secret = provision(&first).await;
    dive_pki::partners::store_partner_ca(ours.path(), "FRA", &ca(old.path())).unwrap();
    let issuers = ours.path().join("trusted_issuers.json");
    write(
        &issuers,
        &json!({&first.issuer: {"instance": "FRA", "name": "partner"}}).to_string(),
    );
    let trusted = dive_http::TrustedClient::new(ours.path()).unwrap();
    let auth = Authenticator::new(AuthnConfig::new(trusted, &issuers)).unwrap();
    let token = login(&first, secret, old.path()).await;
    auth.authenticate(&token).await.unwrap();

    // The partner comes back as another installation at the same address.
    let (addr, issuer) = (first.addr, first.issuer.clone());
    first.stop().await;
    let mut cfg = IdpConfig::new(fra, new.path().to_path_buf());
    cfg.bind = addr;
    let second = dive_idp::start(cfg, false).await.unwrap();
    assert_eq!(second.issuer, issuer);
    let secret = provision(&second).await;
    let token = login(&second, secret, new.path()).await;
    dive_pki::partners::store_partner_ca(ours.path(), "FRA", &ca(new.path())).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        match auth.authenticate(&token).await {
            Ok(p) => {
                assert_eq!(p.issuer, issuer);
                break;
            }
            Err(e) => assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the new CA is never used: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;
}
