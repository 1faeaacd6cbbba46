//! A whole `up`: supervisor, no-op check, lock, state machine, scheduler, breakers, records and
//! reports. The CLI parses and displays; this decides and records.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

use crate::fmt::now_ms;
use crate::paths::StackPaths;
use crate::plan::Plan;
use crate::report::{Comparison, EventLog, Report, ReportHeader};
use crate::scheduler::{
    self, DeployEvent, Gate, Level, RunOutcome, SchedulerConfig, ServiceOutcome, phase_event,
};
use crate::spec::{ServiceClass, ServiceSpec, StackSpec};
use crate::state::{
    BreakerConfig, DeploymentState, ServiceResult, Severity, StateError, StateStore, StepStatus,
};
use crate::supervisor::protocol::{Health, ServiceState, StackStatus};
use crate::supervisor::{OrphanCleanup, SpawnDaemon, SupervisorError, ensure_running};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot write the deployment record under {path}: {source}")]
    Files {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What `up` needs besides the store.
pub struct UpRequest<'a> {
    pub home: &'a Path,
    pub spec: &'a StackSpec,
    pub plan: &'a Plan,
    /// `stack`, `hub` or `spoke`.
    pub kind: &'a str,
    pub scheduler: SchedulerConfig,
    pub breaker: BreakerConfig,
}

/// How an `up` ended.
#[derive(Debug)]
pub enum UpResult {
    /// Everything planned already runs with the same definitions; nothing was recorded.
    NoOp {
        services: usize,
    },
    Deployed(Box<Deployed>),
}

#[derive(Debug)]
pub struct Deployed {
    pub deployment_id: String,
    pub state: DeploymentState,
    pub outcome: RunOutcome,
    pub report: Report,
    pub report_dir: std::path::PathBuf,
    pub orphans: OrphanCleanup,
    pub recovered_lock: Option<String>,
}

