//! The scheduler: starts each service the moment its dependencies satisfy their conditions
//! (not level by level), retries failed starts with backoff, enforces time-to-healthy limits,
//! applies class rules, and reports every step as a [`DeployEvent`].
//!
//! It drives the stack's supervisor: requests go out on short-lived connections (so a slow stop
//! never blocks scheduling), and the supervisor's event stream says what happened.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fmt::{duration as fmt_duration, now_ms};
use crate::paths::StackPaths;
use crate::retry::Backoff;
use crate::spec::{
    DependencyCondition, LABEL_RETRIES, LABEL_RETRY_BACKOFF, ServiceClass, ServiceSpec,
};
use crate::supervisor::protocol::{Event, Health, Request, Response, ServiceState, StackStatus};
use crate::supervisor::{Client, SupervisorError};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time-to-ready limit for services with neither a `dive.service.timeout` label nor a
    /// healthcheck to derive one from (init jobs, mostly).
    pub default_start_timeout: Duration,
    /// Retries after a failed start (so `retries + 1` attempts).
    pub retries: u32,
    pub backoff: Backoff,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            default_start_timeout: Duration::from_secs(120),
            retries: 2,
            backoff: Backoff::default(),
        }
    }
}

/// What the circuit breaker allows for a service in this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Allow,
    /// Half-open breaker: one attempt, no retries.
    Trial,
    /// Open breaker: fail fast with this message.
    Deny(String),
}

/// One line of a deployment's event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployEvent {
    /// Unix millis.
    pub ts_ms: i64,
    pub level: Level,
    pub phase: String,
    pub service: Option<String>,
    pub event: String,
    pub duration_ms: Option<i64>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// How a service ended up in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceOutcome {
    /// Started and ready (healthy, or running with no probe).
    Ready,
    /// An init job that ran to completion.
    Completed,
    /// Already running (or completed) with the same definition: left alone.
    Unchanged,
    Failed,
    /// Not started because a dependency failed or was skipped.
    Skipped,
    /// Still starting when the deployment stopped (core failure or interruption).
    InProgress,
    /// Never started because the deployment stopped first.
    NotStarted,
}

impl ServiceOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceOutcome::Ready => "ready",
            ServiceOutcome::Completed => "completed",
            ServiceOutcome::Unchanged => "unchanged",
            ServiceOutcome::Failed => "failed",
            ServiceOutcome::Skipped => "skipped",
            ServiceOutcome::InProgress => "in progress",
            ServiceOutcome::NotStarted => "not started",
        }
    }

    pub fn is_up(self) -> bool {
        matches!(
            self,
            ServiceOutcome::Ready | ServiceOutcome::Completed | ServiceOutcome::Unchanged
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    pub class: ServiceClass,
    pub outcome: ServiceOutcome,
    pub attempts: Vec<Attempt>,
    /// Offset from the deployment's start to the successful spawn.
    pub start_offset_ms: Option<i64>,
    /// Offset from the deployment's start to ready/completed.
    pub ready_offset_ms: Option<i64>,
    /// From the successful attempt's spawn to ready/completed.
    pub time_to_ready_ms: Option<i64>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    pub services: BTreeMap<String, ServiceReport>,
    /// A core (or init) service that failed, which stopped the deployment.
    pub failed_core: Option<String>,
    /// Why the run stopped before the deployment settled, if it did.
    pub interrupted: Option<Interruption>,
    pub elapsed_ms: i64,
}

/// Why a run stopped waiting before the deployment settled: nothing further starts, and what
/// runs is left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interruption {
    /// The operator pressed Ctrl-C.
    Operator,
    /// The caller's wait limit (`--wait-timeout`) ran out.
    WaitTimeout { after_ms: u64 },
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interruption::Operator => f.write_str("interrupted by the operator"),
            Interruption::WaitTimeout { after_ms } => write!(
                f,
                "interrupted: the wait timeout of {} ran out",
                crate::spec::format_duration(Duration::from_millis(*after_ms))
            ),
        }
    }
}

impl RunOutcome {
    /// Everything planned is up.
    pub fn all_up(&self) -> bool {
        self.services.values().all(|s| s.outcome.is_up())
    }
}

#[derive(Debug)]
enum Phase {
    Waiting,
    Starting {
        attempt_started: Instant,
        deadline: Instant,
        /// Known once the supervisor answered the Start request.
        generation: Option<u64>,
        spawned: bool,
    },
    BackingOff {
        until: Instant,
    },
    Ready,
    Completed,
    Failed,
    Skipped,
}

