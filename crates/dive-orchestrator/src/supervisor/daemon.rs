//! The per-stack supervisor daemon: owns the service processes, their logs, health probes and
//! restart policies, and answers the CLI over a Unix socket. It runs detached from the CLI in
//! its own session, so services keep running after `dive stack up` returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, broadcast, watch};

use super::protocol::{
    Event, ExitInfo, Health, Request, Response, ServiceState, ServiceStatus, StackStatus,
};
use super::{OrphanRecord, SupervisorIdentity};
use crate::fmt::now_ms;
use crate::logs::{RotatingLog, Rotation};
use crate::paths::StackPaths;
use crate::probe::{Prober, starting_delay};
use crate::process::{ProcessId, signal_group};
use crate::spec::{RestartPolicy, ServiceClass, ServiceSpec};

/// Tunables of the supervisor.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub rotation: Rotation,
    /// Restarts in a row (each run shorter than `stable_after`) before giving up, when the
    /// service's `restart` policy sets no limit of its own.
    pub restart_limit: u32,
    /// A run at least this long resets the restart backoff and the in-a-row count.
    pub stable_after: Duration,
    pub restart_backoff: crate::retry::Backoff,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            rotation: Rotation::default(),
            restart_limit: 10,
            stable_after: Duration::from_secs(10),
            restart_backoff: crate::retry::Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(10),
                jitter: 0.2,
            },
        }
    }
}

struct Svc {
    spec: ServiceSpec,
    hash: String,
    state: ServiceState,
    health: Health,
    /// Increases with every spawn: events and tasks of an older generation are ignored.
    generation: u64,
    pid: Option<u32>,
    /// The running process's identity, read once at spawn (for the orphan record).
    process: Option<ProcessId>,
    started_at_ms: Option<i64>,
    started_at: Option<Instant>,
    /// The operator wants it running (false after Stop/Shutdown).
    desired: bool,
    /// Reached readiness since the last Start request: only then does the restart policy apply
    /// (before that, start failures belong to the scheduler's retries).
    ever_ready: bool,
    restarts: u32,
    restarts_in_a_row: u32,
    last_exit: Option<ExitInfo>,
    note: Option<String>,
    /// Fires with the exit of the current generation's process.
    exited: watch::Receiver<Option<ExitInfo>>,
}

struct Inner {
    stack: String,
    services: BTreeMap<String, Svc>,
    next_generation: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    paths: StackPaths,
    config: DaemonConfig,
    prober: Prober,
    shutdown: Notify,
    started_at_ms: i64,
}

type SharedRef = Arc<Shared>;

/// Run the supervisor for `paths` until it is told to shut down (or receives SIGTERM/SIGINT).
/// The caller must have checked that no other supervisor is alive for this stack.
pub async fn run(paths: StackPaths, config: DaemonConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(&paths.dir)?;
    std::fs::create_dir_all(paths.logs_dir())?;
    let socket = paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let me = SupervisorIdentity {
        process: ProcessId::current(),
        stack: paths.name.clone(),
        started_at_ms: now_ms(),
    };
    write_json_atomic(&paths.supervisor_file(), &me)?;

    let (events, _) = broadcast::channel(4096);
    let shared: SharedRef = Arc::new(Shared {
        inner: Mutex::new(Inner {
            stack: paths.name.clone(),
            services: BTreeMap::new(),
            next_generation: 1,
        }),
        events,
        paths: paths.clone(),
        config,
        prober: Prober::default(),
        shutdown: Notify::new(),
        started_at_ms: me.started_at_ms,
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_connection(shared.clone(), stream));
                }
            }
            _ = shared.shutdown.notified() => break,
            _ = sigterm.recv() => { stop_all(&shared).await; break; }
            _ = sigint.recv() => { stop_all(&shared).await; break; }
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(paths.supervisor_file());
    let _ = std::fs::remove_file(paths.services_file());
    Ok(())
}

