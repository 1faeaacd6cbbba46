//! The KAS end to end over HTTPS on loopback: a real IdP issues real tokens, files are encrypted
//! to the KAS's published keys, and the rewrap client decrypts them — or is refused, always with
//! the same answer.

mod common;

use std::time::Duration;

use common::*;
use dive_core::CountryCode;
use dive_idp::IdpConfig;
use dive_kas::{ClientKeyKind, KeyAlgorithm, RemoteKas, Transport};
use serde_json::{Value, json};

const PLAINTEXT: &[u8] = b"Operation order: rendezvous at grid 31U DQ 48251 11932 at 0400Z.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ec_kaos_decrypt_with_rsa_and_ec_client_keys_over_every_transport() {
    let e = env().await;
    let token = e.login("alice").await;
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcP256] {
        let file = e
            .encrypt(alg, "SECRET//FVEY//REL TO USA, GBR", PLAINTEXT)
            .await;
        for kind in [ClientKeyKind::Rsa2048, ClientKeyKind::EcP256] {
            for transport in [
                Transport::Rest,
                Transport::ConnectJson,
                Transport::ConnectProto,
            ] {
                let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &token)
                    .with_client_key(kind)
                    .with_transport(transport);
                let out = decrypt(&kas, &file).await.unwrap_or_else(|err| {
                    panic!("{alg} KAO, {kind:?} client key, {transport:?}: {err}")
                });
                assert_eq!(out, PLAINTEXT);
            }
        }
    }
    // Every release was audited with who and which policy.
    let rows = e.kas.audit.recent(100).await.unwrap();
    assert_eq!(rows.len(), 12);
    let (policy_b64, _) = parts(
        &e.encrypt(KeyAlgorithm::Rsa2048, "SECRET//FVEY//REL TO USA", b"x")
            .await,
    );
    assert!(!policy_b64.is_empty());
    assert!(rows.iter().all(|r| r.decision == "permit"
        && r.subject.as_deref().is_some_and(|s| s.contains("alice"))
        && r.policy_uuid.is_some()
        && r.srt_key.as_deref().is_some_and(|k| k.starts_with("jwk:"))));
    let transports: std::collections::BTreeSet<_> =
        rows.iter().map(|r| r.transport.clone()).collect();
    assert_eq!(
        transports.into_iter().collect::<Vec<_>>(),
        vec!["connect+json", "connect+proto", "rest"]
    );
    // And counted.
    let metrics = e
        .http
        .get(format!("https://localhost:{}/metrics", e.kas.addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dive_kas_rewrap_kaos_total{result=\"permit\"} 12"),
        "{metrics}"
    );
    e.stop().await;
}