struct Track<'a> {
    spec: &'a ServiceSpec,
    phase: Phase,
    unchanged: bool,
    attempts: Vec<Attempt>,
    max_attempts: u32,
    backoff: Backoff,
    timeout: Duration,
    spawned_at: Option<Instant>,
    ready_at: Option<Instant>,
    reason: Option<String>,
    /// Events that arrived before the Start response told us their generation.
    early: Vec<Event>,
    /// Some dependent waits for this service to complete successfully.
    awaited_completion: bool,
}

impl Track<'_> {
    fn settled(&self) -> bool {
        matches!(
            self.phase,
            Phase::Ready | Phase::Completed | Phase::Failed | Phase::Skipped
        )
    }
}

/// Result of a Start request, sent back into the event loop.
struct StartResult {
    service: String,
    result: Result<Response, SupervisorError>,
}

/// Start `services` (the plan's, any order) through the supervisor at `paths`.
///
/// `current` is the supervisor's status before the run: services running (or completed) with an
/// unchanged definition are left alone. `cancel` resolves, saying why, when the run must stop
/// waiting (Ctrl-C, a wait timeout).
pub async fn run(
    paths: &StackPaths,
    services: &[&ServiceSpec],
    current: &StackStatus,
    gates: &HashMap<String, Gate>,
    config: &SchedulerConfig,
    sink: &mut dyn FnMut(DeployEvent),
    cancel: impl Future<Output = Interruption>,
) -> Result<RunOutcome, SupervisorError> {
    let t0 = Instant::now();
    let mut events = Client::connect(paths).await?.subscribe().await?;
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<StartResult>();
    let mut tracks = build_tracks(services, current, config);
    for t in tracks.values() {
        if t.unchanged {
            sink(event(
                Level::Info,
                Some(&t.spec.name),
                "unchanged",
                None,
                "already running with the same definition",
            ));
        }
    }
    let mut failed_core: Option<String> = None;
    let mut interrupted = None;
    tokio::pin!(cancel);

    loop {
        propagate_skips(&mut tracks, sink);
        if failed_core.is_none() {
            launch_ready(
                &mut tracks,
                gates,
                paths,
                &results_tx,
                sink,
                &mut failed_core,
            );
        }
        if failed_core.is_some() || tracks.values().all(Track::settled) {
            break;
        }
        let next_deadline = tracks
            .values()
            .filter_map(|t| match t.phase {
                Phase::Starting { deadline, .. } => Some(deadline),
                Phase::BackingOff { until } => Some(until),
                _ => None,
            })
            .min();
        let sleep = async {
            match next_deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => on_event(&mut tracks, ev, sink, &mut failed_core),
                Some(Err(e)) => return Err(e),
                None => return Err(SupervisorError::NotRunning { stack: paths.name.clone() }),
            },
            Some(r) = results_rx.recv() => {
                on_start_result(&mut tracks, r, sink, &mut failed_core);
            }
            _ = sleep => on_timers(&mut tracks, paths, &results_tx, sink, &mut failed_core),
            why = &mut cancel => {
                interrupted = Some(why);
                sink(event(Level::Warn, None, "interrupted", None, &format!("{why}: nothing further starts; running services are left running")));
                break;
            }
        }
    }
    let elapsed_ms = t0.elapsed().as_millis() as i64;
    Ok(RunOutcome {
        services: tracks
            .into_iter()
            .map(|(name, t)| (name, report_of(t, t0)))
            .collect(),
        failed_core,
        interrupted,
        elapsed_ms,
    })
}