/// Run `up`. `sink` sees every event as it happens (for live display); `cancel` resolves on
/// Ctrl-C.
pub async fn up(
    store: &StateStore,
    req: UpRequest<'_>,
    spawn: SpawnDaemon<'_>,
    sink: &mut dyn FnMut(&DeployEvent),
    cancel: impl Future<Output = ()>,
) -> Result<UpResult, DeployError> {
    let paths = StackPaths::new(req.home, &req.spec.name);
    // The plan's copies: dependencies outside the plan (non-required, excluded by profile) are gone.
    let services: Vec<&ServiceSpec> = req.plan.services.values().map(|p| &p.spec).collect();
    let (mut client, orphans) = ensure_running(&paths, spawn).await?;
    let current = client.status().await?;
    if is_noop(&services, &current) {
        return Ok(UpResult::NoOp {
            services: services.len(),
        });
    }

    let spec_hash = stack_hash(&services);
    let id = store
        .create_deployment(&req.spec.name, req.kind, &spec_hash)
        .await?;
    let dir = paths.deployment_dir(&id.to_string());
    let mut log = EventLog::create(&dir).map_err(|e| files(&dir, e))?;
    let mut events: Vec<DeployEvent> = Vec::new();
    let mut emit = |e: DeployEvent, log: &mut EventLog| {
        let _ = log.append(&e);
        sink(&e);
        events.push(e);
    };
    let started_at_ms = now_ms();

    store.begin_step(&id, "PREFLIGHT").await?;
    if !orphans.is_empty() {
        emit(
            phase_event(
                Level::Warn,
                "PREFLIGHT",
                "orphans_cleaned",
                &format!(
                    "the previous supervisor (pid {}) had died; stopped its orphaned services: {}",
                    orphans
                        .dead_supervisor
                        .map_or("?".to_string(), |p| p.to_string()),
                    if orphans.killed.is_empty() {
                        "none left".to_string()
                    } else {
                        orphans.killed.join(", ")
                    }
                ),
            ),
            &mut log,
        );
    }
    let lock = match store.acquire_lock(&req.spec.name, &id).await {
        Ok(l) => l,
        Err(e) => {
            store
                .finish_step(&id, "PREFLIGHT", StepStatus::Failed, Some(&e.to_string()))
                .await?;
            store
                .finish_deployment(
                    &id,
                    DeploymentState::Failed,
                    &e.to_string(),
                    &serde_json::json!({"error": e.to_string()}),
                )
                .await?;
            return Err(e.into());
        }
    };
    let recovered_lock = lock.recovered_from.as_ref().map(|o| {
        let msg = format!(
            "recovered a stale deployment lock left by deployment {} (pid {} on {}; its owner is gone)",
            o.deployment_id, o.pid, o.host
        );
        emit(phase_event(Level::Warn, "PREFLIGHT", "lock_recovered", &msg), &mut log);
        msg
    });
    // A deployment of this stack that died without finishing (its lock is now ours) is closed out.
    store
        .fail_abandoned_deployments(&req.spec.name, &id)
        .await?;
    store
        .finish_step(&id, "PREFLIGHT", StepStatus::Done, None)
        .await?;
    store
        .transition(&id, DeploymentState::Deploying, "plan ready, lock held")
        .await?;

    let removed = remove_unplanned(&mut client, &services, &current).await?;
    if !removed.is_empty() {
        emit(
            phase_event(
                Level::Info,
                "START",
                "removed",
                &format!(
                    "stopped services no longer in the plan: {}",
                    removed.join(", ")
                ),
            ),
            &mut log,
        );
    }
    let gates = breaker_gates(store, &req, &services).await?;
    store.begin_step(&id, "START").await?;
    let outcome = scheduler::run(
        &paths,
        &services,
        &current,
        &gates,
        &req.scheduler,
        &mut |e| emit(e, &mut log),
        cancel,
    )
    .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            store
                .finish_step(&id, "START", StepStatus::Failed, Some(&msg))
                .await?;
            store
                .finish_deployment(
                    &id,
                    DeploymentState::Failed,
                    &msg,
                    &serde_json::json!({"error": msg}),
                )
                .await?;
            lock.release().await?;
            return Err(e.into());
        }
    };
    record_breakers(store, &req, &outcome, &gates).await?;
    let state = final_state(&outcome);
    store
        .finish_step(
            &id,
            "START",
            if state == DeploymentState::Failed {
                StepStatus::Failed
            } else {
                StepStatus::Done
            },
            Some(state_reason(&outcome).as_str()),
        )
        .await?;
    record_results(store, &id, &outcome).await?;
    store.record_events(&id, &event_records(&events)).await?;
    let next_steps = next_steps(&req.spec.name, &outcome, &paths);

    let comparison = compare(store, &req.spec.name, &id.to_string()).await?;
    let finished_at_ms = now_ms();
    let chain = req.plan.critical_chain(
        &outcome
            .services
            .iter()
            .filter_map(|(n, s)| {
                Some((
                    n.clone(),
                    (
                        std::time::Duration::from_millis(s.start_offset_ms? as u64),
                        std::time::Duration::from_millis(s.ready_offset_ms? as u64),
                    ),
                ))
            })
            .collect(),
    );
    let report = Report::from_run(
        ReportHeader {
            deployment_id: id.to_string(),
            stack: req.spec.name.clone(),
            kind: req.kind.to_string(),
            state: state.to_string(),
            started_at_ms,
            finished_at_ms,
            stack_file: req.spec.source.display().to_string(),
        },
        &outcome,
        &events,
        chain,
        comparison,
        next_steps,
    );
    report.write(&dir).map_err(|e| files(&dir, e))?;
    store
        .finish_deployment(
            &id,
            state,
            &state_reason(&outcome),
            &serde_json::to_value(summary_of(&report)).unwrap_or_default(),
        )
        .await?;
    let _ = log.flush();
    lock.release().await?;
    Ok(UpResult::Deployed(Box::new(Deployed {
        deployment_id: id.to_string(),
        state,
        outcome,
        report,
        report_dir: dir,
        orphans,
        recovered_lock,
    })))
}

fn files(dir: &Path, source: std::io::Error) -> DeployError {
    DeployError::Files {
        path: dir.display().to_string(),
        source,
    }
}

