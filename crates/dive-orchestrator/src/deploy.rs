//! A whole `up`: supervisor, no-op check, lock, state machine, scheduler, breakers, records and
//! reports. The CLI parses and displays; this decides and records.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

use crate::fmt::now_ms;
use crate::paths::StackPaths;
use crate::plan::Plan;
use crate::report::{Comparison, EventLog, PhaseReport, Report, ReportHeader};
use crate::scheduler::{
    self, DeployEvent, Gate, Interruption, Level, RunOutcome, SchedulerConfig, ServiceOutcome,
    phase_event,
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
/// Ctrl-C or when the caller stops waiting, saying which.
pub async fn up(
    store: &StateStore,
    req: UpRequest<'_>,
    spawn: SpawnDaemon<'_>,
    sink: &mut dyn FnMut(&DeployEvent),
    cancel: impl Future<Output = Interruption>,
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

    let mut session = Session::create(
        store,
        req.home,
        &req.spec.name,
        req.kind,
        &stack_hash(&services),
        &req.spec.source.display().to_string(),
        sink,
    )
    .await?;
    session.begin_phase("PREFLIGHT").await?;
    session.note_spec(req.spec);
    session.note_orphans(&orphans);
    session.lock().await?;
    session
        .finish_phase("PREFLIGHT", StepStatus::Done, None)
        .await?;
    session
        .transition(DeploymentState::Deploying, "plan ready, lock held")
        .await?;
    session.begin_phase("START").await?;
    let state = match session
        .run_services(
            &mut client,
            req.plan,
            None,
            &current,
            &req.scheduler,
            &req.breaker,
            cancel,
        )
        .await
    {
        Ok(state) => state,
        Err(e) => {
            session.abort("START", &e.to_string()).await?;
            return Err(e);
        }
    };
    let reason = session.start_reason();
    session
        .finish_phase(
            "START",
            if state == DeploymentState::Failed {
                StepStatus::Failed
            } else {
                StepStatus::Done
            },
            Some(reason.as_str()),
        )
        .await?;
    let next = session.service_next_steps("dive stack up -p {stack} …");
    let mut deployed = session.finish(state, &reason, next).await?;
    deployed.orphans = orphans;
    Ok(UpResult::Deployed(Box::new(deployed)))
}

/// One recorded deployment in progress: its record in the state store, its event log, its lock
/// and the phases run so far. `up` uses it for a plain stack; DIVE's instance deployments use it
/// for their own phases (INIT, CONFIGURE, …) around the same START.
pub struct Session<'a> {
    store: &'a StateStore,
    pub id: crate::state::DeploymentId,
    stack: String,
    kind: String,
    stack_file: String,
    paths: StackPaths,
    dir: std::path::PathBuf,
    log: EventLog,
    events: Vec<DeployEvent>,
    sink: &'a mut dyn FnMut(&DeployEvent),
    started_at_ms: i64,
    lock: Option<crate::state::LockGuard>,
    recovered_lock: Option<String>,
    phases: Vec<PhaseReport>,
    phase_started: HashMap<String, i64>,
    outcome: Option<RunOutcome>,
    chain: Vec<String>,
    notices: Vec<String>,
}

