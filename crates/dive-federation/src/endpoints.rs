//! The federation endpoints every instance's IdP serves (`dive serve idp` mounts [`router`]):
//!
//! - `GET /federation/ca.pem`: the installation CA (public; a joining spoke pins its
//!   fingerprint before trusting it);
//! - `POST /federation/join` (hub only): a spoke of another installation joins with a one-time
//!   join token as bearer and its descriptor; see [`crate::remote::accept_join`];
//! - `POST /federation/link-status` (a spoke that joined a remote hub): the hub pushes a status
//!   change, authenticated by the link key; see [`crate::spoke::apply_push`];
//! - `POST /federation/verify` (a spoke that joined a remote hub): the hub asks for the spoke's
//!   half of a link verification, authenticated by the link key; see
//!   [`crate::spoke::verify_for_hub`].
//!
//! Errors are JSON `{"error": <code>, "message": <text>}` with a 4xx status for what the caller
//! got wrong, and nothing is changed by a refused request.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dive_core::CountryCode;
use serde_json::json;

use crate::remote::{JoinError, JoinRequest, StatusPush, VerifyRequest};
use crate::spoke::PushError;

/// Largest request body accepted (a descriptor with a CA certificate is a few KiB).
const MAX_BODY: usize = 64 * 1024;

struct Endpoints {
    home: PathBuf,
    instance: CountryCode,
}

/// The federation routes of instance `instance` of the installation at `home`.
pub fn router(home: PathBuf, instance: CountryCode) -> Router {
    Router::new()
        .route("/federation/ca.pem", get(ca_pem))
        .route("/federation/join", post(join))
        .route("/federation/link-status", post(link_status))
        .route("/federation/verify", post(verify))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Endpoints { home, instance }))
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "message": message.to_string()})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The JSON body, or the 400 answer naming what is wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("request body: {e}"),
        ))
    })
}

async fn ca_pem(State(s): State<Arc<Endpoints>>) -> Response {
    let path = dive_pki::partners::installation_ca_path(&s.home);
    match tokio::fs::read(&path).await {
        Ok(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the installation CA");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the installation CA cannot be read",
            )
        }
    }
}

async fn join(State(s): State<Arc<Endpoints>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: JoinRequest = match body(&bytes) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match crate::remote::accept_join(&s.home, s.instance, bearer(&headers), &req).await {
        Ok(answer) => {
            tracing::info!(partner = %req.code, issuer = %req.issuer, "remote spoke joined");
            axum::Json(answer).into_response()
        }
        Err(e) => {
            let (status, code) = match &e {
                JoinError::Token(_) | JoinError::NoToken => {
                    (StatusCode::UNAUTHORIZED, "invalid_token")
                }
                JoinError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                JoinError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                JoinError::NotHub => (StatusCode::NOT_FOUND, "not_a_hub"),
                JoinError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            };
            tracing::warn!(partner = %req.code, error = %e, "join refused");
            error(status, code, e)
        }
    }
}

async fn link_status(
    State(s): State<Arc<Endpoints>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let push: StatusPush = match body(&bytes) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match crate::spoke::apply_push(&s.home, s.instance, bearer(&headers), &push).await {
        Ok(changed) => {
            axum::Json(json!({"status": push.status, "changed": changed})).into_response()
        }
        Err(e) => refused(e, "link status push refused"),
    }
}

async fn verify(State(s): State<Arc<Endpoints>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: VerifyRequest = match body(&bytes) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match crate::spoke::verify_for_hub(&s.home, s.instance, bearer(&headers), &req).await {
        Ok(answer) => {
            let passed = answer.checks.iter().filter(|c| c.ok).count();
            tracing::info!(hub = %req.hub, passed, checks = answer.checks.len(), "link verification for the hub run");
            axum::Json(answer).into_response()
        }
        Err(e) => refused(e, "link verification request refused"),
    }
}

/// The answer to a refused request of the hub.
fn refused(e: PushError, what: &'static str) -> Response {
    let (status, code) = match &e {
        PushError::NoHub(_) => (StatusCode::NOT_FOUND, "not_linked"),
        PushError::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid_token"),
        PushError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        PushError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    tracing::warn!(error = %e, "{what}");
    error(status, code, e)
}
