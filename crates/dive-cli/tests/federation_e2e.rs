//! Federation end to end, through the real `dive` binary: a hub and two spokes (FRA and DEU, the
//! spokes deployed concurrently) linked by their deployments; brokered logins with MFA both ways;
//! cross-instance reads and KAS decryption allowed and denied by the holding instance's policy
//! with the right reasons; federated search across three instances, with one partner hanging
//! (partial results within the timeout, its breaker opening, recovery when it answers again) and
//! one partner restarted; `federation status` and `verify` telling the truth; revocation.

mod support;
use support::instance::{Api, Env, brokered_login, login, wait_for_fresh_totp_step};
use support::{args, port_flags, ports, text};

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Federated-search breaker cooldown for this test's deployments, so recovery is seen quickly.
const COOLDOWN_MS: &str = "1500";

struct Instance {
    code: &'static str,
    issuer: String,
    api: Api,
    passwords: Value,
    totp: Value,
}

impl Instance {
    fn new(env: &Env, http: &reqwest::Client, code: &'static str, p: &[u16; 5]) -> Instance {
        let lower = code.to_ascii_lowercase();
        Instance {
            code,
            issuer: format!("https://localhost:{}", p[0]),
            api: Api {
                http: http.clone(),
                base: format!("https://localhost:{}", p[1]),
            },
            passwords: env.json(&format!("instances/{lower}/test-users.json")),
            totp: env.json(&format!("instances/{lower}/test-users-totp.json")),
        }
    }

    fn password(&self, user: &str) -> String {
        self.passwords[user].as_str().unwrap().to_string()
    }

    fn totp(&self, user: &str) -> Option<String> {
        self.totp[user]["secret"].as_str().map(str::to_string)
    }

    /// A local login (password, then TOTP when the user has one).
    async fn login(&self, env: &Env, user: &str) -> (String, Value) {
        let totp = self.totp(user);
        if totp.is_some() {
            wait_for_fresh_totp_step(&env.home, self.code, user).await;
        }
        login(
            &self.api.http,
            &self.issuer,
            user,
            &self.password(user),
            totp,
        )
        .await
    }

    /// `user` of `home` logs in here through `home`'s IdP (password and TOTP asked there).
    async fn brokered(
        &self,
        env: &Env,
        home: &Instance,
        user: &str,
    ) -> Result<(String, Value), String> {
        let totp = home.totp(user);
        if totp.is_some() {
            wait_for_fresh_totp_step(&env.home, home.code, user).await;
        }
        brokered_login(
            &self.api.http,
            &self.issuer,
            home.code,
            user,
            &home.password(user),
            totp,
        )
        .await
    }

    /// Upload a text document with a display marking; its id.
    async fn upload(&self, token: &str, marking: &str, body: &[u8]) -> String {
        let (s, up) = self
            .api
            .upload(
                token,
                &[
                    ("file", Some("federation.txt"), body),
                    ("marking", None, marking.as_bytes()),
                    (
                        "title",
                        None,
                        format!("federation e2e {marking}").as_bytes(),
                    ),
                ],
            )
            .await;
        assert_eq!(s, 201, "upload {marking}: {up}");
        up["id"].as_str().unwrap().to_string()
    }

    async fn federated(&self, token: &str, timeout_ms: u64) -> (Value, Duration) {
        let t0 = Instant::now();
        let r = self
            .api
            .http
            .post(format!("{}/api/resources/federated-search", self.api.base))
            .bearer_auth(token)
            .json(&json!({"limit": 100, "timeoutMs": timeout_ms}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        (body, t0.elapsed())
    }
}

fn partner<'a>(body: &'a Value, code: &str) -> &'a Value {
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == code)
        .unwrap_or_else(|| panic!("no {code} in {body:#}"))
}

