//! `POST /api/resources/federated-search`: this instance's search and every active partner's,
//! in parallel, merged (see [`crate::federation`]).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::handlers::{Outcome, authenticate, local_search, record};
use super::{Failure, Shared};
use crate::federation::{
    Answer, BreakerState, DEFAULT_TIMEOUT, InstanceStatus, LinkStatus, MAX_TIMEOUT, MIN_TIMEOUT,
    Partner, Permit, merge,
};
use crate::search::SearchQuery;

/// The request body as a search query string (the parameters of `GET /api/resources`, values a
/// string, number or array of strings), and the per-partner time limit.
fn query_of(body: &Value) -> Result<(String, Duration), Failure> {
    let Some(members) = body.as_object() else {
        return Err(Failure::bad_request(
            "the body must be a JSON object of search parameters",
        ));
    };
    let mut qs = url::form_urlencoded::Serializer::new(String::new());
    let mut timeout = DEFAULT_TIMEOUT;
    for (k, v) in members {
        if k == "timeoutMs" {
            timeout = v
                .as_u64()
                .map(Duration::from_millis)
                .filter(|t| (MIN_TIMEOUT..=MAX_TIMEOUT).contains(t))
                .ok_or_else(|| {
                    Failure::bad_request(format!(
                        "timeoutMs: expected milliseconds from {} to {}",
                        MIN_TIMEOUT.as_millis(),
                        MAX_TIMEOUT.as_millis()
                    ))
                })?;
            continue;
        }
        if k == "cursor" {
            return Err(Failure::bad_request(
                "cursor: federated search has no cursors (raise limit, or page one instance with GET /api/resources)",
            ));
        }
        let bad = || {
            Failure::bad_request(format!(
                "{k}: expected a string, a number or an array of strings"
            ))
        };
        match v {
            Value::String(s) => {
                qs.append_pair(k, s);
            }
            Value::Number(n) => {
                qs.append_pair(k, &n.to_string());
            }
            Value::Array(a) => {
                for x in a {
                    qs.append_pair(k, x.as_str().ok_or_else(bad)?);
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok((qs.finish(), timeout))
}

pub(super) async fn federated_search(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&s, &headers, "federated-search", None, started).await?;
    let Json(body) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let (qs, timeout) = query_of(&body)?;
    let query = SearchQuery::parse(&qs)?;
    let (sort, limit) = (query.sort.as_str(), query.limit);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();

    let partners = s.partners.current();
    let (active, config_error): (Vec<Partner>, Option<String>) = match partners.as_ref() {
        Ok(list) => (
            list.iter()
                .filter(|p| p.status == LinkStatus::Active)
                .cloned()
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.clone())),
    };
    let mut asks = tokio::task::JoinSet::new();
    let mut statuses = Vec::new();
    for p in active {
        let now = Instant::now();
        let permit = s.breakers.permit(&p.code, now);
        if permit == Permit::Refused {
            statuses.push(InstanceStatus {
                instance: p.code.to_string(),
                status: "breaker_open",
                count: 0,
                total: 0,
                latency_ms: 0,
                error: Some(
                    "not asked: its circuit breaker is open after repeated failures".into(),
                ),
                breaker: BreakerState::Open,
            });
            continue;
        }
        let (http, token, qs) = (s.partner_http.get(), token.clone(), qs.clone());
        asks.spawn(async move {
            let t0 = Instant::now();
            let url = format!("{}/api/resources?{qs}", p.api_url.trim_end_matches('/'));
            let asked = tokio::time::timeout(timeout, ask(&http, &url, &token)).await;
            (p, t0.elapsed(), asked)
        });
    }
    // This instance answers while the partners are asked.
    let (own, _, own_total, version) = local_search(&s, &who, query).await?;
    let mut answers = vec![Answer {
        instance: s.instance.to_string(),
        body: own,
    }];
    statuses.insert(
        0,
        InstanceStatus {
            instance: s.instance.to_string(),
            status: "ok",
            count: answers[0].body["items"].as_array().map_or(0, Vec::len),
            total: own_total,
            latency_ms: started.elapsed().as_millis() as u64,
            error: None,
            breaker: BreakerState::Closed,
        },
    );
    while let Some(done) = asks.join_next().await {
        let Ok((p, took, asked)) = done else {
            continue;
        };
        let (status, error, body, up) = match asked {
            Ok(Ok(body)) => ("ok", None, Some(body), true),
            Ok(Err(e)) => ("error", Some(e.message), None, e.refused),
            Err(_) => (
                "timeout",
                Some(format!("no answer within {} ms", timeout.as_millis())),
                None,
                false,
            ),
        };
        let now = Instant::now();
        s.breakers.record(&p.code, up, now);
        statuses.push(InstanceStatus {
            instance: p.code.to_string(),
            status,
            count: body
                .as_ref()
                .and_then(|b| b["items"].as_array())
                .map_or(0, Vec::len),
            total: body.as_ref().and_then(|b| b["total"].as_u64()).unwrap_or(0) as usize,
            latency_ms: took.as_millis() as u64,
            error,
            breaker: s.breakers.state(&p.code, now),
        });
        if let Some(body) = body {
            answers.push(Answer {
                instance: p.code.to_string(),
                body,
            });
        }
    }
    // Instances in a stable order after this one: the report reads the same every time.
    statuses[1..].sort_by(|a, b| a.instance.cmp(&b.instance));
    answers[1..].sort_by(|a, b| a.instance.cmp(&b.instance));
    let partial = config_error.is_some() || statuses.iter().any(|st| st.status != "ok");
    let (items, total, facets) = merge(&answers, sort, limit);
    let reason = format!(
        "federated search over {} instance(s): {} items{}",
        statuses.len(),
        items.len(),
        if partial { ", partial" } else { "" }
    );
    record(
        &s,
        Some(&*who),
        Outcome {
            action: "federated-search",
            resource: None,
            allow: true,
            reason: &reason,
            policy_version: Some(&version),
            detail: (!qs.is_empty()).then(|| qs.chars().take(512).collect()),
        },
        started,
    )
    .await;
    let mut out = json!({
        "items": items,
        "total": total,
        "limit": limit,
        "facets": facets,
        "partial": partial,
        "instances": statuses,
    });
    if let Some(e) = config_error {
        out["federationError"] = json!(e);
    }
    Ok(Json(out).into_response())
}

/// Why a partner gave no search answer.
struct NoAnswer {
    message: String,
    /// The partner answered and refused (4xx: e.g. it does not trust the caller's issuer yet).
    /// It is up, so this does not count towards its breaker, which guards against partners
    /// that are down, failing (5xx) or slow.
    refused: bool,
}

impl NoAnswer {
    fn failed(message: String) -> NoAnswer {
        NoAnswer {
            message,
            refused: false,
        }
    }
}

/// One partner's search answer, or why there is none.
async fn ask(http: &reqwest::Client, url: &str, authorization: &str) -> Result<Value, NoAnswer> {
    let r = http
        .get(url)
        .header(header::AUTHORIZATION, authorization)
        .send()
        .await
        .map_err(|e| NoAnswer::failed(format!("request failed: {e}")))?;
    let status = r.status();
    let body: Value = r
        .json()
        .await
        .map_err(|e| NoAnswer::failed(format!("HTTP {status}: unreadable answer: {e}")))?;
    if !status.is_success() {
        let why = body["message"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no reason given");
        return Err(NoAnswer {
            message: format!("HTTP {}: {why}", status.as_u16()),
            refused: status.is_client_error(),
        });
    }
    if !body["items"].is_array() {
        return Err(NoAnswer::failed("answer has no items list".into()));
    }
    Ok(body)
}
