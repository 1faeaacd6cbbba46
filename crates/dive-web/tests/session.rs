//! Server-side sessions against a real IdP (started in process, HTTPS on loopback): sign-in
//! through the IdP's login page, then token refresh. With a refresh margin longer than the
//! access token's life every request refreshes, so the test sees the rotation of single-use
//! refresh tokens — sequentially and under concurrent requests of one session, which must be
//! serialised (presenting a refresh token twice makes the IdP revoke the whole login).

use std::net::SocketAddr;

use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::users::NewUser;
use dive_web::{Settings, WebConfig};

const PASSWORD: &str = "Correct-Horse-Battery-42!";
const SECRET: &str = "web-client-secret-0123456789abcdefghijklmnop";

/// `Location`, and the `name=value` of every cookie a response sets.
fn location_and_cookies(r: &reqwest::Response) -> (String, Vec<String>) {
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let cookies = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    (loc, cookies)
}

/// The IdP's count of tokens issued by the refresh grant (from its Prometheus text).
async fn refreshes(http: &reqwest::Client, issuer: &str) -> u64 {
    let text = http
        .get(format!("{issuer}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("dive_idp_tokens_issued_total") && l.contains("refresh_token"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `GET /` with the session cookie: (status, body).
async fn home_page(http: reqwest::Client, web_url: String, session: String) -> (u16, String) {
    let r = http
        .get(format!("{web_url}/"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_server_side_one_refresh_at_a_time() {
    let home = tempfile::tempdir().unwrap();
    let usa = CountryCode::new("USA").unwrap();
    let idp = dive_idp::start(
        dive_idp::IdpConfig::new(usa, home.path().to_path_buf()),
        false,
    )
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let web_url = format!("https://localhost:{port}");
    dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "dive-web".into(),
            auth: NewClientAuth::Secret(SECRET.into()),
            redirect_uris: vec![format!("{web_url}/auth/callback")],
            post_logout_redirect_uris: vec![format!("{web_url}/")],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
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
            clearance: "UNCLASSIFIED".into(),
            country: usa,
            coi: vec![],
            organization_type: OrganizationType::Gov,
            roles: vec!["user".into()],
        },
    )
    .await
    .unwrap();
    let mut cfg = WebConfig::new(usa, home.path().to_path_buf());
    cfg.bind = SocketAddr::from(([127, 0, 0, 1], port));
    let settings = Settings {
        instance: usa,
        issuer: idp.issuer.clone(),
        // No resource service here: home shows its error, sessions are what is tested.
        api_url: "https://localhost:9".into(),
        kas_url: "https://localhost:9/kas".into(),
        web_url: web_url.clone(),
        client_id: "dive-web".into(),
        client_secret: SECRET.into(),
        partners_file: home.path().join("partners.json"),
        // Longer than an access token lives (15 min): every request refreshes.
        refresh_margin_secs: 3600,
        ops: dive_web::config::OpsSources {
            home: home.path().to_path_buf(),
            state_location: home.path().join("state.db").display().to_string(),
            stack: "usa".into(),
            role: dive_instance::Role::Hub,
        },
    };
    let web = dive_web::start_with(settings, &cfg, false).await.unwrap();
    let http = dive_http::https_client(&dive_pki::Pki::open(home.path()).unwrap()).unwrap();

    // Sign in: the UI's redirect, the IdP's page, the callback.
    let r = http
        .get(format!("{web_url}/auth/login"))
        .send()
        .await
        .unwrap();
    let (authorize, cookies) = location_and_cookies(&r);
    let login_cookie = cookies.join("; ");
    let pages =
        dive_idp::login_helper::login_at(&http, &idp.issuer, &authorize, "alice", PASSWORD, None)
            .await
            .unwrap();
    let r = http
        .get(&pages.location)
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, cookies) = location_and_cookies(&r);
    let session = cookies
        .into_iter()
        .find(|c| c.starts_with("__Host-dive_web_usa="))
        .unwrap();
    let before = refreshes(&http, &idp.issuer).await;

    // Each request refreshes with the refresh token the previous refresh returned.
    for _ in 0..3 {
        let (status, body) = home_page(http.clone(), web_url.clone(), session.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("alice"), "{body}");
    }
    assert_eq!(refreshes(&http, &idp.issuer).await, before + 3);

    // Concurrent requests of one session: one refresh at a time, none presents a used token.
    let all: Vec<_> = (0..6)
        .map(|_| tokio::spawn(home_page(http.clone(), web_url.clone(), session.clone())))
        .collect();
    for h in all {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "a concurrent request lost the session: {body}");
    }
    assert_eq!(refreshes(&http, &idp.issuer).await, before + 9);
    let (status, _) = home_page(http.clone(), web_url.clone(), session.clone()).await;
    assert_eq!(status, 200, "the login was not revoked as a replay");

    // The user signs out at the IdP (from another application, with the IdP's session cookie):
    // the IdP refuses the next refresh, and the UI ends its session and sends the user to sign in.
    let idp_session = pages.session_cookie.clone().expect("the IdP's SSO cookie");
    let r = http
        .get(format!("{}/logout", idp.issuer))
        .header("cookie", idp_session)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (status, _) = home_page(http.clone(), web_url.clone(), session.clone()).await;
    assert_eq!(status, 303, "a refused refresh ends the session");
    let (status, _) = home_page(http.clone(), web_url.clone(), session.clone()).await;
    assert_eq!(status, 303, "and the session is gone");

    web.stop().await;
    idp.stop().await;
}