/// The pid of one service of an instance, from `dive spoke status CODE --json`.
fn service_pid(env: &Env, code: &str, service: &str) -> i32 {
    let out = env.run(&["spoke", "status", code, "--json"]);
    let st: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    st["supervisor"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .and_then(|s| s["pid"].as_i64())
        .unwrap_or_else(|| panic!("no pid for {code} {service}: {st:#}")) as i32
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a service process this test's deployment started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn hub_and_two_concurrent_spokes_federate_and_survive_a_partner_going_dark() {
    let env = Env::new();
    let (hp, fp, dp) = (ports(), ports(), ports());
    let deploy = |base: &[&str], p: &[u16; 5]| {
        let mut c = env.cmd(&args(base, &port_flags(p)));
        c.env("DIVE_PARTNER_BREAKER_COOLDOWN_MS", COOLDOWN_MS);
        c
    };

    let out = deploy(&["hub", "deploy", "--seed-count", "60"], &hp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Two spokes at once: each deployment links itself with the hub, taking turns on the hub's
    // shared files, so neither link is lost.
    let t0 = Instant::now();
    let spawn = |code: &str, p: &[u16; 5]| {
        deploy(
            &["spoke", "deploy", code, "--seed", "--seed-count", "40"],
            p,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (fra, deu) = (spawn("FRA", &fp), spawn("DEU", &dp));
    let (fra, deu) = (
        fra.wait_with_output().unwrap(),
        deu.wait_with_output().unwrap(),
    );
    eprintln!("FRA and DEU deployed concurrently in {:?}", t0.elapsed());
    for (code, out) in [("FRA", &fra), ("DEU", &deu)] {
        let t = text(out);
        assert!(out.status.success(), "{code}: {t}");
        assert!(
            t.contains(&format!("federation: USA ⇄ {code} active")),
            "{t}"
        );
    }
    let out = env.run(&["federation", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let links = status.as_array().unwrap();
    assert_eq!(links.len(), 2, "{status:#}");
    for l in links {
        assert_eq!(l["status"], "active", "{l:#}");
        assert_eq!(l["hubTrustsSpoke"], true, "{l:#}");
        assert_eq!(l["spokeTrustsHub"], true, "{l:#}");
        assert_eq!(l["hubHealth"]["ok"], true, "{l:#}");
        assert_eq!(l["spokeHealth"]["ok"], true, "{l:#}");
        assert_eq!(l["breaker"]["state"], "CLOSED", "{l:#}");
    }
    // Both partners are in the hub's partners file and trusted issuers.
    let partners = env.json("instances/usa/federation/partners.json");
    assert_eq!(
        partners["partners"].as_array().unwrap().len(),
        2,
        "{partners:#}"
    );

    let http = dive_http::https_client_trusting(&env.home.join("pki/ca/cert.pem")).unwrap();
    let usa = Instance::new(&env, &http, "USA", &hp);
    let fra = Instance::new(&env, &http, "FRA", &fp);
    let deu = Instance::new(&env, &http, "DEU", &dp);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A USA SECRET user (with MFA) uploads documents at the hub.
        let (usa4, _) = usa.login(&env, "testuser-usa-4").await;
        let rel_fra = usa
            .upload(&usa4, "SECRET//REL TO USA, FRA", b"for France\n")
            .await;
        let usa_only = usa
            .upload(&usa4, "SECRET//REL TO USA", b"for the USA\n")
            .await;
        let nato = usa
            .upload(
                &usa4,
                "CONFIDENTIAL//NATO//REL TO USA, DEU, FRA",
                b"for NATO\n",
            )
            .await;
        let rel_deu = usa
            .upload(&usa4, "CONFIDENTIAL//REL TO USA, DEU", b"for Germany\n")
            .await;
        let download = |token: String, id: String| {
            let api = &usa.api;
            async move { api.download(&token, &id).await }
        };

        // A FRA SECRET user with MFA signs in at the hub through FRA's IdP: hub tokens with the
        // French national clearance, AAL2 from FRA's second factor.
        let (visitor, claims) = usa.brokered(&env, &fra, "testuser-fra-4").await.unwrap();
        assert_eq!(claims["iss"], usa.issuer.as_str(), "{claims}");
        assert_eq!(claims["countryOfAffiliation"], "FRA", "{claims}");
        assert_eq!(claims["home_issuer"], fra.issuer.as_str(), "{claims}");
        assert_eq!(claims["acr"], "2", "{claims}");
        // Releasable to FRA: allowed, downloaded and decrypted by the hub's KAS.
        let (s, got) = usa
            .api
            .get(&visitor, &format!("/api/resources/{rel_fra}"))
            .await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["decision"]["allow"], true, "{got}");
        let (s, ztdf) = download(visitor.clone(), rel_fra.clone()).await;
        assert_eq!(s, 200);
        let plain = dive_kas::decrypt_ztdf(&http, &visitor, &ztdf, dive_kas::ClientKeyKind::EcP256)
            .await
            .unwrap();
        assert_eq!(plain, b"for France\n");
        // USA only: denied for releasability, and the KAS will not release its key either.
        let (s, denied) = usa
            .api
            .get(&visitor, &format!("/api/resources/{usa_only}"))
            .await;
        assert_eq!(s, 403, "{denied}");
        assert!(
            denied["reason"]
                .as_str()
                .unwrap()
                .starts_with("Not releasable to your country: FRA"),
            "{denied}"
        );
        assert_eq!(denied["checks"]["releasability"], false, "{denied}");
        let (s, _) = download(visitor.clone(), usa_only.clone()).await;
        assert_eq!(s, 403);
        let (s, usa_only_ztdf) = download(usa4.clone(), usa_only.clone()).await;
        assert_eq!(s, 200);
        let e = dive_kas::decrypt_ztdf(
            &http,
            &visitor,
            &usa_only_ztdf,
            dive_kas::ClientKeyKind::EcP256,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, dive_kas::DecryptError::Denied(_)), "{e}");

        // A DEU CONFIDENTIAL user without any COI: the NATO document is refused for the COI,
        // the one releasable to DEU without a COI is allowed.
        let (deu3, claims) = usa.brokered(&env, &deu, "testuser-deu-3").await.unwrap();
        assert_eq!(claims["countryOfAffiliation"], "DEU", "{claims}");
        assert_eq!(claims["acpCOI"], json!([]), "{claims}");
        let (s, denied) = usa.api.get(&deu3, &format!("/api/resources/{nato}")).await;
        assert_eq!(s, 403, "{denied}");
        assert_eq!(denied["checks"]["coi"], false, "{denied}");
        assert_eq!(denied["checks"]["releasability"], true, "{denied}");
        let (s, got) = usa
            .api
            .get(&deu3, &format!("/api/resources/{rel_deu}"))
            .await;
        assert_eq!(s, 200, "{got}");

        // The other way: a USA user with MFA signs in at FRA through the hub's IdP and reads
        // what FRA's policy releases to the USA.
        let (guest, claims) = fra.brokered(&env, &usa, "testuser-usa-4").await.unwrap();
        assert_eq!(claims["iss"], fra.issuer.as_str(), "{claims}");
        assert_eq!(claims["countryOfAffiliation"], "USA", "{claims}");
        assert_eq!(claims["acr"], "2", "{claims}");
        let (s, page) = fra.api.get(&guest, "/api/resources?limit=100").await;
        assert_eq!(s, 200, "{page}");
        for it in page["items"].as_array().unwrap() {
            let rel = it["label"]["releasabilityTo"].as_array().unwrap();
            assert!(rel.iter().any(|c| c == "USA"), "{it}");
        }

        // Federated search from the hub reaches both spokes with the hub user's own token.
        let (usa1, _) = usa.login(&env, "testuser-usa-1").await;
        let (body, took) = usa.federated(&usa1, 3000).await;
        assert_eq!(body["partial"], false, "{body:#}");
        for code in ["USA", "FRA", "DEU"] {
            assert_eq!(partner(&body, code)["status"], "ok", "{code}: {body:#}");
        }
        eprintln!("federated search across three instances: {took:?}");

        // DEU's resource service hangs (stopped, its socket still accepting): each search costs
        // at most its timeout and says DEU timed out; after three, DEU's breaker is open and
        // searches no longer wait for it.
        let deu_api = service_pid(&env, "DEU", "api");
        signal(deu_api, libc::SIGSTOP);
        for i in 1..=3 {
            let (body, took) = usa.federated(&usa1, 600).await;
            assert_eq!(body["partial"], true, "{body:#}");
            assert_eq!(
                partner(&body, "DEU")["status"],
                "timeout",
                "search {i}: {body:#}"
            );
            assert_eq!(partner(&body, "FRA")["status"], "ok", "{body:#}");
            assert!(
                took < Duration::from_millis(1500),
                "search {i} took {took:?}"
            );
        }
        let (body, took) = usa.federated(&usa1, 600).await;
        assert_eq!(partner(&body, "DEU")["status"], "breaker_open", "{body:#}");
        assert_eq!(partner(&body, "DEU")["breaker"], "open", "{body:#}");
        assert!(
            took < Duration::from_millis(500),
            "breaker open, yet took {took:?}"
        );
        // DEU answers again: after the cooldown one trial goes through and closes the breaker.
        signal(deu_api, libc::SIGCONT);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let (body, _) = usa.federated(&usa1, 3000).await;
        assert_eq!(partner(&body, "DEU")["status"], "ok", "{body:#}");
        assert_eq!(partner(&body, "DEU")["breaker"], "closed", "{body:#}");
        assert_eq!(body["partial"], false, "{body:#}");
    });

    // DEU restarted: while it is down, status shows it and verify fails truthfully; once it is
    // back, federated search and brokered logins work again without re-linking.
    let out = env.run(&["spoke", "down", "DEU"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["federation", "status"]);
    let t = text(&out);
    assert!(t.contains("DOWN"), "{t}");
    let out = env.run(&["federation", "verify", "DEU"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL USA→DEU.discovery"), "{t}");
    assert!(t.contains("PASS USA→DEU.trust"), "{t}");
    let out = deploy(&["spoke", "up", "DEU"], &dp).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    rt.block_on(async {
        let (usa1, _) = usa.login(&env, "testuser-usa-1").await;
        let t0 = Instant::now();
        loop {
            let (body, _) = usa.federated(&usa1, 3000).await;
            if partner(&body, "DEU")["status"] == "ok" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "DEU never came back: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        usa.brokered(&env, &deu, "testuser-deu-1").await.unwrap();
    });
    let out = env.run(&["federation", "verify", "DEU", "--json"]);
    assert!(out.status.success(), "{}", text(&out));

    // Revoked: the hub's token is refused at FRA, FRA users cannot broker in, and federated
    // search stops asking FRA.
    let out = env.run(&["federation", "revoke", "FRA", "--reason", "e2e"]);
    assert!(out.status.success(), "{}", text(&out));
    rt.block_on(async {
        let (usa1, _) = usa.login(&env, "testuser-usa-1").await;
        wait_until_async(Duration::from_secs(5), || {
            let (usa1, fra) = (usa1.clone(), &fra);
            async move { fra.api.get(&usa1, "/api/resources").await.0 == 401 }
        })
        .await;
        let (body, _) = usa.federated(&usa1, 3000).await;
        let asked: Vec<&str> = body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["instance"].as_str())
            .collect();
        assert!(!asked.contains(&"FRA"), "{body:#}");
        let e = usa
            .brokered(&env, &fra, "testuser-fra-1")
            .await
            .unwrap_err();
        eprintln!("brokered login through a revoked partner: {e}");
    });
    let out = env.run(&["federation", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fra_link = status
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["partner"] == "FRA")
        .unwrap();
    assert_eq!(fra_link["status"], "revoked", "{fra_link:#}");
    assert_eq!(fra_link["hubTrustsSpoke"], false, "{fra_link:#}");
    assert_eq!(fra_link["spokeTrustsHub"], false, "{fra_link:#}");
}

async fn wait_until_async<F, Fut>(limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
