//! The IdP on PostgreSQL (a fresh database at `DIVE_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): code flow, refresh rotation and reuse detection,
//! brokering (federated user upsert, single-use broker state).
//! Skipped, with a message, when no server answers.

use std::time::Duration;

use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use sqlx::{AnyConnection, Connection, Executor};

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::test]
async fn code_flow_and_refresh_reuse_on_postgres() {
    sqlx::any::install_default_drivers();
    let admin = std::env::var("DIVE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG.to_string());
    let mut conn =
        match tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(&admin)).await {
            Ok(Ok(c)) => c,
            _ => {
                eprintln!("SKIPPED: no PostgreSQL at {admin}");
                return;
            }
        };
    let name = format!(
        "idp_test_{}",
        dive_idp::util::hex_encode(&dive_idp::util::random_bytes(6))
    );
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("bad DIVE_TEST_PG_URL"),
    };

    let home = tempfile::tempdir().unwrap();
    let mut cfg = dive_idp::IdpConfig::new(CountryCode::new("DEU").unwrap(), home.path().into());
    cfg.database = Some(url);
    cfg.alg = dive_jose::Alg::ES256;
    let idp = dive_idp::start(cfg, false).await.unwrap();
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "web".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec!["https://app.example/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        },
    )
    .await
    .unwrap();
    dive_idp::users::create(
        &idp.db,
        &NewUser {
            username: "hans".into(),
            password: "Correct-Horse-Battery-42!".into(),
            unique_id: None,
            clearance: "VS-VERTRAULICH".into(),
            country: CountryCode::new("DEU").unwrap(),
            coi: vec!["NATO".into()],
            organization_type: OrganizationType::Gov,
            roles: vec![],
        },
    )
    .await
    .unwrap();
    let http = dive_http::https_client(&dive_pki::Pki::open(home.path()).unwrap()).unwrap();
    let req = LoginRequest {
        issuer: idp.issuer.clone(),
        client_id: "web".into(),
        client_secret: secret.clone(),
        redirect_uri: "https://app.example/cb".into(),
        scope: "openid coalition".into(),
        username: "hans".into(),
        password: "Correct-Horse-Battery-42!".into(),
        totp_secret: None,
        extra: vec![],
    };
    let (tokens, outcome) = login_helper::login(&http, &req).await.unwrap();
    assert!(
        outcome.enrolled_totp_secret.is_some(),
        "CONFIDENTIAL needs TOTP"
    );
    let refresh = |t: String| {
        let http = http.clone();
        let url = format!("{}/token", idp.issuer);
        let secret = secret.clone().unwrap();
        async move {
            http.post(url)
                .basic_auth("web", Some(secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", t.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let r1 = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(r1.clone()).await, 200);
    assert_eq!(refresh(r1).await, 400, "reuse detected");

    // Brokering with the PostgreSQL IdP as the downstream: an upstream FRA IdP (SQLite, same
    // installation CA), a federated user created then re-synced, a replayed callback refused.
    let fra = dive_idp::start(
        dive_idp::IdpConfig::new(CountryCode::new("FRA").unwrap(), home.path().into()),
        false,
    )
    .await
    .unwrap();
    let (_, broker_secret) = dive_idp::clients::create(
        &fra.db,
        &NewClient {
            client_id: "dive-deu".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![format!("{}/broker/fra-idp/callback", idp.issuer)],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
        },
    )
    .await
    .unwrap();
    dive_idp::users::create(
        &fra.db,
        &NewUser {
            username: "claire".into(),
            password: "Correct-Horse-Battery-42!".into(),
            unique_id: None,
            clearance: "NON CLASSIFIÉ".into(),
            country: CountryCode::new("FRA").unwrap(),
            coi: vec![],
            organization_type: OrganizationType::Gov,
            roles: vec![],
        },
    )
    .await
    .unwrap();
    dive_idp::upstreams::create(
        &idp.db,
        dive_idp::upstreams::UpstreamSpec {
            alias: "fra-idp".into(),
            issuer: fra.issuer.clone(),
            client_id: "dive-deu".into(),
            client_secret: broker_secret.unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let broker = login_helper::BrokerRequest {
        login: LoginRequest {
            username: "claire".into(),
            ..req.clone()
        },
        alias: "fra-idp".into(),
        use_hint: true,
        local_totp_secret: None,
    };
    for _ in 0..2 {
        let (tokens, out) = login_helper::broker_login(&http, &broker).await.unwrap();
        assert!(tokens["access_token"].is_string());
        assert!(!out.local_second_factor);
    }
    let users = dive_idp::users::list(&idp.db).await.unwrap();
    let fed: Vec<_> = users
        .iter()
        .filter(|u| u.upstream_alias.as_deref() == Some("fra-idp"))
        .collect();
    assert_eq!(fed.len(), 1, "one federated account, re-synced");
    assert_eq!(fed[0].clearance, "NON CLASSIFIÉ");
    let start = login_helper::broker_start(&http, &broker).await.unwrap();
    let (callback, _) = login_helper::upstream_login(
        &http,
        &start.upstream_url,
        "claire",
        "Correct-Horse-Battery-42!",
        None,
    )
    .await
    .unwrap();
    login_helper::broker_finish(&http, &start, &callback, None)
        .await
        .unwrap();
    assert!(
        login_helper::broker_finish(&http, &start, &callback, None)
            .await
            .is_err(),
        "replayed callback"
    );
    fra.stop().await;
    idp.stop().await;
    drop(conn.close().await);
    let mut conn = AnyConnection::connect(&admin).await.unwrap();
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .await;
}
