//! Seeding throughput of the resource store: `replace_seeded` of a 5,000-document corpus of real
//! ZTDFs (each run replaces the previous one), on SQLite and, when reachable, PostgreSQL.
//! Run: `cargo bench -p dive-api --bench store` (DIVE_BENCH_DOCS, DIVE_BENCH_RUNS,
//! DIVE_TEST_PG_URL).

use std::time::{Duration, Instant};

use dive_api::ResourceStore;
use dive_core::CountryCode;
use dive_ztdf::{KasPrivateKey, KasPublicKey, Recipient};
use sqlx::{AnyConnection, Connection, Executor};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn measure(label: &str, store: &ResourceStore, docs: &[dive_api::NewResource], runs: usize) {
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..runs {
        let batch = docs.to_vec();
        let t = Instant::now();
        store.replace_seeded(batch).await.expect("seeding");
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{label}: replace_seeded {} docs ({:.1} MB): median {:.1} ms = {:.0} docs/s (min {:.1} ms, max {:.1} ms, {runs} runs)",
        docs.len(),
        docs.iter().map(|d| d.ztdf.len()).sum::<usize>() as f64 / 1e6,
        median.as_secs_f64() * 1e3,
        docs.len() as f64 / median.as_secs_f64(),
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let n = env_or("DIVE_BENCH_DOCS", 5000);
    let runs = env_or("DIVE_BENCH_RUNS", 7);
    let (_, public_pem) = KasPrivateKey::generate_rsa_pem().expect("keygen");
    let recipient = Recipient::new(
        "https://localhost:9443",
        None,
        KasPublicKey::from_pem(&public_pem).expect("key"),
    );
    let t = Instant::now();
    let docs = dive_api::corpus::generate(
        n,
        7,
        CountryCode::new("USA").expect("USA"),
        &recipient,
        time::OffsetDateTime::now_utc(),
    )
    .expect("corpus");
    println!(
        "corpus: {n} ZTDFs generated in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.db");
    let store = ResourceStore::open(path.to_str().expect("utf-8"))
        .await
        .expect("open");
    measure("SQLite", &store, &docs, runs).await;

    sqlx::any::install_default_drivers();
    let admin = std::env::var("DIVE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(&admin)).await
    else {
        println!("PostgreSQL: skipped (no server at {admin})");
        return;
    };
    let name = format!("api_bench_{}", uuid::Uuid::new_v4().simple());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let url = format!("{}/{name}", &admin[..admin.rfind('/').expect("db part")]);
    let store = ResourceStore::open(&url).await.expect("open pg");
    measure("PostgreSQL", &store, &docs, runs).await;
    store.close().await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .await;
}
