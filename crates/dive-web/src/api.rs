//! The resource API seen from the UI: search (local and federated), one document with its
//! decision, and the ZTDF download — each called with the signed-in user's own access token, so
//! what the UI shows is exactly what the PDP allows that user.

use std::collections::BTreeMap;

use dive_core::SecurityLabel;
use serde::Deserialize;
use serde_json::{Value, json};

/// The documents page's default page size, and the sizes a user may choose.
pub const PAGE_SIZE: u32 = 20;
pub const PAGE_SIZES: [u32; 3] = [20, 50, 100];

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API refused the token (expired, revoked): the user must sign in again.
    #[error("the resource service refused your session: {0}")]
    Unauthorized(String),
    #[error("access denied: {}", .0.reason)]
    Forbidden(Box<Denial>),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the resource service rejected the request: {0}")]
    BadRequest(String),
    #[error("the resource service answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the resource service cannot be reached: {0}")]
    Unreachable(String),
    #[error("the resource service's answer is unusable: {0}")]
    Invalid(String),
}

/// A denial as the PDP explains it.
#[derive(Debug, Clone)]
pub struct Denial {
    pub reason: String,
    /// Each policy check and whether it passed, by name.
    pub checks: Vec<(String, bool)>,
    /// The authentication level the user has, and the one the document needs (if any).
    pub aal: Option<String>,
    pub aal_required: Option<String>,
}

/// One decision of the API's audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    pub subject: String,
    #[serde(default)]
    pub issuer: Option<String>,
    pub action: String,
    #[serde(default)]
    pub resource_id: Option<String>,
    pub allow: bool,
    pub reason: String,
    pub latency_us: u64,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// Decisions counted per time bucket (`GET /api/audit/summary`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditSummary {
    pub bucket_seconds: i64,
    pub buckets: Vec<AuditBucket>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditBucket {
    /// RFC 3339.
    pub start: String,
    pub allowed: u64,
    pub denied: u64,
}

/// One row of the KAS's audit (`GET <kas>/audit`): one key access object of a rewrap.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRelease {
    /// RFC 3339.
    pub at: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub transport: String,
    /// The ZTDF policy's uuid.
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub kao_id: Option<String>,
    #[serde(default)]
    pub algorithm: Option<String>,
    /// `permit`, `fail` or `rejected`.
    pub decision: String,
    pub reason: String,
    pub latency_us: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyReleasePage {
    pub entries: Vec<KeyRelease>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// The KAS's rows per bucket (`GET <kas>/audit/summary`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyReleaseSummary {
    pub bucket_seconds: i64,
    pub buckets: Vec<KeyReleaseBucket>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyReleaseBucket {
    pub start: String,
    pub permit: u64,
    pub fail: u64,
    pub rejected: u64,
}

/// A document as listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub label: SecurityLabel,
    pub mime_type: String,
    pub file_name: String,
    pub size: u64,
    #[serde(default)]
    pub ztdf_size: u64,
    pub created_at: String,
    #[serde(default)]
    pub creator: String,
    pub marking: String,
    /// Set by federated search: the instance that holds it.
    #[serde(default)]
    pub instance: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facets {
    #[serde(default)]
    pub classification: BTreeMap<String, u64>,
    #[serde(default)]
    pub country: BTreeMap<String, u64>,
    #[serde(default)]
    pub coi: BTreeMap<String, u64>,
    #[serde(default)]
    pub file_type: BTreeMap<String, u64>,
}

/// How one instance answered a federated search.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub instance: String,
    pub status: String,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub error: Option<String>,
}

/// A search result page (local or federated).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<Item>,
    pub total: u64,
    #[serde(default)]
    pub next_cursor: Option<String>,
    #[serde(default)]
    pub facets: Facets,
    #[serde(default)]
    pub partial: bool,
    #[serde(default)]
    pub instances: Vec<InstanceStatus>,
    #[serde(default)]
    pub federation_error: Option<String>,
}

/// The filters of a search, validated.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub q: Option<String>,
    pub classification: Option<dive_core::Clearance>,
    pub country: Option<dive_core::CountryCode>,
    pub coi: Option<String>,
    /// A MIME type.
    pub file_type: Option<String>,
    /// Created on or after / before (`YYYY-MM-DD`; the API checks the form).
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
    /// Documents per page (one of [`PAGE_SIZES`]); 0 means [`PAGE_SIZE`].
    pub per_page: u32,
}

