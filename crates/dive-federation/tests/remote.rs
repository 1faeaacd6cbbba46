//! Remote links between two installations (two homes, two CAs), in-process: one-time join
//! tokens, the hub's endpoints served over real HTTPS, a spoke joining with a pinned CA, both
//! sides' IdPs sharing the exchanged secrets, and status pushes authenticated by the link key.

use std::path::Path;

use dive_core::CountryCode;
use dive_core::federation::LinkStatus;
use dive_federation::invites::TokenRefusal;
use dive_federation::{Descriptor, Registry, endpoints, remote, spoke};
use dive_instance::{InstanceConfig, InstancePaths, Role};
use serde_json::Value;

fn cc(s: &str) -> CountryCode {
    CountryCode::new(s).unwrap()
}

/// An initialised instance of the installation at `home` (PKI, config, policy data, IdP
/// database), its IdP's federation endpoints served over HTTPS on a free port that its issuer
/// names. Returns its configuration and the server's stop handle.
async fn instance(
    home: &Path,
    code: &str,
    role: Role,
) -> (InstanceConfig, tokio::sync::oneshot::Sender<()>) {
    let (port, stop) = serve(home, cc(code), 0).await;
    let mut cfg = InstanceConfig::new(cc(code), role);
    cfg.ports.idp = port;
    cfg.urls.issuer = format!("https://localhost:{port}");
    cfg.urls.idp = cfg.urls.issuer.clone();
    let paths = InstancePaths::new(home, cfg.code);
    dive_instance::config::save(&paths, &cfg).unwrap();
    dive_instance::policy::ensure(&paths, &cfg).unwrap();
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string())
        .await
        .unwrap();
    db.pool.close().await;
    (cfg, stop)
}

/// Serve `code`'s federation endpoints over HTTPS on 127.0.0.1:`port` (0: a free one). Returns
/// the port and the server's stop handle.
async fn serve(
    home: &Path,
    code: CountryCode,
    port: u16,
) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let pki = dive_pki::Pki::open(home).unwrap();
    let cert = pki.service("idp").unwrap();
    let bound = dive_http::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        cert.server_config().unwrap(),
    )
    .await
    .unwrap();
    let port = bound.local_addr().port();
    let app = endpoints::router(home.to_path_buf(), code);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(app, async {
        let _ = rx.await;
    }));
    (port, tx)
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ca_fingerprint(home: &Path) -> String {
    let pem = std::fs::read_to_string(dive_pki::partners::installation_ca_path(home)).unwrap();
    dive_pki::partners::pem_fingerprint(&pem, "ca").unwrap()
}

async fn registry(home: &Path) -> Registry {
    Registry::open(
        &InstancePaths::new(home, cc("USA"))
            .federation_db()
            .display()
            .to_string(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn join_tokens_are_one_time_bound_to_their_partner_and_expire() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("instances/usa")).unwrap();
    let reg = registry(home.path()).await;
    let inv = reg.create_invite(cc("FRA"), 60_000).await.unwrap();
    assert_eq!(
        reg.consume_invite(cc("DEU"), &inv.token).await.unwrap(),
        Err(TokenRefusal::Unknown(cc("DEU")))
    );
    assert_eq!(
        reg.consume_invite(cc("FRA"), "guessed").await.unwrap(),
        Err(TokenRefusal::Unknown(cc("FRA")))
    );
    // Two joins racing with one token: exactly one wins.
    let (r1, r2) = tokio::join!(
        reg.consume_invite(cc("FRA"), &inv.token),
        reg.consume_invite(cc("FRA"), &inv.token)
    );
    let wins = [r1.unwrap(), r2.unwrap()]
        .iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(wins, 1);
    assert_eq!(
        reg.consume_invite(cc("FRA"), &inv.token).await.unwrap(),
        Err(TokenRefusal::Used(cc("FRA")))
    );
    let short = reg.create_invite(cc("FRA"), 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    assert!(matches!(
        reg.consume_invite(cc("FRA"), &short.token).await.unwrap(),
        Err(TokenRefusal::Expired { .. })
    ));
    // Only the hash is stored: the token appears in no file of the hub.
    reg.close().await;
    for f in std::fs::read_dir(home.path().join("instances/usa")).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(inv.token.len())
                .any(|w| w == inv.token.as_bytes())
        );
    }
}

