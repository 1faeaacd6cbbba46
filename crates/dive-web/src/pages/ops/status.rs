//! Instance status: the stack's services as its supervisor reports them (state, health,
//! restarts, last exit), the last deployment and the last verification.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use dive_instance::InstancePaths;
use dive_orchestrator::fmt::{millis, now_ms};
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::supervisor::protocol::{ServiceState, StackStatus};

use super::*;
use crate::templates::{OpsStatusPage, ServiceRow, StackView, VerifyView};

/// The supervisor's view of the stack, or why there is none.
async fn stack(s: &AppState) -> Result<StackStatus, String> {
    let o = &s.settings.ops;
    let paths = StackPaths::new(&o.home, &o.stack);
    let mut c = dive_orchestrator::supervisor::Client::connect(&paths)
        .await
        .map_err(|e| format!("the stack's supervisor does not answer ({e})"))?;
    c.status()
        .await
        .map_err(|e| format!("the supervisor's status: {e}"))
}

fn rows(st: &StackStatus) -> StackView {
    let now = now_ms();
    StackView {
        supervisor_pid: st.supervisor.pid,
        supervisor_up: millis(now - st.supervisor_started_at_ms),
        services: st
            .services
            .iter()
            .map(|svc| ServiceRow {
                name: svc.name.clone(),
                class: svc.class.as_str().to_string(),
                description: svc.description.clone().unwrap_or_default(),
                state: svc.state.as_str().to_string(),
                good: matches!(svc.state, ServiceState::Running | ServiceState::Completed),
                health: svc.health.as_str().to_string(),
                pid: svc.pid.map_or("-".into(), |p| p.to_string()),
                uptime: match (svc.state.is_active(), svc.started_at_ms) {
                    (true, Some(t)) => millis(now - t),
                    _ => "-".into(),
                },
                restarts: svc.restarts,
                last_exit: svc
                    .last_exit
                    .as_ref()
                    .map(|e| format!("{} at {}", e.describe(), when(e.at_ms)))
                    .unwrap_or_else(|| "-".into()),
                note: svc.note.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

pub(super) async fn page(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let u = match require_admin(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let o = &s.settings.ops;
    let services = stack(&s).await.map(|st| rows(&st));
    let last_deployment = match super::deployments::history(&s, 1).await {
        Ok(mut d) => d.pop().map(|d| {
            format!(
                "{} {} ({}), started {}",
                d.id, d.state, d.duration, d.started
            )
        }),
        Err(e) => Some(e),
    };
    let verify = dive_instance::verify::last(&InstancePaths::new(&o.home, s.settings.instance))
        .map(|v| VerifyView {
            ok: v.ok(),
            started_at: v.started_at.clone(),
            summary: v.summary(),
            failed: v
                .checks
                .iter()
                .filter(|c| c.status == dive_instance::verify::Status::Fail)
                .map(|c| (c.id.clone(), c.detail.clone()))
                .collect(),
        });
    render(&OpsStatusPage {
        nav: nav(&s, Some(&u), "ops-status"),
        role: o.role.to_string(),
        urls: vec![
            ("UI".into(), s.settings.web_url.clone()),
            ("identity provider".into(), s.settings.issuer.clone()),
            ("resource API".into(), s.settings.api_url.clone()),
        ],
        services,
        last_deployment,
        verify,
    })
}