impl Filters {
    pub fn page_size(&self) -> u32 {
        if self.per_page == 0 {
            PAGE_SIZE
        } else {
            self.per_page
        }
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("limit", self.page_size().to_string())];
        if let Some(q) = &self.q {
            v.push(("q", q.clone()));
        }
        if let Some(c) = self.classification {
            v.push(("classification", c.as_str().to_string()));
        }
        if let Some(c) = self.country {
            v.push(("country", c.as_str().to_string()));
        }
        if let Some(c) = &self.coi {
            v.push(("coi", c.clone()));
        }
        if let Some(t) = &self.file_type {
            v.push(("type", t.clone()));
        }
        if let Some(d) = &self.from {
            v.push(("from", d.clone()));
        }
        if let Some(d) = &self.to {
            v.push(("to", d.clone()));
        }
        v
    }
}

/// The decision shown with an allowed document.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub item: Item,
    pub reason: String,
    pub checks: Vec<(String, bool)>,
    pub aal: Option<String>,
}

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

impl ApiClient {
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> ApiClient {
        ApiClient {
            http,
            base: base.into().trim_end_matches('/').to_string(),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(error_of(status, &body))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        self.send(rb)
            .await?
            .json()
            .await
            .map_err(|e| ApiError::Invalid(e.to_string()))
    }

    /// This instance's documents the user may read.
    pub async fn search(&self, token: &str, f: &Filters) -> Result<Page, ApiError> {
        let mut pairs = f.pairs();
        if let Some(c) = &f.cursor {
            pairs.push(("cursor", c.clone()));
        }
        let rb = self
            .http
            .get(format!("{}/api/resources", self.base))
            .bearer_auth(token)
            .query(&pairs);
        self.json(rb).await
    }

    /// A page of the decision log (`GET /api/audit`, admin role), newest first; `query` holds
    /// the API's own parameters (subject, resource, action, decision, since, until, limit,
    /// cursor).
    pub async fn audit(
        &self,
        token: &str,
        query: &[(&str, String)],
    ) -> Result<AuditPage, ApiError> {
        let rb = self
            .http
            .get(format!("{}/api/audit", self.base))
            .bearer_auth(token)
            .query(query);
        self.json(rb).await
    }

    /// The KAS's audit rows, newest first (this client's base is the KAS URL, `…/kas`).
    pub async fn kas_audit(
        &self,
        token: &str,
        query: &[(&str, String)],
    ) -> Result<KeyReleasePage, ApiError> {
        let rb = self
            .http
            .get(format!("{}/audit", self.base))
            .bearer_auth(token)
            .query(query);
        self.json(rb).await
    }

    /// The KAS's rows counted per bucket (this client's base is the KAS URL).
    pub async fn kas_audit_summary(
        &self,
        token: &str,
        query: &[(&str, String)],
    ) -> Result<KeyReleaseSummary, ApiError> {
        let rb = self
            .http
            .get(format!("{}/audit/summary", self.base))
            .bearer_auth(token)
            .query(query);
        self.json(rb).await
    }

    /// Allowed and denied decisions per bucket of `bucket` seconds, with the log's filters.
    pub async fn audit_summary(
        &self,
        token: &str,
        query: &[(&str, String)],
    ) -> Result<AuditSummary, ApiError> {
        let rb = self
            .http
            .get(format!("{}/api/audit/summary", self.base))
            .bearer_auth(token)
            .query(query);
        self.json(rb).await
    }

    /// This instance and its active partners (no cursor: one merged first page).
    pub async fn federated_search(&self, token: &str, f: &Filters) -> Result<Page, ApiError> {
        let body: serde_json::Map<String, Value> = f
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let rb = self
            .http
            .post(format!("{}/api/resources/federated-search", self.base))
            .bearer_auth(token)
            .json(&body);
        self.json(rb).await
    }

    /// One document with the PDP's decision (a denial is `ApiError::Forbidden`).
    pub async fn get(&self, token: &str, id: &str) -> Result<Allowed, ApiError> {
        let rb = self
            .http
            .get(format!("{}/api/resources/{}", self.base, path_segment(id)))
            .bearer_auth(token);
        let body: Value = self.json(rb).await?;
        let item: Item =
            serde_json::from_value(body.clone()).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let d = &body["decision"];
        Ok(Allowed {
            item,
            reason: d["reason"].as_str().unwrap_or_default().to_string(),
            checks: checks(&d["checks"]),
            aal: d["authentication"]["aal"].as_str().map(str::to_string),
        })
    }

    /// The stored ZTDF (the API decides `download` again).
    pub async fn download(&self, token: &str, id: &str) -> Result<Vec<u8>, ApiError> {
        let rb = self
            .http
            .get(format!(
                "{}/api/resources/{}/download",
                self.base,
                path_segment(id)
            ))
            .bearer_auth(token);
        let resp = self.send(rb).await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ApiError::Unreachable(e.to_string()))
    }
}

