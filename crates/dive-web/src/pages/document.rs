//! One document: its decision, and opening, inspecting and downloading it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dive_core::CountryCode;
use serde::Deserialize;

use super::*;

use super::documents::doc_href;

#[derive(Deserialize)]
pub(super) struct InstanceQuery {
    instance: Option<String>,
}

/// The API that holds a document: this instance's, or an active partner's (federated results).
fn api_for(s: &AppState, instance: Option<&str>) -> Result<(ApiClient, String), String> {
    let own = s.settings.instance;
    let code = match instance.map(str::trim).filter(|i| !i.is_empty()) {
        None => {
            return Ok((
                ApiClient::new(s.http.clone(), &s.settings.api_url),
                own.to_string(),
            ));
        }
        Some(i) => {
            CountryCode::new(&i.to_ascii_uppercase()).map_err(|e| format!("instance {i:?}: {e}"))?
        }
    };
    if code == own {
        return Ok((
            ApiClient::new(s.http.clone(), &s.settings.api_url),
            own.to_string(),
        ));
    }
    let p = partners(s)?
        .into_iter()
        .find(|p| p.code == code)
        .ok_or_else(|| format!("{code} is not an active federation partner of {own}"))?;
    Ok((ApiClient::new(s.http.clone(), &p.api_url), code.to_string()))
}

/// What a denied user would need, from the failed checks.
fn needed(d: &crate::api::Denial) -> Option<String> {
    let failed: Vec<&str> = d
        .checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(k, _)| k.as_str())
        .collect();
    let mut needs = Vec::new();
    for f in failed {
        let n = match f {
            "clearance" => "a clearance at or above the document's classification",
            "releasability" => "a country of affiliation among the document's releasability list",
            "coi" => "membership of the document's communities of interest",
            "authentication_strength" => match (&d.aal, &d.aal_required) {
                (_, Some(_)) => {
                    "a stronger sign-in (a second factor: sign out and sign in again with your one-time code)"
                }
                _ => "a stronger sign-in",
            },
            "embargo" => "patience: the document is under embargo until its release date",
            "industry" => {
                "a government or military affiliation (the document is not releasable to industry)"
            }
            "trusted_issuer" | "federation" => {
                "an identity provider this instance trusts for this document"
            }
            _ => continue,
        };
        needs.push(n);
    }
    (!needs.is_empty()).then(|| needs.join("; "))
}

