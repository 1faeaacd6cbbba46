//! An instance deployed by the real `dive` binary in a temporary DIVE_HOME, and clients of its
//! services: shared by the end-to-end tests (hub, federation).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Env {
    _tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub dir: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new().prefix("dve").tempdir().unwrap();
        let home = tmp.path().join("h");
        let dir = tmp.path().join("s");
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            _tmp: tmp,
            home,
            dir,
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dive"));
        c.arg("--home").arg(&self.home).args(args);
        c.current_dir(&self.dir).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("DIVE_") {
                c.env_remove(k);
            }
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn json(&self, rel: &str) -> Value {
        let p = self.home.join(rel);
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Never leave supervisors behind, whatever the test did.
        let _ = Command::new(env!("CARGO_BIN_EXE_dive"))
            .arg("--home")
            .arg(&self.home)
            .args(["-q", "nuke", "all", "--confirm"])
            .output();
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn download(&self, token: &str, id: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}/api/resources/{id}/download", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.bytes().await.unwrap().to_vec())
    }

    pub async fn upload(&self, token: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, Value) {
        let boundary = "dive-e2e-boundary-7f3a9c";
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let r = self
            .http
            .post(format!("{}/api/resources", self.base))
            .bearer_auth(token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

/// The `dive-cli` client's login of `user` at `issuer`, as the tests script it.
fn login_request(
    issuer: &str,
    user: &str,
    password: &str,
    totp: Option<String>,
) -> dive_idp::login_helper::LoginRequest {
    dive_idp::login_helper::LoginRequest {
        issuer: issuer.to_string(),
        client_id: "dive-cli".to_string(),
        client_secret: None,
        redirect_uri: "http://127.0.0.1/callback".to_string(),
        scope: "openid profile coalition".to_string(),
        username: user.to_string(),
        password: password.to_string(),
        totp_secret: totp,
        extra: vec![],
    }
}

/// The access token and its claims.
fn access_token(tokens: &Value) -> (String, Value) {
    let token = tokens["access_token"].as_str().unwrap().to_string();
    (token, claims_of(&tokens["access_token"]))
}

pub async fn login(
    http: &reqwest::Client,
    issuer: &str,
    user: &str,
    password: &str,
    totp: Option<String>,
) -> (String, Value) {
    let req = login_request(issuer, user, password, totp);
    let (tokens, _) = dive_idp::login_helper::login(http, &req)
        .await
        .unwrap_or_else(|e| panic!("login as {user}: {e}"));
    access_token(&tokens)
}

/// `user` of instance `home` logs in at `issuer` through the upstream `<home>-idp` (password and
/// TOTP asked at the home IdP). Errors are returned: tests check refusals too.
pub async fn brokered_login(
    http: &reqwest::Client,
    issuer: &str,
    home: &str,
    user: &str,
    password: &str,
    totp: Option<String>,
) -> Result<(String, Value), String> {
    let req = dive_idp::login_helper::BrokerRequest {
        login: login_request(issuer, user, password, totp),
        alias: format!("{}-idp", home.to_ascii_lowercase()),
        use_hint: true,
        local_totp_secret: None,
    };
    let (tokens, _) = dive_idp::login_helper::broker_login(http, &req)
        .await
        .map_err(|e| e.to_string())?;
    Ok(access_token(&tokens))
}

/// The last TOTP step `user` of `instance` has used.
async fn totp_last_step(home: &Path, instance: &str, user: &str) -> i64 {
    let db = dive_idp::Db::open(
        &home
            .join(format!(
                "instances/{}/idp.db",
                instance.to_ascii_lowercase()
            ))
            .display()
            .to_string(),
    )
    .await
    .unwrap();
    let last = dive_idp::users::find_by_username(&db, user)
        .await
        .unwrap()
        .unwrap()
        .totp_last_step;
    db.pool.close().await;
    last
}

/// Sleep until step `step` begins (and a little more), if it is in the future.
async fn sleep_until_step(step: i64) {
    let now = dive_idp::util::now();
    let wait = (step * dive_idp::totp::STEP_SECS - now).max(0) as u64;
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    }
}

/// TOTP codes are single use per 30 s step, and the deployments' verifications have just used
/// this user's: wait, if need be, until the login helper (current step, then the next) can make
/// an unused one, as verify does.
pub async fn wait_for_fresh_totp_step(home: &Path, instance: &str, user: &str) {
    let last = totp_last_step(home, instance, user).await;
    if dive_idp::util::now() / dive_idp::totp::STEP_SECS + 1 > last {
        return;
    }
    sleep_until_step(last).await;
}

/// As [`wait_for_fresh_totp_step`] for a person typing the current step's code (no fallback to
/// the next step): wait until the current step is unused.
pub async fn wait_for_unused_current_totp_step(home: &Path, instance: &str, user: &str) {
    let last = totp_last_step(home, instance, user).await;
    if dive_idp::util::now() / dive_idp::totp::STEP_SECS > last {
        return;
    }
    sleep_until_step(last + 1).await;
}

pub fn claims_of(token: &Value) -> Value {
    use base64::Engine;
    let p = token.as_str().unwrap().split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}
