//! The whole hub, end to end, through the real `dive` binary: the embedded hub stack (IdP, KAS,
//! resource service, seed job) deployed into a temporary DIVE_HOME on free ports with a small
//! seed; verify with every KAS and resource-service check; the supervisor restarting a killed
//! `api` and `kas`; a no-op re-deploy; `down` and a re-deploy that does not seed again; users
//! of different clearances, with and without MFA, listing, searching, reading, downloading and
//! uploading; `dive ztdf decrypt --kas --user`; the KAS's single outward answer for an
//! unauthorised user, an expired token and a foreign issuer's token; a spoke beside the hub;
//! `nuke`.

mod support;
use support::instance::{Api, Env, claims_of, login, wait_for_fresh_totp_step};
use support::{args, port_flags, ports, text, wait_until};

use std::io::Write;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Small, so that the test stays fast; the seed job's cost grows linearly.
const SEED_COUNT: &str = "200";

/// A check of a verify report, by id.
fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

/// The API and KAS checks verify must run (and pass) on a full stack.
const FULL_STACK_CHECKS: &[&str] = &[
    "api.testuser-usa-1.permitted",
    "api.testuser-usa-1.forbidden",
    "api.testuser-usa-1.search",
    "api.testuser-usa-3.permitted",
    "api.testuser-usa-3.forbidden",
    "api.testuser-usa-5.forbidden",
    "api.testuser-usa-5.search",
    "api.search.totals",
    "api.seeded",
    "api.upload",
    "api.upload.tampered",
    "api.upload.incoherent",
    "api.audit",
    "api.delete",
    "kas.public_keys",
    "kas.roundtrip",
    "kas.forbidden",
    "kas.same_response",
    "kas.audit",
    "services.seed",
];

fn assert_full_verify(report: &Value) {
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["skipped"], 0, "{report:#}");
    for id in FULL_STACK_CHECKS {
        assert_eq!(check(report, id)["status"], "pass", "{id}: {report:#}");
    }
}