async fn serve_connection(shared: SharedRef, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = send(
                    &mut write,
                    &Response::Error {
                        message: format!("bad request: {e}"),
                    },
                )
                .await;
                continue;
            }
        };
        match request {
            Request::Subscribe => {
                let mut rx = shared.events.subscribe();
                if send(&mut write, &Response::Ok).await.is_err() {
                    return;
                }
                loop {
                    match rx.recv().await {
                        Ok(ev) => {
                            if send(&mut write, &ev).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
            Request::Shutdown => {
                stop_all(&shared).await;
                let _ = send(&mut write, &Response::Ok).await;
                shared.shutdown.notify_one();
                return;
            }
            other => {
                let response = handle(&shared, other).await;
                if send(&mut write, &response).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn send<T: serde::Serialize>(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}

async fn handle(shared: &SharedRef, request: Request) -> Response {
    match request {
        Request::Ping => Response::Pong {
            pid: std::process::id(),
            stack: shared.paths.name.clone(),
        },
        Request::Start { service, restart } => start(shared, *service, restart).await,
        Request::Stop { services } => {
            for name in services {
                stop(shared, &name).await;
            }
            Response::Ok
        }
        Request::Forget { services } => {
            let mut inner = lock(shared);
            for name in services {
                if inner
                    .services
                    .get(&name)
                    .is_some_and(|s| !s.state.is_active())
                {
                    inner.services.remove(&name);
                }
            }
            drop(inner);
            persist_pids(shared);
            Response::Ok
        }
        Request::Status => Response::Status(status(shared)),
        Request::Subscribe | Request::Shutdown => Response::Error {
            message: "handled by the connection loop".into(),
        },
    }
}

fn lock(shared: &SharedRef) -> std::sync::MutexGuard<'_, Inner> {
    // A panic while holding the lock would be a bug; keep serving with the data as it is.
    shared.inner.lock().unwrap_or_else(|e| e.into_inner())
}

fn status(shared: &SharedRef) -> StackStatus {
    let inner = lock(shared);
    StackStatus {
        stack: inner.stack.clone(),
        supervisor: ProcessId::current(),
        supervisor_started_at_ms: shared.started_at_ms,
        services: inner
            .services
            .iter()
            .map(|(name, s)| ServiceStatus {
                name: name.clone(),
                class: s.spec.class,
                description: s.spec.description.clone(),
                state: s.state,
                health: s.health,
                pid: s.pid,
                started_at_ms: s.started_at_ms,
                restarts: s.restarts,
                last_exit: s.last_exit.clone(),
                definition_hash: s.hash.clone(),
                generation: s.generation,
                note: s.note.clone(),
            })
            .collect(),
    }
}

async fn start(shared: &SharedRef, spec: ServiceSpec, restart: bool) -> Response {
    let name = spec.name.clone();
    let hash = spec.definition_hash();
    let replace = {
        let inner = lock(shared);
        match inner.services.get(&name) {
            Some(s)
                if (s.state.is_active() || s.state == ServiceState::Completed)
                    && s.state != ServiceState::Stopping
                    && s.hash == hash
                    && !restart =>
            {
                return Response::AlreadyRunning {
                    service: name,
                    generation: s.generation,
                    state: s.state,
                    health: s.health,
                };
            }
            Some(s) => s.state.is_active(),
            None => false,
        }
    };
    if replace {
        stop(shared, &name).await;
    }
    let generation = {
        let mut inner = lock(shared);
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let (_, exited) = watch::channel(None);
        let restarts = inner.services.get(&name).map_or(0, |s| s.restarts);
        inner.services.insert(
            name.clone(),
            Svc {
                spec,
                hash,
                state: ServiceState::Starting,
                health: Health::Starting,
                generation,
                pid: None,
                process: None,
                started_at_ms: None,
                started_at: None,
                desired: true,
                ever_ready: false,
                restarts,
                restarts_in_a_row: 0,
                last_exit: None,
                note: None,
                exited,
            },
        );
        generation
    };
    spawn_generation(shared, &name, generation);
    Response::Started {
        service: name,
        generation,
    }
}

/// Spawn the process for `generation` of `name` with its log pumps, waiter and health task.
fn spawn_generation(shared: &SharedRef, name: &str, generation: u64) {
    let spec = {
        let inner = lock(shared);
        match inner.services.get(name) {
            Some(s) if s.generation == generation && s.desired => s.spec.clone(),
            _ => return,
        }
    };
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .envs(&spec.environment)
        .current_dir(&spec.working_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let child = cmd.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let error = format!("cannot start {:?}: {e}", spec.argv[0]);
            let at_ms = now_ms();
            {
                let mut inner = lock(shared);
                if let Some(s) = inner.services.get_mut(name) {
                    s.state = ServiceState::Exited;
                    s.health = health_when_stopped(&s.spec);
                    s.note = Some(error.clone());
                    s.last_exit = Some(ExitInfo {
                        code: None,
                        signal: None,
                        at_ms,
                    });
                }
            }
            let _ = shared.events.send(Event::SpawnFailed {
                service: name.to_string(),
                generation,
                error,
            });
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    let (exit_tx, exit_rx) = watch::channel(None);
    {
        let mut inner = lock(shared);
        if let Some(s) = inner.services.get_mut(name) {
            s.pid = Some(pid);
            s.process = ProcessId::of(pid);
            s.started_at_ms = Some(now_ms());
            s.started_at = Some(Instant::now());
            s.exited = exit_rx;
            if s.spec.healthcheck.is_none() {
                // Without a probe, running is as ready as it gets.
                s.health = Health::None;
                if s.spec.class != ServiceClass::Init {
                    s.state = ServiceState::Running;
                    s.ever_ready = true;
                }
            } else {
                s.state = ServiceState::Starting;
                s.health = Health::Starting;
            }
        }
    }
    persist_pids(shared);
    let _ = shared.events.send(Event::Spawned {
        service: name.to_string(),
        generation,
        pid,
    });

    let log = match RotatingLog::open(&shared.paths.service_log(name), shared.config.rotation) {
        Ok(l) => Some(Arc::new(Mutex::new(l))),
        Err(e) => {
            tracing::warn!(service = name, "cannot open log file: {e}");
            None
        }
    };
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, log));
    }
    if spec.healthcheck.is_some() {
        tokio::spawn(health_loop(shared.clone(), name.to_string(), generation));
    }
    let shared = shared.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        let status = child.wait().await;
        let exit = exit_info(status);
        // Reap whatever the service left behind in its process group.
        let _ = signal_group(pid, libc::SIGKILL);
        let _ = exit_tx.send(Some(exit.clone()));
        on_exit(&shared, &name, generation, exit).await;
    });
}

fn exit_info(status: std::io::Result<std::process::ExitStatus>) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    let at_ms = now_ms();
    match status {
        Ok(s) => ExitInfo {
            code: s.code(),
            signal: s.signal(),
            at_ms,
        },
        Err(_) => ExitInfo {
            code: None,
            signal: None,
            at_ms,
        },
    }
}

