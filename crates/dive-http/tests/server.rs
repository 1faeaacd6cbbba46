//! The bootstrap serves HTTPS with the installation's certificate and the operational endpoints.

use axum::Router;
use axum::routing::get;
use dive_http::{Metrics, Readiness, bind, https_client, with_operations};

#[tokio::test]
async fn serves_https_health_ready_metrics_and_shuts_down_gracefully() {
    let home = tempfile::tempdir().unwrap();
    let pki = dive_pki::Pki::open(home.path()).unwrap();
    let cert = pki.service("demo").unwrap();
    let bound = bind(
        "127.0.0.1:0".parse().unwrap(),
        cert.server_config().unwrap(),
    )
    .await
    .unwrap();
    let addr = bound.local_addr();
    let readiness = Readiness::default();
    let metrics = Metrics::new("demo");
    let app = with_operations(
        Router::new().route("/hello/{name}", get(|| async { "hi" })),
        readiness.clone(),
        metrics,
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(app, async {
        let _ = stop_rx.await;
    }));

    let client = https_client(&pki).unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let r = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready until the service says so");
    readiness.set(true);
    let r = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    client
        .get(format!("{base}/hello/secret-value?code=abc"))
        .send()
        .await
        .unwrap();
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("demo_http_requests_total"), "{text}");
    assert!(
        text.contains("route=\"/hello/{name}\""),
        "route template, not raw path: {text}"
    );
    assert!(!text.contains("secret-value"), "{text}");

    // A client that does not trust the installation CA cannot connect.
    let stranger = reqwest::Client::builder().build().unwrap();
    assert!(stranger.get(format!("{base}/health")).send().await.is_err());

    stop_tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(15), server)
        .await
        .expect("server stops after shutdown")
        .unwrap();
    assert!(client.get(format!("{base}/health")).send().await.is_err());
}
