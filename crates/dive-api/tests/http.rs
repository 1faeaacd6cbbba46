//! The resource service over HTTPS with real tokens from a real IdP (in-process, on loopback):
//! search, get, download, upload, denials with their reasons, tampered ZTDFs, limits, audit, and
//! the OpenAPI description against the real routes.
//!
//! The KAS public-key endpoint is served here by a minimal HTTPS handler with a real RSA key
//! (the KAS crate is another branch); downloads and uploads are decrypted with its private key.

mod common;

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dive_api::{ApiConfig, NewResource, ResourceStore};
use dive_core::{Clearance, CoiOperator, CountryCode, OrganizationType, SecurityLabel};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use dive_ztdf::{KasPrivateKey, LocalKeyUnwrapper, TdfReader};
use serde_json::{Value, json};
use time::OffsetDateTime;

const PASSWORD: &str = "Correct-Horse-Battery-42!";
const REDIRECT: &str = "https://app.example/cb";
const MAX_UPLOAD: usize = 64 * 1024;

struct Env {
    home: tempfile::TempDir,
    idp: dive_idp::Running,
    api: dive_api::Running,
    http: reqwest::Client,
    secret: String,
    kas_private_pem: String,
    kas_url: String,
    _kas: tokio::task::JoinHandle<()>,
}

fn cc(c: &str) -> CountryCode {
    CountryCode::new(c).unwrap()
}

/// The KAS public-key endpoint (`GET /kas/v2/kas_public_key`), with a real key, over HTTPS.
async fn kas_public_key_endpoint(
    home: &std::path::Path,
    public_pem: String,
) -> (String, tokio::task::JoinHandle<()>) {
    let pki = dive_pki::Pki::open(home).unwrap();
    let cert = pki.service("kas").unwrap();
    let bound = dive_http::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        cert.server_config().unwrap(),
    )
    .await
    .unwrap();
    let port = bound.local_addr().port();
    let app = axum::Router::new().route(
        "/kas/v2/kas_public_key",
        axum::routing::get(move || {
            let pem = public_pem.clone();
            async move { axum::Json(json!({"publicKey": pem, "kid": "r1"})) }
        }),
    );
    let task = tokio::spawn(bound.serve(app, std::future::pending()));
    (format!("https://localhost:{port}"), task)
}

async fn user(
    db: &dive_idp::Db,
    name: &str,
    clearance: &str,
    country: &str,
    coi: &[&str],
    org: OrganizationType,
    roles: &[&str],
) {
    dive_idp::users::create(
        db,
        &NewUser {
            username: name.into(),
            password: PASSWORD.into(),
            unique_id: None,
            clearance: clearance.into(),
            country: cc(country),
            coi: coi.iter().map(|s| s.to_string()).collect(),
            organization_type: org,
            roles: roles.iter().map(|s| s.to_string()).collect(),
        },
    )
    .await
    .unwrap();
}

/// Hand-made documents with known labels, beside a generated corpus.
fn fixed_documents(recipient: &dive_ztdf::Recipient) -> Vec<NewResource> {
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let mk = |id: &str, label: SecurityLabel, created: OffsetDateTime, text: &str| {
        let label = label.with_creation_date(created);
        let enc =
            dive_api::upload::encrypt(text.as_bytes(), &label, "text/plain", recipient).unwrap();
        NewResource {
            id: id.into(),
            title: format!("Fixed {id}"),
            description: Some("hand-made test document".into()),
            label,
            mime_type: "text/plain".into(),
            file_name: format!("{id}.txt"),
            size: enc.plaintext_len,
            created_at: created,
            creator: "test".into(),
            ztdf: enc.ztdf,
            policy_uuid: enc.policy_uuid,
            seeded: true,
        }
    };
    vec![
        mk(
            "fixed-secret-fvey",
            SecurityLabel::new(Clearance::Secret, [cc("USA"), cc("GBR"), cc("CAN")])
                .with_coi(CoiOperator::All, ["FVEY"]),
            now - day * 3,
            "fvey secret text",
        ),
        mk(
            "fixed-us-only",
            SecurityLabel::new(Clearance::Secret, [cc("USA")])
                .with_coi(CoiOperator::All, ["US-ONLY"])
                .with_caveats(["NOFORN"]),
            now - day * 2,
            "us only",
        ),
        mk(
            "fixed-nato-fra",
            SecurityLabel::new(Clearance::Confidential, [cc("USA"), cc("FRA"), cc("DEU")])
                .with_coi(CoiOperator::All, ["NATO"]),
            now - day,
            "nato confidential",
        ),
        mk(
            "fixed-unclass",
            SecurityLabel::new(Clearance::Unclassified, [cc("USA"), cc("FRA")]),
            now - day * 4,
            "public notice",
        ),
        mk(
            "fixed-embargoed",
            SecurityLabel::new(Clearance::Unclassified, [cc("USA"), cc("FRA")]),
            now + day * 10,
            "not yet",
        ),
    ]
}

