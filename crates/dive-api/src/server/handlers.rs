//! Request handlers. Every access is authenticated, decided by the PDP and audited.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dive_authn::Principal;
use dive_core::ResourceAttributes;
use dive_policy::{Decision, Input, RequestContext};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{DecisionLabels, Failure, OPENAPI, Shared};
use crate::access::{DocumentDecision, input};
use crate::audit::{AuditEntry, AuditQuery};
use crate::search::{SearchQuery, search};
use crate::store::{NewResource, ResourceMeta, now_ms};
use crate::upload::{self, UploadError};

/// A document as the API shows it: its metadata and display marking.
#[derive(Serialize)]
struct Item<'a> {
    #[serde(flatten)]
    meta: &'a ResourceMeta,
    marking: String,
}

fn item(meta: &ResourceMeta) -> Item<'_> {
    Item {
        marking: meta.label.marking(),
        meta,
    }
}

/// An allow, as shown with a resource.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionView<'a> {
    allow: bool,
    reason: &'a str,
    obligations: &'a [Value],
    checks: &'a Value,
    authentication: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_version: Option<&'a str>,
}

fn decision_view(d: &Decision) -> DecisionView<'_> {
    static NULL: Value = Value::Null;
    let details = &d.evaluation_details;
    DecisionView {
        allow: d.allow,
        reason: &d.reason,
        obligations: &d.obligations,
        checks: details.get("checks").unwrap_or(&NULL),
        authentication: details.get("authentication").unwrap_or(&NULL),
        policy_version: d.policy_version.as_deref(),
    }
}

#[derive(Serialize)]
struct WithDecision<'a> {
    #[serde(flatten)]
    item: Item<'a>,
    decision: DecisionView<'a>,
}

/// What one audit record says, besides who.
pub(super) struct Outcome<'a> {
    pub action: &'a str,
    pub resource: Option<&'a str>,
    pub allow: bool,
    pub reason: &'a str,
    pub policy_version: Option<&'a str>,
    pub detail: Option<String>,
}

pub(super) async fn record(s: &Shared, who: Option<&Principal>, o: Outcome<'_>, started: Instant) {
    s.decisions
        .get_or_create(&DecisionLabels {
            action: o.action.to_string(),
            decision: if o.allow { "allow" } else { "deny" }.to_string(),
        })
        .inc();
    let mut e = AuditEntry::new(
        who.map_or("-", |p| p.attributes.unique_id.as_str()),
        o.action,
        o.resource.map(str::to_string),
        o.allow,
        o.reason,
    );
    e.issuer = who.map(|p| p.issuer.clone());
    e.latency_us = started.elapsed().as_micros() as u64;
    e.policy_version = o.policy_version.map(str::to_string);
    e.detail = o.detail;
    s.audit.record(e).await;
}

async fn record_decision(
    s: &Shared,
    who: &Principal,
    action: &str,
    resource: Option<&str>,
    d: &Decision,
    started: Instant,
) {
    record(
        s,
        Some(who),
        Outcome {
            action,
            resource,
            allow: d.allow,
            reason: &d.reason,
            policy_version: d.policy_version.as_deref(),
            detail: None,
        },
        started,
    )
    .await;
}

/// Authenticate the bearer token; a refusal is audited and answered 401 (503 if tokens cannot
/// be checked right now).
pub(super) async fn authenticate(
    s: &Shared,
    headers: &HeaderMap,
    action: &str,
    resource: Option<&str>,
    started: Instant,
) -> Result<Arc<Principal>, Failure> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match s.authn.authenticate_header_shared(header).await {
        Ok(p) => Ok(p),
        Err(e) => {
            let reason = format!("Not authenticated: {e}");
            record(
                s,
                None,
                Outcome {
                    action,
                    resource,
                    allow: false,
                    reason: &reason,
                    policy_version: None,
                    detail: None,
                },
                started,
            )
            .await;
            Err(Failure::unauthenticated(&e))
        }
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> Failure {
    Failure::internal(&crate::error::ApiError::Config(format!(
        "worker task failed: {e}"
    )))
}

/// `GET /api/resources`: list and search, only what the caller may read.
pub async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&s, &headers, "search", None, started).await?;
    let raw = raw.unwrap_or_default();
    let query = SearchQuery::parse(&raw)?;
    let (body, listed, total, version) = local_search(&s, &who, query).await?;
    let reason = format!("listed {listed} of {total} accessible matching documents");
    record(
        &s,
        Some(&*who),
        Outcome {
            action: "search",
            resource: None,
            allow: true,
            reason: &reason,
            policy_version: Some(&version),
            detail: (!raw.is_empty()).then(|| raw.chars().take(512).collect()),
        },
        started,
    )
    .await;
    Ok(Json(body).into_response())
}

