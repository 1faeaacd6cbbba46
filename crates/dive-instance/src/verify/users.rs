//! Checks of the test users: each logs in through the IdP's real pages (with TOTP where their
//! clearance requires it, enrolling at the first login), its access token is verified against
//! the JWKS and its coalition claims compared with the user's record, and the policy engine,
//! fed those claims and the instance's data, decides as it should.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dive_core::{Clearance, Equivalency, SecurityLabel};
use dive_idp::login_helper::{LoginRequest, login};
use dive_idp::users::User;
use dive_policy::{Input, Pdp, RequestContext};
use serde_json::{Value, json};

use super::{Ctx, Outcome, Recorder, UserToken};
use crate::secrets;

const SCOPE: &str = "openid profile coalition roles";
/// Test-user logins in flight at once.
const LOGIN_CONCURRENCY: usize = 2;

pub async fn run(ctx: &mut Ctx, rec: &mut Recorder<'_>) {
    let Some(http) = ctx.http.clone() else {
        return;
    };
    let paths = ctx.paths.clone();
    let cfg = ctx.cfg.clone();

    // Who the test users are: the password file, and their records in the IdP's database.
    let mut users: Vec<(User, String)> = Vec::new();
    rec.check(
        "users.present",
        "the test users exist, are enabled, and their passwords are recorded 0600",
        async {
            let file = paths.test_users();
            crate::secrets::check_private(&file).map_err(|e| e.to_string())?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let passwords: BTreeMap<String, String> =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let db = dive_idp::Db::open(&paths.idp_db().display().to_string())
                .await
                .map_err(|e| e.to_string())?;
            let all = dive_idp::users::list(&db).await;
            db.pool.close().await;
            let all = all.map_err(|e| e.to_string())?;
            let mut missing = Vec::new();
            for (name, pw) in &passwords {
                match all.iter().find(|u| &u.username == name) {
                    Some(u) if u.enabled => users.push((u.clone(), pw.clone())),
                    Some(_) => missing.push(format!("{name} (disabled)")),
                    None => missing.push(format!("{name} (not in the IdP)")),
                }
            }
            if passwords.is_empty() {
                return Err(format!("{} lists no users", file.display()));
            }
            if !missing.is_empty() {
                return Err(format!("not usable: {}", missing.join(", ")));
            }
            Ok::<_, String>(format!(
                "{} users, passwords in {}",
                users.len(),
                file.display()
            ))
        },
    )
    .await;
    if users.is_empty() {
        return;
    }

    let jwks_uri = ctx
        .discovery
        .as_ref()
        .and_then(|d| d["jwks_uri"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{}/jwks", cfg.urls.issuer));
    let verifier = Arc::new(dive_jose::JwksVerifier::new(
        jwks_uri,
        http.clone(),
        dive_jose::Validation::new(&cfg.urls.issuer)
            .with_audience(cfg.audience())
            .with_typ("at+jwt"),
    ));
    let web = secrets::read(&paths, "web").ok();

    // Logins run two at a time: each costs the IdP a password hash (argon2id, 19 MiB), and more
    // at once would only raise the IdP's memory high-water mark on a 2-core machine.
    let permits = Arc::new(tokio::sync::Semaphore::new(LOGIN_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (user, password) in users.clone() {
        let admin = user.roles.iter().any(|r| r == dive_core::ADMIN_ROLE);
        // The admin logs in through the web client (confidential), the others through the CLI
        // client (public, PKCE only): both registrations get exercised.
        let (client_id, client_secret, redirect_uri) = match (&web, admin) {
            (Some(w), true) => (
                w.client_id.clone(),
                Some(w.client_secret.clone()),
                format!("{}/auth/callback", cfg.urls.web),
            ),
            _ => (
                secrets::CLI_CLIENT_ID.to_string(),
                None,
                secrets::CLI_REDIRECT_URI.to_string(),
            ),
        };
        let req = LoginRequest {
            issuer: cfg.urls.issuer.clone(),
            client_id,
            client_secret,
            redirect_uri,
            scope: SCOPE.to_string(),
            username: user.username.clone(),
            password,
            totp_secret: user.totp_secret.clone(),
            extra: vec![],
        };
        let http = http.clone();
        let verifier = verifier.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let t0 = Instant::now();
            let r = login_and_verify(&http, &verifier, &user, req).await;
            (user, r, t0.elapsed().as_millis() as u64)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            results.push(r);
        }
    }
    results.sort_by(|a, b| a.0.username.cmp(&b.0.username));
    let mut enrolled: BTreeMap<String, String> = BTreeMap::new();
    for (user, r, ms) in &results {
        let name = &user.username;
        let mfa = user.requires_otp();
        let login_title = if mfa {
            format!("{name} logs in with password and TOTP")
        } else {
            format!("{name} logs in with a password")
        };
        match r {
            Err(LoginFailure::Login(e)) => {
                rec.record(
                    format!("users.{name}.login"),
                    login_title,
                    Outcome::Fail(e.clone()),
                    *ms,
                );
                rec.record(
                    format!("users.{name}.claims"),
                    format!("{name}'s token carries the coalition claims"),
                    Outcome::Skip("no token (login failed)".into()),
                    0,
                );
            }
            Err(LoginFailure::Token(e)) => {
                rec.record(
                    format!("users.{name}.login"),
                    login_title,
                    Outcome::Pass("logged in".into()),
                    *ms,
                );
                rec.record(
                    format!("users.{name}.claims"),
                    format!("{name}'s token carries the coalition claims"),
                    Outcome::Fail(e.clone()),
                    0,
                );
            }
            Ok(ok) => {
                if let Some(s) = &ok.enrolled {
                    enrolled.insert(name.clone(), s.clone());
                }
                rec.record(
                    format!("users.{name}.login"),
                    login_title,
                    Outcome::Pass(format!(
                        "acr {}, amr {}{}",
                        ok.token.claims["acr"],
                        ok.token.claims["amr"],
                        if ok.enrolled.is_some() {
                            " (TOTP enrolled now)"
                        } else {
                            ""
                        }
                    )),
                    *ms,
                );
                rec.record(
                    format!("users.{name}.claims"),
                    format!("{name}'s token carries the coalition claims"),
                    Outcome::Pass(ok.claims_summary.clone()),
                    0,
                );
                ctx.tokens.insert(name.clone(), ok.token.clone());
            }
        }
    }
    if !enrolled.is_empty() {
        record_totp(&paths, &cfg, &enrolled);
    }

    // MFA is enforced: a user cleared above UNCLASSIFIED cannot finish a login without TOTP.
    if let Some((user, password)) = users.iter().find(|(u, _)| u.requires_otp()) {
        let req = LoginRequest {
            issuer: cfg.urls.issuer.clone(),
            client_id: secrets::CLI_CLIENT_ID.to_string(),
            client_secret: None,
            redirect_uri: secrets::CLI_REDIRECT_URI.to_string(),
            scope: SCOPE.to_string(),
            username: user.username.clone(),
            password: password.clone(),
            totp_secret: None,
            extra: vec![],
        };
        let enrolled_now = user.totp_secret.is_some() || enrolled.contains_key(&user.username);
        let name = user.username.clone();
        rec.check(
            "users.mfa_enforced",
            format!("{name} cannot log in with the password alone"),
            async {
                if !enrolled_now {
                    return Outcome::Skip(format!("{name} is not enrolled in TOTP yet"));
                }
                match login(&http, &req).await {
                    Ok(_) => {
                        Outcome::Fail(format!("{name} obtained tokens without a second factor"))
                    }
                    Err(e) if e.to_string().contains("asks for a TOTP code") => {
                        Outcome::Pass("the IdP asked for a TOTP code after the password".into())
                    }
                    Err(e) => Outcome::Fail(format!("unexpected answer: {e}")),
                }
            },
        )
        .await;
    }

    // UserInfo answers for a token and agrees with it.
    if let Some((name, token)) = ctx.tokens.iter().next() {
        let url = ctx
            .discovery
            .as_ref()
            .and_then(|d| d["userinfo_endpoint"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{}/userinfo", cfg.urls.issuer));
        let token = token.clone();
        let name = name.clone();
        rec.check(
            "users.userinfo",
            format!("UserInfo answers {name}'s access token with the same subject"),
            async {
                let r = http
                    .get(&url)
                    .bearer_auth(&token.access_token)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                let status = r.status();
                let body: Value = r.json().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("GET {url}: HTTP {status}: {body}"));
                }
                if body["sub"] != token.claims["sub"]
                    || body["uniqueID"] != token.claims["uniqueID"]
                {
                    return Err(format!(
                        "sub/uniqueID {} / {} differ from the token's {} / {}",
                        body["sub"],
                        body["uniqueID"],
                        token.claims["sub"],
                        token.claims["uniqueID"]
                    ));
                }
                Ok::<_, String>(format!("sub {}", body["sub"]))
            },
        )
        .await;
    }

    // The policy engine, fed each user's real token claims and the instance's data.
    let pdp = ctx.pdp();
    for (user, _) in &users {
        let name = &user.username;
        let title = format!("{name}'s token gets the right decisions from the policy");
        let Some(token) = ctx.tokens.get(name) else {
            rec.record(
                format!("users.{name}.decisions"),
                title,
                Outcome::Skip("no token (login failed)".into()),
                0,
            );
            continue;
        };
        let outcome = match &pdp {
            Err(e) => Outcome::Fail(e.clone()),
            Ok(pdp) => decisions(pdp, user, &token.claims).into(),
        };
        rec.record(format!("users.{name}.decisions"), title, outcome, 0);
    }
}

struct LoggedIn {
    token: UserToken,
    enrolled: Option<String>,
    claims_summary: String,
}

enum LoginFailure {
    Login(String),
    Token(String),
}

async fn login_and_verify(
    http: &reqwest::Client,
    verifier: &dive_jose::JwksVerifier,
    user: &User,
    req: LoginRequest,
) -> Result<LoggedIn, LoginFailure> {
    if user.requires_otp() && user.totp_secret.is_some() {
        wait_for_fresh_totp_step(user.totp_last_step).await;
    }
    let (tokens, outcome) = login(http, &req)
        .await
        .map_err(|e| LoginFailure::Login(e.to_string()))?;
    let access = tokens["access_token"]
        .as_str()
        .ok_or_else(|| LoginFailure::Token(format!("no access_token in {tokens}")))?
        .to_string();
    let claims = verifier
        .verify(&access)
        .await
        .map_err(|e| LoginFailure::Token(format!("the access token does not verify: {e}")))?;
    let claims = Value::Object(claims);
    let summary = compare_claims(user, &claims).map_err(LoginFailure::Token)?;
    Ok(LoggedIn {
        token: UserToken {
            access_token: access,
            claims,
        },
        enrolled: outcome.enrolled_totp_secret,
        claims_summary: summary,
    })
}

/// TOTP codes are single use per 30 s step (replay protection): when an earlier login already
/// used the steps a code can be made for now, wait for the next step instead of sending a code
/// the IdP would refuse (and count as a failure).
async fn wait_for_fresh_totp_step(last_step: i64) {
    let now = dive_idp::util::now();
    let step = dive_idp::totp::STEP_SECS;
    // The helper tries the current step, then the next one: one of them must be unused.
    if now / step + 1 > last_step {
        return;
    }
    let wait = (last_step * step - now).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
}

/// The verified claims against the user's record.
fn compare_claims(user: &User, c: &Value) -> Result<String, String> {
    let mut wrong = Vec::new();
    let mfa = user.requires_otp();
    for (claim, want) in [
        ("uniqueID", json!(user.unique_id)),
        ("clearance", json!(user.clearance)),
        ("countryOfAffiliation", json!(user.country.as_str())),
        (
            "organizationType",
            json!(dive_idp::users::org_str(user.organization_type)),
        ),
        ("acr", json!(if mfa { "2" } else { "1" })),
    ] {
        if c[claim] != want {
            wrong.push(format!("{claim} is {}, expected {want}", c[claim]));
        }
    }
    let mut coi: Vec<String> = c["acpCOI"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    coi.sort();
    let mut want_coi = user.coi.clone();
    want_coi.sort();
    if coi != want_coi {
        wrong.push(format!("acpCOI is {}, expected {want_coi:?}", c["acpCOI"]));
    }
    let amr: Vec<&str> = c["amr"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if amr.contains(&"otp") != mfa || !amr.contains(&"pwd") {
        wrong.push(format!(
            "amr is {}, expected pwd{}",
            c["amr"],
            if mfa { "+otp" } else { "" }
        ));
    }
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    Ok(format!(
        "uniqueID {}, clearance {}, country {}, acpCOI {:?}, {}",
        user.unique_id,
        user.clearance,
        user.country,
        user.coi,
        dive_idp::users::org_str(user.organization_type)
    ))
}

/// One permitted and one forbidden request for the user, decided from the token's claims.
fn decisions(pdp: &Pdp, user: &User, claims: &Value) -> Result<String, String> {
    let eq = Equivalency::builtin();
    let subject =
        dive_core::SubjectAttributes::from_claims(claims, eq).map_err(|e| e.to_string())?;
    let level = subject.clearance;
    let industry = user.organization_type == dive_core::OrganizationType::Industry;
    let decide = |label: SecurityLabel| {
        let r = dive_core::ResourceAttributes::from_label("verify-doc", label, false);
        pdp.decide(&Input::new(
            &subject,
            "read",
            &r,
            &RequestContext::default(),
        ))
    };
    let own = SecurityLabel::new(level, [user.country]).with_releasable_to_industry(true);
    let allowed = decide(own);
    if !allowed.allow {
        return Err(format!(
            "a {level} document releasable to {} was denied: {}",
            user.country, allowed.reason
        ));
    }
    let (forbidden, expect) = if industry {
        (SecurityLabel::new(level, [user.country]), "Industry access")
    } else if let Some(above) = Clearance::ALL.iter().find(|c| **c > level) {
        (
            SecurityLabel::new(*above, [user.country]).with_releasable_to_industry(true),
            "Insufficient clearance",
        )
    } else {
        let other = dive_core::CountryCode::all()
            .find(|c| *c != user.country)
            .ok_or("no other country")?;
        (
            SecurityLabel::new(level, [other]).with_releasable_to_industry(true),
            "Not releasable to your country",
        )
    };
    let denied = decide(forbidden);
    if denied.allow || !denied.reason.starts_with(expect) {
        return Err(format!(
            "expected a deny starting {expect:?}, got allow={} reason={}",
            denied.allow, denied.reason
        ));
    }
    Ok(format!("{level} allowed; denied: {}", denied.reason))
}

/// Record newly enrolled TOTP secrets (0600) so the operator can add them to an authenticator.
fn record_totp(
    paths: &crate::InstancePaths,
    cfg: &crate::InstanceConfig,
    enrolled: &BTreeMap<String, String>,
) {
    let file = paths.test_users_totp();
    let mut all: BTreeMap<String, Value> = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for (user, secret) in enrolled {
        all.insert(
            user.clone(),
            json!({
                "secret": secret,
                "otpauth": dive_idp::totp::otpauth_uri(&cfg.urls.issuer, user, secret),
            }),
        );
    }
    let text = serde_json::to_string_pretty(&all).unwrap_or_default() + "\n";
    if let Err(e) = crate::config::write_atomic(&file, text.as_bytes(), 0o600) {
        tracing::warn!("cannot record TOTP secrets in {}: {e}", file.display());
    }
}
