//! The decision audit log: the resource API's `GET /api/audit` (admin role, read with the
//! administrator's own token, so the API's PDP decides and records that read too), filtered by
//! user, decision, action, resource and time range, paginated with the API's cursor; and a chart
//! of decisions per minute (allowed and denied) over the last hour.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::api::{ApiClient, AuditBucket, AuditEntry};
use crate::charts::{self, Column};
use crate::templates::{AuditFilters, AuditRow, MinuteRow, OpsAuditPage};

/// Entries per page.
const PAGE: usize = 50;
/// The chart's window, in minutes.
const WINDOW_MIN: i64 = 60;

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource: String,
    /// `YYYY-MM-DDTHH:MM` (a `datetime-local` field), UTC.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

/// A `datetime-local` value (UTC) as RFC 3339, or what is wrong with it.
pub(super) fn rfc3339(field: &str, v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let full = match v.len() {
        16 => format!("{v}:00Z"),
        19 => format!("{v}Z"),
        _ => v.to_string(),
    };
    OffsetDateTime::parse(&full, &Rfc3339)
        .map(|_| Some(full))
        .map_err(|_| {
            format!("{field}: expected a date and time like 2026-11-24T07:30 (UTC), got {v:?}")
        })
}

/// The API's query parameters for the filters (without paging), or the first bad field.
fn api_filters(q: &AuditQuery) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in [
        ("subject", &q.subject),
        ("action", &q.action),
        ("resource", &q.resource),
    ] {
        if !v.trim().is_empty() {
            out.push((k, v.trim().to_string()));
        }
    }
    match q.decision.as_str() {
        "" => {}
        "allow" | "deny" => out.push(("decision", q.decision.clone())),
        other => return Err(format!("decision: expected allow or deny, got {other:?}")),
    }
    if let Some(t) = rfc3339("from", &q.since)? {
        out.push(("since", t));
    }
    if let Some(t) = rfc3339("until", &q.until)? {
        out.push(("until", t));
    }
    Ok(out)
}

fn row(e: &AuditEntry) -> AuditRow {
    AuditRow {
        at: e.at.replace('T', " ").trim_end_matches('Z').to_string(),
        subject: e.subject.clone(),
        action: e.action.clone(),
        resource: e.resource_id.clone().unwrap_or_default(),
        allow: e.allow,
        reason: e.reason.clone(),
        latency: format!("{:.1} ms", e.latency_us as f64 / 1000.0),
    }
}

/// Allowed and denied decisions per minute over the window ending now, oldest first, every
/// minute of the window present (the API lists only minutes with decisions).
pub(super) fn per_minute(counted: &[AuditBucket], now_s: i64) -> Vec<(i64, u64, u64)> {
    let first = now_s / 60 - WINDOW_MIN + 1;
    let mut buckets: Vec<(i64, u64, u64)> = (0..WINDOW_MIN).map(|i| (first + i, 0, 0)).collect();
    for c in counted {
        let Ok(t) = OffsetDateTime::parse(&c.start, &Rfc3339) else {
            continue;
        };
        let i = t.unix_timestamp() / 60 - first;
        if let Some(b) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) {
            b.1 += c.allowed;
            b.2 += c.denied;
        }
    }
    buckets
}

fn hh_mm(minute: i64) -> String {
    let t = minute * 60;
    format!("{:02}:{:02}", (t / 3600) % 24, (t / 60) % 60)
}

/// What a per-minute chart counts: its element id, title and the names of its two outcomes.
pub(super) struct Counted {
    pub id: &'static str,
    pub title: &'static str,
    pub what: &'static str,
    pub ok: &'static str,
    pub bad: &'static str,
}

const DECISIONS: Counted = Counted {
    id: "decisions-per-minute",
    title: "Decisions per minute, allowed and denied (UTC)",
    what: "Decisions",
    ok: "allowed",
    bad: "denied",
};

/// The chart and its numbers as rows (minutes with decisions only).
pub(super) fn chart(
    buckets: &[(i64, u64, u64)],
    counted: &Counted,
) -> (charts::Chart, Vec<MinuteRow>) {
    let columns: Vec<Column> = buckets
        .iter()
        .map(|&(m, a, d)| Column {
            label: hh_mm(m),
            segments: vec![
                (a as f64, "bar-ok", counted.ok),
                (d as f64, "bar-bad", counted.bad),
            ],
        })
        .collect();
    let rows: Vec<MinuteRow> = buckets
        .iter()
        .filter(|b| b.1 + b.2 > 0)
        .map(|&(m, a, d)| MinuteRow {
            minute: hh_mm(m),
            allowed: a,
            denied: d,
        })
        .collect();
    let (a, d) = buckets.iter().fold((0, 0), |(a, d), b| (a + b.1, d + b.2));
    let desc = format!(
        "{} per minute (UTC) over the last {WINDOW_MIN} minutes: {a} {}, {d} {} in total; busiest minutes in the table below.",
        counted.what, counted.ok, counted.bad
    );
    let c = charts::bars(counted.id, counted.title.into(), desc, &columns, "", 12);
    (c, rows)
}

/// A log page's "Next page" (the filled-in form fields and the log's next cursor) and "First
/// page" (the form fields, shown when this page came from a cursor) links.
pub(super) fn page_links(
    path: &str,
    form: &[(&'static str, &String)],
    next_cursor: Option<&str>,
    cursor: Option<&str>,
) -> (Option<String>, Option<String>) {
    let pairs: Vec<(&str, String)> = form
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, (*v).clone()))
        .collect();
    let next = next_cursor.map(|c| {
        let mut p = pairs.clone();
        p.push(("cursor", c.to_string()));
        format!("{path}?{}", query_string(&p))
    });
    let first = cursor
        .filter(|c| !c.is_empty())
        .map(|_| format!("{path}?{}", query_string(&pairs)));
    (next, first)
}

