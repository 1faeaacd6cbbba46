//! A real IdP and a real KAS over HTTPS on loopback, in one temporary DIVE_HOME.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper::{self, LoginRequest};
use dive_idp::users::NewUser;
use dive_idp::{IdpConfig, Running};
use dive_kas::{KasConfig, KeyAlgorithm};
use dive_ztdf::{
    EncryptOptions, KasPublicKey, KeyAccessObject, KeyAccessPlan, Recipient, TdfReader,
};
use serde_json::{Value, json};

pub const REDIRECT: &str = "https://app.example/cb";
pub const PASSWORD: &str = "Correct-Horse-Battery-42!";

pub struct Env {
    /// TOTP secrets enrolled at first login, by user.
    pub totp: std::sync::Mutex<std::collections::HashMap<String, String>>,
    pub home: tempfile::TempDir,
    pub idp: Running,
    pub kas: dive_kas::Running,
    pub http: reqwest::Client,
    pub secret: String,
}

/// The repository's policy data directory (the embedded defaults' source).
pub fn repo_policy_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/data")
}

/// Write the instance's policy data: the defaults, with `issuers` as the trusted issuers.
pub fn write_policy_data(home: &Path, instance: &str, issuers: &[(&str, &str)]) -> PathBuf {
    let dir = home
        .join("instances")
        .join(instance.to_lowercase())
        .join("policy");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(repo_policy_data()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let doc: serde_json::Map<String, Value> = issuers
        .iter()
        .map(|(iss, inst)| (iss.to_string(), json!({"instance": inst, "name": "test"})))
        .collect();
    let tmp = dir.join("trusted_issuers.json.tmp");
    std::fs::write(&tmp, serde_json::to_string(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("trusted_issuers.json")).unwrap();
    dir
}

pub async fn add_user(idp: &Running, name: &str, clearance: &str, country: &str, coi: &[&str]) {
    dive_idp::users::create(
        &idp.db,
        &NewUser {
            username: name.into(),
            password: PASSWORD.into(),
            unique_id: None,
            clearance: clearance.into(),
            country: CountryCode::new(country).unwrap(),
            coi: coi.iter().map(|s| s.to_string()).collect(),
            organization_type: OrganizationType::Mil,
            roles: vec!["user".into()],
        },
    )
    .await
    .unwrap();
}

/// A confidential client for logins and client credentials; returns its secret.
pub async fn add_client(idp: &Running, id: &str) -> String {
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: id.into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::ClientCredentials],
        },
    )
    .await
    .unwrap();
    secret.unwrap()
}

pub async fn login(http: &reqwest::Client, issuer: &str, secret: &str, user: &str) -> String {
    login_totp(http, issuer, secret, user, None).await.0
}

/// Log in (enrolling TOTP on the first login); returns the access token and the TOTP secret.
pub async fn login_totp(
    http: &reqwest::Client,
    issuer: &str,
    secret: &str,
    user: &str,
    totp: Option<String>,
) -> (String, Option<String>) {
    let req = LoginRequest {
        issuer: issuer.into(),
        client_id: "web".into(),
        client_secret: Some(secret.into()),
        redirect_uri: REDIRECT.into(),
        scope: "openid profile coalition roles".into(),
        username: user.into(),
        password: PASSWORD.into(),
        totp_secret: totp.clone(),
        extra: vec![],
    };
    let (tokens, outcome) = login_helper::login(http, &req).await.unwrap();
    (
        tokens["access_token"].as_str().unwrap().to_string(),
        outcome.enrolled_totp_secret.or(totp),
    )
}

/// IdP (USA) with users alice (SECRET, FVEY), carol (CONFIDENTIAL, FVEY); the KAS trusting it and
/// reading its revocation list with its own client credentials.
pub async fn env() -> Env {
    env_with_database(None).await
}

