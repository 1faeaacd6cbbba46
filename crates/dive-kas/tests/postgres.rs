//! The KAS with its audit log on PostgreSQL (a fresh database at `DIVE_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Skipped, with a message, when no server answers.

mod common;

use std::time::Duration;

use common::*;
use dive_kas::{ClientKeyKind, KeyAlgorithm, RemoteKas};
use sqlx::{AnyConnection, Connection, Executor};

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_audited_in_postgres() {
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
    let name = format!("kas_test_{}", std::process::id());
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .await;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("bad DIVE_TEST_PG_URL"),
    };

    let e = env_with_database(Some(url)).await;
    let alice = e.login("alice").await;
    let carol = e.login("carol").await;
    let file = e
        .encrypt(
            KeyAlgorithm::EcP256,
            "SECRET//FVEY//REL TO USA",
            b"on postgres",
        )
        .await;
    let kas =
        RemoteKas::new(e.http.clone(), &e.kas.url, &alice).with_client_key(ClientKeyKind::EcP256);
    assert_eq!(decrypt(&kas, &file).await.unwrap(), b"on postgres");
    let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &carol);
    assert!(decrypt(&kas, &file).await.is_err());
    let rows = e.kas.audit.recent(10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r.decision == "permit"));
    assert!(
        rows.iter()
            .any(|r| r.decision == "fail" && r.reason.starts_with("PDP: "))
    );
    e.stop().await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
}