async fn pump(mut reader: impl tokio::io::AsyncRead + Unpin, log: Option<Arc<Mutex<RotatingLog>>>) {
    let mut reader = BufReader::new(&mut reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                if let Some(log) = &log {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = log.write_all(&line);
                }
            }
        }
    }
}

fn health_when_stopped(spec: &ServiceSpec) -> Health {
    if spec.healthcheck.is_some() {
        Health::Unhealthy
    } else {
        Health::None
    }
}

/// What the restart policy says after an exit.
enum AfterExit {
    Restart(Duration),
    Stay(ServiceState, Option<String>),
}

async fn on_exit(shared: &SharedRef, name: &str, generation: u64, exit: ExitInfo) {
    let decision = {
        let mut inner = lock(shared);
        let Some(s) = inner.services.get_mut(name) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        s.pid = None;
        s.process = None;
        s.last_exit = Some(exit.clone());
        let ran_for = s.started_at.map(|t| t.elapsed()).unwrap_or_default();
        let decision = decide_after_exit(s, &exit, ran_for, &shared.config);
        match &decision {
            AfterExit::Restart(_) => {
                s.state = ServiceState::BackingOff;
                s.health = health_when_stopped(&s.spec);
            }
            AfterExit::Stay(state, note) => {
                s.state = *state;
                s.health = if *state == ServiceState::Completed {
                    Health::None
                } else {
                    health_when_stopped(&s.spec)
                };
                s.note = note.clone();
            }
        }
        decision
    };
    persist_pids(shared);
    let restarting = matches!(decision, AfterExit::Restart(_));
    let event = if lock(shared)
        .services
        .get(name)
        .is_some_and(|s| s.state == ServiceState::Stopped)
    {
        Event::Stopped {
            service: name.to_string(),
            generation,
        }
    } else {
        Event::Exited {
            service: name.to_string(),
            generation,
            exit,
            restarting,
        }
    };
    let _ = shared.events.send(event);
    if let AfterExit::Restart(delay) = decision {
        tokio::time::sleep(delay).await;
        let next = {
            let mut inner = lock(shared);
            let next_gen = inner.next_generation;
            inner.next_generation += 1;
            match inner.services.get_mut(name) {
                Some(s)
                    if s.generation == generation
                        && s.desired
                        && s.state == ServiceState::BackingOff =>
                {
                    s.generation = next_gen;
                    s.restarts += 1;
                    s.restarts_in_a_row += 1;
                    Some(next_gen)
                }
                _ => None,
            }
        };
        if let Some(next_gen) = next {
            spawn_generation(shared, name, next_gen);
        }
    }
}