#[tokio::test]
async fn a_spoke_joins_a_remote_hub_and_follows_its_status_pushes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hub, _stop_hub) = instance(a.path(), "USA", Role::Hub).await;
    let (fra, stop_fra) = instance(b.path(), "FRA", Role::Spoke).await;
    let inv = remote::invite(a.path(), &hub, cc("FRA"), 60_000)
        .await
        .unwrap();
    let pin = ca_fingerprint(a.path());
    let http =
        dive_http::trust::client_trusting(dive_http::trust::trusted_certs(a.path()).unwrap())
            .unwrap();

    // The endpoints refuse what is wrong with JSON errors, changing nothing.
    let join_url = format!("{}/federation/join", hub.urls.issuer);
    let r = http.post(&join_url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let fake = serde_json::json!({
        "code": "FRA", "issuer": fra.urls.issuer, "apiUrl": fra.urls.api,
        "caPem": "not a certificate", "clientSecret": "x".repeat(43),
    });
    let r = http.post(&join_url).json(&fake).send().await.unwrap();
    assert_eq!(r.status(), 401, "no bearer token");
    let r = http
        .post(&join_url)
        .bearer_auth(&inv.token)
        .json(&fake)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("caPem"),
        "{body}"
    );
    // The CA is public: what the spoke pins.
    let ca = http
        .get(format!("{}/federation/ca.pem", hub.urls.issuer))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(dive_pki::partners::pem_fingerprint(&ca, "ca").unwrap(), pin);

    // A wrong pin is refused before anything is sent; the token stays usable.
    let wrong = "ab".repeat(32);
    let e = spoke::join(b.path(), &fra, &hub.urls.issuer, &wrong, &inv.token)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&pin) && e.contains(&wrong), "{e}");

    let joined = spoke::join(b.path(), &fra, &hub.urls.issuer, &pin, &inv.token)
        .await
        .unwrap();
    assert_eq!(joined.hub.code, cc("USA"));

    // Each side trusts the other's CA and issuer, and lists it as an active partner.
    assert!(a.path().join("pki/partners/FRA.pem").is_file());
    assert!(b.path().join("pki/partners/USA.pem").is_file());
    let hub_issuers = json(&a.path().join("instances/usa/policy/trusted_issuers.json"));
    assert_eq!(hub_issuers[&fra.urls.issuer]["instance"], "FRA");
    let fra_issuers = json(&b.path().join("instances/fra/policy/trusted_issuers.json"));
    assert_eq!(fra_issuers[&hub.urls.issuer]["instance"], "USA");

    // Each IdP's upstream holds exactly the secret of the client registered at the other.
    let db = |home: &Path, code: &str| {
        let p = InstancePaths::new(home, cc(code)).idp_db();
        async move { dive_idp::Db::open(&p.display().to_string()).await.unwrap() }
    };
    let (hub_db, fra_db) = (db(a.path(), "USA").await, db(b.path(), "FRA").await);
    let up = dive_idp::upstreams::find(&hub_db, "fra-idp")
        .await
        .unwrap()
        .unwrap();
    let client = dive_idp::clients::find(&fra_db, "dive-broker-usa")
        .await
        .unwrap()
        .unwrap();
    assert!(up.enabled);
    assert!(client.secret_matches(&up.client_secret));
    assert_eq!(client.redirect_uris, [up.redirect_uri(&hub.urls.issuer)]);
    let up = dive_idp::upstreams::find(&fra_db, "usa-idp")
        .await
        .unwrap()
        .unwrap();
    let client = dive_idp::clients::find(&hub_db, "dive-broker-fra")
        .await
        .unwrap()
        .unwrap();
    assert!(client.secret_matches(&up.client_secret));
    assert_eq!(client.redirect_uris, [up.redirect_uri(&fra.urls.issuer)]);

    // The registry: active, remote, history pending → active "joined remotely".
    let reg = registry(a.path()).await;
    let history = reg.history(cc("FRA")).await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.to).collect::<Vec<_>>(),
        [LinkStatus::Pending, LinkStatus::Active]
    );
    assert!(history.iter().all(|c| c.reason == "joined remotely"));
    let desc: Descriptor = reg.remote(cc("FRA")).await.unwrap().unwrap();
    assert_eq!(desc.issuer, fra.urls.issuer);
    reg.close().await;
    use std::os::unix::fs::PermissionsExt;
    for f in [
        remote::link_key_file(a.path(), cc("USA"), cc("FRA")),
        spoke::hub_file(b.path(), cc("FRA")),
    ] {
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
    }

    // The token was consumed.
    let e = spoke::join(b.path(), &fra, &hub.urls.issuer, &pin, &inv.token)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already been used"), "{e}");

    // Verification: FRA runs its half only for the hub's link key, and only for its hub.
    let verify_url = format!("{}/federation/verify", fra.urls.issuer);
    let fra_http = dive_http::trust::partner_client(a.path()).unwrap();
    for (key, body, status) in [
        (None, serde_json::json!({"hub": "USA"}), 401),
        (Some("wrong"), serde_json::json!({"hub": "USA"}), 401),
        (Some("x"), serde_json::json!({"nope": 1}), 400),
    ] {
        let mut r = fra_http.post(&verify_url).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        assert_eq!(r.send().await.unwrap().status(), status, "{key:?} {body}");
    }
    let key =
        std::fs::read_to_string(remote::link_key_file(a.path(), cc("USA"), cc("FRA"))).unwrap();
    let r = fra_http
        .post(&verify_url)
        .bearer_auth(&key)
        .json(&serde_json::json!({"hub": "DEU"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Both sides' files and IdPs are in order; only the endpoints run here (no discovery, no
    // logins), which the checks report as failures: recorded, the breaker counts.
    let report = dive_federation::verify::verify_remote(a.path(), &hub, &desc, false)
        .await
        .unwrap();
    let by_id = |id: &str| {
        report
            .checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id}: {report:#?}"))
    };
    for id in [
        "USA→FRA.upstream",
        "USA→FRA.trust",
        "FRA→USA.upstream",
        "FRA→USA.trust",
        "FRA→USA.hub_ca",
    ] {
        assert!(by_id(id).ok, "{:#?}", by_id(id));
    }
    for id in [
        "USA→FRA.discovery",
        "FRA→USA.discovery",
        "USA→FRA.brokered_login",
        "FRA→USA.brokered_login",
    ] {
        assert!(!by_id(id).ok, "{:#?}", by_id(id));
    }
    assert!(!report.ok);
    assert_eq!(
        by_id("FRA→USA.discovery").attempts,
        4,
        "retried with back-off"
    );
    let reg = registry(a.path()).await;
    let link = reg.get(cc("FRA")).await.unwrap().unwrap();
    assert_eq!(link.breaker.consecutive_failures, 1);
    assert_eq!(
        link.last_verification.unwrap()["checks"]
            .as_array()
            .unwrap()
            .len(),
        report.checks.len()
    );
    reg.close().await;

    // FRA not answering: asked again with back-off, then reported as one failed check.
    stop_fra.send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let report = dive_federation::verify::verify_remote(a.path(), &hub, &desc, false)
        .await
        .unwrap();
    let asked = report
        .checks
        .iter()
        .find(|c| c.id == "FRA→USA.partner_checks")
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert!(!asked.ok);
    assert_eq!(asked.attempts, 4, "{asked:#?}");
    assert!(asked.detail.contains("/federation/verify"), "{asked:#?}");
    let reg = registry(a.path()).await;
    let link = reg.get(cc("FRA")).await.unwrap().unwrap();
    assert_eq!(link.breaker.consecutive_failures, 2);
    reg.close().await;
    let (_, _stop_fra) = serve(b.path(), cc("FRA"), fra.ports.idp).await;

    // Suspended on the hub: pushed to FRA, whose upstream is disabled and trust withdrawn.
    let done = remote::set_status(a.path(), &hub, &desc, LinkStatus::Suspended, "test")
        .await
        .unwrap();
    assert_eq!(done.pushed, Ok(()));
    let link = spoke::read_hub_link(b.path(), cc("FRA")).unwrap().unwrap();
    assert_eq!(link.status, LinkStatus::Suspended);
    let fra_issuers = json(&b.path().join("instances/fra/policy/trusted_issuers.json"));
    assert!(fra_issuers.get(&hub.urls.issuer).is_none());
    let up = dive_idp::upstreams::find(&fra_db, "usa-idp")
        .await
        .unwrap()
        .unwrap();
    assert!(!up.enabled);

    // A push with the wrong key is refused and changes nothing (FRA's CA is a partner CA of
    // the hub's installation now).
    let http = dive_http::trust::partner_client(a.path()).unwrap();
    let r = http
        .post(format!("{}/federation/link-status", fra.urls.issuer))
        .bearer_auth("wrong")
        .json(&serde_json::json!({"hub": "USA", "status": "active", "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        spoke::read_hub_link(b.path(), cc("FRA"))
            .unwrap()
            .unwrap()
            .status,
        LinkStatus::Suspended
    );

    // Revoked: both sides remove upstream and client.
    let done = remote::set_status(a.path(), &hub, &desc, LinkStatus::Revoked, "test")
        .await
        .unwrap();
    assert_eq!(done.pushed, Ok(()));
    assert!(
        dive_idp::upstreams::find(&fra_db, "usa-idp")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        dive_idp::clients::find(&fra_db, "dive-broker-usa")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        dive_idp::upstreams::find(&hub_db, "fra-idp")
            .await
            .unwrap()
            .is_none()
    );
    hub_db.pool.close().await;
    fra_db.pool.close().await;

    // Unlinked (already revoked: nothing to push): the hub forgets FRA, its CA and link key;
    // the history stays.
    let done = remote::unlink(a.path(), &hub, &desc, "test").await.unwrap();
    assert_eq!(done.pushed, Ok(()));
    assert!(!a.path().join("pki/partners/FRA.pem").exists());
    assert!(!remote::link_key_file(a.path(), cc("USA"), cc("FRA")).exists());
    let reg = registry(a.path()).await;
    assert!(reg.get(cc("FRA")).await.unwrap().is_none());
    assert!(reg.remote(cc("FRA")).await.unwrap().is_none());
    assert_eq!(reg.history(cc("FRA")).await.unwrap().len(), 4);
    reg.close().await;
    assert!(remote::find(a.path(), cc("FRA")).await.unwrap().is_none());
}