/// Search this instance's documents as `who`: the page body of `GET /api/resources`, the
/// number of items on it, the accessible total and the policy version that decided.
pub(super) async fn local_search(
    s: &Shared,
    who: &Principal,
    query: SearchQuery,
) -> Result<(Value, usize, usize, String), Failure> {
    let subject = who.attributes.clone();
    let state = s.clone();
    tokio::task::spawn_blocking(move || {
        let catalog = state.catalog();
        let view = state.access.view(&subject, &catalog);
        let facts = state.access.facts();
        let mut page = search(&catalog, &view, &query, now_ms(), facts.embargo_skew_ms);
        // Every returned item is confirmed by a full decision; a disagreement would be a bug in
        // the prefilter, and the item is withheld.
        page.items.retain(|m| {
            let d = state.access.decide(&input(&subject, "read", &m.id, &m.label));
            if !d.allow {
                state.disagreements.inc();
                tracing::error!(resource = %m.id, reason = %d.reason, "search prefilter admitted a document the PDP denies; withheld");
            }
            d.allow
        });
        let items: Vec<Item> = page.items.iter().map(|m| item(m)).collect();
        let body = json!({
            "items": items,
            "total": page.total,
            "limit": query.limit,
            "nextCursor": page.next_cursor,
            "facets": page.facets,
        });
        (body, page.items.len(), page.total, view.policy_version.clone())
    })
    .await
    .map_err(blocking_failed)
}

/// Look a document up and decide `action` on it; deny and unknown ids are audited answers.
async fn decide_on(
    s: &Shared,
    who: &Principal,
    id: &str,
    action: &str,
    started: Instant,
) -> Result<Arc<DocumentDecision>, Failure> {
    let meta = catalog_meta(s, who, id, action, started).await?;
    let dd = s.access.decide_document(&who.attributes, action, &meta);
    let d = &dd.decision;
    record_decision(s, who, action, Some(id), d, started).await;
    if !d.allow {
        // Rendered once per memoised decision (most GETs of a corpus are denies).
        let body = dd.rendered(|d, meta| Failure::forbidden(d, Some(&meta.id)).json_body());
        return Err(Failure::prerendered(StatusCode::FORBIDDEN, body));
    }
    Ok(dd)
}

/// The catalog's metadata of `id`; an unknown id is audited and answered 404.
async fn catalog_meta(
    s: &Shared,
    who: &Principal,
    id: &str,
    action: &str,
    started: Instant,
) -> Result<std::sync::Arc<ResourceMeta>, Failure> {
    if let Some(entry) = s.catalog().get(id) {
        return Ok(entry.meta.clone());
    }
    record(
        s,
        Some(who),
        Outcome {
            action,
            resource: Some(id),
            allow: false,
            reason: "no such resource",
            policy_version: None,
            detail: None,
        },
        started,
    )
    .await;
    Err(Failure::not_found(format!("no resource with id {id:?}")))
}