async fn env() -> Env {
    let home = tempfile::tempdir().unwrap();
    let idp = dive_idp::start(
        dive_idp::IdpConfig::new(cc("USA"), home.path().to_path_buf()),
        false,
    )
    .await
    .unwrap();
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "web".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::ClientCredentials],
        },
    )
    .await
    .unwrap();
    use OrganizationType::*;
    user(
        &idp.db,
        "ursula",
        "UNCLASSIFIED",
        "USA",
        &[],
        Mil,
        &["user"],
    )
    .await;
    user(
        &idp.db,
        "sam",
        "SECRET",
        "USA",
        &["FVEY", "NATO"],
        Mil,
        &["user"],
    )
    .await;
    user(
        &idp.db,
        "frank",
        "SECRET DÉFENSE",
        "FRA",
        &["NATO"],
        Mil,
        &["user"],
    )
    .await;
    user(
        &idp.db,
        "ada",
        "SECRET",
        "USA",
        &["FVEY", "NATO"],
        Gov,
        &["user", "dive-admin"],
    )
    .await;

    // Policy data: the IdP is this instance's (USA) trusted issuer; the rest is embedded.
    let policy: PathBuf = home.path().join("instances/usa/policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(
        policy.join("trusted_issuers.json"),
        json!({ idp.issuer.clone(): {"instance": "USA", "name": "test IdP"} }).to_string(),
    )
    .unwrap();

    let (_, _, public_pem) = common::kas_keys();
    let (kas_url, kas_task) = kas_public_key_endpoint(home.path(), public_pem.clone()).await;

    // Seed the store as another process would (its own pool), before and after start-up.
    let db_path = dive_api::default_database(home.path(), cc("USA"));
    let recipient = dive_ztdf::Recipient::new(
        kas_url.clone(),
        Some("r1".into()),
        dive_ztdf::KasPublicKey::from_pem(&public_pem).unwrap(),
    );
    let seeder = ResourceStore::open(db_path.to_str().unwrap())
        .await
        .unwrap();
    seeder
        .replace_seeded(fixed_documents(&recipient))
        .await
        .unwrap();

    let mut cfg = ApiConfig::new(cc("USA"), home.path().to_path_buf(), kas_url.clone());
    cfg.catalog_poll = Duration::from_millis(200);
    cfg.max_upload_bytes = MAX_UPLOAD;
    let api = dive_api::start(cfg, false).await.unwrap();

    let mut docs = fixed_documents(&recipient);
    docs.extend(
        dive_api::corpus::generate(120, 5, cc("USA"), &recipient, OffsetDateTime::now_utc())
            .unwrap(),
    );
    let s = seeder.replace_seeded(docs).await.unwrap();
    assert_eq!(s.inserted, 125);
    seeder.close().await;

    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let http = dive_http::https_client(&pki).unwrap();
    Env {
        home,
        idp,
        api,
        http,
        secret: secret.unwrap(),
        kas_private_pem: common::kas_private_pem(),
        kas_url,
        _kas: kas_task,
    }
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.api.addr.port())
    }

    async fn token(&self, username: &str) -> String {
        let req = LoginRequest {
            issuer: self.idp.issuer.clone(),
            client_id: "web".into(),
            client_secret: Some(self.secret.clone()),
            redirect_uri: REDIRECT.into(),
            scope: "openid profile coalition roles".into(),
            username: username.into(),
            password: PASSWORD.into(),
            totp_secret: None,
            extra: vec![],
        };
        let (tokens, _) = login_helper::login(&self.http, &req).await.unwrap();
        tokens["access_token"].as_str().unwrap().to_string()
    }

    async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut r = self.http.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn bytes(&self, token: &str, path: &str) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.bytes().await.unwrap().to_vec(), headers)
    }

    async fn upload(&self, token: &str, parts: &[Part<'_>]) -> (u16, Value, Option<String>) {
        let boundary = "dive-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for p in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match p.file_name {
                Some(f) => body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\n",
                        p.name
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{}\"\r\n", p.name).as_bytes(),
                ),
            }
            if let Some(t) = p.content_type {
                body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(p.data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(self.url("/api/resources"))
            .bearer_auth(token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, resp.json().await.unwrap_or(Value::Null), location)
    }

    /// Decrypt a downloaded ZTDF with the KAS private key.
    fn decrypt(&self, ztdf: &[u8]) -> Vec<u8> {
        let reader = TdfReader::open(Cursor::new(ztdf.to_vec())).unwrap();
        let unwrapper = LocalKeyUnwrapper::new().with_key(
            None,
            KasPrivateKey::from_pem(&self.kas_private_pem).unwrap(),
        );
        let mut unlocked = reader.unlock(&unwrapper).unwrap();
        let mut out = Vec::new();
        unlocked.decrypt_to(&mut out).unwrap();
        out
    }

    /// Every page of a search, following cursors.
    async fn all_pages(&self, token: &str, query: &str) -> (Vec<Value>, Value) {
        let mut items = Vec::new();
        let (s, first) = self
            .get(Some(token), &format!("/api/resources?{query}"))
            .await;
        assert_eq!(s, 200, "{first}");
        let mut page = first.clone();
        loop {
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            let Some(c) = page["nextCursor"].as_str() else {
                break;
            };
            let (s, next) = self
                .get(Some(token), &format!("/api/resources?{query}&cursor={c}"))
                .await;
            assert_eq!(s, 200, "{next}");
            page = next;
        }
        (items, first)
    }
}