fn decide_after_exit(
    s: &mut Svc,
    exit: &ExitInfo,
    ran_for: Duration,
    config: &DaemonConfig,
) -> AfterExit {
    if !s.desired {
        return AfterExit::Stay(ServiceState::Stopped, None);
    }
    if s.spec.class == ServiceClass::Init {
        return if exit.success() {
            AfterExit::Stay(ServiceState::Completed, None)
        } else {
            AfterExit::Stay(ServiceState::Exited, Some(exit.describe()))
        };
    }
    if !s.ever_ready {
        // A start that failed: the scheduler decides about retries.
        return AfterExit::Stay(
            ServiceState::Exited,
            Some(format!("{} before becoming ready", exit.describe())),
        );
    }
    if ran_for >= config.stable_after {
        s.restarts_in_a_row = 0;
    }
    let (wanted, limit) = match s.spec.restart {
        RestartPolicy::No => (false, None),
        RestartPolicy::Always | RestartPolicy::UnlessStopped => (true, None),
        RestartPolicy::OnFailure(max) => (!exit.success(), max),
    };
    if !wanted {
        return AfterExit::Stay(ServiceState::Exited, None);
    }
    if let Some(max) = limit {
        if s.restarts >= max {
            return AfterExit::Stay(
                ServiceState::Exited,
                Some(format!("restart limit reached (on-failure:{max})")),
            );
        }
    } else if s.restarts_in_a_row >= config.restart_limit {
        return AfterExit::Stay(
            ServiceState::Exited,
            Some(format!(
                "restart limit reached ({} restarts in a row, each up less than {})",
                config.restart_limit,
                crate::fmt::duration(config.stable_after)
            )),
        );
    }
    AfterExit::Restart(config.restart_backoff.delay(s.restarts_in_a_row))
}

async fn health_loop(shared: SharedRef, name: String, generation: u64) {
    let started = Instant::now();
    let mut was_healthy = false;
    let mut failures: u32 = 0;
    loop {
        let (hc, env, wd) = {
            let inner = lock(&shared);
            match inner.services.get(&name) {
                Some(s) if s.generation == generation && s.desired && s.pid.is_some() => (
                    s.spec.healthcheck.clone(),
                    s.spec.environment.clone(),
                    s.spec.working_dir.clone(),
                ),
                _ => return,
            }
        };
        let Some(hc) = hc else { return };
        let result = shared.prober.check(&hc.probe, hc.timeout, &env, &wd).await;
        let event = {
            let mut inner = lock(&shared);
            let Some(s) = inner.services.get_mut(&name) else {
                return;
            };
            if s.generation != generation || !s.desired || s.pid.is_none() {
                return;
            }
            match &result {
                Ok(()) => {
                    failures = 0;
                    if s.health != Health::Healthy {
                        s.health = Health::Healthy;
                        s.state = ServiceState::Running;
                        s.ever_ready = true;
                        s.note = None;
                        Some(Event::Healthy {
                            service: name.clone(),
                            generation,
                        })
                    } else {
                        None
                    }
                }
                Err(failure) => {
                    failures += 1;
                    if was_healthy && failures >= hc.retries.max(1) && s.health == Health::Healthy {
                        s.health = Health::Unhealthy;
                        s.state = ServiceState::Unhealthy;
                        s.note = Some(failure.0.clone());
                        Some(Event::Unhealthy {
                            service: name.clone(),
                            generation,
                            reason: failure.0.clone(),
                        })
                    } else {
                        None
                    }
                }
            }
        };
        if result.is_ok() {
            was_healthy = true;
        }
        if let Some(ev) = event {
            let _ = shared.events.send(ev);
        }
        let delay = if was_healthy {
            hc.interval
        } else {
            starting_delay(started.elapsed(), hc.start_interval)
        };
        tokio::time::sleep(delay).await;
    }
}