/// The supervisor's view of one service of the hub (`dive hub status --json`).
fn service(env: &Env, name: &str) -> Value {
    let out = env.run(&["hub", "status", "--json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    st["supervisor"]["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn phase_of(report: &Value, name: &str) -> (String, String) {
    let p = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name}: {report}"));
    (
        p["status"].as_str().unwrap_or_default().to_string(),
        p["detail"].as_str().unwrap_or_default().to_string(),
    )
}

/// The report of the deployment `deploy` printed ("report: …/report.md").
fn report_of(out: &Output) -> Value {
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.contains("report: "))
        .unwrap_or_else(|| panic!("no report line in {s}"));
    let md = PathBuf::from(line.trim().trim_start_matches("report: "));
    serde_json::from_slice(&std::fs::read(md.with_file_name("report.json")).unwrap()).unwrap()
}

/// (status, body) of a raw KAS rewrap with `bearer`.
async fn raw_rewrap(
    http: &reqwest::Client,
    endpoint: &str,
    bearer: &str,
    srt: &str,
) -> (u16, String) {
    let r = http
        .post(endpoint)
        .bearer_auth(bearer)
        .json(&json!({"signedRequestToken": srt}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn full_hub_deploy_restart_redeploy_use_spoke_and_nuke() {
    let env = Env::new();
    let p = ports();
    let flags = port_flags(&p);
    let issuer = format!("https://localhost:{}", p[0]);

    // Deploy the real embedded hub stack.
    let t0 = Instant::now();
    let out = env.run(&args(
        &["hub", "deploy", "--seed-count", SEED_COUNT],
        &flags,
    ));
    let deploy_time = t0.elapsed();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("hub USA deployed in"), "{t}");
    eprintln!("hub deploy ({SEED_COUNT} documents): {deploy_time:?}");
    let report = report_of(&out);
    assert_eq!(report["state"], "COMPLETE", "{report:#}");
    assert_eq!(phase_of(&report, "SEED").0, "DONE", "{report:#}");
    let verify = env.json("instances/usa/last-verify.json");
    assert_full_verify(&verify);
    eprintln!("verify: {} ms", verify["duration_ms"]);
    assert!(
        check(&verify, "api.testuser-usa-1.forbidden")["detail"]
            .as_str()
            .unwrap()
            .contains("Insufficient clearance"),
        "{verify:#}"
    );
    let seed = env.json("instances/usa/seed.json");
    assert_eq!(seed["count"], 200);
    assert_eq!(seed["stored"], 200);
    assert_eq!(seed["plaintext_sha256"].as_object().unwrap().len(), 200);

    // Kill api and kas: the supervisor restarts each, and status shows the restart.
    for name in ["api", "kas"] {
        let before = service(&env, name);
        let pid = before["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: {before}")) as i32;
        let restarts = before["restarts"].as_u64().unwrap();
        // SAFETY: a plain kill(2) of a service process this test's deployment started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        wait_until(
            &format!("{name} to be restarted"),
            Duration::from_secs(60),
            || {
                let s = service(&env, name);
                s["restarts"].as_u64() > Some(restarts)
                    && s["state"] == "running"
                    && s["health"] == "healthy"
                    && s["pid"].as_i64() != Some(pid as i64)
            },
        );
    }
    let t = text(&env.run(&["hub", "status"]));
    assert!(t.contains("killed"), "status shows the last exit: {t}");

    // A healthy hub: re-deploying is a fast no-op.
    let t0 = Instant::now();
    let out = env.run(&args(
        &["hub", "deploy", "--seed-count", SEED_COUNT],
        &flags,
    ));
    let noop = t0.elapsed();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("hub USA is up to date"), "{t}");
    eprintln!("no-op re-deploy: {noop:?}");
    assert!(noop < Duration::from_secs(10), "{noop:?}");

    // down, then deploy: the seed job is unknown to the new supervisor, but its documents are
    // in the store: SEED is skipped as done, and verify still passes every check.
    let out = env.run(&["hub", "down"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&args(
        &["hub", "deploy", "--seed-count", SEED_COUNT],
        &flags,
    ));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let report = report_of(&out);
    let (status, detail) = phase_of(&report, "SEED");
    assert_eq!(status, "SKIPPED", "{report:#}");
    assert!(detail.contains("already done"), "{detail}");
    assert_full_verify(&env.json("instances/usa/last-verify.json"));
    assert!(
        check(&env.json("instances/usa/last-verify.json"), "services.seed")["detail"]
            .as_str()
            .unwrap()
            .contains("not run by this supervisor")
    );
    // …and a deploy right after is a no-op again.
    let out = env.run(&args(
        &["hub", "deploy", "--seed-count", SEED_COUNT],
        &flags,
    ));
    assert!(
        text(&out).contains("hub USA is up to date"),
        "{}",
        text(&out)
    );

    // Users of different clearances, without MFA (UNCLASSIFIED) and with it (TOP SECRET).
    let passwords = env.json("instances/usa/test-users.json");
    let totp = env.json("instances/usa/test-users-totp.json");
    let pw = |u: &str| passwords[u].as_str().unwrap().to_string();
    let ca = env.home.join("pki/ca/cert.pem");
    let http = dive_http::https_client_trusting(&ca).unwrap();
    let api = Api {
        http: http.clone(),
        base: format!("https://localhost:{}", p[1]),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = env.dir.clone();
    let (secret_doc, unclassified_doc) = rt.block_on(async {
        let (low, low_claims) = login(
            &http,
            &issuer,
            "testuser-usa-1",
            &pw("testuser-usa-1"),
            None,
        )
        .await;
        assert_eq!(low_claims["acr"], "1");
        let top_totp = totp["testuser-usa-5"]["secret"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for_fresh_totp_step(&env.home, "USA", "testuser-usa-5").await;
        let (top, top_claims) = login(
            &http,
            &issuer,
            "testuser-usa-5",
            &pw("testuser-usa-5"),
            Some(top_totp),
        )
        .await;
        assert_eq!(top_claims["acr"], "2");
        assert!(
            top_claims["amr"]
                .as_array()
                .unwrap()
                .contains(&json!("otp"))
        );

        // List: only accessible documents; the higher clearance sees more.
        let (s, low_list) = api.get(&low, "/api/resources?limit=100").await;
        assert_eq!(s, 200, "{low_list}");
        let (s, top_list) = api.get(&top, "/api/resources?limit=100").await;
        assert_eq!(s, 200, "{top_list}");
        let (n_low, n_top) = (
            low_list["total"].as_u64().unwrap(),
            top_list["total"].as_u64().unwrap(),
        );
        assert!(
            0 < n_low && n_low < n_top && n_top <= 210,
            "{n_low} {n_top}"
        );
        for it in low_list["items"].as_array().unwrap() {
            assert_eq!(it["label"]["classification"], "UNCLASSIFIED", "{it}");
        }
        // Search with filters and a text query.
        let (s, secret) = api
            .get(&top, "/api/resources?classification=SECRET&limit=5")
            .await;
        assert_eq!(s, 200);
        let items = secret["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{secret}");
        assert!(
            items
                .iter()
                .all(|i| i["label"]["classification"] == "SECRET")
        );
        let secret_doc = items[0]["id"].as_str().unwrap().to_string();
        let (s, by_id) = api
            .get(&top, &format!("/api/resources?q={secret_doc}"))
            .await;
        assert_eq!((s, by_id["total"].as_u64()), (200, Some(1)), "{by_id}");
        let (s, hidden) = api
            .get(&low, &format!("/api/resources?q={secret_doc}"))
            .await;
        assert_eq!((s, hidden["total"].as_u64()), (200, Some(0)), "{hidden}");
        // A seeded one (the newest are verify's uploads), whose plaintext hash is recorded.
        let unclassified_doc = low_list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["id"].as_str())
            .find(|id| seed["plaintext_sha256"].get(*id).is_some())
            .expect("a seeded UNCLASSIFIED document on the first page")
            .to_string();

        // Get: allow with the decision; deny with the reason and per-check results.
        let (s, got) = api.get(&top, &format!("/api/resources/{secret_doc}")).await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["decision"]["allow"], true);
        let (s, denied) = api.get(&low, &format!("/api/resources/{secret_doc}")).await;
        assert_eq!(s, 403, "{denied}");
        assert!(
            denied["reason"]
                .as_str()
                .unwrap()
                .starts_with("Insufficient clearance"),
            "{denied}"
        );
        assert_eq!(denied["checks"]["clearance"], false, "{denied}");
        assert!(denied.get("title").is_none());

        // Download: only on allow.
        let (s, ztdf) = api.download(&top, &secret_doc).await;
        assert_eq!(s, 200);
        std::fs::write(work.join("secret.tdf"), &ztdf).unwrap();
        let (s, _) = api.download(&low, &secret_doc).await;
        assert_eq!(s, 403);
        let (s, ztdf) = api.download(&low, &unclassified_doc).await;
        assert_eq!(s, 200);
        std::fs::write(work.join("unclassified.tdf"), &ztdf).unwrap();

        // Upload as the TOP SECRET user: accepted, readable by it, forbidden to the low user.
        let label = br#"{"classification":"SECRET","releasabilityTo":["USA"]}"#;
        let (s, up) = api
            .upload(
                &top,
                &[
                    ("file", Some("e2e.txt"), b"end-to-end upload\n"),
                    ("label", None, label),
                ],
            )
            .await;
        assert_eq!(s, 201, "{up}");
        let up_id = up["id"].as_str().unwrap().to_string();
        let (s, _) = api.get(&top, &format!("/api/resources/{up_id}")).await;
        assert_eq!(s, 200);
        let (s, d) = api.get(&low, &format!("/api/resources/{up_id}")).await;
        assert_eq!(s, 403, "{d}");
        // A tampered ZTDF upload is rejected.
        let (_, mut bad) = api.download(&top, &up_id).await;
        bad[64] ^= 1;
        let (s, r) = api.upload(&top, &[("ztdf", Some("bad.tdf"), &bad)]).await;
        assert_eq!(s, 422, "{r}");
        assert_eq!(r["error"], "ztdf_invalid", "{r}");

        // The KAS answers an unauthorised user, an expired token and a foreign issuer's token
        // with the same status and body.
        let ztdf = std::fs::read(work.join("secret.tdf")).unwrap();
        let reader = dive_ztdf::TdfReader::open(std::io::Cursor::new(ztdf)).unwrap();
        let policy = reader.manifest().encryption_information.policy.clone();
        let kaos = reader.key_access_objects().to_vec();
        let kas =
            dive_kas::RemoteKas::new(http.clone(), format!("https://localhost:{}/kas", p[2]), "");
        let srt = kas.signed_request(&policy, &kaos).unwrap();
        let endpoint = kas.rewrap_endpoint();
        let now = dive_jose::now();
        let mut old: Map<String, Value> = low_claims.as_object().unwrap().clone();
        old.insert("iat".into(), json!(now - 3600));
        old.insert("exp".into(), json!(now - 1800));
        let db = dive_idp::Db::open(&env.home.join("instances/usa/idp.db").display().to_string())
            .await
            .unwrap();
        let alg = dive_jose::Alg::parse(&dive_jose::decode_header(&low).unwrap().alg).unwrap();
        let ring = dive_idp::keys::KeyRing::load(&db, alg, i64::MAX)
            .await
            .unwrap();
        db.pool.close().await;
        let expired = ring.active().sign("at+jwt", &old).unwrap();
        let mut foreign_claims = low_claims.as_object().unwrap().clone();
        foreign_claims.insert("iss".into(), json!("https://idp.foreign.invalid"));
        let foreign = dive_jose::SigningKey::generate("f-1", dive_jose::Alg::ES256)
            .unwrap()
            .sign("at+jwt", &foreign_claims)
            .unwrap();
        let unauthorised = raw_rewrap(&http, &endpoint, &low, &srt).await;
        assert_eq!(unauthorised.0, 200);
        assert!(
            unauthorised.1.contains("\"forbidden\""),
            "{}",
            unauthorised.1
        );
        assert!(!unauthorised.1.contains("permit"), "{}", unauthorised.1);
        assert_eq!(
            raw_rewrap(&http, &endpoint, &expired, &srt).await,
            unauthorised
        );
        assert_eq!(
            raw_rewrap(&http, &endpoint, &foreign, &srt).await,
            unauthorised
        );
        let permitted = raw_rewrap(&http, &endpoint, &top, &srt).await;
        assert!(permitted.1.contains("\"permit\""), "{}", permitted.1);
        (secret_doc, unclassified_doc)
    });

    // `dive ztdf decrypt --kas --issuer --user`: logs in, rewraps, decrypts to the seeded bytes.
    let decrypt = |input: &str, output: &str| {
        env.cmd(&[
            "ztdf",
            "decrypt",
            "--kas",
            "--issuer",
            &issuer,
            "--user",
            "testuser-usa-1",
            input,
            output,
        ])
        .env("DIVE_PASSWORD", pw("testuser-usa-1"))
        .output()
        .unwrap()
    };
    let out = decrypt("unclassified.tdf", "unclassified.out");
    assert!(out.status.success(), "{}", text(&out));
    let plain = std::fs::read(env.dir.join("unclassified.out")).unwrap();
    assert_eq!(
        seed["plaintext_sha256"][&unclassified_doc],
        hex::encode(Sha256::digest(&plain)),
        "the decrypted bytes are the seeded ones"
    );
    // The same user cannot decrypt a SECRET document it got hold of: the KAS refuses.
    let out = decrypt("secret.tdf", "secret.out");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("refused"), "{}", text(&out));
    assert!(!env.dir.join("secret.out").exists());
    let _ = secret_doc;

    // A spoke beside the hub, on its own free ports, with a small seed: healthy and verified.
    let q = ports();
    let spoke_flags = port_flags(&q);
    let out = env.run(&args(
        &["spoke", "deploy", "FRA", "--seed", "--seed-count", "50"],
        &spoke_flags,
    ));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("spoke FRA deployed"), "{t}");
    // …and linked with the hub as part of the deployment.
    assert!(t.contains("federation: USA ⇄ FRA active"), "{t}");
    let spoke_verify = env.json("instances/fra/last-verify.json");
    assert_eq!(spoke_verify["failed"], 0, "{spoke_verify:#}");
    for id in [
        "api.testuser-fra-5.forbidden",
        "kas.roundtrip",
        "kas.same_response",
        "api.seeded",
    ] {
        assert_eq!(
            check(&spoke_verify, id)["status"],
            "pass",
            "{id}: {spoke_verify:#}"
        );
    }
    let out = env.run(&["spoke", "status", "FRA"]);
    assert!(out.status.success(), "{}", text(&out));
    // The hub is untouched by the spoke.
    assert_eq!(service(&env, "api")["state"], "running");

    // Federation: the deployment linked the spoke with the hub; linking again changes nothing.
    let out = env.run(&["federation", "link", "FRA"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("USA ⇄ FRA: active"), "{t}");
    let fra_passwords = env.json("instances/fra/test-users.json");
    let fra_issuer = format!("https://localhost:{}", q[0]);
    let fra_api = Api {
        http: http.clone(),
        base: format!("https://localhost:{}", q[1]),
    };
    // Verified both ways, with real brokered logins; the result is recorded.
    let out = env.run(&["federation", "verify", "FRA", "--json"]);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert!(out.status.success(), "{report:#}");
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in [
        "USA→FRA.discovery",
        "USA→FRA.upstream",
        "USA→FRA.trust",
        "USA→FRA.brokered_login",
        "FRA→USA.brokered_login",
    ] {
        assert!(ids.contains(&id), "{id}: {report:#}");
    }
    let out = env.run(&["federation", "status"]);
    assert!(text(&out).contains("8/8 passed"), "{}", text(&out));
    rt.block_on(async {
        // A FRA user logs in at the hub through FRA's IdP: hub tokens with French attributes.
        let broker = |user: &str| dive_idp::login_helper::BrokerRequest {
            login: dive_idp::login_helper::LoginRequest {
                issuer: issuer.clone(),
                client_id: "dive-cli".to_string(),
                client_secret: None,
                redirect_uri: "http://127.0.0.1/callback".to_string(),
                scope: "openid profile coalition".to_string(),
                username: user.to_string(),
                password: fra_passwords[user].as_str().unwrap().to_string(),
                totp_secret: None,
                extra: vec![],
            },
            alias: "fra-idp".to_string(),
            use_hint: true,
            local_totp_secret: None,
        };
        let (tokens, _) = dive_idp::login_helper::broker_login(&http, &broker("testuser-fra-1"))
            .await
            .unwrap_or_else(|e| panic!("brokered login: {e}"));
        let claims = claims_of(&tokens["access_token"]);
        assert_eq!(claims["iss"], issuer.as_str(), "{claims}");
        assert_eq!(claims["countryOfAffiliation"], "FRA", "{claims}");
        assert_eq!(claims["home_issuer"], fra_issuer.as_str(), "{claims}");
        let visitor = tokens["access_token"].as_str().unwrap().to_string();
        // …and reads the hub documents the hub's policy releases to FRA at their clearance.
        let (status, page) = api.get(&visitor, "/api/resources?limit=100").await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{page}");
        for it in items {
            assert_eq!(it["label"]["classification"], "UNCLASSIFIED", "{it}");
            assert!(
                it["label"]["releasabilityTo"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == "FRA"),
                "{it}"
            );
        }

        // A hub user's federated search reaches the spoke's documents with the hub token.
        let (usa1, _) = login(
            &http,
            &issuer,
            "testuser-usa-1",
            &pw("testuser-usa-1"),
            None,
        )
        .await;
        let federated = |token: String| {
            let http = http.clone();
            let url = format!("{}/api/resources/federated-search", api.base);
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"limit": 100, "timeoutMs": 3000}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                r.json::<Value>().await.unwrap()
            }
        };
        let fra_status = |body: &Value| {
            body["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["instance"] == "FRA")
                .cloned()
                .unwrap_or(Value::Null)
        };
        // The spoke's services pick the new trust up within a second or two (token
        // verification and the policy data reload independently).
        let t0 = Instant::now();
        let body = loop {
            let body = federated(usa1.clone()).await;
            let fra = fra_status(&body);
            if fra["status"] == "ok" && fra["total"].as_u64() > Some(0) {
                break body;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{}",
                body["instances"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["instance"] == "FRA"),
            "{body}"
        );
        let (status, _) = fra_api.get(&usa1, "/api/resources").await;
        assert_eq!(
            status, 200,
            "the spoke accepts the hub's token while linked"
        );

        // Suspended: each side stops trusting the other at once.
        let out = env.run(&["federation", "suspend", "FRA", "--reason", "e2e"]);
        assert!(out.status.success(), "{}", text(&out));
        let t0 = Instant::now();
        loop {
            let (status, _) = fra_api.get(&usa1, "/api/resources").await;
            if status == 401 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "still {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("suspension took effect at the spoke in {:?}", t0.elapsed());
        let body = federated(usa1).await;
        assert!(
            fra_status(&body).is_null(),
            "a suspended partner is not asked: {body}"
        );
        assert_eq!(body["partial"], false, "{body}");
        assert!(
            dive_idp::login_helper::broker_login(&http, &broker("testuser-fra-1"))
                .await
                .is_err(),
            "the hub no longer offers FRA's IdP"
        );
    });
    // A suspended link does not verify, and says why.
    let out = env.run(&["federation", "verify", "FRA"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("disabled"), "{}", text(&out));
    let out = env.run(&["federation", "status", "--json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st[0]["partner"], "FRA", "{st}");
    assert_eq!(st[0]["status"], "suspended", "{st}");
    assert_eq!(st[0]["hubTrustsSpoke"], false);
    assert_eq!(st[0]["history"].as_array().unwrap().len(), 3, "{st}");

    // down, nuke: nothing is left.
    let out = env.run(&["spoke", "down", "FRA"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["nuke", "all", "--confirm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!env.home.join("instances/usa").exists());
    assert!(!env.home.join("instances/fra").exists());
    for port in [p[0], p[1], p[2], q[0], q[1], q[2]] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers"
        );
    }
    let _ = std::io::stderr().flush();
}
