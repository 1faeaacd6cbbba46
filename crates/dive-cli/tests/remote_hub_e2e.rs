//! Remote hubs, through the real `dive` binary: two installations (two DIVE_HOMEs, two CAs) on
//! one machine, as if on two: A's services listen on and are named by 127.0.0.2 only, B's by
//! 127.0.0.3 (`--public-host`/`--bind-host`, and the same through `DIVE_PUBLIC_HOST` and
//! `DIVE_BIND_HOST`), so a certificate naming only localhost would fail every connection. The
//! hub of A invites FRA; FRA is deployed in B with `--hub` and joins over the network (the hub's
//! CA pinned by fingerprint, a one-time token). Then brokered logins both ways, federated search
//! from the hub reaching FRA, `federation verify` of the link (FRA running its half on request),
//! refusals (wrong CA pin, reused and expired tokens), and a revocation on the hub that B
//! applies too.

mod support;
use support::instance::{Api, Env, brokered_login, login, wait_for_fresh_totp_step};
use support::{args, port_flags, ports, text};

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Side<'a> {
    env: &'a Env,
    code: &'static str,
    issuer: String,
    api: Api,
}

impl Side<'_> {
    fn users(&self) -> (Value, Value) {
        let lower = self.code.to_ascii_lowercase();
        (
            self.env.json(&format!("instances/{lower}/test-users.json")),
            self.env
                .json(&format!("instances/{lower}/test-users-totp.json")),
        )
    }

    async fn login(&self, user: &str) -> String {
        let (pw, totp) = self.users();
        let totp = totp[user]["secret"].as_str().map(str::to_string);
        if totp.is_some() {
            wait_for_fresh_totp_step(&self.env.home, self.code, user).await;
        }
        login(
            &self.api.http,
            &self.issuer,
            user,
            pw[user].as_str().unwrap(),
            totp,
        )
        .await
        .0
    }

    /// `user` of `home` logs in here through `home`'s IdP.
    async fn brokered(&self, home: &Side<'_>, user: &str) -> Result<(String, Value), String> {
        let (pw, totp) = home.users();
        let totp = totp[user]["secret"].as_str().map(str::to_string);
        if totp.is_some() {
            wait_for_fresh_totp_step(&home.env.home, home.code, user).await;
        }
        brokered_login(
            &self.api.http,
            &self.issuer,
            home.code,
            user,
            pw[user].as_str().unwrap(),
            totp,
        )
        .await
    }
}

