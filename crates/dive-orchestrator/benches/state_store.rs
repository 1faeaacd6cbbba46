//! Latency of state-store operations on SQLite (temporary file) and PostgreSQL (a fresh database
//! at `DIVE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`, skipped if absent).
//! `cargo bench -p dive-orchestrator --bench state_store` prints p50/p95/p99 per operation.

use std::future::Future;
use std::time::{Duration, Instant};

use dive_orchestrator::state::{
    BreakerConfig, DeploymentState as S, ServiceResult, StateStore, StepStatus, now_millis,
    percentiles,
};
use sqlx::{AnyConnection, Connection, Executor};

const ROUNDS: usize = 200;

async fn measure<F, Fut>(label: &str, backend: &str, mut op: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        op(i).await;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p = percentiles(&samples).expect("samples");
    println!(
        "{backend:<8} {label:<44} p50 {:>7.3} ms  p95 {:>7.3} ms  p99 {:>7.3} ms",
        p.p50, p.p95, p.p99
    );
}

async fn run(backend: &str, location: &str) {
    let t = Instant::now();
    let store = StateStore::open(location).await.expect("open");
    println!(
        "{backend:<8} {:<44} {:>11.3} ms",
        "open (create + migrate)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let t = Instant::now();
    let again = StateStore::open(location).await.expect("reopen");
    println!(
        "{backend:<8} {:<44} {:>11.3} ms",
        "open (existing, up to date)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    again.close().await;

    measure(
        "deployment: create + 4 transitions + finish",
        backend,
        |i| {
            let store = store.clone();
            async move {
                let id = store
                    .create_deployment(&format!("s{}", i % 10), "stack", "h")
                    .await
                    .unwrap();
                for to in [S::Initializing, S::Deploying, S::Configuring, S::Verifying] {
                    store.transition(&id, to, "bench").await.unwrap();
                }
                store
                    .finish_deployment(&id, S::Complete, "bench", &serde_json::json!({"i": i}))
                    .await
                    .unwrap();
            }
        },
    )
    .await;
    let id = store
        .create_deployment("bench", "stack", "h")
        .await
        .unwrap();
    measure("step: begin + finish", backend, |i| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let phase = format!("p{i}");
            store.begin_step(&id, &phase).await.unwrap();
            store
                .finish_step(&id, &phase, StepStatus::Done, None)
                .await
                .unwrap();
        }
    })
    .await;
    measure("record_service_result", backend, |i| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = ServiceResult {
                service: format!("svc{i}"),
                class: "core".into(),
                outcome: "healthy".into(),
                attempts: 1,
                time_to_healthy_ms: Some(i as i64),
                error: None,
            };
            store.record_service_result(&id, &r).await.unwrap();
        }
    })
    .await;
    let cfg = BreakerConfig::default();
    measure("breaker_allows + record_attempt", backend, |i| {
        let store = store.clone();
        async move {
            let svc = format!("svc{}", i % 20);
            store
                .breaker_allows("bench", &svc, now_millis(), &cfg)
                .await
                .unwrap();
            store
                .record_attempt("bench", &svc, true, None, now_millis(), &cfg)
                .await
                .unwrap();
        }
    })
    .await;
    measure("lock: acquire + release", backend, |_| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let g = store.acquire_lock("bench", &id).await.unwrap();
            g.release().await.unwrap();
        }
    })
    .await;
    measure("latest_deployment", backend, |i| {
        let store = store.clone();
        async move {
            store
                .latest_deployment(&format!("s{}", i % 10))
                .await
                .unwrap();
        }
    })
    .await;
    measure("summary (orch-db status)", backend, |_| {
        let store = store.clone();
        async move {
            store.summary().await.unwrap();
        }
    })
    .await;
    store.close().await;
}

async fn pg_database() -> Option<(String, String, String)> {
    sqlx::any::install_default_drivers();
    let admin = std::env::var("DIVE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut c =
        match tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(&admin)).await {
            Ok(Ok(c)) => c,
            _ => {
                println!("postgres SKIPPED (no PostgreSQL at {admin})");
                return None;
            }
        };
    let name = format!("dive_state_bench_{}", std::process::id());
    c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .ok()?;
    c.close().await.ok()?;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string())?;
    Some((admin, name.clone(), format!("{base}/{name}")))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    run("sqlite", &dir.path().join("state.db").display().to_string()).await;
    if let Some((admin, name, url)) = pg_database().await {
        run("postgres", &url).await;
        if let Ok(mut c) = AnyConnection::connect(&admin).await {
            let _ = c
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}