/// The error of a non-2xx answer (`{"error", "message", …}`).
fn error_of(status: u16, body: &Value) -> ApiError {
    let message = body["message"]
        .as_str()
        .unwrap_or("no explanation given")
        .to_string();
    match status {
        401 => ApiError::Unauthorized(message),
        403 => ApiError::Forbidden(Box::new(Denial {
            reason: body["reason"].as_str().unwrap_or(&message).to_string(),
            checks: checks(&body["checks"]),
            aal: body["authentication"]["aal"].as_str().map(str::to_string),
            aal_required: body["authentication"]["required"]
                .as_str()
                .map(str::to_string),
        })),
        404 => ApiError::NotFound(message),
        400 => ApiError::BadRequest(match body["param"].as_str() {
            Some(p) => format!("{p}: {message}"),
            None => message,
        }),
        _ => ApiError::Status { status, message },
    }
}

/// The PDP's per-check results (`{"clearance": true, …}`), by name. Members that are not
/// pass/fail (`coherence_violations` is a count) are details, not checks.
fn checks(v: &Value) -> Vec<(String, bool)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_bool().map(|b| (k.clone(), b)))
                .collect()
        })
        .unwrap_or_default()
}

/// A document id as one URL path segment (ids are `[A-Za-z0-9._:-]`, but never trust that).
pub fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// A file to upload, with the label the user chose.
pub struct NewUpload {
    pub file_name: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
    /// The label as the API's JSON (the policy's attribute names).
    pub label: Value,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// Why the API refused an upload: its message and, for an incoherent label, every violation.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub message: String,
    pub violations: Vec<String>,
}

impl ApiClient {
    /// `POST /api/resources` (multipart): the API checks size, type, label and coherence, asks
    /// the PDP, encrypts to the KAS and stores. Returns the new document's id, or the refusal.
    pub async fn upload(&self, token: &str, up: &NewUpload) -> Result<String, UploadRefused> {
        let boundary = format!("dive-web-{}", dive_idp::util::random_token(16));
        let body = multipart_body(&boundary, up);
        let rb = self
            .http
            .post(format!("{}/api/resources", self.base))
            .bearer_auth(token)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let resp = rb
            .send()
            .await
            .map_err(|e| UploadRefused::Api(ApiError::Unreachable(e.to_string())))?;
        let status = resp.status().as_u16();
        if matches!(status, 413 | 415 | 422) {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let mut message = body["message"].as_str().unwrap_or("refused").to_string();
            if let Some(d) = body["detail"].as_str() {
                message = format!("{message}: {d}");
            }
            let violations = body["violations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            return Err(UploadRefused::Rejected(Rejection {
                message,
                violations,
            }));
        }
        if !(200..300).contains(&status) {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(UploadRefused::Api(error_of(status, &body)));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| UploadRefused::Api(ApiError::Invalid(e.to_string())))?;
        body["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| UploadRefused::Api(ApiError::Invalid("the answer names no id".into())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadRefused {
    #[error("{}", .0.message)]
    Rejected(Rejection),
    #[error(transparent)]
    Api(ApiError),
}

/// A multipart/form-data body (RFC 7578). Names are ours; the file name is the user's, so
/// quotes and line breaks in it are replaced.
fn multipart_body(boundary: &str, up: &NewUpload) -> Vec<u8> {
    let mut b = Vec::with_capacity(up.bytes.len() + 1024);
    let mut text = |name: &str, value: &str| {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    text("label", &up.label.to_string());
    if let Some(t) = &up.title {
        text("title", t);
    }
    if let Some(d) = &up.description {
        text("description", d);
    }
    let name: String = up
        .file_name
        .chars()
        .map(|c| {
            if matches!(c, '"' | '\\' | '\r' | '\n') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        )
        .as_bytes(),
    );
    if let Some(ct) = up
        .content_type
        .as_deref()
        .filter(|c| !c.contains(['\r', '\n']))
    {
        b.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    b.extend_from_slice(b"\r\n");
    b.extend_from_slice(&up.bytes);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_boolean_members_are_checks() {
        let c = checks(&json!({"clearance": false, "coi": true, "coherence_violations": 0}));
        assert_eq!(
            c,
            vec![("clearance".to_string(), false), ("coi".to_string(), true)]
        );
    }
}