fn build_tracks<'a>(
    services: &[&'a ServiceSpec],
    current: &StackStatus,
    config: &SchedulerConfig,
) -> BTreeMap<String, Track<'a>> {
    let mut tracks = BTreeMap::new();
    for spec in services {
        let running = current.services.iter().find(|s| s.name == spec.name);
        let unchanged_phase = running.and_then(|r| {
            if r.definition_hash != spec.definition_hash() {
                return None;
            }
            match (r.state, r.health) {
                (ServiceState::Completed, _) => Some(Phase::Completed),
                (ServiceState::Running, Health::Healthy | Health::None) => Some(Phase::Ready),
                _ => None,
            }
        });
        let retries = spec
            .labels
            .get(LABEL_RETRIES)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(config.retries);
        let backoff = match spec
            .labels
            .get(LABEL_RETRY_BACKOFF)
            .and_then(|v| crate::spec::parse_duration(v).ok())
        {
            Some(base) => Backoff {
                base,
                ..config.backoff
            },
            None => config.backoff,
        };
        tracks.insert(
            spec.name.clone(),
            Track {
                spec,
                unchanged: unchanged_phase.is_some(),
                phase: unchanged_phase.unwrap_or(Phase::Waiting),
                attempts: Vec::new(),
                max_attempts: retries.saturating_add(1),
                backoff,
                timeout: start_timeout(spec, config),
                spawned_at: None,
                ready_at: None,
                reason: None,
                early: Vec::new(),
                awaited_completion: false,
            },
        );
    }
    let awaited: Vec<String> = services
        .iter()
        .flat_map(|s| s.depends_on.iter())
        .filter(|d| d.condition == DependencyCondition::CompletedSuccessfully)
        .map(|d| d.service.clone())
        .collect();
    for name in awaited {
        if let Some(t) = tracks.get_mut(&name) {
            t.awaited_completion = true;
        }
    }
    tracks
}

/// The time-to-ready limit: the `dive.service.timeout` label; else derived from the healthcheck
/// as compose would declare it unhealthy (start period + retries × interval + one probe timeout);
/// else the default.
pub fn start_timeout(spec: &ServiceSpec, config: &SchedulerConfig) -> Duration {
    if let Some(t) = spec.start_timeout {
        return t;
    }
    match &spec.healthcheck {
        Some(hc) => hc.start_period + hc.interval * hc.retries.max(1) + hc.timeout,
        None => config.default_start_timeout,
    }
}

enum DepState {
    Satisfied,
    Pending,
    Broken(String),
}

fn dependency_state(tracks: &BTreeMap<String, Track<'_>>, spec: &ServiceSpec) -> DepState {
    let mut pending = false;
    for dep in &spec.depends_on {
        let Some(d) = tracks.get(&dep.service) else {
            continue; // not in the plan (a non-required dependency excluded by profile)
        };
        let broken = matches!(d.phase, Phase::Failed | Phase::Skipped);
        if broken {
            if dep.required {
                return DepState::Broken(format!(
                    "dependency {} {}",
                    dep.service,
                    if matches!(d.phase, Phase::Failed) {
                        "failed"
                    } else {
                        "was skipped"
                    }
                ));
            }
            continue;
        }
        let ok = match dep.condition {
            DependencyCondition::Started => matches!(
                d.phase,
                Phase::Ready | Phase::Completed | Phase::Starting { spawned: true, .. }
            ),
            DependencyCondition::Healthy => matches!(d.phase, Phase::Ready | Phase::Completed),
            DependencyCondition::CompletedSuccessfully => matches!(d.phase, Phase::Completed),
        };
        if !ok {
            pending = true;
        }
    }
    if pending {
        DepState::Pending
    } else {
        DepState::Satisfied
    }
}

