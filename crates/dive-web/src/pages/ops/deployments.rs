//! Deployment history: the instance's deployments from the orchestration state store with their
//! durations (as a chart and a table), and the last deployment's own report
//! (`stacks/<name>/deployments/<id>/report.md`, written by the deployment).

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::state::{DeploymentRecord, StateStore};

use super::*;
use crate::charts::{self, Column};
use crate::templates::{DeploymentRow, OpsDeploymentsPage};

/// Deployments shown (and charted), newest first.
const HISTORY: u32 = 50;

/// The state store, opened on first use and kept (a failed open is retried next time).
async fn store(s: &AppState) -> Result<&StateStore, String> {
    let loc = &s.settings.ops.state_location;
    s.ops_store
        .get_or_try_init(|| StateStore::open(loc))
        .await
        .map_err(|e| format!("the orchestration state store ({loc}): {e}"))
}

fn row(d: &DeploymentRecord) -> DeploymentRow {
    DeploymentRow {
        id: d.id.to_string(),
        kind: d.kind.clone(),
        state: d.state.as_str().to_string(),
        ok: d.state.is_success(),
        finished: d.state.is_final(),
        started: when(d.started_at),
        duration: d
            .duration_ms
            .map(dive_orchestrator::fmt::millis)
            .unwrap_or_else(|| "running".into()),
        duration_ms: d.duration_ms,
    }
}

/// The instance's last `limit` deployments, newest first.
pub(super) async fn history(s: &AppState, limit: u32) -> Result<Vec<DeploymentRow>, String> {
    let store = store(s).await?;
    let list = store
        .list_deployments(Some(&s.settings.ops.stack), limit)
        .await
        .map_err(|e| format!("reading the deployments: {e}"))?;
    Ok(list.iter().map(row).collect())
}

/// Durations of the finished deployments, oldest first, as bars (green: complete or degraded,
/// red: failed or interrupted).
fn chart(rows: &[DeploymentRow]) -> charts::Chart {
    let finished: Vec<&DeploymentRow> = rows.iter().rev().filter(|r| r.finished).collect();
    let columns: Vec<Column> = finished
        .iter()
        .map(|r| Column {
            label: r.started.get(5..16).unwrap_or(&r.started).to_string(),
            segments: vec![(
                r.duration_ms.unwrap_or(0) as f64 / 1000.0,
                if r.ok { "bar-ok" } else { "bar-bad" },
                if r.ok { "succeeded" } else { "failed" },
            )],
        })
        .collect();
    let desc = if finished.is_empty() {
        "No finished deployment yet.".to_string()
    } else {
        let secs: Vec<String> = finished
            .iter()
            .map(|r| format!("{} {} ({})", r.started, r.duration, r.state))
            .collect();
        format!(
            "{} finished deployments, oldest first: {}.",
            finished.len(),
            secs.join("; ")
        )
    };
    charts::bars(
        "deploy-durations",
        "Deployment durations over time (seconds)".into(),
        desc,
        &columns,
        " s",
        8,
    )
}

/// The newest deployment's report, rendered (Markdown, sanitised like documents).
fn last_report(
    s: &AppState,
    rows: &[DeploymentRow],
) -> Option<Result<(String, crate::content::SafeHtml), String>> {
    let last = rows.first()?;
    let o = &s.settings.ops;
    let path = StackPaths::new(&o.home, &o.stack)
        .deployment_dir(&last.id)
        .join("report.md");
    Some(match std::fs::read_to_string(&path) {
        Ok(md) => Ok((last.id.clone(), crate::content::markdown(&md))),
        Err(e) => Err(format!("{}: {e}", path.display())),
    })
}

pub(super) async fn page(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let u = match require_admin(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (rows, error) = match history(&s, HISTORY).await {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    render(&OpsDeploymentsPage {
        nav: nav(&s, Some(&u), "ops-deployments"),
        chart: chart(&rows),
        report: last_report(&s, &rows),
        rows,
        error,
    })
}
