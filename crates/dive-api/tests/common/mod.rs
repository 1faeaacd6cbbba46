//! Shared test fixtures: a KAS key pair, a corpus, a PostgreSQL database per test.

#![allow(dead_code)]

use std::time::Duration;

use dive_core::CountryCode;
use dive_ztdf::{KasPrivateKey, KasPublicKey, Recipient};
use sqlx::{AnyConnection, Connection, Executor};

pub const KAS_URL: &str = "https://localhost:9443";

pub fn usa() -> CountryCode {
    CountryCode::new("USA").unwrap()
}

static PEMS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

fn pems() -> &'static (String, String) {
    PEMS.get_or_init(|| KasPrivateKey::generate_rsa_pem().unwrap())
}

/// The private half of [`kas_keys`], as PEM.
pub fn kas_private_pem() -> String {
    pems().0.clone()
}

/// An RSA-2048 KAS key pair, generated once per test binary: (private, recipient, public PEM).
pub fn kas_keys() -> (KasPrivateKey, Recipient, String) {
    let (private_pem, public_pem) = pems();
    let private = KasPrivateKey::from_pem(private_pem).unwrap();
    let public = KasPublicKey::from_pem(public_pem).unwrap();
    (
        private,
        Recipient::new(KAS_URL, Some("r1".into()), public),
        public_pem.clone(),
    )
}

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A new empty PostgreSQL database (URL), or `None` when no server answers.
pub async fn pg_database(prefix: &str) -> Option<String> {
    sqlx::any::install_default_drivers();
    let admin = std::env::var("DIVE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG.to_string());
    let mut conn =
        match tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(&admin)).await {
            Ok(Ok(c)) => c,
            _ => {
                eprintln!("SKIPPED: no PostgreSQL at {admin}");
                return None;
            }
        };
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let i = admin
        .rfind('/')
        .expect("DIVE_TEST_PG_URL has a database part");
    Some(format!("{}/{name}", &admin[..i]))
}
