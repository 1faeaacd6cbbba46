//! The JSON error shape of the API: `{"error": code, "message": text, …}` with the matching status.

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dive_authn::AuthnError;
use dive_policy::Decision;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::search::QueryError;
use crate::upload::UploadError;

/// An error answer.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub body: Map<String, Value>,
    /// `WWW-Authenticate` value for 401s.
    pub challenge: Option<String>,
    /// The body as JSON text, rendered earlier and shared (then `body` is empty).
    pub rendered: Option<Bytes>,
}

impl Failure {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Failure {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(error.into()));
        body.insert("message".into(), Value::String(message.into()));
        Failure {
            status,
            body,
            challenge: None,
            rendered: None,
        }
    }

    /// An answer whose JSON body was rendered before (with [`Failure::json_body`]).
    pub fn prerendered(status: StatusCode, body: Bytes) -> Failure {
        Failure {
            status,
            body: Map::new(),
            challenge: None,
            rendered: Some(body),
        }
    }

    /// The body as JSON text.
    pub fn json_body(&self) -> Bytes {
        match &self.rendered {
            Some(b) => b.clone(),
            // A map of JSON values always serialises.
            None => serde_json::to_vec(&self.body)
                .map(Bytes::from)
                .unwrap_or_default(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Failure {
        self.body.insert(key.into(), value);
        self
    }

    pub fn not_found(what: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 (or 503 when tokens cannot be checked right now) for a refused token.
    pub fn unauthenticated(e: &AuthnError) -> Failure {
        if e.is_unavailable() {
            return Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication_unavailable",
                e.to_string(),
            );
        }
        let mut f = Failure::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string());
        let desc = e.to_string().replace(['"', '\\'], "'");
        f.challenge = Some(match e {
            AuthnError::Missing => "Bearer realm=\"dive-api\"".to_string(),
            _ => format!(
                "Bearer realm=\"dive-api\", error=\"invalid_token\", error_description=\"{desc}\""
            ),
        });
        f
    }

    /// 403 with the PDP's reason and per-check results.
    pub fn forbidden(decision: &Decision, resource_id: Option<&str>) -> Failure {
        let details = &decision.evaluation_details;
        let mut f = Failure::new(StatusCode::FORBIDDEN, "forbidden", decision.reason.clone())
            .with("reason", Value::String(decision.reason.clone()))
            .with(
                "checks",
                details.get("checks").cloned().unwrap_or(Value::Null),
            )
            .with(
                "authentication",
                details
                    .get("authentication")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        if let Some(id) = resource_id {
            f = f.with("resourceId", Value::String(id.into()));
        }
        if let Some(v) = &decision.policy_version {
            f = f.with("policyVersion", Value::String(v.clone()));
        }
        f
    }

    pub fn internal(e: &ApiError) -> Failure {
        tracing::error!(error = %e, "internal error");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the service log",
        )
    }
}

impl From<QueryError> for Failure {
    fn from(e: QueryError) -> Failure {
        Failure::bad_request(e.to_string()).with("param", Value::String(e.param))
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        match &e {
            ApiError::Exists(id) => Failure::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("resource {id:?} already exists"),
            ),
            ApiError::InvalidResource { .. } => Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_resource",
                e.to_string(),
            ),
            ApiError::Kas { .. } => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kas_unavailable",
                format!("cannot encrypt to this instance's KAS: {e}"),
            ),
            _ => Failure::internal(&e),
        }
    }
}

impl From<UploadError> for Failure {
    fn from(e: UploadError) -> Failure {
        let msg = e.to_string();
        match e {
            UploadError::Form(_) => Failure::bad_request(msg),
            UploadError::TooLarge { limit } => {
                Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
                    .with("limit", json!(limit))
            }
            UploadError::UnsupportedType(_) => {
                Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type", msg)
            }
            UploadError::Label(_) => {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_label", msg)
            }
            UploadError::Incoherent(v) => {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "incoherent_label", msg)
                    .with("violations", json!(v))
            }
            UploadError::Ztdf(detail) => {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "ztdf_invalid", msg)
                    .with("detail", Value::String(detail))
            }
            UploadError::Encrypt(_) => {
                tracing::error!(error = %msg, "encrypting an upload failed");
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = match self.rendered {
            Some(body) => (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            None => (self.status, axum::Json(Value::Object(self.body))).into_response(),
        };
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        r
    }
}