/// `DELETE /api/resources/{id}`: by its uploader while the policy still lets them read it, or
/// by an administrator (the admin policy: admin role, this instance's own issuer, MFA). Seeded
/// documents belong to the seed job: only an administrator deletes one (the next seeding
/// re-creates it).
pub async fn delete_resource(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&s, &headers, "delete", Some(&id), started).await?;
    let meta = catalog_meta(&s, &who, &id, "delete", started).await?;
    let d = if !meta.seeded && meta.creator == who.attributes.unique_id {
        s.access
            .decide(&input(&who.attributes, "read", &id, &meta.label))
    } else {
        s.access.pdp().decide_admin(&Input::new(
            &who.attributes,
            "resource.delete",
            &ResourceAttributes::from_label(&id, meta.label.clone(), false),
            &RequestContext::default(),
        ))
    };
    record_decision(&s, &who, "delete", Some(&id), &d, started).await;
    if !d.allow {
        return Err(Failure::forbidden(&d, Some(&id)));
    }
    if s.store.delete(&id).await?.is_none() {
        return Err(Failure::not_found(format!("no resource with id {id:?}")));
    }
    if let Err(e) = s.refresh_catalog().await {
        tracing::warn!(error = %e, "catalog reload after delete failed; the next refresh picks it up");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/resources/{id}`: metadata with the decision.
pub async fn get_resource(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&s, &headers, "read", Some(&id), started).await?;
    let dd = decide_on(&s, &who, &id, "read", started).await?;
    // The body depends only on the document and the decision: rendered once per memoised
    // decision, not per request.
    let body = dd.rendered(|d, meta| {
        serde_json::to_vec(&WithDecision {
            item: item(meta),
            decision: decision_view(d),
        })
        .map(Bytes::from)
        .unwrap_or_default()
    });
    if body.is_empty() {
        return Err(Failure::internal(&crate::error::ApiError::Config(
            "the resource could not be rendered as JSON".into(),
        )));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// `GET /api/resources/{id}/download`: the ZTDF, only on allow.
pub async fn download(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&s, &headers, "download", Some(&id), started).await?;
    let meta = decide_on(&s, &who, &id, "download", started)
        .await?
        .meta
        .clone();
    let bytes = s
        .store
        .ztdf(&id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("resource {id:?} has no stored ZTDF")))?;
    let name = format!("{}.tdf", meta.file_name).replace(['"', '\\'], "_");
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.label.marking()) {
        h.insert("x-dive-marking", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The parts of an upload form.
#[derive(Default)]
struct Form {
    file: Option<FilePart>,
    ztdf: Option<FilePart>,
    label: Option<String>,
    marking: Option<String>,
    title: Option<String>,
    description: Option<String>,
}

struct FilePart {
    name: Option<String>,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// Longest text part (label, marking, title, description).
const MAX_TEXT_PART: usize = 64 * 1024;

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> UploadError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        UploadError::TooLarge { limit }
    } else {
        UploadError::Form(format!("malformed multipart body: {}", e.body_text()))
    }
}

async fn read_form(mut mp: Multipart, limit: usize) -> Result<Form, UploadError> {
    let mut form = Form::default();
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or("").to_string();
        let max = match name.as_str() {
            "file" | "ztdf" => limit,
            "label" | "marking" | "title" | "description" => MAX_TEXT_PART,
            other => {
                return Err(UploadError::Form(format!(
                    "unknown form field {other:?}: expected file (or ztdf), label or marking, title, description"
                )));
            }
        };
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
            if bytes.len() + chunk.len() > max {
                return Err(if max == limit {
                    UploadError::TooLarge { limit }
                } else {
                    UploadError::Form(format!("form field {name:?} is longer than {max} bytes"))
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = |b: Vec<u8>| {
            String::from_utf8(b)
                .map_err(|_| UploadError::Form(format!("form field {name:?} is not UTF-8 text")))
        };
        let dup = || UploadError::Form(format!("form field {name:?} appears twice"));
        match name.as_str() {
            "file" | "ztdf" => {
                let slot = if name == "file" {
                    &mut form.file
                } else {
                    &mut form.ztdf
                };
                if slot.is_some() {
                    return Err(dup());
                }
                *slot = Some(FilePart {
                    name: file_name,
                    content_type,
                    bytes,
                });
            }
            _ => {
                let slot = match name.as_str() {
                    "label" => &mut form.label,
                    "marking" => &mut form.marking,
                    "title" => &mut form.title,
                    _ => &mut form.description,
                };
                if slot.is_some() {
                    return Err(dup());
                }
                *slot = Some(text(bytes)?);
            }
        }
    }
    Ok(form)
}

/// `POST /api/resources`: a plaintext file with a label (encrypted here to this instance's KAS),
/// or an already-encrypted ZTDF (verified).
pub async fn upload(
    State(s): State<Shared>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&s, &headers, "upload", None, started).await?;
    let result = upload_inner(&s, &who, multipart, started).await;
    if let Err((f, audited)) = &result
        && !audited
    {
        // Refused before the PDP was asked: still a recorded (deny) decision.
        let reason = f
            .body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("upload refused")
            .to_string();
        record(
            &s,
            Some(&*who),
            Outcome {
                action: "upload",
                resource: None,
                allow: false,
                reason: &reason,
                policy_version: None,
                detail: None,
            },
            started,
        )
        .await;
    }
    result.map_err(|(f, _)| f)
}

/// The upload; the error's flag says whether it has been audited already.
async fn upload_inner(
    s: &Shared,
    who: &Principal,
    multipart: Result<Multipart, MultipartRejection>,
    started: Instant,
) -> Result<Response, (Failure, bool)> {
    let fail = |e: UploadError| (Failure::from(e), false);
    let mp = multipart.map_err(|e| {
        fail(UploadError::Form(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        )))
    })?;
    let form = read_form(mp, s.max_upload_bytes).await.map_err(fail)?;
    let facts = s.access.facts();
    let id = uuid::Uuid::new_v4().to_string();
    let now = OffsetDateTime::now_utc();

    // For a ZTDF upload: its policy uuid and plaintext size, as verified.
    let (part, label, mime, verified) = match (form.file, form.ztdf) {
        (Some(_), Some(_)) => {
            return Err(fail(UploadError::Form(
                "send either a file (to encrypt) or a ztdf (already encrypted), not both".into(),
            )));
        }
        (None, None) => {
            return Err(fail(UploadError::Form(
                "a 'file' part (plaintext to encrypt) or a 'ztdf' part (an encrypted ZTDF) is required".into(),
            )));
        }
        (Some(f), None) => {
            let file_name = upload::clean_file_name(f.name.as_deref());
            let mime = upload::check_content(f.content_type.as_deref(), &file_name, &f.bytes)
                .map_err(fail)?;
            let label = upload::parse_label(form.label.as_deref(), form.marking.as_deref())
                .map_err(fail)?;
            (f, label, mime, None)
        }
        (None, Some(z)) => {
            if form.label.is_some() || form.marking.is_some() {
                return Err(fail(UploadError::Form(
                    "a ZTDF carries its own label in its policy: do not send label or marking with it".into(),
                )));
            }
            let kas = s.kas.url().to_string();
            let (bytes, verified) = tokio::task::spawn_blocking(move || {
                let v = upload::verify_ztdf(&z.bytes, &kas);
                (z, v)
            })
            .await
            .map_err(|e| (blocking_failed(e), false))?;
            let v = verified.map_err(fail)?;
            (
                bytes,
                v.label,
                v.mime_type,
                Some((v.policy_uuid, v.plaintext_len)),
            )
        }
    };
    upload::check_coherence(&label, &facts).map_err(fail)?;

    let context = RequestContext {
        integrity_verified: verified.is_some().then_some(true),
        current_time: None,
    };
    let d = s.access.decide(&Input::new(
        &who.attributes,
        "upload",
        &ResourceAttributes::from_label(&id, label.clone(), true),
        &context,
    ));
    record_decision(s, who, "upload", Some(&id), &d, started).await;
    if !d.allow {
        return Err((Failure::forbidden(&d, None), true));
    }

    let mut file_name = upload::clean_file_name(part.name.as_deref());
    let (ztdf, policy_uuid, size) = if let Some((policy_uuid, size)) = verified {
        for ext in [".tdf", ".ztdf"] {
            if file_name.len() > ext.len() && file_name.to_ascii_lowercase().ends_with(ext) {
                file_name.truncate(file_name.len() - ext.len());
            }
        }
        (part.bytes, policy_uuid, size)
    } else {
        let recipient = s
            .kas
            .recipient()
            .await
            .map_err(|e| (Failure::from(e), true))?;
        let (l, m) = (label.clone(), mime.clone());
        let enc =
            tokio::task::spawn_blocking(move || upload::encrypt(&part.bytes, &l, &m, &recipient))
                .await
                .map_err(|e| (blocking_failed(e), true))?
                .map_err(|e| (Failure::from(e), true))?;
        (enc.ztdf, enc.policy_uuid, enc.plaintext_len)
    };
    let created_at = label.creation_date.unwrap_or(now);
    let title = form
        .title
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| file_name.clone());
    let doc = NewResource {
        id: id.clone(),
        title,
        description: form.description.filter(|d| !d.trim().is_empty()),
        label,
        mime_type: mime,
        file_name,
        size,
        created_at,
        creator: who.attributes.unique_id.clone(),
        ztdf,
        policy_uuid,
        seeded: false,
    };
    let (meta, generation) = s
        .store
        .insert(doc)
        .await
        .map_err(|e| (Failure::from(e), true))?;
    if let Err(e) = s.added(meta.clone(), generation).await {
        tracing::warn!(error = %e, "catalog update after upload failed; the next refresh picks it up");
    }
    let mut r = (
        StatusCode::CREATED,
        Json(WithDecision {
            item: item(&meta),
            decision: decision_view(&d),
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/resources/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

#[derive(Serialize, serde::Deserialize)]
struct AuditCursor {
    at: i64,
    id: String,
}

fn audit_query(raw: &str) -> Result<AuditQuery, Failure> {
    let mut q = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    let bad = |p: &str, why: &str| {
        Failure::bad_request(format!("query parameter {p}: {why}")).with("param", json!(p))
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "subject" => q.subject = Some(v),
            "resource" => q.resource_id = Some(v),
            "action" => q.action = Some(v),
            "decision" => {
                q.allow = Some(match v.as_str() {
                    "allow" => true,
                    "deny" => false,
                    _ => return Err(bad("decision", "expected allow or deny")),
                })
            }
            "since" | "until" => {
                let t = OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| bad(&k, "expected an RFC 3339 time"))?;
                let ms = crate::store::to_ms(t);
                if k == "since" {
                    q.since_ms = Some(ms);
                } else {
                    q.until_ms = Some(ms);
                }
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("limit", "expected a number from 1 to 1000"))?
            }
            "cursor" => {
                let c: AuditCursor = URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| bad("cursor", "not a cursor returned by this service"))?;
                q.before = Some((c.at, c.id));
            }
            other => {
                return Err(bad(
                    other,
                    "unknown parameter; expected subject, resource, action, decision, since, until, limit, cursor",
                ));
            }
        }
    }
    Ok(q)
}

/// The admin decision on reading the audit log (admin role, own issuer, MFA), audited.
async fn may_read_audit(s: &Shared, headers: &HeaderMap, started: Instant) -> Result<(), Failure> {
    let who = authenticate(s, headers, "audit.read", None, started).await?;
    let d = s.access.pdp().decide_instance_admin(
        &who.attributes,
        "audit.read",
        s.instance,
        "audit-log",
    );
    record_decision(s, &who, "audit.read", None, &d, started).await;
    if !d.allow {
        return Err(Failure::forbidden(&d, None));
    }
    Ok(())
}

/// `GET /api/audit`: the decision log, newest first (admin role, own issuer, MFA).
pub async fn audit(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    may_read_audit(&s, &headers, Instant::now()).await?;
    let q = audit_query(raw.as_deref().unwrap_or(""))?;
    // Entries are written in the background: make this request's view complete.
    s.audit.flush().await;
    let entries = s.store.audit_page(&q).await?;
    let next = (entries.len() == q.limit)
        .then(|| entries.last())
        .flatten()
        .map(|e| {
            URL_SAFE_NO_PAD.encode(
                serde_json::to_vec(&AuditCursor {
                    at: e.at_ms,
                    id: e.id.clone(),
                })
                .unwrap_or_default(),
            )
        });
    Ok(Json(json!({"entries": entries, "nextCursor": next})).into_response())
}

/// Buckets a summary may return; a range holding more is refused (narrow it or widen buckets).
const MAX_SUMMARY_BUCKETS: usize = 10_000;

/// The summary's `bucket` (seconds) and the log filter of the remaining parameters.
fn summary_query(raw: &str) -> Result<(i64, AuditQuery), Failure> {
    let mut bucket = 60;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "bucket" => {
                bucket = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=86_400).contains(n))
                    .ok_or_else(|| {
                        Failure::bad_request(
                            "query parameter bucket: expected seconds from 1 to 86400",
                        )
                        .with("param", json!("bucket"))
                    })?;
            }
            "limit" | "cursor" => {
                return Err(Failure::bad_request(format!(
                    "query parameter {k}: not a parameter of the summary (it counts every matching decision)"
                ))
                .with("param", json!(k)));
            }
            _ => {
                rest.append_pair(&k, &v);
            }
        }
    }
    Ok((bucket, audit_query(&rest.finish())?))
}

/// `GET /api/audit/summary`: allowed and denied decisions per time bucket, counted by the
/// database (the operations page's chart), with the log's filters. Same access as the log.
pub async fn audit_summary(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    may_read_audit(&s, &headers, Instant::now()).await?;
    let (bucket_s, q) = summary_query(raw.as_deref().unwrap_or(""))?;
    s.audit.flush().await;
    let buckets = s
        .store
        .audit_summary(&q, bucket_s * 1000, MAX_SUMMARY_BUCKETS)
        .await?;
    if buckets.len() > MAX_SUMMARY_BUCKETS {
        return Err(Failure::bad_request(format!(
            "more than {MAX_SUMMARY_BUCKETS} buckets of {bucket_s} s hold decisions: narrow since/until or widen bucket"
        ))
        .with("param", json!("bucket")));
    }
    let buckets: Vec<Value> = buckets
        .into_iter()
        .map(|(start_ms, allowed, denied)| {
            let start = crate::store::from_ms(start_ms)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            json!({"start": start, "allowed": allowed, "denied": denied})
        })
        .collect();
    Ok(Json(json!({"bucketSeconds": bucket_s, "buckets": buckets})).into_response())
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

pub async fn not_found() -> Failure {
    Failure::not_found("no such endpoint; see /api/openapi.json")
}