/// Stop one service: its stop signal to the process group, then SIGKILL after the grace period.
async fn stop(shared: &SharedRef, name: &str) {
    let (pid, signal, grace, mut exited) = {
        let mut inner = lock(shared);
        let Some(s) = inner.services.get_mut(name) else {
            return;
        };
        s.desired = false;
        match s.pid {
            Some(pid) => {
                s.state = ServiceState::Stopping;
                (
                    pid,
                    s.spec.stop_signal,
                    s.spec.stop_grace_period,
                    s.exited.clone(),
                )
            }
            None => {
                if s.state.is_active() {
                    s.state = ServiceState::Stopped;
                    s.health = health_when_stopped(&s.spec);
                }
                return;
            }
        }
    };
    let _ = signal_group(pid, signal);
    let graceful = tokio::time::timeout(grace, exited.wait_for(|e| e.is_some()))
        .await
        .is_ok();
    if !graceful {
        let _ = signal_group(pid, libc::SIGKILL);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), exited.wait_for(|e| e.is_some())).await;
    }
}

/// Stop every service, dependents before their dependencies.
async fn stop_all(shared: &SharedRef) {
    let order = {
        let inner = lock(shared);
        let specs: Vec<&ServiceSpec> = inner.services.values().map(|s| &s.spec).collect();
        stop_order(&specs)
    };
    for name in order {
        stop(shared, &name).await;
    }
}

/// Reverse dependency order over the services the supervisor knows (which may be fewer than
/// the stack file's, so dependencies on unknown services are ignored).
pub fn stop_order(specs: &[&ServiceSpec]) -> Vec<String> {
    let known: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new(); // service -> its dependents not yet stopped
    for s in specs {
        remaining.entry(s.name.as_str()).or_default();
        for d in &s.depends_on {
            if known.contains(d.service.as_str()) {
                remaining
                    .entry(d.service.as_str())
                    .or_default()
                    .insert(s.name.as_str());
            }
        }
    }
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, dependents)| dependents.is_empty())
            .map(|(n, _)| *n)
            .collect();
        // A cycle cannot come from a validated spec; stop the rest in name order rather than hang.
        let batch = if ready.is_empty() {
            remaining.keys().copied().collect()
        } else {
            ready
        };
        for n in batch {
            remaining.remove(n);
            for dependents in remaining.values_mut() {
                dependents.remove(n);
            }
            order.push(n.to_string());
        }
    }
    order
}

/// Record the pids of running services so that a later CLI can clean them up if this
/// supervisor dies.
fn persist_pids(shared: &SharedRef) {
    let records: Vec<OrphanRecord> = {
        let inner = lock(shared);
        inner
            .services
            .iter()
            .filter_map(|(name, s)| {
                Some(OrphanRecord {
                    service: name.clone(),
                    process: s.process?,
                })
            })
            .collect()
    };
    if let Err(e) = write_json_atomic(&shared.paths.services_file(), &records) {
        tracing::warn!("cannot record service pids: {e}");
    }
}

