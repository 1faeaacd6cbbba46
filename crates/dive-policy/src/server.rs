//! OPA-compatible Data API for external enforcement points: `POST /v1/data/{package path}` with
//! `{"input": …}` answers `{"result": …}`; `GET /health` answers `{}` while a policy is loaded.
//!
//! Paths: `dive/authz` (or `dive/authz/decision`) gives the whole decision; `dive/authz/allow`,
//! `…/reason`, `…/obligations`, `…/evaluation_details` give one field. Likewise `dive/admin` and
//! `dive/guardrails`. An unknown path answers `{}` (undefined), as OPA does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::input::Input;
use crate::pdp::{Entrypoint, Pdp};

/// The Data API router over a shared PDP.
pub fn router(pdp: Arc<Pdp>) -> Router {
    Router::new()
        .route("/v1/data/{*path}", post(data))
        .route("/health", get(health))
        .with_state(pdp)
}

async fn health() -> Json<Value> {
    Json(json!({}))
}

async fn data(
    State(pdp): State<Arc<Pdp>>,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !is_json(&headers) {
        return opa_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`",
        );
    }
    let Some((entrypoint, field)) = resolve(path.trim_matches('/')) else {
        return match request_input(&body) {
            Ok(_) => Json(json!({})).into_response(),
            Err(e) => opa_error(StatusCode::BAD_REQUEST, &e),
        };
    };
    // Decisions are CPU-bound microseconds: evaluate inline rather than hopping threads. A
    // byte-identical repeat of an earlier request is answered without parsing it.
    let decision = match pdp.decide_request_body(entrypoint, &body, request_input) {
        Ok(d) => d,
        Err(e) => return opa_error(StatusCode::BAD_REQUEST, &e),
    };
    match field {
        // The whole decision: its JSON text is serialised once and shared by cache hits.
        None => json_response(format!("{{\"result\":{}}}", decision.json_text())),
        Some(f) => {
            let result = decision.to_json().get(f).cloned().unwrap_or(Value::Null);
            Json(json!({ "result": result })).into_response()
        }
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// The `input` member of a Data API request body `{"input": …}` (absent: `null`).
fn request_input(body: &[u8]) -> Result<Input, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => Ok(Input::from_json(m.remove("input").unwrap_or(Value::Null))),
        Ok(_) => Err("request body must be a JSON object {\"input\": …}".into()),
        Err(e) => Err(format!("Failed to parse the request body as JSON: {e}")),
    }
}

fn json_response(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn resolve(path: &str) -> Option<(Entrypoint, Option<&'static str>)> {
    for ep in Entrypoint::ALL {
        let Some(rest) = path.strip_prefix(ep.package_path()) else {
            continue;
        };
        return match rest {
            "" | "/decision" => Some((ep, None)),
            "/allow" => Some((ep, Some("allow"))),
            "/reason" => Some((ep, Some("reason"))),
            "/obligations" => Some((ep, Some("obligations"))),
            "/evaluation_details" => Some((ep, Some("evaluation_details"))),
            _ => None,
        };
    }
    None
}

fn opa_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"code": "invalid_parameter", "message": message})),
    )
        .into_response()
}

/// Serve until `shutdown` resolves, reloading policies and data when their files change
/// (checked every `reload_every`).
pub async fn serve(
    pdp: Arc<Pdp>,
    listener: tokio::net::TcpListener,
    reload_every: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(watch(pdp.clone(), reload_every));
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, version = %pdp.version(), "PDP Data API listening");
    // Small request/response pairs on keep-alive connections: Nagle's algorithm would hold each
    // response back waiting for the client's delayed ACK.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(listener, router(pdp))
        .with_graceful_shutdown(shutdown)
        .await;
    watcher.abort();
    result
}

async fn watch(pdp: Arc<Pdp>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let p = pdp.clone();
        match tokio::task::spawn_blocking(move || p.reload_if_changed()).await {
            Ok(Ok(Some(v))) => tracing::info!(version = %v, "policies or data changed: reloaded"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload failed; the previous policies stay in force")
            }
            Err(e) => tracing::error!(error = %e, "reload task failed"),
        }
    }
}