/// [`env`] with the KAS audit log at `database` (a `postgres://` URL) instead of SQLite.
pub async fn env_with_database(database: Option<String>) -> Env {
    let home = tempfile::tempdir().unwrap();
    let usa = CountryCode::new("USA").unwrap();
    let idp = dive_idp::start(IdpConfig::new(usa, home.path().to_path_buf()), false)
        .await
        .unwrap();
    let secret = add_client(&idp, "web").await;
    let kas_secret = add_client(&idp, "kas").await;
    add_user(&idp, "alice", "SECRET", "USA", &["FVEY"]).await;
    add_user(&idp, "carol", "CONFIDENTIAL", "USA", &["FVEY"]).await;
    write_policy_data(home.path(), "USA", &[(&idp.issuer, "USA")]);
    let secrets = home.path().join("instances/usa/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("kas-client.json"),
        json!({"client_id": "kas", "client_secret": kas_secret}).to_string(),
    )
    .unwrap();
    let mut cfg = KasConfig::new(usa, home.path().to_path_buf());
    cfg.database = database;
    let kas = dive_kas::start(cfg, false).await.unwrap();
    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let http = dive_http::https_client(&pki).unwrap();
    Env {
        totp: Default::default(),
        home,
        idp,
        kas,
        http,
        secret,
    }
}

impl Env {
    pub async fn login(&self, user: &str) -> String {
        let known = self.totp.lock().unwrap().get(user).cloned();
        let (token, totp) =
            login_totp(&self.http, &self.idp.issuer, &self.secret, user, known).await;
        if let Some(t) = totp {
            self.totp.lock().unwrap().insert(user.to_string(), t);
        }
        token
    }

    pub async fn public_key(&self, alg: KeyAlgorithm) -> (KasPublicKey, String) {
        let r: Value = self
            .http
            .get(format!(
                "{}/v2/kas_public_key?algorithm={}",
                self.kas.url,
                alg.as_str()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            KasPublicKey::from_pem(r["publicKey"].as_str().unwrap()).unwrap(),
            r["kid"].as_str().unwrap().to_string(),
        )
    }

    /// A ZTDF of `plaintext` labelled `marking`, wrapped to the KAS's current key of `alg`.
    pub async fn encrypt(&self, alg: KeyAlgorithm, marking: &str, plaintext: &[u8]) -> Vec<u8> {
        let (key, kid) = self.public_key(alg).await;
        encrypt_to(&self.kas.url, Some(kid), key, marking, plaintext)
    }

    pub async fn stop(self) {
        self.kas.stop().await;
        self.idp.stop().await;
    }
}

pub fn encrypt_to(
    url: &str,
    kid: Option<String>,
    key: KasPublicKey,
    marking: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let label = dive_ztdf::label::label_from_marking(marking).unwrap();
    let opts = EncryptOptions::new(KeyAccessPlan::single(Recipient::new(url, kid, key)))
        .label(label)
        .plaintext_len(plaintext.len() as u64);
    let mut out = Vec::new();
    dive_ztdf::encrypt(plaintext, &mut out, &opts).unwrap();
    out
}

/// The policy (base64, as stored) and KAOs of a ZTDF.
pub fn parts(ztdf: &[u8]) -> (String, Vec<KeyAccessObject>) {
    let r = TdfReader::open(Cursor::new(ztdf)).unwrap();
    (
        r.manifest().encryption_information.policy.clone(),
        r.key_access_objects().to_vec(),
    )
}

/// Decrypt with the shares `kas` returns; the reader re-checks bindings and integrity.
pub async fn decrypt(kas: &dive_kas::RemoteKas, ztdf: &[u8]) -> Result<Vec<u8>, String> {
    let reader = TdfReader::open(Cursor::new(ztdf)).map_err(|e| e.to_string())?;
    let shares = kas
        .rewrap_kaos(
            &reader.manifest().encryption_information.policy,
            reader.key_access_objects(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut unlocked = reader.unlock(&shares).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    unlocked.decrypt_to(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