struct Part<'a> {
    name: &'a str,
    file_name: Option<&'a str>,
    content_type: Option<&'a str>,
    data: &'a [u8],
}

fn text<'a>(name: &'a str, value: &'a str) -> Part<'a> {
    Part {
        name,
        file_name: None,
        content_type: None,
        data: value.as_bytes(),
    }
}

fn file<'a>(name: &'a str, file_name: &'a str, content_type: &'a str, data: &'a [u8]) -> Part<'a> {
    Part {
        name,
        file_name: Some(file_name),
        content_type: Some(content_type),
        data,
    }
}

async fn wait_for_catalog(e: &Env, token: &str, at_least: u64) {
    for _ in 0..100 {
        let (_, v) = e.get(Some(token), "/api/resources?limit=1").await;
        if v["total"].as_u64().unwrap_or(0) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service never picked up the seeded documents");
}

#[tokio::test]
async fn resource_service_end_to_end() {
    let e = env().await;
    let ursula = e.token("ursula").await;
    let sam = e.token("sam").await;
    let frank = e.token("frank").await;
    let ada = e.token("ada").await;

    // --- authentication
    let (s, v) = e.get(None, "/api/resources").await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "unauthenticated");
    assert!(v["message"].as_str().unwrap().contains("Bearer"), "{v}");
    let (s, v) = e
        .get(Some("not-a-jwt"), "/api/resources/fixed-unclass")
        .await;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("malformed"), "{v}");

    // --- the seeding that happened after start-up was picked up by polling
    wait_for_catalog(&e, &sam, 20).await;

    // --- search returns only what each caller may read, with facets and pagination
    let (u_items, u_first) = e.all_pages(&ursula, "limit=7").await;
    let (s_items, s_first) = e.all_pages(&sam, "limit=7").await;
    assert_eq!(u_items.len() as u64, u_first["total"].as_u64().unwrap());
    assert_eq!(s_items.len() as u64, s_first["total"].as_u64().unwrap());
    assert!(s_items.len() > u_items.len() && !u_items.is_empty());
    assert!(
        u_items
            .iter()
            .all(|i| i["label"]["classification"] == "UNCLASSIFIED")
    );
    let ids = |items: &[Value]| {
        items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let s_ids = ids(&s_items);
    let mut dedup = s_ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), s_ids.len(), "no document on two pages");
    assert!(s_ids.contains(&"fixed-secret-fvey".to_string()));
    assert!(!s_ids.contains(&"fixed-us-only".to_string()));
    assert!(!s_ids.contains(&"fixed-embargoed".to_string()));
    assert!(!ids(&u_items).contains(&"fixed-secret-fvey".to_string()));
    let facet_sum: u64 = s_first["facets"]["classification"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(facet_sum, s_first["total"].as_u64().unwrap());
    // Every listed item is readable by its caller.
    for id in s_ids.iter().take(10) {
        let (st, v) = e.get(Some(&sam), &format!("/api/resources/{id}")).await;
        assert_eq!(st, 200, "{id}: {v}");
    }
    // Filters.
    let (_, v) = e
        .get(Some(&sam), "/api/resources?classification=SECRET&limit=100")
        .await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["label"]["classification"] == "SECRET")
    );
    assert_eq!(v["total"], v["facets"]["classification"]["SECRET"]);
    let (_, v) = e
        .get(Some(&ursula), "/api/resources?classification=SECRET")
        .await;
    assert_eq!(v["total"], 0);
    let (_, v) = e.get(Some(&sam), "/api/resources?q=fixed+fvey").await;
    assert_eq!(
        ids(v["items"].as_array().unwrap()),
        vec!["fixed-secret-fvey"]
    );
    let (_, v) = e
        .get(Some(&sam), "/api/resources?coi=FVEY&country=CAN&limit=100")
        .await;
    assert!(v["items"].as_array().unwrap().iter().all(|i| {
        i["label"]["COI"]
            .as_array()
            .unwrap()
            .contains(&json!("FVEY"))
            && i["label"]["releasabilityTo"]
                .as_array()
                .unwrap()
                .contains(&json!("CAN"))
    }));
    let (s, v) = e
        .get(Some(&sam), "/api/resources?classification=SEKRIT")
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["param"], "classification");

    // --- get: allowed with the decision; denied with the reason and every check
    let (s, v) = e.get(Some(&sam), "/api/resources/fixed-secret-fvey").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decision"]["allow"], true);
    assert_eq!(v["decision"]["checks"]["clearance"], true);
    assert_eq!(v["marking"], "SECRET//FVEY//REL TO USA, GBR, CAN");
    assert_eq!(v["decision"]["obligations"][0]["type"], "kas_key_release");
    let (s, v) = e
        .get(Some(&ursula), "/api/resources/fixed-secret-fvey")
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"], "forbidden");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Insufficient clearance"),
        "{v}"
    );
    assert_eq!(v["checks"]["clearance"], false);
    assert_eq!(v["checks"]["releasability"], true);
    assert!(v.get("title").is_none(), "a denial reveals no metadata");
    let (s, v) = e
        .get(Some(&frank), "/api/resources/fixed-secret-fvey")
        .await;
    assert_eq!(s, 403);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Not releasable to your country"),
        "{v}"
    );
    let (s, v) = e.get(Some(&sam), "/api/resources/fixed-us-only").await;
    assert_eq!(s, 403);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Community of interest"),
        "{v}"
    );
    assert_eq!(v["checks"]["coi"], false);
    let (s, v) = e.get(Some(&ursula), "/api/resources/fixed-embargoed").await;
    assert_eq!(s, 403);
    assert!(
        v["reason"].as_str().unwrap().starts_with("Embargoed"),
        "{v}"
    );
    let (s, _) = e.get(Some(&frank), "/api/resources/fixed-nato-fra").await;
    assert_eq!(s, 200);
    let (s, v) = e.get(Some(&sam), "/api/resources/no-such-doc").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "not_found");

    // --- download: the real ZTDF on allow only
    let (s, bytes, headers) = e
        .bytes(&sam, "/api/resources/fixed-secret-fvey/download")
        .await;
    assert_eq!(s, 200);
    assert_eq!(headers["content-type"], "application/zip");
    assert_eq!(e.decrypt(&bytes), b"fvey secret text");
    let (s, body, _) = e
        .bytes(&ursula, "/api/resources/fixed-secret-fvey/download")
        .await;
    assert_eq!(s, 403);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Insufficient clearance")
    );

    // --- upload of a plaintext with a marking: encrypted to the KAS, listed, readable
    let content = b"Convoy schedule for the exercise\n";
    let (s, v, location) = e
        .upload(
            &sam,
            &[
                file("file", "convoy.txt", "text/plain", content),
                text("marking", "SECRET//FVEY//REL TO USA, GBR"),
                text("title", "Convoy schedule"),
            ],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        location.as_deref(),
        Some(format!("/api/resources/{id}").as_str())
    );
    assert_eq!(v["creator"], "sam@usa");
    assert_eq!(v["seeded"], false);
    assert_eq!(v["size"], content.len());
    assert_eq!(v["decision"]["allow"], true);
    let (s, bytes, _) = e
        .bytes(&sam, &format!("/api/resources/{id}/download"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(e.decrypt(&bytes), content);
    let reader = TdfReader::open(Cursor::new(bytes.clone())).unwrap();
    assert_eq!(reader.key_access_objects()[0].kas, e.kas_url);
    assert_eq!(reader.label().unwrap().unwrap().coi, vec!["FVEY"]);
    let (_, v) = e.get(Some(&sam), "/api/resources?q=convoy+schedule").await;
    assert_eq!(ids(v["items"].as_array().unwrap()), vec![id.clone()]);
    let (s, _) = e.get(Some(&ursula), &format!("/api/resources/{id}")).await;
    assert_eq!(s, 403);

    // ... with a JSON label
    let (s, v, _) = e
        .upload(
            &frank,
            &[
                file("file", "notes.md", "text/markdown", b"# Notes\n"),
                text("label", r#"{"classification":"CONFIDENTIAL","releasabilityTo":["FRA","USA"],"COI":["NATO"]}"#),
            ],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["title"], "notes.md");

    // ... refused: incoherent label, above clearance, not releasable to oneself, bad types
    let (s, v, _) = e
        .upload(
            &sam,
            &[
                file("file", "a.txt", "text/plain", b"x"),
                text("marking", "SECRET//US-ONLY/FVEY//REL TO USA"),
            ],
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"], "incoherent_label");
    assert!(
        v["violations"][0]
            .as_str()
            .unwrap()
            .contains("US-ONLY cannot be combined"),
        "{v}"
    );
    let (s, v, _) = e
        .upload(
            &ursula,
            &[
                file("file", "a.txt", "text/plain", b"x"),
                text("marking", "SECRET//REL TO USA"),
            ],
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Insufficient clearance"),
        "{v}"
    );
    let (s, v, _) = e
        .upload(
            &sam,
            &[
                file("file", "a.txt", "text/plain", b"x"),
                text("marking", "UNCLASSIFIED//REL TO GBR"),
            ],
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Upload refused: the document must be releasable to your own country"),
        "{v}"
    );
    assert_eq!(v["checks"]["upload"], false);
    let (s, v, _) = e
        .upload(
            &sam,
            &[
                file("file", "a.exe", "application/x-msdownload", b"MZ"),
                text("marking", "UNCLASSIFIED//REL TO USA"),
            ],
        )
        .await;
    assert_eq!(s, 415, "{v}");
    let (s, v, _) = e
        .upload(
            &sam,
            &[
                file("file", "a.pdf", "application/pdf", b"not a pdf"),
                text("marking", "UNCLASSIFIED//REL TO USA"),
            ],
        )
        .await;
    assert_eq!(s, 415, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not a PDF"));
    let big = vec![b'a'; MAX_UPLOAD + 1];
    let (s, v, _) = e
        .upload(
            &sam,
            &[
                file("file", "big.txt", "text/plain", &big),
                text("marking", "UNCLASSIFIED//REL TO USA"),
            ],
        )
        .await;
    assert_eq!(s, 413, "{v}");
    let (s, v, _) = e
        .upload(&sam, &[file("file", "a.txt", "text/plain", b"x")])
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("label is required"));
    let (s, v, _) = e.upload(&sam, &[text("colour", "red")]).await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("colour"));

    // --- upload of an already-encrypted ZTDF: verified; tampering is named
    let (_, recipient, _) = common::kas_keys();
    let recipient = dive_ztdf::Recipient::new(e.kas_url.clone(), Some("r1".into()), recipient.key);
    let label = SecurityLabel::new(Clearance::Confidential, [cc("USA"), cc("GBR")])
        .with_coi(CoiOperator::All, ["FVEY"]);
    let enc =
        dive_api::upload::encrypt(b"pre-encrypted", &label, "text/plain", &recipient).unwrap();
    let (s, v, _) = e
        .upload(
            &sam,
            &[file("ztdf", "report.txt.tdf", "application/zip", &enc.ztdf)],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["fileName"], "report.txt");
    assert_eq!(v["policyUuid"], enc.policy_uuid);
    assert_eq!(v["label"]["classification"], "CONFIDENTIAL");
    let mut tampered = enc.ztdf.clone();
    tampered[60] ^= 0x01; // inside 0.payload, the first entry
    let (s, v, _) = e
        .upload(&sam, &[file("ztdf", "t.tdf", "application/zip", &tampered)])
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"], "ztdf_invalid");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("CRC-32 of \"0.payload\""),
        "{v}"
    );
    let foreign =
        dive_ztdf::Recipient::new("https://kas.elsewhere.example", None, recipient.key.clone());
    let other = dive_api::upload::encrypt(b"x", &label, "text/plain", &foreign).unwrap();
    let (s, v, _) = e
        .upload(
            &sam,
            &[file("ztdf", "o.tdf", "application/zip", &other.ztdf)],
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("kas.elsewhere.example"),
        "{v}"
    );

    // --- audit: admin only; every decision is there with who, what, action, reason, latency
    let (s, v) = e.get(Some(&sam), "/api/audit").await;
    assert_eq!(s, 403);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Admin role required"),
        "{v}"
    );
    let (s, v) = e
        .get(
            Some(&ada),
            "/api/audit?subject=ursula@usa&decision=deny&limit=1000",
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .all(|x| x["subject"] == "ursula@usa" && x["allow"] == false)
    );
    let denial = entries
        .iter()
        .find(|x| x["action"] == "read" && x["resourceId"] == "fixed-secret-fvey")
        .expect("ursula's denied read is audited");
    assert!(
        denial["reason"]
            .as_str()
            .unwrap()
            .starts_with("Insufficient clearance")
    );
    assert!(denial["latencyUs"].as_u64().unwrap() > 0);
    assert!(denial["policyVersion"].is_string());
    assert_eq!(denial["issuer"], e.idp.issuer);
    let (_, v) = e
        .get(Some(&ada), "/api/audit?action=upload&decision=allow")
        .await;
    assert!(v["entries"].as_array().unwrap().len() >= 3);
    let (_, v) = e.get(Some(&ada), "/api/audit?subject=-").await;
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["reason"].as_str().unwrap().contains("malformed"))
    );
    let (_, v) = e.get(Some(&ada), "/api/audit?limit=2").await;
    let c = v["nextCursor"].as_str().unwrap();
    let (_, older) = e
        .get(Some(&ada), &format!("/api/audit?limit=2&cursor={c}"))
        .await;
    // Compared as instants: RFC 3339 texts with trimmed fractions do not sort as strings.
    let at = |x: &Value| {
        OffsetDateTime::parse(
            x["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(at(&older["entries"][0]) <= at(&v["entries"][1]));
    let (s, v) = e.get(Some(&ada), "/api/audit?decision=maybe").await;
    assert_eq!(s, 400);
    assert_eq!(v["param"], "decision");
    // The summary counts exactly what the log lists, per bucket.
    let (_, listed) = e
        .get(Some(&ada), "/api/audit?subject=ursula@usa&limit=1000")
        .await;
    let listed = listed["entries"].as_array().unwrap();
    let (s, v) = e
        .get(
            Some(&ada),
            "/api/audit/summary?subject=ursula@usa&bucket=86400",
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["bucketSeconds"], 86400);
    let sum = |k: &str| -> u64 {
        v["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[k].as_u64().unwrap())
            .sum()
    };
    let allowed = listed.iter().filter(|x| x["allow"] == true).count() as u64;
    assert_eq!(sum("allowed"), allowed, "{v}");
    assert_eq!(sum("denied"), listed.len() as u64 - allowed, "{v}");
    assert!(sum("denied") > 0);
    for (bad, param) in [
        ("bucket=0", "bucket"),
        ("bucket=x", "bucket"),
        ("limit=5", "limit"),
        ("decision=maybe", "decision"),
    ] {
        let (s, v) = e
            .get(Some(&ada), &format!("/api/audit/summary?{bad}"))
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["param"], param, "{bad}: {v}");
    }
    let (s, _) = e.get(Some(&sam), "/api/audit/summary").await;
    assert_eq!(s, 403);

    // --- operations
    let resp = e
        .http
        .get(e.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        resp.contains("dive_api_decisions_total{action=\"read\",decision=\"deny\"}"),
        "{resp}"
    );
    assert!(
        resp.contains("dive_api_prefilter_disagreements_total 0"),
        "{resp}"
    );
    for p in ["/live", "/health", "/ready"] {
        assert_eq!(
            e.http.get(e.url(p)).send().await.unwrap().status(),
            200,
            "{p}"
        );
    }
    // --- delete: the uploader (while still allowed to read it) or an administrator
    let delete = |token: String, id: String| {
        let (http, url) = (e.http.clone(), e.url(&format!("/api/resources/{id}")));
        async move {
            let r = http.delete(url).bearer_auth(token).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, v) = e.get(Some(&frank), "/api/resources?q=notes.md").await;
    let notes = v["items"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = e.get(Some(&sam), "/api/resources?q=convoy+schedule").await;
    let convoy = v["items"][0]["id"].as_str().unwrap().to_string();
    // Not the uploader and not an administrator: refused, with the admin policy's reason.
    let (s, v) = delete(sam.clone(), notes.clone()).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Admin role required"),
        "{v}"
    );
    // The uploader deletes its document: gone from get and search, and a second delete is 404.
    let (s, v) = delete(frank.clone(), notes.clone()).await;
    assert_eq!(s, 204, "{v}");
    let (s, _) = e
        .get(Some(&frank), &format!("/api/resources/{notes}"))
        .await;
    assert_eq!(s, 404);
    let (_, v) = e.get(Some(&frank), "/api/resources?q=notes.md").await;
    assert_eq!(v["total"], 0, "{v}");
    let (s, _) = delete(frank.clone(), notes.clone()).await;
    assert_eq!(s, 404);
    // An administrator deletes someone else's upload.
    let (s, v) = delete(ada.clone(), convoy.clone()).await;
    assert_eq!(s, 204, "{v}");
    let (s, _) = e.get(Some(&sam), &format!("/api/resources/{convoy}")).await;
    assert_eq!(s, 404);

    let _ = &e.home;
    e.api.stop().await;
    e.idp.stop().await;
}

#[tokio::test]
async fn openapi_describes_exactly_the_routes() {
    let e = env().await;
    let (s, doc) = e.get(None, "/api/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = dive_api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    // Every listed route is served (not 404/405), and an unlisted one is not.
    for (method, path) in &routes {
        let url = e.url(&path.replace("{id}", "fixed-unclass"));
        let r = match method.as_str() {
            "GET" => e.http.get(&url),
            "POST" => e.http.post(&url),
            "DELETE" => e.http.delete(&url),
            m => panic!("unexpected method {m}"),
        }
        .send()
        .await
        .unwrap();
        assert!(
            r.status() != 404 && r.status() != 405,
            "{method} {path}: {}",
            r.status()
        );
    }
    let r = e
        .http
        .put(e.url("/api/resources/fixed-unclass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let (s, v) = e.get(None, "/api/nothing-here").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "not_found");
    e.api.stop().await;
}

/// POST a federated search as `token` and return (status, body, wall time).
async fn federated(e: &Env, token: Option<&str>, body: Value) -> (u16, Value, Duration) {
    let t0 = std::time::Instant::now();
    let mut r = e
        .http
        .post(e.url("/api/resources/federated-search"))
        .json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.json().await.unwrap_or(Value::Null),
        t0.elapsed(),
    )
}

fn instance<'a>(body: &'a Value, code: &str) -> &'a Value {
    body["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["instance"] == code))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn federated_search_merges_partners_and_bounds_the_ones_that_fail() {
    let e = env().await;
    // A second instance's resource service (FRA) in the same installation, trusting this IdP,
    // with documents of its own.
    let fra_policy = e.home.path().join("instances/fra/policy");
    std::fs::create_dir_all(&fra_policy).unwrap();
    std::fs::write(
        fra_policy.join("trusted_issuers.json"),
        json!({ e.idp.issuer.clone(): {"instance": "USA", "name": "partner IdP"} }).to_string(),
    )
    .unwrap();
    // A partner accepts USA's tokens as issued for USA's services (audience `dive-usa`).
    let (_, _, public_pem) = common::kas_keys();
    let recipient = dive_ztdf::Recipient::new(
        e.kas_url.clone(),
        Some("r1".into()),
        dive_ztdf::KasPublicKey::from_pem(&public_pem).unwrap(),
    );
    let fra_db = dive_api::default_database(e.home.path(), cc("FRA"));
    let fra_store = ResourceStore::open(fra_db.to_str().unwrap()).await.unwrap();
    let fra_docs =
        dive_api::corpus::generate(40, 11, cc("FRA"), &recipient, OffsetDateTime::now_utc())
            .unwrap()
            .into_iter()
            .map(|mut d| {
                d.id = format!("fra-{}", d.id);
                d
            })
            .collect();
    fra_store.replace_seeded(fra_docs).await.unwrap();
    fra_store.close().await;
    let cfg = ApiConfig::new(cc("FRA"), e.home.path().to_path_buf(), e.kas_url.clone());
    let fra = dive_api::start(cfg, false).await.unwrap();

    // A partner that accepts connections and never answers, and one that is not there at all.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let gone_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let partners = e.home.path().join("instances/usa/federation");
    std::fs::create_dir_all(&partners).unwrap();
    std::fs::write(
        partners.join("partners.json"),
        json!({"partners": [
            {"code": "FRA", "apiUrl": format!("https://localhost:{}", fra.addr.port()), "status": "active"},
            {"code": "DEU", "apiUrl": format!("https://localhost:{gone_port}"), "status": "active"},
            {"code": "GBR", "apiUrl": format!("https://localhost:{silent_port}"), "status": "suspended"},
        ]})
        .to_string(),
    )
    .unwrap();

    let sam = e.token("sam").await;
    let (status, body) = e.get(Some(&sam), "/api/resources?limit=100").await;
    assert_eq!(status, 200, "{body}");
    let own_total = body["total"].as_u64().unwrap();

    let (status, body, _) = federated(&e, Some(&sam), json!({"limit": 100})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partial"], true, "DEU did not answer: {body}");
    assert_eq!(instance(&body, "USA")["status"], "ok");
    assert_eq!(instance(&body, "FRA")["status"], "ok", "{body}");
    assert_eq!(instance(&body, "DEU")["status"], "error");
    assert!(
        instance(&body, "GBR").is_null(),
        "suspended partners are not asked"
    );
    let fra_total = instance(&body, "FRA")["total"].as_u64().unwrap();
    assert!(
        fra_total > 0,
        "sam (SECRET, NATO) may read some FRA documents"
    );
    assert_eq!(body["total"].as_u64().unwrap(), own_total + fra_total);
    let items = body["items"].as_array().unwrap();
    assert!(items.iter().any(|i| i["instance"] == "FRA"));
    assert!(items.iter().any(|i| i["instance"] == "USA"));
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items.len(), "no duplicates");
    // Each partner applied its own policy to the caller: an UNCLASSIFIED user sees less there.
    let ursula = e.token("ursula").await;
    let (_, low, _) = federated(&e, Some(&ursula), json!({"limit": 100})).await;
    assert!(instance(&low, "FRA")["total"].as_u64().unwrap() < fra_total);
    assert!(
        low["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["label"]["classification"] == "UNCLASSIFIED"),
        "{low}"
    );

    // DEU failed three times (sam, ursula, this one): its breaker opens and it is no longer asked.
    let (_, body, _) = federated(&e, Some(&sam), json!({})).await;
    assert_eq!(instance(&body, "DEU")["breaker"], "open", "{body}");
    let (_, body, _) = federated(&e, Some(&sam), json!({})).await;
    assert_eq!(instance(&body, "DEU")["status"], "breaker_open", "{body}");
    assert_eq!(instance(&body, "FRA")["breaker"], "closed");

    // A partner that never answers costs its timeout, not more.
    std::fs::write(
        partners.join("partners.json"),
        json!({"partners": [
            {"code": "FRA", "apiUrl": format!("https://localhost:{}", fra.addr.port()), "status": "active"},
            {"code": "GBR", "apiUrl": format!("https://localhost:{silent_port}"), "status": "active"},
        ]})
        .to_string(),
    )
    .unwrap();
    let (status, body, took) = federated(&e, Some(&sam), json!({"timeoutMs": 400, "q": ""})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(instance(&body, "GBR")["status"], "timeout", "{body}");
    assert_eq!(instance(&body, "FRA")["status"], "ok");
    assert!(instance(&body, "DEU").is_null());
    assert!(took < Duration::from_millis(3000), "{took:?}");
    drop(silent);

    // A partner that is up but refuses the caller's token (FRA no longer trusts this IdP, as
    // right after linking before its services re-read the trust files) is an error with its
    // reason, but never opens its breaker: it answered.
    std::fs::write(fra_policy.join("trusted_issuers.json"), "{}").unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let (_, body, _) = federated(&e, Some(&sam), json!({})).await;
        if instance(&body, "FRA")["status"] == "error" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "FRA still trusts: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..4 {
        let (_, body, _) = federated(&e, Some(&sam), json!({})).await;
        let fra_status = instance(&body, "FRA");
        assert_eq!(fra_status["status"], "error", "{body}");
        assert!(
            fra_status["error"]
                .as_str()
                .unwrap()
                .starts_with("HTTP 401"),
            "{body}"
        );
        assert_eq!(fra_status["breaker"], "closed", "{body}");
    }

    // A broken partners file: no partner is asked, and the answer says why.
    std::fs::write(partners.join("partners.json"), "{not json").unwrap();
    let (status, body, _) = federated(&e, Some(&sam), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["partial"], true);
    assert!(
        body["federationError"]
            .as_str()
            .unwrap()
            .contains("partners.json")
    );
    assert_eq!(body["instances"].as_array().unwrap().len(), 1);

    // Bad requests name what is wrong; no token, no search.
    for (bad, what) in [
        (json!({"cursor": "abc"}), "cursor"),
        (json!({"timeoutMs": 1}), "timeoutMs"),
        (json!({"classification": "BOGUS"}), "classification"),
        (json!({"q": {"x": 1}}), "q"),
        (json!([1]), "JSON object"),
    ] {
        let (status, body, _) = federated(&e, Some(&sam), bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains(what), "{bad}: {body}");
    }
    let (status, _, _) = federated(&e, None, json!({})).await;
    assert_eq!(status, 401);
    fra.stop().await;
    e.api.stop().await;
}