impl<'a> Session<'a> {
    /// Record a new deployment of `stack` (PENDING) and open its event log.
    pub async fn create(
        store: &'a StateStore,
        home: &Path,
        stack: &str,
        kind: &str,
        spec_hash: &str,
        stack_file: &str,
        sink: &'a mut dyn FnMut(&DeployEvent),
    ) -> Result<Session<'a>, DeployError> {
        let id = store.create_deployment(stack, kind, spec_hash).await?;
        let paths = StackPaths::new(home, stack);
        let dir = paths.deployment_dir(id.as_str());
        let log = EventLog::create(&dir).map_err(|e| files(&dir, e))?;
        Ok(Session {
            store,
            id,
            stack: stack.to_string(),
            kind: kind.to_string(),
            stack_file: stack_file.to_string(),
            paths,
            dir,
            log,
            events: Vec::new(),
            sink,
            started_at_ms: now_ms(),
            lock: None,
            recovered_lock: None,
            phases: Vec::new(),
            phase_started: HashMap::new(),
            outcome: None,
            chain: Vec::new(),
            notices: Vec::new(),
        })
    }

    /// Where this deployment's events and reports are written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Log, display and keep an event. The log is flushed at once, so `events.jsonl` can be
    /// followed while the deployment runs.
    pub fn emit(&mut self, e: DeployEvent) {
        let _ = self.log.append(&e).and_then(|()| self.log.flush());
        (self.sink)(&e);
        self.events.push(e);
    }

    /// Emit a phase-level event.
    pub fn say(&mut self, level: Level, phase: &str, kind: &str, message: &str) {
        self.emit(phase_event(level, phase, kind, message));
    }

    /// Report what the stack file says that the process runtime does not act on: keys only a
    /// container runtime uses, and the loader's notices (e.g. a service without a class label,
    /// assumed optional). They go to the event log and the report's notices.
    pub fn note_spec(&mut self, spec: &StackSpec) {
        let file = spec.source.display().to_string();
        if !spec.ignored.is_empty() {
            let keys: Vec<String> = spec
                .ignored
                .iter()
                .map(|k| match &k.service {
                    Some(svc) => format!("services.{svc}.{} ({file}:{})", k.key, k.pos.line),
                    None => format!("{} ({file}:{})", k.key, k.pos.line),
                })
                .collect();
            self.notice(format!(
                "ignored by the process runtime: {}",
                keys.join(", ")
            ));
        }
        for n in &spec.notices {
            self.notice(format!(
                "{file}:{}:{}: {}",
                n.pos.line, n.pos.column, n.message
            ));
        }
    }

    fn notice(&mut self, message: String) {
        self.say(Level::Info, "PREFLIGHT", "notice", &message);
        self.notices.push(message);
    }

    fn note_orphans(&mut self, orphans: &OrphanCleanup) {
        if orphans.is_empty() {
            return;
        }
        let msg = format!(
            "the previous supervisor (pid {}) had died; stopped its orphaned services: {}",
            orphans
                .dead_supervisor
                .map_or("?".to_string(), |p| p.to_string()),
            if orphans.killed.is_empty() {
                "none left".to_string()
            } else {
                orphans.killed.join(", ")
            }
        );
        self.say(Level::Warn, "PREFLIGHT", "orphans_cleaned", &msg);
    }

    /// Take the stack's deployment lock. When it is held by a live deployment, this deployment
    /// is recorded as FAILED and `StateError::LockHeld` returned. Deployments of the stack that
    /// died without finishing are closed out.
    pub async fn lock(&mut self) -> Result<(), DeployError> {
        let lock = match self.store.acquire_lock(&self.stack, &self.id).await {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                self.store
                    .finish_step(&self.id, "PREFLIGHT", StepStatus::Failed, Some(&msg))
                    .await?;
                self.store
                    .finish_deployment(
                        &self.id,
                        DeploymentState::Failed,
                        &msg,
                        &serde_json::json!({"error": msg}),
                    )
                    .await?;
                return Err(e.into());
            }
        };
        if let Some(o) = &lock.recovered_from {
            let msg = format!(
                "recovered a stale deployment lock left by deployment {} (pid {} on {}; its owner is gone)",
                o.deployment_id, o.pid, o.host
            );
            self.say(Level::Warn, "PREFLIGHT", "lock_recovered", &msg);
            self.recovered_lock = Some(msg);
        }
        self.lock = Some(lock);
        // A deployment of this stack that died without finishing (its lock is now ours) is closed out.
        self.store
            .fail_abandoned_deployments(&self.stack, &self.id)
            .await?;
        Ok(())
    }

    /// Whether the lock is held and still trustworthy.
    pub fn lock_is_lost(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.is_lost())
    }

    /// Move the deployment's state (see the state machine).
    pub async fn transition(
        &mut self,
        to: DeploymentState,
        reason: &str,
    ) -> Result<(), DeployError> {
        Ok(self.store.transition(&self.id, to, reason).await?)
    }

    /// Record that a phase started.
    pub async fn begin_phase(&mut self, phase: &str) -> Result<(), DeployError> {
        self.store.begin_step(&self.id, phase).await?;
        self.phase_started.insert(phase.to_string(), now_ms());
        self.say(
            Level::Info,
            phase,
            "phase_started",
            &format!("{phase} started"),
        );
        Ok(())
    }

    /// Record how a phase ended (a phase never begun, e.g. skipped, is recorded as well).
    pub async fn finish_phase(
        &mut self,
        phase: &str,
        status: StepStatus,
        detail: Option<&str>,
    ) -> Result<(), DeployError> {
        self.store
            .finish_step(&self.id, phase, status, detail)
            .await?;
        let now = now_ms();
        let started = self.phase_started.remove(phase).unwrap_or(now);
        let level = match status {
            StepStatus::Failed => Level::Error,
            _ => Level::Info,
        };
        let mut e = phase_event(
            level,
            phase,
            "phase_finished",
            &format!(
                "{phase} {}{}",
                status.as_str(),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        );
        e.duration_ms = Some(now - started);
        self.emit(e);
        self.phases.retain(|p| p.phase != phase);
        self.phases.push(PhaseReport {
            phase: phase.to_string(),
            status: status.as_str().to_string(),
            duration_ms: now - started,
            detail: detail.map(str::to_string),
        });
        Ok(())
    }

    /// START: stop services no longer planned, then let the scheduler bring up the plan (or only
    /// the services named in `only`, whose dependencies must be among them) through the
    /// supervisor; circuit breakers and per-service results are recorded. Returns the state the
    /// services leave the deployment in (COMPLETE, DEGRADED, FAILED or INTERRUPTED).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_services(
        &mut self,
        client: &mut crate::supervisor::Client,
        plan: &Plan,
        only: Option<&std::collections::BTreeSet<String>>,
        current: &StackStatus,
        scheduler_config: &SchedulerConfig,
        breaker: &BreakerConfig,
        cancel: impl Future<Output = Interruption>,
    ) -> Result<DeploymentState, DeployError> {
        let planned: Vec<&ServiceSpec> = plan.services.values().map(|p| &p.spec).collect();
        let removed = remove_unplanned(client, &planned, current).await?;
        let services: Vec<&ServiceSpec> = planned
            .into_iter()
            .filter(|s| only.is_none_or(|o| o.contains(&s.name)))
            .collect();
        if !removed.is_empty() {
            self.say(
                Level::Info,
                "START",
                "removed",
                &format!(
                    "stopped services no longer in the plan: {}",
                    removed.join(", ")
                ),
            );
        }
        let gates = breaker_gates(self.store, &self.stack, breaker, &services).await?;
        let paths = self.paths.clone();
        let outcome = scheduler::run(
            &paths,
            &services,
            current,
            &gates,
            scheduler_config,
            &mut |e| self.emit(e),
            cancel,
        )
        .await?;
        record_breakers(self.store, &self.stack, breaker, &outcome, &gates).await?;
        record_results(self.store, &self.id, &outcome).await?;
        self.chain = plan.critical_chain(
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
        let state = final_state(&outcome);
        self.outcome = Some(outcome);
        Ok(state)
    }

    /// The services' outcome of START, if it ran in this deployment.
    pub fn outcome(&self) -> Option<&RunOutcome> {
        self.outcome.as_ref()
    }

    /// Why START ended as it did.
    pub fn start_reason(&self) -> String {
        self.outcome
            .as_ref()
            .map(state_reason)
            .unwrap_or_else(|| "no services were started".to_string())
    }

    /// What to do about failed services and interruptions; `rerun` is the command to run again,
    /// with `{stack}` replaced by the stack name.
    pub fn service_next_steps(&self, rerun: &str) -> Vec<String> {
        match &self.outcome {
            Some(o) => next_steps(
                &self.stack,
                &rerun.replace("{stack}", &self.stack),
                o,
                &self.paths,
            ),
            None => Vec::new(),
        }
    }

    /// End the deployment after a failure outside the services (a phase's error): the phase and
    /// the deployment are recorded as FAILED, the report written and the lock released.
    pub async fn abort(mut self, phase: &str, message: &str) -> Result<Deployed, DeployError> {
        self.say(Level::Error, phase, "phase_failed", message);
        self.finish_phase(phase, StepStatus::Failed, Some(message))
            .await?;
        self.finish(DeploymentState::Failed, message, Vec::new())
            .await
    }

    /// End the deployment in `state` (moving through no further phases): events are stored, the
    /// report written, the deployment finished and the lock released.
    pub async fn finish(
        mut self,
        state: DeploymentState,
        reason: &str,
        next_steps: Vec<String>,
    ) -> Result<Deployed, DeployError> {
        self.store
            .record_events(&self.id, &event_records(&self.events))
            .await?;
        let comparison = compare(self.store, &self.stack, self.id.as_str()).await?;
        let finished_at_ms = now_ms();
        let outcome = self.outcome.take().unwrap_or_else(|| RunOutcome {
            services: Default::default(),
            failed_core: None,
            interrupted: None,
            elapsed_ms: 0,
        });
        let mut report = Report::from_run(
            ReportHeader {
                deployment_id: self.id.to_string(),
                stack: self.stack.clone(),
                kind: self.kind.clone(),
                state: state.to_string(),
                started_at_ms: self.started_at_ms,
                finished_at_ms,
                stack_file: self.stack_file.clone(),
            },
            &outcome,
            &self.events,
            std::mem::take(&mut self.chain),
            comparison,
            next_steps,
        );
        report.phases = std::mem::take(&mut self.phases);
        report.notices = std::mem::take(&mut self.notices);
        report.write(&self.dir).map_err(|e| files(&self.dir, e))?;
        self.store
            .finish_deployment(
                &self.id,
                state,
                reason,
                &serde_json::to_value(summary_of(&report)).unwrap_or_default(),
            )
            .await?;
        let _ = self.log.flush();
        if let Some(lock) = self.lock.take() {
            lock.release().await?;
        }
        Ok(Deployed {
            deployment_id: self.id.to_string(),
            state,
            outcome,
            report,
            report_dir: self.dir.clone(),
            orphans: OrphanCleanup::default(),
            recovered_lock: self.recovered_lock.take(),
        })
    }
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
    stack: &str,
    breaker: &BreakerConfig,
    services: &[&ServiceSpec],
) -> Result<HashMap<String, Gate>, DeployError> {
    let mut gates = HashMap::new();
    let now = now_ms();
    for s in services {
        let gate = match store.breaker_allows(stack, &s.name, now, breaker).await {
            Ok(permit) if permit.trial => Gate::Trial,
            Ok(_) => Gate::Allow,
            Err(StateError::BreakerOpen(open)) => Gate::Deny(format!(
                "circuit breaker open after {} consecutive failed starts (last: {}); it half-opens at {} — or reset it now with `dive stack reset-breaker -p {} {}`",
                open.failures,
                open.last_error.as_deref().unwrap_or("unknown"),
                crate::fmt::rfc3339_ms(open.until),
                stack,
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
    stack: &str,
    breaker: &BreakerConfig,
    outcome: &RunOutcome,
    gates: &HashMap<String, Gate>,
) -> Result<(), DeployError> {
    for (name, s) in &outcome.services {
        if matches!(gates.get(name), Some(Gate::Deny(_))) {
            continue; // failing fast is not another failure
        }
        for a in &s.attempts {
            store
                .record_attempt(stack, name, a.ok, a.error.as_deref(), now_ms(), breaker)
                .await?;
        }
    }
    Ok(())
}

fn final_state(outcome: &RunOutcome) -> DeploymentState {
    if outcome.interrupted.is_some() {
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
    if let Some(why) = outcome.interrupted {
        return why.to_string();
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

fn next_steps(stack: &str, rerun: &str, outcome: &RunOutcome, paths: &StackPaths) -> Vec<String> {
    let mut steps = Vec::new();
    if outcome.interrupted.is_some() {
        steps.push(format!(
            "run `{rerun}` again to continue; healthy services are kept"
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