/// Every planned service already runs (or has completed) with the same definition and is healthy.
pub fn is_noop(services: &[&ServiceSpec], current: &StackStatus) -> bool {
    !services.is_empty()
        && not_planned(services, current).is_empty()
        && services.iter().all(|spec| {
            current.services.iter().any(|s| {
                s.name == spec.name
                    && s.definition_hash == spec.definition_hash()
                    && match s.state {
                        ServiceState::Completed => true,
                        ServiceState::Running => matches!(s.health, Health::Healthy | Health::None),
                        _ => false,
                    }
            })
        })
}

fn stack_hash(services: &[&ServiceSpec]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in services {
        h.update(s.name.as_bytes());
        h.update(b"=");
        h.update(s.definition_hash().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

async fn breaker_gates(
    store: &StateStore,
    req: &UpRequest<'_>,
    services: &[&ServiceSpec],
) -> Result<HashMap<String, Gate>, DeployError> {
    let mut gates = HashMap::new();
    let now = now_ms();
    for s in services {
        let gate = match store
            .breaker_allows(&req.spec.name, &s.name, now, &req.breaker)
            .await
        {
            Ok(permit) if permit.trial => Gate::Trial,
            Ok(_) => Gate::Allow,
            Err(StateError::BreakerOpen(open)) => Gate::Deny(format!(
                "circuit breaker open after {} consecutive failed starts (last: {}); it half-opens at {} — or reset it now with `dive stack reset-breaker -p {} {}`",
                open.failures,
                open.last_error.as_deref().unwrap_or("unknown"),
                crate::fmt::rfc3339_ms(open.until),
                req.spec.name,
                s.name
            )),
            Err(e) => return Err(e.into()),
        };
        gates.insert(s.name.clone(), gate);
    }
    Ok(gates)
}

async fn record_breakers(
    store: &StateStore,
    req: &UpRequest<'_>,
    outcome: &RunOutcome,
    gates: &HashMap<String, Gate>,
) -> Result<(), DeployError> {
    for (name, s) in &outcome.services {
        if matches!(gates.get(name), Some(Gate::Deny(_))) {
            continue; // failing fast is not another failure
        }
        for a in &s.attempts {
            store
                .record_attempt(
                    &req.spec.name,
                    name,
                    a.ok,
                    a.error.as_deref(),
                    now_ms(),
                    &req.breaker,
                )
                .await?;
        }
    }
    Ok(())
}

fn final_state(outcome: &RunOutcome) -> DeploymentState {
    if outcome.interrupted {
        DeploymentState::Interrupted
    } else if outcome.failed_core.is_some()
        || outcome.services.values().any(|s| {
            matches!(s.class, ServiceClass::Core | ServiceClass::Init) && !s.outcome.is_up()
        })
    {
        DeploymentState::Failed
    } else if outcome.all_up() {
        DeploymentState::Complete
    } else {
        DeploymentState::Degraded
    }
}

fn state_reason(outcome: &RunOutcome) -> String {
    if outcome.interrupted {
        return "interrupted by the operator".into();
    }
    if let Some(name) = &outcome.failed_core {
        let why = outcome.services[name].reason.clone().unwrap_or_default();
        return format!("core service {name} failed: {why}");
    }
    let down: Vec<String> = outcome
        .services
        .values()
        .filter(|s| !s.outcome.is_up())
        .map(|s| format!("{} {}", s.name, s.outcome.as_str()))
        .collect();
    if down.is_empty() {
        format!("{} services up", outcome.services.len())
    } else {
        format!("degraded: {}", down.join(", "))
    }
}

async fn record_results(
    store: &StateStore,
    id: &crate::state::DeploymentId,
    outcome: &RunOutcome,
) -> Result<(), DeployError> {
    for s in outcome.services.values() {
        store
            .record_service_result(
                id,
                &ServiceResult {
                    service: s.name.clone(),
                    class: s.class.as_str().to_string(),
                    outcome: s.outcome.as_str().to_string(),
                    attempts: s.attempts.len() as u32,
                    time_to_healthy_ms: s.time_to_ready_ms,
                    error: s.reason.clone(),
                },
            )
            .await?;
        if s.outcome == ServiceOutcome::Failed {
            let severity = match s.class {
                ServiceClass::Core | ServiceClass::Init => Severity::Error,
                _ => Severity::Warning,
            };
            store
                .record_error(
                    id,
                    severity,
                    Some(&s.name),
                    s.reason.as_deref().unwrap_or("failed"),
                    Some("see the service's log with `dive stack logs`; fix, then run `up` again"),
                )
                .await?;
        }
    }
    Ok(())
}

fn next_steps(stack: &str, outcome: &RunOutcome, paths: &StackPaths) -> Vec<String> {
    let mut steps = Vec::new();
    if outcome.interrupted {
        steps.push(format!(
            "run `dive stack up -p {stack} …` again to continue; healthy services are kept"
        ));
    }
    for s in outcome.services.values() {
        if s.outcome == ServiceOutcome::Failed {
            steps.push(format!(
                "{}: read its log with `dive stack logs -p {stack} {}` ({})",
                s.name,
                s.name,
                paths.service_log(&s.name).display()
            ));
        }
    }
    steps
}

async fn compare(
    store: &StateStore,
    stack: &str,
    this_id: &str,
) -> Result<Comparison, DeployError> {
    let earlier: Vec<i64> = store
        .list_deployments(Some(stack), 200)
        .await?
        .into_iter()
        .filter(|d| d.id.to_string() != this_id)
        .filter_map(|d| d.duration_ms)
        .collect();
    let p = crate::state::percentiles(&earlier.iter().map(|v| *v as f64).collect::<Vec<_>>());
    Ok(Comparison {
        previous: earlier.len(),
        previous_duration_ms: earlier.first().copied(),
        p50_ms: p.map(|p| p.p50 as i64),
        p95_ms: p.map(|p| p.p95 as i64),
    })
}

#[derive(serde::Serialize)]
struct Summary<'a> {
    services: usize,
    up: usize,
    failed: Vec<&'a str>,
    skipped: Vec<&'a str>,
    retries: usize,
    critical_chain: &'a [String],
}

fn summary_of(r: &Report) -> Summary<'_> {
    Summary {
        services: r.services.len(),
        up: r.services.iter().filter(|s| s.outcome.is_up()).count(),
        failed: r
            .services
            .iter()
            .filter(|s| s.outcome == ServiceOutcome::Failed)
            .map(|s| s.name.as_str())
            .collect(),
        skipped: r
            .services
            .iter()
            .filter(|s| s.outcome == ServiceOutcome::Skipped)
            .map(|s| s.name.as_str())
            .collect(),
        retries: r.retries,
        critical_chain: &r.critical_chain,
    }
}

/// The deployment's events as stored: everything but the chatty `starting`/`spawned` lines.
fn event_records(events: &[DeployEvent]) -> Vec<crate::state::EventRecord> {
    events
        .iter()
        .filter(|e| !matches!(e.event.as_str(), "starting" | "spawned"))
        .map(|e| crate::state::EventRecord {
            at: e.ts_ms,
            service: e.service.clone(),
            event: e.event.clone(),
            detail: Some(e.message.clone()),
        })
        .collect()
}

/// Services the supervisor still has that the plan no longer contains (removed from the stack
/// file, or outside the active profiles).
fn not_planned(services: &[&ServiceSpec], current: &StackStatus) -> Vec<String> {
    current
        .services
        .iter()
        .filter(|s| !services.iter().any(|p| p.name == s.name))
        .map(|s| s.name.clone())
        .collect()
}

/// Stop and forget services that are no longer planned: the stack file is the source of truth.
async fn remove_unplanned(
    client: &mut crate::supervisor::Client,
    services: &[&ServiceSpec],
    current: &StackStatus,
) -> Result<Vec<String>, SupervisorError> {
    let stale = not_planned(services, current);
    if !stale.is_empty() {
        client
            .request(&crate::supervisor::protocol::Request::Stop {
                services: stale.clone(),
            })
            .await?;
        client
            .request(&crate::supervisor::protocol::Request::Forget {
                services: stale.clone(),
            })
            .await?;
    }
    Ok(stale)
}
