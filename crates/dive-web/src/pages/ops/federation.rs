//! Federation: the instance's links with their status, both sides' trust and health right now,
//! the last verification and its result, and a verify action that runs the real
//! `dive_federation` verification of a link (both directions, a scripted brokered login each way)
//! and records it in the hub's registry. A spoke shows its own link to the hub as far as it knows
//! it: from the hub's registry when the hub is in this installation, else from what it keeps of
//! the hub it joined (`federation/hub.json`).

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use dive_core::CountryCode;
use dive_federation::{LinkReport, Pair};
use dive_instance::Role;
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::templates::{CheckView, LinkView, OpsFederationPage, VerifyResult};

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A recorded or fresh verification (`dive_federation::verify::Report` as JSON).
fn result_of(v: &Value) -> VerifyResult {
    let checks: Vec<CheckView> = v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| CheckView {
                    id: c["id"].as_str().unwrap_or("?").to_string(),
                    ok: c["ok"] == true,
                    detail: c["detail"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    VerifyResult {
        ok: v["ok"] == true,
        passed: checks.iter().filter(|c| c.ok).count(),
        checks,
    }
}

fn link_view(r: &LinkReport) -> LinkView {
    let l = &r.link;
    LinkView {
        partner: l.partner.to_string(),
        flag: l.partner.flag(),
        name: l.partner.name().to_string(),
        status: l.status.as_str().to_string(),
        since: when(l.updated_at_ms),
        hub_trusts: yes_no(r.hub_trusts_spoke),
        spoke_trusts: r.spoke_trusts_hub.map_or("(remote)".into(), yes_no),
        hub_health: (r.hub_health.ok, r.hub_health.detail.clone()),
        spoke_health: (r.spoke_health.ok, r.spoke_health.detail.clone()),
        last_verified: l
            .last_verified_at_ms
            .map_or_else(|| "never".to_string(), when),
        last_result: l.last_verification.as_ref().map(result_of),
        breaker: l.breaker.state.as_str().to_string(),
        // A spoke of another installation has its files and users there: no verify from here.
        verifiable: r.remote.is_none(),
        changes: r.history.len(),
    }
}

/// The links this instance can see, and a note on where they come from.
async fn links(s: &AppState) -> Result<(Vec<LinkView>, Option<String>), String> {
    let o = &s.settings.ops;
    let own = s.settings.instance;
    let all = dive_federation::status(&o.home)
        .await
        .map_err(|e| format!("federation status: {e}"))?;
    let views = all
        .iter()
        .filter(|r| o.role == Role::Hub || r.link.partner == own)
        .map(link_view)
        .collect::<Vec<_>>();
    if o.role == Role::Hub || !views.is_empty() {
        return Ok((views, None));
    }
    // A spoke whose hub is elsewhere: what it keeps of the link.
    let note = match dive_federation::spoke::read_hub_link(&o.home, own) {
        Ok(Some(h)) => format!(
            "{own} joined the hub {} of another installation ({}); the link is {} since {}. The hub's registry holds its verifications: its operators verify it there.",
            h.hub.code,
            h.hub.issuer,
            h.status,
            when(h.updated_at_ms)
        ),
        Ok(None) => format!("{own} is not linked with a hub."),
        Err(e) => format!("{own}'s link with its hub cannot be read: {e}"),
    };
    Ok((Vec::new(), Some(note)))
}

async fn show(
    s: &AppState,
    u: &User,
    verified: Option<(String, Result<VerifyResult, String>)>,
    status: StatusCode,
) -> Response {
    let (links, note, error) = match links(s).await {
        Ok((l, n)) => (l, n, None),
        Err(e) => (Vec::new(), None, Some(e)),
    };
    with_status(
        status,
        render(&OpsFederationPage {
            nav: nav(s, Some(u), "ops-federation"),
            csrf: u.csrf.clone(),
            hub: s.settings.ops.role == Role::Hub,
            links,
            note,
            error,
            verified,
        }),
    )
}

pub(super) async fn page(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    match require_admin(&s, &headers, &uri).await {
        Ok(u) => show(&s, &u, None, StatusCode::OK).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    csrf: Option<String>,
    partner: Option<String>,
}

/// The hub and spoke of a link this instance may verify: on the hub any local spoke, on a spoke
/// only its own link.
fn pair_for(s: &AppState, partner: Option<&str>) -> Result<Pair, String> {
    let o = &s.settings.ops;
    let partner = partner.unwrap_or_default();
    let code = CountryCode::new(partner).map_err(|e| format!("partner: {e}"))?;
    let spoke = match o.role {
        Role::Hub => code,
        Role::Spoke if code == s.settings.instance => code,
        Role::Spoke => {
            return Err(format!(
                "{code}: a spoke verifies only its own link with the hub"
            ));
        }
    };
    Pair::load(&o.home, spoke).map_err(|e| e.to_string())
}

/// `POST /ops/federation/verify`: run the link's verification now and show its checks.
pub(super) async fn verify(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<VerifyForm>,
) -> Response {
    let u = match require_admin(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !security::csrf_ok(&u.csrf, f.csrf.as_deref()) {
        return csrf_refused(&s, &u);
    }
    let label = f.partner.clone().unwrap_or_default();
    let pair = match pair_for(&s, f.partner.as_deref()) {
        Ok(p) => p,
        Err(e) => return show(&s, &u, Some((label, Err(e))), StatusCode::BAD_REQUEST).await,
    };
    let outcome = match dive_federation::verify::verify(&pair, false).await {
        Ok(report) => serde_json::to_value(&report)
            .map(|v| result_of(&v))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    tracing::info!(
        admin = %u.claims.get("uniqueID").and_then(serde_json::Value::as_str).unwrap_or("?"),
        partner = %pair.spoke.code,
        ok = outcome.as_ref().is_ok_and(|r| r.ok),
        "federation link verified from the UI"
    );
    show(
        &s,
        &u,
        Some((pair.spoke.code.to_string(), outcome)),
        StatusCode::OK,
    )
    .await
}
