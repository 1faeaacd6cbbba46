//! The audit log over HTTPS, for administrators of this instance:
//!
//! - `GET /kas/audit?subject=&decision=permit|fail|rejected&object=&since=&until=&limit=&cursor=`:
//!   rows newest first (one per key access object of a rewrap), paged with `nextCursor`;
//! - `GET /kas/audit/summary?bucket=60&…`: permits, fails and rejections per time bucket, counted
//!   by the database.
//!
//! Access is the admin policy's `audit.read` (the admin role, a token of this instance's own
//! issuer, MFA), decided by the KAS's PDP on the caller's verified token; refusals are 401/403
//! with the reason (this is not the rewrap path, where every refusal must look alike). Every read
//! is logged with who asked.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dive_authn::Authenticator;
use dive_core::CountryCode;
use dive_policy::Pdp;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{AuditLog, AuditRow};
use crate::audit_query::AuditQuery;

/// Rows per page by default and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Buckets a summary may return.
const MAX_BUCKETS: usize = 10_000;

/// What the audit routes need of the KAS.
#[derive(Clone)]
pub struct AuditApi {
    pub authn: Authenticator,
    pub pdp: Arc<Pdp>,
    pub log: AuditLog,
    pub instance: CountryCode,
}

/// The audit routes, with their own state (merged into the KAS's router).
pub fn routes(api: AuditApi) -> Router {
    Router::new()
        .route("/kas/audit", get(entries))
        .route("/kas/audit/summary", get(summary))
        .with_state(api)
}

/// An error answer (`{code, message}`, `param` naming a bad query parameter).
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            status,
            code,
            message: message.into(),
            param: None,
        }
    }

    fn bad(param: &str, why: &str) -> Refused {
        Refused {
            param: Some(param.to_string()),
            ..Refused::new(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                format!("query parameter {param}: {why}"),
            )
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(p) = self.param {
            body["param"] = Value::String(p);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Verify the token and ask the admin policy; `Ok` carries who asked.
async fn authorize(api: &AuditApi, headers: &HeaderMap) -> Result<String, Refused> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let who = match api.authn.authenticate_header(bearer).await {
        Ok(p) => p,
        Err(e) if e.is_unavailable() => {
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "access tokens cannot be verified right now; retry later",
            ));
        }
        Err(e) => {
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("not authenticated: {e}"),
            ));
        }
    };
    let d =
        api.pdp
            .decide_instance_admin(&who.attributes, "audit.read", api.instance, "kas-audit-log");
    tracing::info!(subject = %who.attributes.unique_id, allow = d.allow, reason = %d.reason, "KAS audit read");
    if !d.allow {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            d.reason.clone(),
        ));
    }
    Ok(who.attributes.unique_id)
}

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn millis(param: &str, v: &str) -> Result<i64, Refused> {
    let t = OffsetDateTime::parse(v, &Rfc3339)
        .map_err(|_| Refused::bad(param, "expected an RFC 3339 time"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| Refused::bad(param, "out of range"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    at: i64,
    r: String,
    s: i64,
}

/// The query parameters; `bucket` only where `summary` (seconds), `limit` and `cursor` only
/// where not.
fn parse(raw: &str, summary: bool) -> Result<(AuditQuery, i64), Refused> {
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    let mut bucket = 60;
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let v = v.into_owned();
        match (k.as_ref(), summary) {
            ("subject", _) => q.subject = Some(v),
            ("decision", _) => {
                if !matches!(v.as_str(), "permit" | "fail" | "rejected") {
                    return Err(Refused::bad(
                        "decision",
                        "expected permit, fail or rejected",
                    ));
                }
                q.decision = Some(v);
            }
            ("object", _) => q.policy_uuid = Some(v),
            ("since", _) => q.since_ms = Some(millis("since", &v)?),
            ("until", _) => q.until_ms = Some(millis("until", &v)?),
            ("limit", false) => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| Refused::bad("limit", "expected a number from 1 to 1000"))?;
            }
            ("cursor", false) => {
                let c: Cursor = URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| Refused::bad("cursor", "not a cursor returned by this KAS"))?;
                q.before = Some((c.at, c.r, c.s));
            }
            ("bucket", true) => {
                bucket = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=86_400).contains(n))
                    .ok_or_else(|| Refused::bad("bucket", "expected seconds from 1 to 86400"))?;
            }
            (other, _) => {
                return Err(Refused::bad(
                    other,
                    if summary {
                        "unknown parameter; expected subject, decision, object, since, until, bucket"
                    } else {
                        "unknown parameter; expected subject, decision, object, since, until, limit, cursor"
                    },
                ));
            }
        }
    }
    Ok((q, bucket))
}