/// The start of the chart's window (RFC 3339).
pub(super) fn window_start(now_s: i64) -> String {
    OffsetDateTime::from_unix_timestamp((now_s / 60 - WINDOW_MIN + 1) * 60)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The window's decisions per minute with the page's user/action/resource filters (not its
/// decision or time filters: the chart shows both outcomes over the last hour).
async fn window(
    api: &ApiClient,
    token: &str,
    filters: &[(&'static str, String)],
    now_s: i64,
) -> Result<Vec<AuditBucket>, String> {
    let since = window_start(now_s);
    let mut q: Vec<(&str, String)> = filters
        .iter()
        .filter(|(k, _)| matches!(*k, "subject" | "action" | "resource"))
        .cloned()
        .collect();
    q.push(("since", since));
    q.push(("bucket", "60".into()));
    let summary = api
        .audit_summary(token, &q)
        .await
        .map_err(|e| e.to_string())?;
    if summary.bucket_seconds != 60 {
        return Err(format!(
            "the API counted per {} s, not per minute",
            summary.bucket_seconds
        ));
    }
    Ok(summary.buckets)
}

pub(super) async fn page(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<AuditQuery>,
) -> Response {
    let u = match require_admin(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let form = AuditFilters {
        subject: q.subject.clone(),
        decision: q.decision.clone(),
        action: q.action.clone(),
        resource: q.resource.clone(),
        since: q.since.clone(),
        until: q.until.clone(),
    };
    let filters = match api_filters(&q) {
        Ok(f) => f,
        Err(e) => {
            return with_status(
                StatusCode::BAD_REQUEST,
                render(&OpsAuditPage {
                    nav: nav(&s, Some(&u), "ops-audit"),
                    form,
                    error: Some(e),
                    rows: Vec::new(),
                    next_href: None,
                    first_href: None,
                    chart: None,
                    minutes: Vec::new(),
                }),
            );
        }
    };
    let api = ApiClient::new(s.http.clone(), &s.settings.api_url);
    let mut query = filters.clone();
    query.push(("limit", PAGE.to_string()));
    if let Some(c) = q.cursor.as_ref().filter(|c| !c.is_empty()) {
        query.push(("cursor", c.clone()));
    }
    let now_s = OffsetDateTime::now_utc().unix_timestamp();
    let (listed, win) = tokio::join!(
        api.audit(&u.token, &query),
        window(&api, &u.token, &filters, now_s)
    );
    let page = match listed {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                &s,
                Some(&u),
                super::super::api_status(&e),
                "Audit log unavailable",
                e.to_string(),
            );
        }
    };
    let (next_href, first_href) = page_links(
        "/ops/audit",
        &[
            ("subject", &q.subject),
            ("decision", &q.decision),
            ("action", &q.action),
            ("resource", &q.resource),
            ("since", &q.since),
            ("until", &q.until),
        ],
        page.next_cursor.as_deref(),
        q.cursor.as_deref(),
    );
    let (chart, minutes, error) = match win {
        Ok(counted) => {
            let (c, m) = chart(&per_minute(&counted, now_s), &DECISIONS);
            (Some(c), m, None)
        }
        Err(e) => (
            None,
            Vec::new(),
            Some(format!("The chart is unavailable: {e}")),
        ),
    };
    render(&OpsAuditPage {
        nav: nav(&s, Some(&u), "ops-audit"),
        form,
        error,
        rows: page.entries.iter().map(row).collect(),
        next_href,
        first_href,
        chart,
        minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(start: &str, allowed: u64, denied: u64) -> AuditBucket {
        AuditBucket {
            start: start.into(),
            allowed,
            denied,
        }
    }

    #[test]
    fn filters_become_the_apis_parameters_and_bad_ones_are_named() {
        let q = AuditQuery {
            subject: " admin-usa ".into(),
            decision: "deny".into(),
            since: "2026-11-24T07:30".into(),
            ..Default::default()
        };
        let f = api_filters(&q).unwrap();
        assert!(f.contains(&("subject", "admin-usa".into())));
        assert!(f.contains(&("decision", "deny".into())));
        assert!(f.contains(&("since", "2026-11-24T07:30:00Z".into())));
        let bad = AuditQuery {
            until: "yesterday".into(),
            ..Default::default()
        };
        assert!(api_filters(&bad).unwrap_err().starts_with("until:"));
        let bad = AuditQuery {
            decision: "maybe".into(),
            ..Default::default()
        };
        assert!(api_filters(&bad).unwrap_err().starts_with("decision:"));
    }

    #[test]
    fn decisions_fall_into_their_minute_of_the_last_hour() {
        // 2026-11-24T08:00:30Z
        let now = 1_795_507_230;
        let b = per_minute(
            &[
                counted("2026-11-24T08:00:00Z", 1, 1),
                counted("2026-11-24T07:01:00Z", 1, 0),
                counted("2026-11-24T06:59:00Z", 1, 0),
                counted("not a time", 1, 0),
            ],
            now,
        );
        assert_eq!(b.len() as i64, WINDOW_MIN);
        assert_eq!(b.last().map(|x| (x.1, x.2)), Some((1, 1)));
        assert_eq!(
            (b[0].1, b[0].2),
            (1, 0),
            "07:01 is the window's first minute"
        );
        assert_eq!(
            b.iter().map(|x| x.1 + x.2).sum::<u64>(),
            3,
            "older ones fall out"
        );
        assert_eq!(hh_mm(b[0].0), "07:01");
    }
}