fn allowed_view(a: crate::api::Allowed, instance: &str, own: CountryCode) -> AllowedView {
    let d = a.item;
    let l = &d.label;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let inst = (instance != own.as_str()).then_some(instance);
    let href = |suffix: &str| {
        format!("{}{suffix}", doc_href(&d.id, None, own))
            + &inst
                .map(|i| format!("?{}", query_string(&[("instance", i.to_string())])))
                .unwrap_or_default()
    };
    AllowedView {
        open_href: href("/open"),
        inspect_href: href("/inspect"),
        download_href: href("/download"),
        instance: instance.to_string(),
        title: d.title.clone(),
        description: d.description.clone(),
        marking: d.marking.clone(),
        classification: l.classification.as_str().to_string(),
        classification_text: l.classification.marking().to_string(),
        original: l
            .original_classification
            .clone()
            .map(|o| match l.original_country {
                Some(c) => format!("{o} ({c})"),
                None => o,
            }),
        releasability: list(l.releasability_to.iter().map(|c| c.to_string()).collect()),
        cois: if l.coi.is_empty() {
            "none".to_string()
        } else {
            format!(
                "{} ({})",
                l.coi.join(", "),
                serde_json::to_value(l.coi_operator)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        },
        caveats: list(l.caveats.clone()),
        industry: l.releasable_to_industry,
        created: d.created_at.clone(),
        creator: d.creator.clone(),
        file_name: d.file_name.clone(),
        mime_type: d.mime_type.clone(),
        size: d.size,
        ztdf_size: d.ztdf_size,
        reason: a.reason,
        checks: a.checks,
        aal: a.aal,
        id: d.id,
    }
}

pub(super) async fn document(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (api, instance) = match api_for(&s, iq.instance.as_deref()) {
        Ok(x) => x,
        Err(e) => return error_page(&s, Some(&u), StatusCode::NOT_FOUND, "Unknown instance", e),
    };
    let own = s.settings.instance;
    match api.get(&u.token, &id).await {
        Ok(a) => {
            let v = allowed_view(a, &instance, own);
            render(&DocumentPage {
                nav: nav(&s, Some(&u), "documents"),
                page_title: v.title.clone(),
                view: DocView::Allowed(Box::new(v)),
            })
        }
        Err(ApiError::Forbidden(d)) => with_status(
            StatusCode::FORBIDDEN,
            render(&DocumentPage {
                nav: nav(&s, Some(&u), "documents"),
                page_title: "Access denied".into(),
                view: DocView::Denied(DeniedView {
                    id: id.clone(),
                    instance,
                    needed: needed(&d),
                    reason: d.reason.clone(),
                    checks: d.checks.clone(),
                }),
            }),
        ),
        Err(e) => error_page(
            &s,
            Some(&u),
            api_status(&e),
            "Document unavailable",
            e.to_string(),
        ),
    }
}

/// The document's metadata (allowed) and its ZTDF, for open/inspect/download.
async fn fetch(
    s: &AppState,
    u: &User,
    id: &str,
    instance: Option<&str>,
) -> Result<(crate::api::Allowed, String, Vec<u8>), Response> {
    let (api, inst) = api_for(s, instance)
        .map_err(|e| error_page(s, Some(u), StatusCode::NOT_FOUND, "Unknown instance", e))?;
    let fail = |e: ApiError| {
        let status = api_status(&e);
        let msg = match &e {
            ApiError::Forbidden(d) => format!("Access denied: {}", d.reason),
            other => other.to_string(),
        };
        error_page(s, Some(u), status, "Document unavailable", msg)
    };
    let meta = api.get(&u.token, id).await.map_err(fail)?;
    let ztdf = api.download(&u.token, id).await.map_err(fail)?;
    Ok((meta, inst, ztdf))
}

/// The signed-in user, the document's metadata (with the API's decision), the instance that
/// holds it, and the stored ZTDF: what every page about one document starts from.
async fn stored(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
    instance: Option<String>,
) -> Result<(User, crate::api::Allowed, String, Vec<u8>), Response> {
    let u = require_user(s, headers, uri).await?;
    let (meta, inst, ztdf) = fetch(s, &u, id, instance.as_deref()).await?;
    Ok((u, meta, inst, ztdf))
}

/// The signed-in user, the document's metadata (with the API's decision), the instance that
/// holds it, and its plaintext through the KAS: what "open" and the raw content both need.
async fn decrypted(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
    instance: Option<String>,
) -> Result<(User, crate::api::Allowed, String, Vec<u8>), Response> {
    let (u, meta, inst, ztdf) = stored(s, headers, uri, id, instance).await?;
    match content::decrypt(&s.http, &u.token, ztdf).await {
        Ok(plain) => Ok((u, meta, inst, plain)),
        Err(e) => Err(content_error(s, &u, e)),
    }
}

fn content_error(s: &AppState, u: &User, e: ContentError) -> Response {
    let status = match e {
        ContentError::Refused(_) => StatusCode::FORBIDDEN,
        ContentError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ContentError::Kas(_) => StatusCode::BAD_GATEWAY,
        ContentError::Ztdf(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error_page(
        s,
        Some(u),
        status,
        "Cannot open the document",
        e.to_string(),
    )
}

fn suffix_href(id: &str, suffix: &str, instance: &str, own: CountryCode) -> String {
    let mut h = format!("/documents/{}{suffix}", crate::api::path_segment(id));
    if instance != own.as_str() {
        h.push('?');
        h.push_str(&query_string(&[("instance", instance.to_string())]));
    }
    h
}

/// "Open": rewrap at the KAS with the user's token, decrypt, render by type.
pub(super) async fn open(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let (u, meta, inst, plain) = match decrypted(&s, &headers, &uri, &id, iq.instance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let own = s.settings.instance;
    let d = meta.item;
    let rendered = content::render(&d.mime_type, &plain);
    let content_href = suffix_href(&id, "/content", &inst, own);
    render(&OpenPage {
        nav: nav(&s, Some(&u), "documents"),
        title: d.title.clone(),
        marking: d.marking.clone(),
        classification: d.label.classification.as_str().to_string(),
        mime_type: d.mime_type.clone(),
        rendered,
        back_href: suffix_href(&id, "", &inst, own),
        download_href: suffix_href(&id, "/download", &inst, own),
        content_download_href: format!(
            "{content_href}{}download=1",
            if content_href.contains('?') { "&" } else { "?" }
        ),
        content_href,
    })
}

#[derive(Deserialize)]
pub(super) struct ContentQuery {
    instance: Option<String>,
    download: Option<String>,
}

/// The decrypted bytes for `<img>`, the sandboxed HTML frame, or a download. Images only of the
/// allow-listed types; HTML only under a `sandbox` CSP (opaque origin, no scripts); anything else
/// only as an attachment.
pub(super) async fn content_raw(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(cq): Query<ContentQuery>,
) -> Response {
    let (_, meta, _, plain) = match decrypted(&s, &headers, &uri, &id, cq.instance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let d = meta.item;
    let mut r = plain.into_response();
    let h = r.headers_mut();
    let attach = cq.download.is_some();
    if !attach && let Some(t) = content::image_type(&d.mime_type) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(security::IMAGE_CSP),
        );
    } else if !attach && content::is_html(&d.mime_type) {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(security::SANDBOXED_CONTENT_CSP),
        );
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        );
        let name = d.file_name.replace(
            |c: char| !c.is_ascii_graphic() || c == '"' || c == '\\',
            "_",
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

pub(super) async fn inspect(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let (u, meta, inst, ztdf) = match stored(&s, &headers, &uri, &id, iq.instance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ins = match content::inspect(&ztdf) {
        Ok(i) => i,
        Err(e) => return content_error(&s, &u, e),
    };
    let d = meta.item;
    render(&InspectPage {
        nav: nav(&s, Some(&u), "documents"),
        title: d.title.clone(),
        marking: d.marking.clone(),
        classification: d.label.classification.as_str().to_string(),
        back_href: suffix_href(&id, "", &inst, s.settings.instance),
        ins,
    })
}

/// The ZTDF as stored (still encrypted: opening it needs the KAS again).
pub(super) async fn download(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let (_, meta, _, ztdf) = match stored(&s, &headers, &uri, &id, iq.instance).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = format!("{}.tdf", meta.item.file_name).replace(
        |c: char| !c.is_ascii_graphic() || c == '"' || c == '\\',
        "_",
    );
    let mut r = ztdf.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.item.marking) {
        h.insert("x-dive-marking", v);
    }
    r
}