/// A client trusting both installations' CAs (the test's browser, so to speak).
fn client_trusting_both(a: &Path, b: &Path) -> reqwest::Client {
    let mut b_ = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    let mut certs = Vec::new();
    for home in [a, b] {
        let pem = std::fs::read(home.join("pki/ca/cert.pem")).unwrap();
        certs.push(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b_ = b_.tls_certs_only(certs);
    b_.build().unwrap()
}

/// `--hub`, `--hub-ca-sha256` and `--join-token` from `dive federation invite`'s output.
fn invitation(out: &str) -> (String, String, String) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("dive spoke deploy"))
        .unwrap_or_else(|| panic!("no command in {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        let i = words.iter().position(|w| *w == flag).unwrap();
        words[i + 1].to_string()
    };
    (
        after("--hub"),
        after("--hub-ca-sha256"),
        after("--join-token"),
    )
}

#[test]
fn a_spoke_of_another_installation_joins_the_hub_over_the_network() {
    let (a, b) = (Env::new(), Env::new());
    let (hp, fp) = (ports(), ports());
    // Two hosts, as two machines would be (Linux routes all of 127/8 to the loopback).
    let (host_a, host_b) = ("127.0.0.2", "127.0.0.3");
    let t0 = Instant::now();
    let out = a.run(&args(
        &[
            "hub",
            "deploy",
            "--seed-count",
            "30",
            "--public-host",
            host_a,
            "--bind-host",
            host_a,
        ],
        &port_flags(&hp),
    ));
    assert!(out.status.success(), "{}", text(&out));
    let cfg = a.json("instances/usa/instance.json");
    assert_eq!(cfg["public_host"], host_a, "{cfg:#}");
    assert_eq!(cfg["bind_host"], host_a, "{cfg:#}");
    // Listening on A's address only: nothing answers at 127.0.0.1.
    assert!(std::net::TcpStream::connect(("127.0.0.1", hp[0])).is_err());

    let out = a.run(&["federation", "invite", "FRA", "--ttl", "10m"]);
    assert!(out.status.success(), "{}", text(&out));
    let (hub_url, pin, token) = invitation(&text(&out));
    assert_eq!(hub_url, format!("https://{host_a}:{}", hp[0]));

    let mut deploy_b = b.cmd(&args(
        &[
            "spoke",
            "deploy",
            "FRA",
            "--seed",
            "--seed-count",
            "20",
            "--hub",
            &hub_url,
            "--hub-ca-sha256",
            &pin,
            "--join-token",
            &token,
        ],
        &port_flags(&fp),
    ));
    let out = deploy_b
        .env("DIVE_PUBLIC_HOST", host_b)
        .env("DIVE_BIND_HOST", host_b)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(b.json("instances/fra/instance.json")["public_host"], host_b);
    assert!(
        t.contains("federation: USA ⇄ FRA active (remote hub"),
        "{t}"
    );
    eprintln!(
        "hub in A and FRA in B deployed and joined in {:?}",
        t0.elapsed()
    );

    // Two installations, two CAs: each now trusts the other's as a partner CA.
    let ca_a = std::fs::read_to_string(a.home.join("pki/ca/cert.pem")).unwrap();
    let ca_b = std::fs::read_to_string(b.home.join("pki/ca/cert.pem")).unwrap();
    assert_ne!(ca_a, ca_b);
    assert_eq!(
        std::fs::read_to_string(a.home.join("pki/partners/FRA.pem")).unwrap(),
        ca_b
    );
    assert_eq!(
        std::fs::read_to_string(b.home.join("pki/partners/USA.pem")).unwrap(),
        ca_a
    );
    let hub_json = b.home.join("instances/fra/federation/hub.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&hub_json).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        b.json("instances/fra/federation/hub.json")["status"],
        "active"
    );

    // The hub's registry: FRA active, remote, joined remotely; both sides up.
    let out = a.run(&["federation", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = &status[0];
    assert_eq!(l["partner"], "FRA", "{status:#}");
    assert_eq!(l["status"], "active", "{l:#}");
    assert_eq!(l["hubTrustsSpoke"], true, "{l:#}");
    assert_eq!(l["spokeTrustsHub"], Value::Null, "{l:#}");
    assert_eq!(
        l["remote"]["issuer"],
        format!("https://{host_b}:{}", fp[0]),
        "{l:#}"
    );
    assert_eq!(l["spokeHealth"]["ok"], true, "{l:#}");
    assert_eq!(l["history"][0]["reason"], "joined remotely", "{l:#}");
    let t = text(&a.run(&["federation", "status"]));
    assert!(t.contains("remote"), "{t}");
    let t = text(&b.run(&["federation", "status"]));
    assert!(
        t.contains(&format!(
            "FRA is linked with the remote hub USA ({hub_url}): active"
        )),
        "{t}"
    );

    // Refusals: a wrong CA pin (naming both fingerprints), the used token, an expired token.
    let wrong = "00".repeat(32);
    let join = |pin: &str, token: &str| {
        b.run(&[
            "federation",
            "join",
            "--hub",
            &hub_url,
            "--hub-ca-sha256",
            pin,
            "--join-token",
            token,
        ])
    };
    let out = join(&wrong, &token);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&pin) && t.contains(&wrong), "{t}");
    let out = join(&pin, &token);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("already been used"), "{t}");
    let out = a.run(&["federation", "invite", "FRA", "--ttl", "1ms"]);
    let (_, _, expired) = invitation(&text(&out));
    std::thread::sleep(Duration::from_millis(20));
    let out = join(&pin, &expired);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("expired"), "{t}");

    let http = client_trusting_both(&a.home, &b.home);
    let usa = Side {
        env: &a,
        code: "USA",
        issuer: format!("https://{host_a}:{}", hp[0]),
        api: Api {
            http: http.clone(),
            base: format!("https://{host_a}:{}", hp[1]),
        },
    };
    let fra = Side {
        env: &b,
        code: "FRA",
        issuer: format!("https://{host_b}:{}", fp[0]),
        api: Api {
            http: http.clone(),
            base: format!("https://{host_b}:{}", fp[1]),
        },
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Brokered logins both ways, across the two installations.
        let (_, claims) = usa.brokered(&fra, "testuser-fra-1").await.unwrap();
        assert_eq!(claims["iss"], usa.issuer.as_str(), "{claims}");
        assert_eq!(claims["countryOfAffiliation"], "FRA", "{claims}");
        assert_eq!(claims["home_issuer"], fra.issuer.as_str(), "{claims}");
        let (guest, claims) = fra.brokered(&usa, "testuser-usa-1").await.unwrap();
        assert_eq!(claims["iss"], fra.issuer.as_str(), "{claims}");
        assert_eq!(claims["countryOfAffiliation"], "USA", "{claims}");
        let (s, page) = fra.api.get(&guest, "/api/resources?limit=5").await;
        assert_eq!(s, 200, "{page}");

        // Federated search from the hub reaches FRA (its API trusts A's CA and the hub's
        // issuer; the hub's API trusts B's CA) with the hub user's own token.
        // A service notices a changed trust file within 200 ms (dive-authn's RECHECK): allow
        // that much after the join before requiring FRA's answer.
        let usa1 = usa.login("testuser-usa-1").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let (body, fra_part) = loop {
            let r = usa
                .api
                .http
                .post(format!("{}/api/resources/federated-search", usa.api.base))
                .bearer_auth(&usa1)
                .json(&json!({"limit": 50, "timeoutMs": 3000}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            let fra_part = body["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["instance"] == "FRA")
                .cloned()
                .unwrap_or_else(|| panic!("FRA not asked: {body:#}"));
            if fra_part["status"] == "ok" || std::time::Instant::now() > deadline {
                break (body, fra_part);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(fra_part["status"], "ok", "{body:#}");
        assert_eq!(body["partial"], false, "{body:#}");
    });

    // Verified from the hub: its own side and its user brokered into FRA, and FRA's half (its
    // files and IdP, its user brokered into the hub) run by FRA on request; recorded.
    let key_file = a.home.join("instances/usa/secrets/federation/FRA.link-key");
    let key = std::fs::read(&key_file).unwrap();
    let tv = Instant::now();
    let out = a.run(&["federation", "verify", "FRA"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    eprintln!(
        "remote federation verify passed in {:?}:\n{t}",
        tv.elapsed()
    );
    for id in [
        "USA→FRA.discovery",
        "USA→FRA.upstream",
        "USA→FRA.trust",
        "USA→FRA.brokered_login",
        "USA→FRA.token_accepted",
        "FRA→USA.discovery",
        "FRA→USA.upstream",
        "FRA→USA.trust",
        "FRA→USA.hub_ca",
        "FRA→USA.brokered_login",
        "FRA→USA.token_accepted",
    ] {
        assert!(t.contains(&format!("PASS {id}")), "{id}: {t}");
    }
    assert!(t.contains("USA ⇄ FRA: 11/11 checks passed"), "{t}");
    // The spoke's user brokered into the hub keeps its French clearance, normalised.
    assert!(
        t.contains("testuser-fra-1 logged in at USA through fra-idp: national clearance"),
        "{t}"
    );
    let t = text(&a.run(&["federation", "status"]));
    assert!(t.contains("11/11 passed"), "{t}");

    // FRA's upstream for the hub disabled in B: FRA's half fails truthfully, and so does the
    // hub user's login through it; recorded, the breaker counts.
    let upstream = |verb: &str| {
        let out = b.run(&["idp", "upstreams", verb, "--instance", "FRA", "usa-idp"]);
        assert!(out.status.success(), "{}", text(&out));
    };
    upstream("disable");
    let out = a.run(&["federation", "verify", "FRA"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL FRA→USA.upstream"), "{t}");
    assert!(t.contains("upstream usa-idp is disabled"), "{t}");
    assert!(t.contains("FAIL FRA→USA.brokered_login"), "{t}");
    assert!(t.contains("PASS USA→FRA.brokered_login"), "{t}");
    upstream("enable");
    let out = a.run(&["federation", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["lastVerification"]["ok"], false, "{status:#}");
    assert_eq!(
        status[0]["breaker"]["consecutive_failures"], 1,
        "{status:#}"
    );

    // A wrong link key: FRA refuses to run its half (401), which is a failure too; the third
    // failure in a row opens the link's breaker and the next verify fails fast.
    std::fs::write(&key_file, "not-the-link-key").unwrap();
    for _ in 0..2 {
        let out = a.run(&["federation", "verify", "FRA"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            t.contains("FAIL FRA→USA.partner_checks") && t.contains("401"),
            "{t}"
        );
        assert!(t.contains("PASS FRA→USA.brokered_login"), "{t}");
    }
    let t0v = Instant::now();
    let out = a.run(&["federation", "verify", "FRA"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("circuit breaker of the link with FRA is open"),
        "{t}"
    );
    assert!(t0v.elapsed() < Duration::from_secs(5), "not fast: {t}");
    std::fs::write(&key_file, &key).unwrap();
    let out = a.run(&["federation", "verify", "FRA", "--force"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("11/11 checks passed (link breaker CLOSED)"),
        "{t}"
    );

    // Suspended on the hub and pushed to FRA. A push FRA refuses (a wrong link key) is reported
    // with exit 1 while the hub's side stands; the same command again repairs it.
    std::fs::write(&key_file, "not-the-link-key").unwrap();
    let out = a.run(&["federation", "suspend", "FRA"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("the hub's side took effect") && t.contains("401"),
        "{t}"
    );
    assert_eq!(
        b.json("instances/fra/federation/hub.json")["status"],
        "active"
    );
    std::fs::write(&key_file, key).unwrap();
    let out = a.run(&["federation", "suspend", "FRA"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        b.json("instances/fra/federation/hub.json")["status"],
        "suspended"
    );
    rt.block_on(async {
        let e = fra.brokered(&usa, "testuser-usa-1").await.unwrap_err();
        assert!(e.contains("usa-idp"), "{e}");
    });
    let out = a.run(&["federation", "resume", "FRA"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        b.json("instances/fra/federation/hub.json")["status"],
        "active"
    );
    rt.block_on(async {
        fra.brokered(&usa, "testuser-usa-1").await.unwrap();
    });

    // Revoked on the hub: applied there at once and pushed to FRA, which applies its side.
    let out = a.run(&["federation", "revoke", "FRA", "--reason", "e2e"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("applied the change"), "{t}");
    assert_eq!(
        b.json("instances/fra/federation/hub.json")["status"],
        "revoked"
    );
    let issuers = b.json("instances/fra/policy/trusted_issuers.json");
    assert!(issuers.get(&usa.issuer).is_none(), "{issuers:#}");
    rt.block_on(async {
        let usa1 = usa.login("testuser-usa-1").await;
        let t0 = Instant::now();
        while fra.api.get(&usa1, "/api/resources").await.0 != 401 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "FRA still accepts USA tokens"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e = usa.brokered(&fra, "testuser-fra-1").await.unwrap_err();
        eprintln!("brokered login through the revoked FRA: {e}");
        let e = fra.brokered(&usa, "testuser-usa-1").await.unwrap_err();
        eprintln!("brokered login through the revoked hub: {e}");
    });
    let out = a.run(&["federation", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["status"], "revoked", "{status:#}");
    assert_eq!(status[0]["hubTrustsSpoke"], false, "{status:#}");
    eprintln!("remote hub e2e took {:?}", t0.elapsed());
}