/// Send a rewrap for `policy_b64`/`kaos` with `token` and return (status, body text).
async fn raw_rewrap(
    e: &Env,
    token: &str,
    policy_b64: &str,
    kaos: &[dive_ztdf::KeyAccessObject],
) -> (u16, String) {
    let client = RemoteKas::new(e.http.clone(), &e.kas.url, "unused");
    let srt = client.signed_request(policy_b64, kaos).unwrap();
    let r = e
        .http
        .post(format!("{}/v2/rewrap", e.kas.url))
        .bearer_auth(token)
        .json(&json!({"signedRequestToken": srt}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_looks_the_same_and_the_audit_says_why() {
    let e = env().await;
    let alice = e.login("alice").await;
    let carol = e.login("carol").await;
    let secret_doc = e
        .encrypt(
            KeyAlgorithm::Rsa2048,
            "SECRET//FVEY//REL TO USA, GBR",
            PLAINTEXT,
        )
        .await;
    let gbr_only = e
        .encrypt(KeyAlgorithm::EcP256, "SECRET//FVEY//REL TO GBR", PLAINTEXT)
        .await;
    let (policy, kaos) = parts(&secret_doc);

    // Allowed first, to show the request itself is fine.
    let (status, body) = raw_rewrap(&e, &alice, &policy, &kaos).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"permit\""), "{body}");

    // The policy with the classification lowered: the same uuid, so the same policy id.
    let mut tampered: Value =
        serde_json::from_slice(&dive_ztdf::crypto::b64::decode(&policy).unwrap()).unwrap();
    for a in tampered["body"]["dataAttributes"].as_array_mut().unwrap() {
        let fqn = a["attribute"].as_str().unwrap().to_string();
        a["attribute"] = json!(fqn.replace(
            "classification/value/secret",
            "classification/value/unclassified"
        ));
    }
    let tampered_b64 = dive_ztdf::crypto::b64::encode(tampered.to_string());

    // An expired token: the real claims of alice's token, re-signed by the IdP's real key with
    // an expiry in the past.
    let claims: serde_json::Map<String, Value> = {
        use base64::Engine;
        let p = alice.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    let mut old = claims.clone();
    let now = dive_jose::now();
    old.insert("iat".into(), json!(now - 3600));
    old.insert("exp".into(), json!(now - 1800));
    old.insert("jti".into(), json!("expired-jti"));
    let expired = e.idp.keys.active().sign("at+jwt", &old).unwrap();

    // A token of another instance's IdP, which this KAS does not trust.
    let fra = dive_idp::start(
        IdpConfig::new(
            CountryCode::new("FRA").unwrap(),
            e.home.path().to_path_buf(),
        ),
        false,
    )
    .await
    .unwrap();
    let fra_secret = add_client(&fra, "web").await;
    add_user(&fra, "francois", "SECRET DÉFENSE", "FRA", &["FVEY"]).await;
    let foreign = login(&e.http, &fra.issuer, &fra_secret, "francois").await;

    let mut answers = Vec::new();
    // Clearance too low.
    answers.push(("clearance", raw_rewrap(&e, &carol, &policy, &kaos).await));
    // Not releasable to the caller's country (EC KAO).
    let (gpolicy, gkaos) = parts(&gbr_only);
    let not_releasable = raw_rewrap(&e, &alice, &gpolicy, &gkaos).await;
    // Binding fails.
    answers.push((
        "tampered",
        raw_rewrap(&e, &alice, &tampered_b64, &kaos).await,
    ));
    answers.push(("expired", raw_rewrap(&e, &expired, &policy, &kaos).await));
    answers.push(("foreign", raw_rewrap(&e, &foreign, &policy, &kaos).await));
    answers.push((
        "garbage token",
        raw_rewrap(&e, "not-a-token", &policy, &kaos).await,
    ));
    // An unknown kid.
    let mut other_kid = kaos.clone();
    other_kid[0].kid = Some("r-000000000000".into());
    answers.push((
        "unknown kid",
        raw_rewrap(&e, &alice, &policy, &other_kid).await,
    ));

    // Revoked: alice logs in again, the token is revoked at the IdP; the KAS's revocation list
    // refreshes within ~2 s.
    let revoked = e.login("alice").await;
    assert_eq!(raw_rewrap(&e, &revoked, &policy, &kaos).await.0, 200);
    let r = e
        .http
        .post(format!("{}/revoke", e.idp.issuer))
        .basic_auth("web", Some(&e.secret))
        .form(&[("token", revoked.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut revoked_answer = None;
    for _ in 0..50 {
        let a = raw_rewrap(&e, &revoked, &policy, &kaos).await;
        if !a.1.contains("\"permit\"") {
            revoked_answer = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers.push((
        "revoked",
        revoked_answer.expect("revoked token still released keys"),
    ));

    let reference = &answers[0].1;
    assert_eq!(reference.0, 200);
    let expected = json!({"responses": [{"policyId": dive_ztdf::Policy::from_base64(&policy).unwrap().uuid,
        "results": [{"keyAccessObjectId": "kao-0", "status": "fail", "error": "forbidden"}]}]});
    assert_eq!(
        serde_json::from_str::<Value>(&reference.1).unwrap(),
        expected
    );
    for (what, answer) in &answers {
        assert_eq!(answer, reference, "{what} answered differently");
    }
    // The GBR-only document has its own policy id; otherwise the same answer.
    assert_eq!(not_releasable.0, 200);
    let nr: Value = serde_json::from_str(&not_releasable.1).unwrap();
    assert_eq!(
        nr["responses"][0]["results"][0],
        expected["responses"][0]["results"][0]
    );

    // The audit has the real reasons.
    let rows = e.kas.audit.recent(100).await.unwrap();
    let reasons: Vec<&str> = rows
        .iter()
        .filter(|r| r.decision == "fail")
        .map(|r| r.reason.as_str())
        .collect();
    let has = |needle: &str| reasons.iter().any(|r| r.contains(needle));
    assert!(has("PDP: "), "{reasons:#?}");
    assert!(has("policy binding does not verify"), "{reasons:#?}");
    assert!(has("token expired"), "{reasons:#?}");
    assert!(has("is not trusted"), "{reasons:#?}");
    assert!(has("revoked"), "{reasons:#?}");
    assert!(has("unknown kid"), "{reasons:#?}");
    assert!(
        has("releasab") || has("Releasab") || has("country"),
        "{reasons:#?}"
    );
    let foreign_row = rows
        .iter()
        .find(|r| r.reason.contains("is not trusted"))
        .unwrap();
    assert!(
        foreign_row.subject.is_none(),
        "a refused token names no subject"
    );
    assert!(
        foreign_row.reason.contains(&fra.issuer),
        "{}",
        foreign_row.reason
    );
    fra.stop().await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_naming_the_field() {
    let e = env().await;
    let alice = e.login("alice").await;
    let url = format!("{}/v2/rewrap", e.kas.url);
    let post = |body: Value, token: Option<&str>| {
        let mut rb = e.http.post(&url).json(&body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = post(json!({}), Some(&alice)).await;
    assert_eq!(s, 400);
    assert_eq!(b["field"], "signedRequestToken");
    assert_eq!(b["code"], "invalid_argument");

    let (s, b) = post(json!({"signedRequestToken": "a.b"}), Some(&alice)).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("signedRequestToken")));

    // A signed request whose client key is not a key.
    let signer = dive_kas::srt::RequestSigner::generate().unwrap();
    let file = e
        .encrypt(KeyAlgorithm::Rsa2048, "SECRET//FVEY//REL TO USA", b"x")
        .await;
    let (policy, kaos) = parts(&file);
    let body = json!({"clientPublicKey": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "requests": [{"policy": {"id": "p", "body": policy},
                      "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": kaos[0].to_json()}]}]});
    let srt = signer
        .sign(&body.to_string(), dive_jose::now(), 60)
        .unwrap();
    let (s, b) = post(json!({"signedRequestToken": srt}), Some(&alice)).await;
    assert_eq!(
        (s, b["field"].as_str()),
        (400, Some("requestBody.clientPublicKey"))
    );

    // A KAO without its policy binding — 400 whether or not the token is any good.
    let mut kao = kaos[0].to_json();
    kao.as_object_mut().unwrap().remove("policyBinding");
    let client = RemoteKas::new(e.http.clone(), &e.kas.url, "x");
    let good = client.signed_request(&policy, &kaos).unwrap();
    let claims: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(good.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let mut rb: Value = serde_json::from_str(claims["requestBody"].as_str().unwrap()).unwrap();
    rb["requests"][0]["keyAccessObjects"][0]["keyAccessObject"] = kao;
    let srt = signer.sign(&rb.to_string(), dive_jose::now(), 60).unwrap();
    for token in [Some(alice.as_str()), Some("garbage")] {
        let (s, b) = post(json!({"signedRequestToken": srt}), token).await;
        assert_eq!(s, 400);
        assert_eq!(
            b["field"],
            "requestBody.requests[0].keyAccessObjects[0].keyAccessObject.policyBinding"
        );
    }
    // No token at all: 401.
    let (s, b) = post(json!({"signedRequestToken": srt}), None).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")));

    // Public key: unknown algorithm and format name the parameter.
    for (q, field) in [("algorithm=rsa:1024", "algorithm"), ("fmt=der", "fmt")] {
        let r = e
            .http
            .get(format!("{}/v2/kas_public_key?{q}", e.kas.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["field"], field);
    }
    // Connect: unsupported content type.
    let r = e
        .http
        .post(format!(
            "https://localhost:{}/kas.AccessService/Rewrap",
            e.kas.addr.port()
        ))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Refused requests are audited too.
    let rows = e.kas.audit.recent(100).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.decision == "rejected" && r.reason.contains("clientPublicKey"))
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_in_every_form_and_rotation_keeps_old_files_decryptable() {
    let e = env().await;
    let alice = e.login("alice").await;
    // No parameters: the RSA key as PEM.
    let r: Value = e
        .http
        .get(format!("{}/v2/kas_public_key", e.kas.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rsa_kid = r["kid"].as_str().unwrap().to_string();
    assert!(
        r["publicKey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert!(rsa_kid.starts_with("r-"));
    // JWK form.
    let r: Value = e
        .http
        .get(format!(
            "{}/v2/kas_public_key?algorithm=ec:secp256r1&fmt=jwk",
            e.kas.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk: Value = serde_json::from_str(r["publicKey"].as_str().unwrap()).unwrap();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(jwk["kid"], r["kid"]);
    // Connect PublicKey, JSON and protobuf.
    let connect = format!(
        "https://localhost:{}/kas.AccessService/PublicKey",
        e.kas.addr.port()
    );
    let r: Value = e
        .http
        .post(&connect)
        .json(&json!({"algorithm": "rsa:2048"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["kid"], rsa_kid);
    use prost::Message;
    let body = dive_kas::proto::PublicKeyRequest {
        algorithm: "ec:secp256r1".into(),
        fmt: String::new(),
        v: String::new(),
    }
    .encode_to_vec();
    let r = e
        .http
        .post(&connect)
        .header("content-type", "application/proto")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/proto");
    let pk = dive_kas::proto::PublicKeyResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(pk.kid.starts_with("e-"));

    // Files before rotation: with the kid, and (RSA) without any kid.
    let old_rsa = e
        .encrypt(KeyAlgorithm::Rsa2048, "SECRET//FVEY//REL TO USA", PLAINTEXT)
        .await;
    let old_ec = e
        .encrypt(KeyAlgorithm::EcP256, "SECRET//FVEY//REL TO USA", PLAINTEXT)
        .await;
    let (key, _) = e.public_key(KeyAlgorithm::Rsa2048).await;
    let old_kidless = encrypt_to(&e.kas.url, None, key, "SECRET//FVEY//REL TO USA", PLAINTEXT);

    let made = e.kas.engine.keys.store().rotate().unwrap();
    assert_eq!(made.len(), 2);
    // The running KAS picks the new keys up from disk (it polls every 2 s).
    let mut new_kid = rsa_kid.clone();
    for _ in 0..50 {
        let (_, kid) = e.public_key(KeyAlgorithm::Rsa2048).await;
        new_kid = kid;
        if new_kid != rsa_kid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(new_kid, rsa_kid, "rotation not picked up");
    let new_rsa = e
        .encrypt(KeyAlgorithm::Rsa2048, "SECRET//FVEY//REL TO USA", PLAINTEXT)
        .await;
    let (_, kaos) = parts(&new_rsa);
    assert_eq!(kaos[0].kid.as_deref(), Some(new_kid.as_str()));
    for (what, file) in [
        ("old RSA", &old_rsa),
        ("old EC", &old_ec),
        ("old kid-less", &old_kidless),
        ("new RSA", &new_rsa),
    ] {
        for kind in [ClientKeyKind::Rsa2048, ClientKeyKind::EcP256] {
            let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &alice).with_client_key(kind);
            assert_eq!(
                decrypt(&kas, file)
                    .await
                    .unwrap_or_else(|err| panic!("{what}: {err}")),
                PLAINTEXT,
                "{what}"
            );
        }
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_coi_documents_decrypt_for_members_whatever_the_tag_case() {
    // The registry spells program COIs `Alpha`; the bound policy's attribute FQNs carry another
    // case. Membership must still be recognised, and a non-member still refused.
    let e = env().await;
    add_user(&e.idp, "pat", "SECRET", "USA", &["Alpha"]).await;
    let pat = e.login("pat").await;
    let alice = e.login("alice").await;
    let file = e
        .encrypt(
            KeyAlgorithm::Rsa2048,
            "SECRET//ALPHA//REL TO USA",
            PLAINTEXT,
        )
        .await;
    let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &pat);
    assert_eq!(decrypt(&kas, &file).await.unwrap(), PLAINTEXT);
    let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &alice);
    assert!(decrypt(&kas, &file).await.is_err(), "alice holds FVEY only");
    let rows = e.kas.audit.recent(10).await.unwrap();
    let refused = rows
        .iter()
        .find(|r| r.decision != "permit")
        .expect("a refusal");
    assert!(refused.reason.contains("Alpha"), "{}", refused.reason);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_read_the_audit_log_over_https_and_nobody_else_does() {
    let e = env().await;
    dive_idp::users::create(
        &e.idp.db,
        &dive_idp::users::NewUser {
            username: "ada".into(),
            password: common::PASSWORD.into(),
            unique_id: None,
            clearance: "SECRET".into(),
            country: dive_core::CountryCode::new("USA").unwrap(),
            coi: vec![],
            organization_type: dive_core::OrganizationType::Mil,
            roles: vec!["user".into(), "dive-admin".into()],
        },
    )
    .await
    .unwrap();
    let ada = e.login("ada").await;
    let alice = e.login("alice").await;
    let carol = e.login("carol").await;
    let file = e
        .encrypt(KeyAlgorithm::EcP256, "SECRET//FVEY//REL TO USA", PLAINTEXT)
        .await;
    let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &alice);
    assert_eq!(decrypt(&kas, &file).await.unwrap(), PLAINTEXT);
    let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &carol);
    assert!(decrypt(&kas, &file).await.is_err(), "carol is CONFIDENTIAL");

    let base = e.kas.url.trim_end_matches("/kas").to_string();
    let get = |path: String, token: Option<String>| {
        let http = e.http.clone();
        let url = format!("{base}{path}");
        async move {
            let mut rb = http.get(url);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, v) = get("/kas/audit".into(), Some(ada.clone())).await;
    assert_eq!(status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let who = |e: &Value| e["subject"].as_str().unwrap_or("").to_string();
    let permit = entries
        .iter()
        .find(|x| x["decision"] == "permit")
        .expect("alice's release is listed");
    assert!(who(permit).contains("alice"), "{permit}");
    assert!(permit["object"].is_string() && permit["at"].is_string());
    let fail = entries
        .iter()
        .find(|x| x["decision"] == "fail")
        .expect("carol's refusal is listed");
    assert!(who(fail).contains("carol"), "{fail}");
    assert!(
        fail["reason"].as_str().unwrap().contains("clearance"),
        "the real reason: {fail}"
    );

    // Filters, paging and the per-bucket count agree with the log.
    let carol_id = who(fail);
    let (_, only) = get(
        format!("/kas/audit?subject={carol_id}&limit=1000"),
        Some(ada.clone()),
    )
    .await;
    let only = only["entries"].as_array().unwrap();
    assert!(!only.is_empty() && only.iter().all(|x| who(x) == carol_id));
    let (_, first) = get("/kas/audit?limit=1".into(), Some(ada.clone())).await;
    let cursor = first["nextCursor"].as_str().expect("more than one row");
    let (_, second) = get(
        format!("/kas/audit?limit=1&cursor={cursor}"),
        Some(ada.clone()),
    )
    .await;
    assert_ne!(first["entries"][0], second["entries"][0]);
    let (status, s) = get("/kas/audit/summary?bucket=3600".into(), Some(ada.clone())).await;
    assert_eq!(status, 200, "{s}");
    let total: u64 = s["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b["permit"].as_u64().unwrap()
                + b["fail"].as_u64().unwrap()
                + b["rejected"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(total as usize, entries.len());

    // Not an administrator, no token, a bad parameter.
    let (status, v) = get("/kas/audit".into(), Some(alice.clone())).await;
    assert_eq!(status, 403);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Admin role required"),
        "{v}"
    );
    let (status, _) = get("/kas/audit/summary".into(), None).await;
    assert_eq!(status, 401);
    let (status, v) = get("/kas/audit?decision=maybe".into(), Some(ada)).await;
    assert_eq!(status, 400);
    assert_eq!(v["param"], "decision");
}

async fn audit_rows(e: &Env) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) FROM kas_audit")
        .fetch_one(e.kas.audit.pool())
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_whose_audit_row_cannot_be_committed_gets_503_and_no_key() {
    let e = env().await;
    let alice = e.login("alice").await;
    let (policy_b64, kaos) = parts(
        &e.encrypt(KeyAlgorithm::EcP256, "SECRET//FVEY//REL TO USA", PLAINTEXT)
            .await,
    );
    // The database refuses every audit row from now on (as a full disk or a broken server would).
    sqlx::raw_sql(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON kas_audit \
         BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END",
    )
    .execute(e.kas.audit.pool())
    .await
    .unwrap();
    let (status, body) = raw_rewrap(&e, &alice, &policy_b64, &kaos).await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "unavailable");
    assert!(!body.contains("kasWrappedKey"), "{body}");
    // Concurrent requests, grouped into one commit or not, are all refused.
    let answers = concurrent_rewraps(&e, &alice, &policy_b64, &kaos, 8).await;
    assert!(answers.iter().all(|(s, _)| *s == 503), "{answers:?}");
    assert_eq!(audit_rows(&e).await, 0);
    // Once the database takes rows again, so does the KAS (the writer survived the failures).
    sqlx::raw_sql("DROP TRIGGER refuse_audit")
        .execute(e.kas.audit.pool())
        .await
        .unwrap();
    let (status, body) = raw_rewrap(&e, &alice, &policy_b64, &kaos).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(audit_rows(&e).await, 1);
    e.stop().await;
}

/// `n` concurrent raw rewraps (each signed by its own client).
async fn concurrent_rewraps(
    e: &Env,
    token: &str,
    policy_b64: &str,
    kaos: &[dive_ztdf::KeyAccessObject],
    n: usize,
) -> Vec<(u16, String)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let srt = RemoteKas::new(e.http.clone(), &e.kas.url, "unused")
            .signed_request(policy_b64, kaos)
            .unwrap();
        let request = e
            .http
            .post(format!("{}/v2/rewrap", e.kas.url))
            .bearer_auth(token)
            .json(&json!({"signedRequestToken": srt}));
        set.spawn(async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
    }
    set.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_decrypts_what_it_counts_and_every_rewrap_is_audited() {
    let e = env().await;
    let alice = e.login("alice").await;
    let (policy_b64, kaos) = parts(
        &e.encrypt(KeyAlgorithm::EcP256, "SECRET//FVEY//REL TO USA", PLAINTEXT)
            .await,
    );
    let pki = dive_pki::Pki::open(e.home.path()).unwrap();
    let cfg = dive_kas::loadtest::LoadConfig {
        http: e.http.clone(),
        tls: std::sync::Arc::new(pki.client_config().unwrap()),
        kas_url: e.kas.url.clone(),
        token: alice.clone(),
        connections: 4,
        duration: Duration::from_millis(1500),
        client_key: ClientKeyKind::EcP256,
        policy_b64: policy_b64.clone(),
        kaos: kaos.clone(),
    };
    let report = dive_kas::loadtest::run(&cfg).await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert!(report.requests > 0);
    // The first answer of every connection at least was decrypted to the warm-up's share.
    assert!(report.decrypted >= 4, "{report:?}");
    // Every counted rewrap (and each client's warm-up) has its row: none was answered before its
    // audit row was committed, and group commits lost none.
    assert_eq!(audit_rows(&e).await, report.requests as i64 + 4);
    // A user the PDP denies is an error on every request, never a success.
    let carol = e.login("carol").await;
    let denied = dive_kas::loadtest::run(&dive_kas::loadtest::LoadConfig {
        token: carol,
        ..cfg
    })
    .await;
    assert!(denied.is_err());
    e.stop().await;
}