fn propagate_skips(tracks: &mut BTreeMap<String, Track<'_>>, sink: &mut dyn FnMut(DeployEvent)) {
    loop {
        let mut changed = false;
        let names: Vec<String> = tracks.keys().cloned().collect();
        for name in names {
            if !matches!(tracks[&name].phase, Phase::Waiting) {
                continue;
            }
            if let DepState::Broken(reason) = dependency_state(tracks, tracks[&name].spec) {
                let t = tracks.get_mut(&name).expect("name from keys");
                t.phase = Phase::Skipped;
                sink(event(Level::Warn, Some(&name), "skipped", None, &reason));
                t.reason = Some(reason);
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

fn launch_ready(
    tracks: &mut BTreeMap<String, Track<'_>>,
    gates: &HashMap<String, Gate>,
    paths: &StackPaths,
    tx: &mpsc::UnboundedSender<StartResult>,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    let names: Vec<String> = tracks.keys().cloned().collect();
    for name in names {
        if !matches!(tracks[&name].phase, Phase::Waiting) {
            continue;
        }
        if !matches!(
            dependency_state(tracks, tracks[&name].spec),
            DepState::Satisfied
        ) {
            continue;
        }
        let t = tracks.get_mut(&name).expect("name from keys");
        match gates.get(&name).unwrap_or(&Gate::Allow) {
            Gate::Deny(message) => {
                t.attempts.push(Attempt {
                    ok: false,
                    error: Some(message.clone()),
                    duration_ms: 0,
                });
                fail(t, message.clone(), sink, failed_core);
                continue;
            }
            Gate::Trial => {
                t.max_attempts = 1;
                sink(event(
                    Level::Warn,
                    Some(&name),
                    "breaker_trial",
                    None,
                    "circuit breaker half-open: one trial start, no retries",
                ));
            }
            Gate::Allow => {}
        }
        launch(t, paths, tx, false, sink);
    }
}

fn launch(
    t: &mut Track<'_>,
    paths: &StackPaths,
    tx: &mpsc::UnboundedSender<StartResult>,
    restart: bool,
    sink: &mut dyn FnMut(DeployEvent),
) {
    let now = Instant::now();
    t.phase = Phase::Starting {
        attempt_started: now,
        deadline: now + t.timeout,
        generation: None,
        spawned: false,
    };
    t.early.clear();
    let attempt = t.attempts.len() + 1;
    sink(event(
        Level::Info,
        Some(&t.spec.name),
        "starting",
        None,
        &if attempt > 1 {
            format!("starting (attempt {attempt} of {})", t.max_attempts)
        } else {
            "starting".to_string()
        },
    ));
    let request = Request::Start {
        service: Box::new(t.spec.clone()),
        restart,
    };
    let paths = paths.clone();
    let tx = tx.clone();
    let service = t.spec.name.clone();
    tokio::spawn(async move {
        let result = match Client::connect(&paths).await {
            Ok(mut c) => c.request(&request).await,
            Err(e) => Err(e),
        };
        let _ = tx.send(StartResult { service, result });
    });
}

fn send_stop(paths: &StackPaths, service: &str) {
    let paths = paths.clone();
    let request = Request::Stop {
        services: vec![service.to_string()],
    };
    tokio::spawn(async move {
        if let Ok(mut c) = Client::connect(&paths).await {
            let _ = c.request(&request).await;
        }
    });
}

fn on_start_result(
    tracks: &mut BTreeMap<String, Track<'_>>,
    r: StartResult,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    let Some(t) = tracks.get_mut(&r.service) else {
        return;
    };
    let Phase::Starting { generation, .. } = &mut t.phase else {
        return;
    };
    match r.result {
        Ok(Response::Started { generation: g, .. }) => {
            *generation = Some(g);
            let early = std::mem::take(&mut t.early);
            for ev in early.into_iter().filter(|e| e.generation() == g) {
                on_track_event(t, ev, sink, failed_core);
            }
        }
        Ok(Response::AlreadyRunning {
            generation: g,
            state,
            health,
            ..
        }) => {
            *generation = Some(g);
            match (state, health) {
                (ServiceState::Completed, _) => complete(t, sink),
                (ServiceState::Running, Health::Healthy | Health::None) => {
                    t.spawned_at.get_or_insert_with(Instant::now);
                    ready(t, sink)
                }
                _ => {
                    // Still starting from an earlier deployment: wait for its events.
                    if let Phase::Starting { spawned, .. } = &mut t.phase {
                        *spawned = true;
                    }
                    t.spawned_at.get_or_insert_with(Instant::now);
                }
            }
        }
        Ok(other) => attempt_failed(
            t,
            format!("unexpected answer from the supervisor: {other:?}"),
            sink,
            failed_core,
        ),
        Err(e) => attempt_failed(t, e.to_string(), sink, failed_core),
    }
}

fn on_event(
    tracks: &mut BTreeMap<String, Track<'_>>,
    ev: Event,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    let Some(t) = tracks.get_mut(ev.service()) else {
        return;
    };
    on_track_event(t, ev, sink, failed_core);
}

fn on_track_event(
    t: &mut Track<'_>,
    ev: Event,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    match &mut t.phase {
        Phase::Starting {
            generation: None, ..
        } => {
            t.early.push(ev);
        }
        Phase::Starting {
            generation: Some(g),
            spawned,
            ..
        } if *g == ev.generation() => match ev {
            Event::Spawned { pid, .. } => {
                *spawned = true;
                t.spawned_at = Some(Instant::now());
                sink(event(
                    Level::Info,
                    Some(&t.spec.name),
                    "spawned",
                    None,
                    &format!("pid {pid}"),
                ));
                if t.spec.healthcheck.is_none() && t.spec.class != ServiceClass::Init {
                    ready(t, sink);
                }
            }
            Event::Healthy { .. } => ready(t, sink),
            Event::Exited { exit, .. } => {
                let done_ok =
                    exit.success() && (t.spec.class == ServiceClass::Init || t.awaited_completion);
                if done_ok {
                    complete(t, sink);
                } else {
                    let what = if t.spec.class == ServiceClass::Init {
                        format!("{} (init job must exit 0)", exit.describe())
                    } else {
                        format!("{} before becoming healthy", exit.describe())
                    };
                    attempt_failed(t, what, sink, failed_core);
                }
            }
            Event::SpawnFailed { error, .. } => attempt_failed(t, error, sink, failed_core),
            Event::Unhealthy { .. } | Event::Stopped { .. } => {}
        },
        Phase::Ready => match ev {
            Event::Exited { exit, .. } if exit.success() && t.awaited_completion => {
                complete(t, sink)
            }
            Event::Exited {
                exit,
                restarting: true,
                ..
            } => sink(event(
                Level::Warn,
                Some(&t.spec.name),
                "exited",
                None,
                &format!(
                    "{} after becoming ready; the supervisor restarts it",
                    exit.describe()
                ),
            )),
            Event::Exited { exit, .. } => {
                // Gone for good (no restart policy, or its limit reached) before the deployment
                // settled: whatever it was a moment ago, it is not up now.
                t.unchanged = false;
                fail(
                    t,
                    format!("{} after becoming ready; not restarted", exit.describe()),
                    sink,
                    failed_core,
                );
            }
            Event::Unhealthy { reason, .. } => sink(event(
                Level::Warn,
                Some(&t.spec.name),
                "unhealthy",
                None,
                &reason,
            )),
            _ => {}
        },
        _ => {}
    }
}

fn on_timers(
    tracks: &mut BTreeMap<String, Track<'_>>,
    paths: &StackPaths,
    tx: &mpsc::UnboundedSender<StartResult>,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    let now = Instant::now();
    for t in tracks.values_mut() {
        match t.phase {
            Phase::Starting { deadline, .. } if deadline <= now => {
                let what = match t.spec.class {
                    ServiceClass::Init => {
                        format!("did not complete within {}", fmt_duration(t.timeout))
                    }
                    _ if t.spec.healthcheck.is_some() => {
                        format!("not healthy within {}", fmt_duration(t.timeout))
                    }
                    _ => format!("did not start within {}", fmt_duration(t.timeout)),
                };
                send_stop(paths, &t.spec.name);
                attempt_failed(t, what, sink, failed_core);
            }
            Phase::BackingOff { until } if until <= now => launch(t, paths, tx, true, sink),
            _ => {}
        }
    }
}

fn attempt_started(t: &Track<'_>) -> Option<Instant> {
    match t.phase {
        Phase::Starting {
            attempt_started, ..
        } => Some(attempt_started),
        _ => None,
    }
}

fn ready(t: &mut Track<'_>, sink: &mut dyn FnMut(DeployEvent)) {
    finish_attempt_ok(t);
    t.phase = Phase::Ready;
    let since = t.spawned_at.map(|s| s.elapsed().as_millis() as i64);
    let what = if t.spec.healthcheck.is_some() {
        "healthy"
    } else {
        "running"
    };
    sink(event(Level::Info, Some(&t.spec.name), what, since, what));
}

fn complete(t: &mut Track<'_>, sink: &mut dyn FnMut(DeployEvent)) {
    finish_attempt_ok(t);
    t.phase = Phase::Completed;
    let since = t.spawned_at.map(|s| s.elapsed().as_millis() as i64);
    sink(event(
        Level::Info,
        Some(&t.spec.name),
        "completed",
        since,
        "completed successfully",
    ));
}

fn finish_attempt_ok(t: &mut Track<'_>) {
    let now = Instant::now();
    if let Some(started) = attempt_started(t) {
        t.attempts.push(Attempt {
            ok: true,
            error: None,
            duration_ms: (now - started).as_millis() as i64,
        });
    }
    t.ready_at = Some(now);
}

fn attempt_failed(
    t: &mut Track<'_>,
    error: String,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    let started = attempt_started(t).unwrap_or_else(Instant::now);
    t.attempts.push(Attempt {
        ok: false,
        error: Some(error.clone()),
        duration_ms: started.elapsed().as_millis() as i64,
    });
    let n = t.attempts.len() as u32;
    if n < t.max_attempts {
        let delay = t.backoff.delay(n - 1);
        sink(event(
            Level::Warn,
            Some(&t.spec.name),
            "retrying",
            Some(started.elapsed().as_millis() as i64),
            &format!(
                "attempt {n} of {} failed: {error}; retrying in {}",
                t.max_attempts,
                fmt_duration(delay)
            ),
        ));
        t.phase = Phase::BackingOff {
            until: Instant::now() + delay,
        };
    } else {
        let message = if t.max_attempts > 1 {
            format!("{error} (after {n} attempts)")
        } else {
            error
        };
        fail(t, message, sink, failed_core);
    }
}

fn fail(
    t: &mut Track<'_>,
    message: String,
    sink: &mut dyn FnMut(DeployEvent),
    failed_core: &mut Option<String>,
) {
    t.phase = Phase::Failed;
    let critical = matches!(t.spec.class, ServiceClass::Core | ServiceClass::Init);
    sink(event(
        if critical { Level::Error } else { Level::Warn },
        Some(&t.spec.name),
        "failed",
        None,
        &format!(
            "{} service failed: {message}{}",
            t.spec.class.as_str(),
            if critical {
                "; nothing further starts"
            } else {
                "; the deployment continues degraded"
            }
        ),
    ));
    t.reason = Some(message);
    if critical && failed_core.is_none() {
        *failed_core = Some(t.spec.name.clone());
    }
}

fn report_of(t: Track<'_>, t0: Instant) -> ServiceReport {
    let outcome = match t.phase {
        _ if t.unchanged => ServiceOutcome::Unchanged,
        Phase::Ready => ServiceOutcome::Ready,
        Phase::Completed => ServiceOutcome::Completed,
        Phase::Failed => ServiceOutcome::Failed,
        Phase::Skipped => ServiceOutcome::Skipped,
        Phase::Starting { .. } | Phase::BackingOff { .. } => ServiceOutcome::InProgress,
        Phase::Waiting => ServiceOutcome::NotStarted,
    };
    let offset = |i: Instant| i.saturating_duration_since(t0).as_millis() as i64;
    ServiceReport {
        name: t.spec.name.clone(),
        class: t.spec.class,
        outcome,
        attempts: t.attempts,
        start_offset_ms: t.spawned_at.map(offset),
        ready_offset_ms: t.ready_at.map(offset),
        time_to_ready_ms: match (t.spawned_at, t.ready_at) {
            (Some(s), Some(r)) => Some(r.saturating_duration_since(s).as_millis() as i64),
            _ => None,
        },
        reason: t.reason,
    }
}

fn event(
    level: Level,
    service: Option<&str>,
    kind: &str,
    duration_ms: Option<i64>,
    message: &str,
) -> DeployEvent {
    DeployEvent {
        ts_ms: now_ms(),
        level,
        phase: "START".to_string(),
        service: service.map(str::to_string),
        event: kind.to_string(),
        duration_ms,
        message: message.to_string(),
    }
}

/// A deployment event outside the scheduler (phases, locks, reports).
pub fn phase_event(level: Level, phase: &str, kind: &str, message: &str) -> DeployEvent {
    DeployEvent {
        ts_ms: now_ms(),
        level,
        phase: phase.to_string(),
        service: None,
        event: kind.to_string(),
        duration_ms: None,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::{Environment, parse_str};

    fn spec(extra: &str) -> ServiceSpec {
        let text = format!("services:\n  s:\n    command: x\n{extra}");
        let stack = parse_str(
            &text,
            Path::new("/nonexistent-dive-scheduler-test/stack.yml"),
            None,
            &Environment::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        stack.services.into_values().next().unwrap()
    }

    #[test]
    fn time_to_ready_limit_is_the_label_else_the_healthcheck_else_the_default() {
        let config = SchedulerConfig::default();
        let probe = "    healthcheck:\n      test: [CMD, \"true\"]\n      interval: 2s\n      timeout: 1s\n      retries: 3\n      start_period: 5s\n";
        assert_eq!(
            start_timeout(
                &spec(&format!(
                    "{probe}    labels:\n      dive.service.timeout: 7s\n"
                )),
                &config
            ),
            Duration::from_secs(7)
        );
        // As compose would declare it unhealthy: 5 s + 3 × 2 s + 1 s.
        assert_eq!(
            start_timeout(&spec(probe), &config),
            Duration::from_secs(12)
        );
        assert_eq!(
            start_timeout(&spec(""), &config),
            config.default_start_timeout
        );
        assert_eq!(config.default_start_timeout, Duration::from_secs(120));
    }

    #[test]
    fn interruptions_say_why() {
        assert_eq!(
            Interruption::Operator.to_string(),
            "interrupted by the operator"
        );
        assert_eq!(
            Interruption::WaitTimeout { after_ms: 90_000 }.to_string(),
            "interrupted: the wait timeout of 1m30s ran out"
        );
    }
}