pub(crate) fn write_json_atomic<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::{Environment, parse_str};

    fn svc(restart: &str, class: &str) -> Svc {
        let text = format!(
            "services:\n  s:\n    command: x\n    restart: \"{restart}\"\n    labels:\n      dive.service.class: {class}\n"
        );
        let stack = parse_str(
            &text,
            Path::new("/nonexistent-dive-daemon-test/stack.yml"),
            None,
            &Environment::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let spec = stack.services.into_values().next().unwrap();
        Svc {
            hash: spec.definition_hash(),
            spec,
            state: ServiceState::Running,
            health: Health::None,
            generation: 1,
            pid: None,
            process: None,
            started_at_ms: None,
            started_at: None,
            desired: true,
            ever_ready: true,
            restarts: 0,
            restarts_in_a_row: 0,
            last_exit: None,
            note: None,
            exited: watch::channel(None).1,
        }
    }

    fn exit(code: i32) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
            at_ms: 0,
        }
    }

    fn config() -> DaemonConfig {
        DaemonConfig {
            restart_backoff: crate::retry::Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(10),
                jitter: 0.0,
            },
            ..DaemonConfig::default()
        }
    }

    const SHORT: Duration = Duration::from_millis(50);

    fn restarts(d: AfterExit) -> Option<Duration> {
        match d {
            AfterExit::Restart(after) => Some(after),
            AfterExit::Stay(..) => None,
        }
    }

    #[test]
    fn each_policy_restarts_on_the_exits_it_names() {
        let c = config();
        for (policy, code, restart) in [
            ("no", 1, false),
            ("always", 0, true),
            ("always", 1, true),
            ("unless-stopped", 0, true),
            ("on-failure", 0, false),
            ("on-failure", 1, true),
        ] {
            let mut s = svc(policy, "core");
            let d = decide_after_exit(&mut s, &exit(code), SHORT, &c);
            assert_eq!(restarts(d).is_some(), restart, "{policy} after exit {code}");
        }
    }

    #[test]
    fn restarts_back_off_and_stop_at_the_limit() {
        let c = config();
        let mut s = svc("always", "core");
        s.restarts_in_a_row = 3;
        assert_eq!(
            restarts(decide_after_exit(&mut s, &exit(1), SHORT, &c)),
            Some(Duration::from_millis(800)),
            "100 ms doubling per restart in a row"
        );
        s.restarts_in_a_row = c.restart_limit;
        match decide_after_exit(&mut s, &exit(1), SHORT, &c) {
            AfterExit::Stay(ServiceState::Exited, Some(note)) => {
                assert!(note.contains("restart limit reached"), "{note}")
            }
            _ => panic!("restarted past the limit"),
        }
        // A run longer than `stable_after` starts the count again.
        assert!(restarts(decide_after_exit(&mut s, &exit(1), c.stable_after, &c)).is_some());
        assert_eq!(s.restarts_in_a_row, 0);
        let mut s = svc("on-failure:2", "core");
        s.restarts = 2;
        match decide_after_exit(&mut s, &exit(1), SHORT, &c) {
            AfterExit::Stay(ServiceState::Exited, Some(note)) => {
                assert_eq!(note, "restart limit reached (on-failure:2)")
            }
            _ => panic!("on-failure:2 restarted a third time"),
        }
    }

    #[test]
    fn stopped_unready_and_init_services_are_never_restarted() {
        let c = config();
        let mut s = svc("always", "core");
        s.desired = false;
        assert!(matches!(
            decide_after_exit(&mut s, &exit(1), SHORT, &c),
            AfterExit::Stay(ServiceState::Stopped, None)
        ));
        let mut s = svc("always", "core");
        s.ever_ready = false; // a failed start belongs to the scheduler's retries
        assert!(matches!(
            decide_after_exit(&mut s, &exit(1), SHORT, &c),
            AfterExit::Stay(ServiceState::Exited, Some(_))
        ));
        let mut s = svc("always", "init");
        assert!(matches!(
            decide_after_exit(&mut s, &exit(0), SHORT, &c),
            AfterExit::Stay(ServiceState::Completed, None)
        ));
        assert!(matches!(
            decide_after_exit(&mut s, &exit(1), SHORT, &c),
            AfterExit::Stay(ServiceState::Exited, Some(_))
        ));
    }
}
