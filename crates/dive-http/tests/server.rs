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

/// A partner installation's service becomes reachable once its CA is registered in
/// `pki/partners`, without rebuilding the client by hand; withdrawn, it is refused again.
#[tokio::test]
async fn trusted_client_follows_partner_cas_without_restart() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    dive_pki::Pki::open(ours.path()).unwrap();
    let their_pki = dive_pki::Pki::open(theirs.path()).unwrap();
    let cert = their_pki.service("idp").unwrap();
    let bound = bind(
        "127.0.0.1:0".parse().unwrap(),
        cert.server_config().unwrap(),
    )
    .await
    .unwrap();
    let url = format!("https://localhost:{}/health", bound.local_addr().port());
    let app = with_operations(Router::new(), Readiness::default(), Metrics::new("p"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(app, async {
        let _ = stop_rx.await;
    }));

    let client = dive_http::TrustedClient::new(ours.path()).unwrap();
    let (_, first) = client.current();
    assert!(
        client.get().get(&url).send().await.is_err(),
        "an unknown installation's CA is not trusted"
    );
    let pem = std::fs::read_to_string(their_pki.ca_cert_path()).unwrap();
    dive_pki::partners::store_partner_ca(ours.path(), "FRA", &pem).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(r) = client.get().get(&url).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(t0.elapsed().as_secs() < 5, "partner CA never picked up");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, rebuilt) = client.current();
    assert!(rebuilt > first, "a rebuilt client has a new generation");
    dive_pki::partners::remove_partner_ca(ours.path(), "FRA").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // A new connection is needed to see the withdrawal: the rebuilt client has no pool yet.
    assert!(client.get().get(&url).send().await.is_err());
    let _ = stop_tx.send(());
    server.await.unwrap();
}
