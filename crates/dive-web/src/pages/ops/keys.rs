//! Key releases: the KAS's rewrap audit (`GET <kas>/audit`, read with the administrator's own
//! token, so the KAS's PDP decides that read), one row per key access object — who asked for
//! which object's key, released or refused and the real reason — filtered by user, outcome,
//! object and time, paged with the KAS's cursor; and a chart of releases and refusals per minute
//! over the last hour (`GET <kas>/audit/summary`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Deserialize;
use time::OffsetDateTime;

use super::audit::{Counted, chart, page_links, per_minute, rfc3339, window_start};
use super::*;
use crate::api::{ApiClient, AuditBucket, KeyRelease};
use crate::templates::{KeyFilters, KeyRow, OpsKeysPage};

/// Rows per page.
const PAGE: usize = 50;

const RELEASES: Counted = Counted {
    id: "key-releases-per-minute",
    title: "Key releases per minute, released and refused (UTC)",
    what: "Key requests",
    ok: "released",
    bad: "refused",
};

#[derive(Deserialize, Default)]
pub(super) struct KeysQuery {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    object: String,
    /// `YYYY-MM-DDTHH:MM` (a `datetime-local` field), UTC.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

/// The KAS's query parameters for the filters (without paging), or the first bad field.
fn kas_filters(q: &KeysQuery) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in [("subject", &q.subject), ("object", &q.object)] {
        if !v.trim().is_empty() {
            out.push((k, v.trim().to_string()));
        }
    }
    match q.decision.as_str() {
        "" => {}
        "permit" | "fail" | "rejected" => out.push(("decision", q.decision.clone())),
        other => {
            return Err(format!(
                "decision: expected permit, fail or rejected, got {other:?}"
            ));
        }
    }
    if let Some(t) = rfc3339("from", &q.since)? {
        out.push(("since", t));
    }
    if let Some(t) = rfc3339("until", &q.until)? {
        out.push(("until", t));
    }
    Ok(out)
}

fn row(e: &KeyRelease) -> KeyRow {
    KeyRow {
        at: e.at.replace('T', " ").trim_end_matches('Z').to_string(),
        subject: e.subject.clone().unwrap_or_else(|| "—".into()),
        object: e.object.clone().unwrap_or_default(),
        kao: e.kao_id.clone().unwrap_or_default(),
        algorithm: e.algorithm.clone().unwrap_or_default(),
        transport: e.transport.clone(),
        released: e.decision == "permit",
        decision: match e.decision.as_str() {
            "permit" => "released".into(),
            "fail" => "refused".into(),
            other => other.to_string(),
        },
        reason: e.reason.clone(),
        latency: format!("{:.1} ms", e.latency_us as f64 / 1000.0),
    }
}

/// Releases and refusals per minute over the window, with the page's user and object filters.
async fn window(
    kas: &ApiClient,
    token: &str,
    filters: &[(&'static str, String)],
    now_s: i64,
) -> Result<Vec<AuditBucket>, String> {
    let mut q: Vec<(&str, String)> = filters
        .iter()
        .filter(|(k, _)| matches!(*k, "subject" | "object"))
        .cloned()
        .collect();
    q.push(("since", window_start(now_s)));
    q.push(("bucket", "60".into()));
    let summary = kas
        .kas_audit_summary(token, &q)
        .await
        .map_err(|e| e.to_string())?;
    if summary.bucket_seconds != 60 {
        return Err(format!(
            "the KAS counted per {} s, not per minute",
            summary.bucket_seconds
        ));
    }
    Ok(summary
        .buckets
        .into_iter()
        .map(|b| AuditBucket {
            start: b.start,
            allowed: b.permit,
            denied: b.fail + b.rejected,
        })
        .collect())
}

pub(super) async fn page(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<KeysQuery>,
) -> Response {
    let u = match require_admin(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let form = KeyFilters {
        subject: q.subject.clone(),
        decision: q.decision.clone(),
        object: q.object.clone(),
        since: q.since.clone(),
        until: q.until.clone(),
    };
    let mut view = OpsKeysPage {
        nav: nav(&s, Some(&u), "ops-keys"),
        form,
        error: None,
        rows: Vec::new(),
        next_href: None,
        first_href: None,
        chart: None,
        minutes: Vec::new(),
    };
    let filters = match kas_filters(&q) {
        Ok(f) => f,
        Err(e) => {
            view.error = Some(e);
            return with_status(StatusCode::BAD_REQUEST, render(&view));
        }
    };
    let kas = ApiClient::new(s.http.clone(), &s.settings.kas_url);
    let mut query = filters.clone();
    query.push(("limit", PAGE.to_string()));
    if let Some(c) = q.cursor.as_ref().filter(|c| !c.is_empty()) {
        query.push(("cursor", c.clone()));
    }
    let now_s = OffsetDateTime::now_utc().unix_timestamp();
    let (listed, win) = tokio::join!(
        kas.kas_audit(&u.token, &query),
        window(&kas, &u.token, &filters, now_s)
    );
    let page = match listed {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                &s,
                Some(&u),
                super::super::api_status(&e),
                "Key release log unavailable",
                e.to_string().replace("resource service", "KAS"),
            );
        }
    };
    (view.next_href, view.first_href) = page_links(
        "/ops/keys",
        &[
            ("subject", &q.subject),
            ("decision", &q.decision),
            ("object", &q.object),
            ("since", &q.since),
            ("until", &q.until),
        ],
        page.next_cursor.as_deref(),
        q.cursor.as_deref(),
    );
    match win {
        Ok(counted) => {
            let (c, m) = chart(&per_minute(&counted, now_s), &RELEASES);
            view.chart = Some(c);
            view.minutes = m;
        }
        Err(e) => view.error = Some(format!("The chart is unavailable: {e}")),
    }
    view.rows = page.entries.iter().map(row).collect();
    render(&view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_kas_parameters_and_bad_ones_are_named() {
        let q = KeysQuery {
            subject: " testuser-usa-1@usa ".into(),
            decision: "fail".into(),
            since: "2026-11-24T07:30".into(),
            ..Default::default()
        };
        let f = kas_filters(&q).unwrap();
        assert!(f.contains(&("subject", "testuser-usa-1@usa".into())));
        assert!(f.contains(&("decision", "fail".into())));
        assert!(f.contains(&("since", "2026-11-24T07:30:00Z".into())));
        let bad = KeysQuery {
            decision: "deny".into(),
            ..Default::default()
        };
        assert!(kas_filters(&bad).unwrap_err().starts_with("decision:"));
    }
}
