//! The real IdP over HTTPS on loopback: every grant, the login pages, and the error shapes.

use base64::Engine;
use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use dive_idp::{IdpConfig, Running};
use dive_jose::{Alg, Header, JwksVerifier, SigningKey, Validation};
use serde_json::{Value, json};

const REDIRECT: &str = "https://app.example/cb";
const PASSWORD: &str = "Correct-Horse-Battery-42!";

struct Env {
    _home: tempfile::TempDir,
    idp: Running,
    http: reqwest::Client,
    secret: String,
}

impl Env {
    fn issuer(&self) -> &str {
        &self.idp.issuer
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.idp.issuer)
    }

    fn req(&self, client: &str, username: &str) -> LoginRequest {
        LoginRequest {
            issuer: self.issuer().to_string(),
            client_id: client.to_string(),
            client_secret: (client == "web").then(|| self.secret.clone()),
            redirect_uri: REDIRECT.to_string(),
            scope: "openid profile coalition roles".to_string(),
            username: username.to_string(),
            password: PASSWORD.to_string(),
            totp_secret: None,
            extra: vec![],
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/token"))
            .basic_auth("web", Some(&self.secret))
            .form(form)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

async fn user(db: &dive_idp::Db, name: &str, clearance: &str) {
    dive_idp::users::create(
        db,
        &NewUser {
            username: name.to_string(),
            password: PASSWORD.to_string(),
            unique_id: None,
            clearance: clearance.to_string(),
            country: CountryCode::new("FRA").unwrap(),
            coi: vec!["NATO".to_string()],
            organization_type: OrganizationType::Mil,
            roles: vec!["user".to_string()],
        },
    )
    .await
    .unwrap();
}

async fn env() -> Env {
    let home = tempfile::tempdir().unwrap();
    let cfg = IdpConfig::new(CountryCode::new("FRA").unwrap(), home.path().to_path_buf());
    let idp = dive_idp::start(cfg, false).await.unwrap();
    let db = &idp.db;
    let (_, secret) = dive_idp::clients::create(
        db,
        &NewClient {
            client_id: "web".to_string(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.to_string()],
            post_logout_redirect_uris: vec!["https://app.example/bye".to_string()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
            ],
        },
    )
    .await
    .unwrap();
    dive_idp::clients::create(
        db,
        &NewClient {
            client_id: "spa".to_string(),
            auth: NewClientAuth::Public,
            redirect_uris: vec![REDIRECT.to_string()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        },
    )
    .await
    .unwrap();
    user(db, "alice", "NON CLASSIFIÉ").await;
    user(db, "bob", "SECRET DÉFENSE").await;
    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let http = dive_http::https_client(&pki).unwrap();
    Env {
        _home: home,
        idp,
        http,
        secret: secret.unwrap(),
    }
}

fn verifier(e: &Env, aud: &str) -> JwksVerifier {
    JwksVerifier::new(
        e.url("/jwks"),
        e.http.clone(),
        Validation::new(e.issuer()).with_audience(aud),
    )
}

#[tokio::test]
async fn discovery_jwks_and_client_credentials() {
    let e = env().await;
    let d: Value = e
        .http
        .get(e.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], e.issuer());
    assert_eq!(d["token_endpoint"], e.url("/token"));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));

    let (s, t) = e.token(&[("grant_type", "client_credentials")]).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let v = verifier(&e, "dive-fra");
    let claims = v.verify(t["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims["sub"], "web");
    assert!(claims["jti"].as_str().is_some());

    // Wrong secret: 401 invalid_client with a Basic challenge.
    let r = e
        .http
        .post(e.url("/token"))
        .basic_auth("web", Some("nope"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    // client_secret_post works too; repeated parameters are invalid_request.
    let r = e
        .http
        .post(e.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "web"),
            ("client_secret", e.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, b) = e
        .token(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "password"),
        ])
        .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
    let (s, b) = e.token(&[("grant_type", "password")]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    // Public clients cannot use client_credentials.
    let r = e
        .http
        .post(e.url("/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );

    // Introspection, then revocation makes it inactive; the revocation list shows the jti.
    let at = t["access_token"].as_str().unwrap();
    let intro = |tok: String| {
        let e = &e;
        async move {
            e.http
                .post(e.url("/introspect"))
                .basic_auth("web", Some(&e.secret))
                .form(&[("token", tok)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(intro(at.to_string()).await["active"], true);
    let r = e
        .http
        .post(e.url("/revoke"))
        .basic_auth("web", Some(&e.secret))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(intro(at.to_string()).await, json!({"active": false}));
    let list: Value = e
        .http
        .get(e.url("/revocations"))
        .basic_auth("web", Some(&e.secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jtis"][0]["jti"], claims["jti"]);
    // Unknown tokens are "revoked" with 200 as RFC 7009 requires.
    let r = e
        .http
        .post(e.url("/revoke"))
        .basic_auth("web", Some(&e.secret))
        .form(&[("token", "garbage")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    e.idp.stop().await;
}

#[tokio::test]
async fn private_key_jwt_client_authentication_and_replay() {
    let e = env().await;
    let key = SigningKey::generate("c1", Alg::ES256).unwrap();
    dive_idp::clients::create(
        &e.idp.db,
        &NewClient {
            client_id: "svc".to_string(),
            auth: NewClientAuth::PrivateKeyJwt(dive_jose::Jwks {
                keys: vec![key.public_jwk()],
            }),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
        },
    )
    .await
    .unwrap();
    let assertion = key
        .sign(
            "JWT",
            &json!({"iss": "svc", "sub": "svc", "aud": e.url("/token"), "jti": "j1",
                    "exp": dive_jose::now() + 60}),
        )
        .unwrap();
    let send = |a: String| {
        let e = &e;
        async move {
            e.http
                .post(e.url("/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send(assertion.clone()).await.status(), 200);
    let r = send(assertion).await;
    assert_eq!(r.status(), 401, "a replayed assertion is refused");
    assert!(r.text().await.unwrap().contains("already used"));
    // Signed by another key.
    let other = SigningKey::generate("c1", Alg::ES256).unwrap();
    let forged = other
        .sign(
            "JWT",
            &json!({"iss": "svc", "sub": "svc", "aud": e.url("/token"), "jti": "j2",
                    "exp": dive_jose::now() + 60}),
        )
        .unwrap();
    assert_eq!(send(forged).await.status(), 401);
    e.idp.stop().await;
}

#[tokio::test]
async fn code_flow_with_pkce_id_token_userinfo_and_code_reuse() {
    let e = env().await;
    let req = e.req("spa", "alice");
    let outcome = login_helper::authorize(&e.http, &req).await.unwrap();
    assert_eq!(outcome.iss.as_deref(), Some(e.issuer()));

    // Wrong verifier: invalid_grant.
    let bad = e
        .http
        .post(e.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", outcome.code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "spa"),
            ("code_verifier", "A".repeat(43).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // The failed attempt consumed the code; a fresh login gives a good one.
    let (tokens, outcome) = login_helper::login(&e.http, &req).await.unwrap();
    let id = verifier(&e, "spa")
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(id["nonce"], outcome.nonce.as_str());
    assert_eq!(id["acr"], "1");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert_eq!(id["clearance"], "NON CLASSIFIÉ");
    assert_eq!(id["countryOfAffiliation"], "FRA");
    assert_eq!(id["acpCOI"], json!(["NATO"]));
    assert_eq!(id["organizationType"], "MIL");
    assert!(id["auth_time"].as_i64().is_some());

    let at = tokens["access_token"].as_str().unwrap();
    let ui: Value = e
        .http
        .get(e.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["preferred_username"], "alice");
    assert_eq!(ui["uniqueID"], "alice@fra");
    assert_eq!(ui["roles"], json!(["user"]));

    // Code reuse: invalid_grant, and the tokens from the first redemption are revoked.
    let reuse = login_helper::exchange(&e.http, &req, &outcome).await;
    assert!(format!("{reuse:?}").contains("invalid_grant"), "{reuse:?}");
    let r = e
        .http
        .get(e.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, b) = e
        .token(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    e.idp.stop().await;
}

#[tokio::test]
async fn authorization_request_errors_never_redirect_to_unregistered_uris() {
    let e = env().await;
    let mut req = e.req("spa", "alice");
    req.redirect_uri = "https://evil.example/cb".to_string();
    let (url, ..) = login_helper::authorization_url(&req);
    let r = e.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("not registered"));

    // Public client without PKCE: redirected back with invalid_request (the URI is registered).
    let url = format!(
        "{}?response_type=code&client_id=spa&redirect_uri={}&scope=openid&state=s1",
        e.url("/authorize"),
        REDIRECT
    );
    let r = e.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(REDIRECT) && loc.contains("error=invalid_request"),
        "{loc}"
    );
    assert!(loc.contains("state=s1"));
    // plain PKCE refused.
    let url = format!(
        "{}?response_type=code&client_id=spa&redirect_uri={REDIRECT}&scope=openid\
         &code_challenge={}&code_challenge_method=plain",
        e.url("/authorize"),
        "a".repeat(43)
    );
    let loc = e.http.get(url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(loc.contains("error=invalid_request"), "{loc}");

    // prompt=none without a session: login_required.
    req.redirect_uri = REDIRECT.to_string();
    req.extra = vec![("prompt".into(), "none".into())];
    let err = login_helper::authorize(&e.http, &req).await.unwrap_err();
    assert!(err.to_string().contains("login_required"), "{err}");
    e.idp.stop().await;
}

#[tokio::test]
async fn refresh_rotation_and_reuse_revokes_the_family() {
    let e = env().await;
    let req = e.req("web", "alice");
    let (tokens, _) = login_helper::login(&e.http, &req).await.unwrap();
    let r1 = tokens["refresh_token"].as_str().unwrap();
    let (s, t2) = e
        .token(&[("grant_type", "refresh_token"), ("refresh_token", r1)])
        .await;
    assert_eq!(s, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    let at2 = t2["access_token"].as_str().unwrap();
    assert_eq!(
        e.http
            .get(e.url("/userinfo"))
            .bearer_auth(at2)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Replaying r1: reuse detected, the whole family (r2 and its access token) dies.
    let (s, b) = e
        .token(&[("grant_type", "refresh_token"), ("refresh_token", r1)])
        .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert!(b["error_description"].as_str().unwrap().contains("reuse"));
    let (s, _) = e
        .token(&[("grant_type", "refresh_token"), ("refresh_token", r2)])
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        e.http
            .get(e.url("/userinfo"))
            .bearer_auth(at2)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    e.idp.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_issue_once_and_end_the_family() {
    let e = env().await;
    let req = e.req("web", "alice");
    let (tokens, _) = login_helper::login(&e.http, &req).await.unwrap();
    let r1 = tokens["refresh_token"].as_str().unwrap().to_string();
    // Eight clients race with the same refresh token: the writes are group-committed, possibly
    // in one transaction, and exactly one claim of the token may win.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, secret, r1) = (
            e.http.clone(),
            e.url("/token"),
            e.secret.clone(),
            r1.clone(),
        );
        tasks.spawn(async move {
            let r = http
                .post(url)
                .basic_auth("web", Some(&secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &r1)])
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let answers = tasks.join_all().await;
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (s, b) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(
            (*s, b["error"].as_str()),
            (400, Some("invalid_grant")),
            "{b}"
        );
    }
    // The losers were reuse: the family ended, so the winner's new refresh token is dead too.
    let r2 = won[0]["refresh_token"].as_str().unwrap();
    let (s, b) = e
        .token(&[("grant_type", "refresh_token"), ("refresh_token", r2)])
        .await;
    assert_eq!(s, 400, "{b}");
    e.idp.stop().await;
}

#[tokio::test]
async fn secret_users_enrol_totp_then_need_it_with_replay_protection_and_recovery_codes() {
    let e = env().await;
    // Enrolment, the second login and the replay attempt must fall in one 30-second TOTP step:
    // across a step boundary the replay attempt would legitimately get a fresh code.
    let into_step = dive_jose::now().rem_euclid(30);
    if into_step > 10 {
        tokio::time::sleep(std::time::Duration::from_secs((30 - into_step) as u64)).await;
    }
    let mut req = e.req("web", "bob");
    let (tokens, outcome) = login_helper::login(&e.http, &req).await.unwrap();
    let secret = outcome.enrolled_totp_secret.clone().expect("enrolled now");
    assert_eq!(outcome.recovery_codes.len(), 10);
    let id = verifier(&e, "web")
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(id["acr"], "2");
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
    assert_eq!(id["clearance"], "SECRET DÉFENSE");

    // Next login asks for the code; the helper uses the next step since the current was used.
    req.totp_secret = Some(secret.clone());
    let (_, again) = login_helper::login(&e.http, &req).await.unwrap();
    assert!(again.enrolled_totp_secret.is_none());

    // A used code (both current and next step are now used) is refused: replay.
    let mut no_code = req.clone();
    no_code.totp_secret = Some(secret.clone());
    let err = login_helper::authorize(&e.http, &no_code)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Invalid or already used code"),
        "{err}"
    );

    // A recovery code works once.
    let page = start_login(&e, &req).await;
    let r = post_login(&e, &page, "bob", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let code = outcome.recovery_codes[0].as_str();
    let r = e
        .http
        .post(e.url("/login/otp"))
        .header("cookie", &page.2)
        .form(&[
            ("request_id", page.0.as_str()),
            ("csrf", page.1.as_str()),
            ("code", code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    e.idp.stop().await;
}

/// (request_id, csrf, csrf cookie)
async fn start_login(e: &Env, req: &LoginRequest) -> (String, String, String) {
    let (url, ..) = login_helper::authorization_url(req);
    let r = e.http.get(url).send().await.unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    (
        login_helper::hidden_value(&html, "request_id").unwrap(),
        login_helper::hidden_value(&html, "csrf").unwrap(),
        cookie,
    )
}

async fn post_login(
    e: &Env,
    page: &(String, String, String),
    user: &str,
    password: &str,
) -> reqwest::Response {
    e.http
        .post(e.url("/login"))
        .header("cookie", &page.2)
        .form(&[
            ("request_id", page.0.as_str()),
            ("csrf", page.1.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn csrf_brute_force_and_no_user_enumeration() {
    let e = env().await;
    let req = e.req("web", "alice");
    let page = start_login(&e, &req).await;
    // Wrong CSRF token, or the right token without its cookie: refused.
    let r = e
        .http
        .post(e.url("/login"))
        .header("cookie", &page.2)
        .form(&[
            ("request_id", page.0.as_str()),
            ("csrf", "forged"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = e
        .http
        .post(e.url("/login"))
        .form(&[
            ("request_id", page.0.as_str()),
            ("csrf", page.1.as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Same message for a wrong password and an unknown user.
    let body_of = |r: reqwest::Response| async move { r.text().await.unwrap() };
    let wrong = body_of(post_login(&e, &page, "alice", "Wrong-Password-123!x").await).await;
    let unknown = body_of(post_login(&e, &page, "nobody", "Wrong-Password-123!x").await).await;
    assert!(wrong.contains("Invalid username or password."));
    assert!(unknown.contains("Invalid username or password."));

    // Five failures lock the account: even the right password waits now.
    for _ in 0..4 {
        post_login(&e, &page, "alice", "Wrong-Password-123!x").await;
    }
    let locked = body_of(post_login(&e, &page, "alice", PASSWORD).await).await;
    assert!(
        locked.contains("Too many failed attempts. Try again in"),
        "{locked}"
    );
    // Unknown names lock the same way (no enumeration through lockout).
    for _ in 0..4 {
        post_login(&e, &page, "nobody", "Wrong-Password-123!x").await;
    }
    let locked_unknown = body_of(post_login(&e, &page, "nobody", PASSWORD).await).await;
    assert!(locked_unknown.contains("Too many failed attempts"));
    e.idp.stop().await;
}

#[tokio::test]
async fn forged_tokens_are_refused_and_logout_revokes() {
    let e = env().await;
    let req = e.req("web", "alice");
    let (tokens, outcome) = login_helper::login(&e.http, &req).await.unwrap();
    let at = tokens["access_token"].as_str().unwrap();
    let payload = at.split('.').nth(1).unwrap();
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let kid = dive_jose::decode_header(at).unwrap().kid.unwrap();
    // alg none.
    let none = format!(
        "{}.{payload}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"}))
    );
    // HS256 signed with the public key bytes (key confusion).
    let jwks: Value = e
        .http
        .get(e.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap();
    let header = Header {
        alg: "HS256".to_string(),
        typ: Some("at+jwt".to_string()),
        kid: Some(kid.clone()),
    };
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let hs = dive_jose::sign_with(&header, &claims, |input| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, n.as_bytes());
        Ok(aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec())
    })
    .unwrap();
    // Expired token signed by a stranger's key under our kid.
    let stranger = SigningKey::generate(kid, Alg::RS256).unwrap();
    let mut c2 = claims.clone();
    c2["exp"] = json!(dive_jose::now() - 3600);
    let expired = stranger.sign("at+jwt", &c2).unwrap();
    for bad in [none, hs, expired] {
        let r = e
            .http
            .get(e.url("/userinfo"))
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // The real token works, and prompt=none reuses the session.
    assert_eq!(
        e.http
            .get(e.url("/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut silent = req.clone();
    silent.extra = vec![("prompt".into(), "none".into())];
    let (url, ..) = login_helper::authorization_url(&silent);
    let cookie = outcome.session_cookie.clone().unwrap();
    let r = e
        .http
        .get(url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"].to_str().unwrap().contains("code="));

    // Logout with an unregistered post-logout URI is refused; with a registered one it
    // redirects and revokes the user's tokens.
    let id = tokens["id_token"].as_str().unwrap();
    let r = e
        .http
        .get(format!(
            "{}?id_token_hint={id}&post_logout_redirect_uri=https://evil.example/",
            e.url("/logout")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = e
        .http
        .get(format!(
            "{}?id_token_hint={id}&post_logout_redirect_uri=https://app.example/bye&state=z",
            e.url("/logout")
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "https://app.example/bye?state=z");
    assert_eq!(
        e.http
            .get(e.url("/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (s, _) = e
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(s, 400);
    e.idp.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_old_keys_published_and_relying_parties_follow() {
    let e = env().await;
    let v = verifier(&e, "dive-fra").with_min_refresh_interval(std::time::Duration::ZERO);
    let (_, t1) = e.token(&[("grant_type", "client_credentials")]).await;
    let old = t1["access_token"].as_str().unwrap().to_string();
    v.verify(&old).await.unwrap();
    let new_kid = e.idp.keys.rotate(&e.idp.db).await.unwrap();
    let jwks: Value = e
        .http
        .get(e.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "old key still published"
    );
    let (_, t2) = e.token(&[("grant_type", "client_credentials")]).await;
    let new = t2["access_token"].as_str().unwrap();
    assert_eq!(dive_jose::decode_header(new).unwrap().kid.unwrap(), new_kid);
    // The verifier has never seen the new kid: it refreshes the JWKS and accepts.
    v.verify(new).await.unwrap();
    v.verify(&old).await.unwrap();
    // Wrong issuer or audience is refused by the relying party.
    let other = JwksVerifier::new(
        e.url("/jwks"),
        e.http.clone(),
        Validation::new(e.issuer()).with_audience("dive-deu"),
    );
    assert!(other.verify(new).await.is_err());
    e.idp.stop().await;
}

#[tokio::test]
async fn max_age_prompt_login_and_acr_values_force_a_new_login() {
    let e = env().await;
    let req = e.req("web", "alice");
    let (_, outcome) = login_helper::login(&e.http, &req).await.unwrap();
    let cookie = outcome.session_cookie.unwrap();
    let status_with = |extra: Vec<(String, String)>| {
        let mut r = req.clone();
        r.extra = extra;
        let (url, ..) = login_helper::authorization_url(&r);
        let e = &e;
        let cookie = cookie.clone();
        async move {
            e.http
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status_with(vec![]).await,
        303,
        "the session answers at once"
    );
    assert_eq!(
        status_with(vec![("max_age".into(), "3600".into())]).await,
        303
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        status_with(vec![("max_age".into(), "0".into())]).await,
        200,
        "max_age=0 shows the login page"
    );
    assert_eq!(
        status_with(vec![("prompt".into(), "login".into())]).await,
        200
    );
    assert_eq!(
        status_with(vec![("acr_values".into(), "2".into())]).await,
        200,
        "a password-only session does not satisfy acr 2"
    );
    // acr_values=2 makes even an UNCLASSIFIED user enrol and use TOTP.
    let mut strong = req.clone();
    strong.extra = vec![("acr_values".into(), "2".into())];
    let (tokens, o) = login_helper::login(&e.http, &strong).await.unwrap();
    assert!(o.enrolled_totp_secret.is_some());
    let id = verifier(&e, "web")
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(id["acr"], "2");
    e.idp.stop().await;
}