fn entry(r: &AuditRow) -> Value {
    json!({
        "at": rfc3339(r.at_ms),
        "requestId": r.request_id,
        "seq": r.seq,
        "transport": r.transport,
        "peer": r.peer,
        "subject": r.subject,
        "issuer": r.issuer,
        "clientId": r.client_id,
        "object": r.policy_uuid,
        "kaoId": r.kao_id,
        "kid": r.kid,
        "algorithm": r.algorithm,
        "decision": r.decision,
        "reason": r.reason,
        "latencyUs": r.latency_us,
    })
}

fn unavailable(e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "reading the KAS audit log failed");
    Refused::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the audit log cannot be read right now",
    )
}

async fn entries(
    State(api): State<AuditApi>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Refused> {
    authorize(&api, &headers).await?;
    let (q, _) = parse(raw.as_deref().unwrap_or(""), false)?;
    let rows = api.log.query(&q).await.map_err(unavailable)?;
    let next = (rows.len() as i64 == q.limit)
        .then(|| rows.last())
        .flatten()
        .and_then(|r| {
            serde_json::to_vec(&Cursor {
                at: r.at_ms,
                r: r.request_id.clone(),
                s: r.seq,
            })
            .ok()
        })
        .map(|b| URL_SAFE_NO_PAD.encode(b));
    let entries: Vec<Value> = rows.iter().map(entry).collect();
    Ok(axum::Json(json!({"entries": entries, "nextCursor": next})).into_response())
}

async fn summary(
    State(api): State<AuditApi>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Refused> {
    authorize(&api, &headers).await?;
    let (q, bucket) = parse(raw.as_deref().unwrap_or(""), true)?;
    let buckets = api
        .log
        .summary(&q, bucket * 1000, MAX_BUCKETS)
        .await
        .map_err(unavailable)?;
    if buckets.len() > MAX_BUCKETS {
        return Err(Refused::bad(
            "bucket",
            &format!(
                "more than {MAX_BUCKETS} buckets hold rows: narrow since/until or widen bucket"
            ),
        ));
    }
    let buckets: Vec<Value> = buckets
        .iter()
        .map(|b| {
            json!({"start": rfc3339(b.start_ms), "permit": b.permit, "fail": b.fail, "rejected": b.rejected})
        })
        .collect();
    Ok(axum::Json(json!({"bucketSeconds": bucket, "buckets": buckets})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_named() {
        let (q, _) = parse(
            "subject=a%40usa&decision=fail&since=2026-11-24T10:00:00Z&limit=5",
            false,
        )
        .unwrap_or_else(|_| panic!("valid"));
        assert_eq!(q.subject.as_deref(), Some("a@usa"));
        assert_eq!(q.decision.as_deref(), Some("fail"));
        assert_eq!(q.since_ms, Some(1_795_514_400_000));
        assert_eq!(q.limit, 5);
        let (_, bucket) = parse("bucket=300", true).unwrap_or_else(|_| panic!("valid"));
        assert_eq!(bucket, 300);
        for (raw, summary, param) in [
            ("decision=maybe", false, "decision"),
            ("since=yesterday", false, "since"),
            ("limit=0", false, "limit"),
            ("cursor=abc", false, "cursor"),
            ("bucket=60", false, "bucket"),
            ("limit=5", true, "limit"),
            ("bucket=0", true, "bucket"),
            ("colour=red", true, "colour"),
        ] {
            match parse(raw, summary) {
                Err(r) => assert_eq!(r.param.as_deref(), Some(param), "{raw}"),
                Ok(_) => panic!("{raw} accepted"),
            }
        }
        let c = URL_SAFE_NO_PAD.encode(br#"{"at":5,"r":"req","s":1}"#);
        let (q, _) = parse(&format!("cursor={c}"), false).unwrap_or_else(|_| panic!("valid"));
        assert_eq!(q.before, Some((5, "req".to_string(), 1)));
        assert_eq!(rfc3339(1_795_514_400_000), "2026-11-24T10:00:00Z");
    }
}
