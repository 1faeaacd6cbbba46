//! Deploying an instance: PREFLIGHT → INIT → START → CONFIGURE → SEED → VERIFY, each phase a
//! step (checkpoint) of one deployment in the orchestrator's state store, under the stack's
//! deployment lock, with the orchestrator's event log and report.
//!
//! * A healthy, unchanged instance whose last deployment completed is a no-op (nothing is
//!   recorded or restarted).
//! * A deployment after a FAILED or INTERRUPTED one resumes: each phase that deployment finished
//!   is skipped if reality still matches it (INIT: files, secrets and IdP clients; START: the
//!   services run healthy with the same definitions; CONFIGURE: the test users exist; SEED: the
//!   jobs completed with the same definitions). VERIFY always runs.
//! * Ctrl-C (the [`Cancel`] handle) ends the deployment INTERRUPTED with the lock released;
//!   services already up keep running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dive_core::CountryCode;
use dive_orchestrator::deploy::{Deployed, Session, is_noop};
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::scheduler::{DeployEvent, Interruption, Level, SchedulerConfig};
use dive_orchestrator::spec::ServiceSpec;
use dive_orchestrator::state::{
    BreakerConfig, DeploymentId, DeploymentRecord, DeploymentState, StateStore, StepRecord,
    StepState, StepStatus,
};
use dive_orchestrator::supervisor::protocol::{Health, Request, ServiceState, StackStatus};
use dive_orchestrator::supervisor::{Client, SpawnDaemon, SupervisorError, ensure_running};

use crate::config::{self, InstanceConfig, InstancePaths, Role};
use crate::configure::ConfigureHook;
use crate::error::InstanceError;
use crate::ports::{PortOverrides, Service};
use crate::stacks::{self, InstanceStack, StackSource};
use crate::verify::{self, CheckResult, VerifyReport};

/// The phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Preflight,
    Init,
    Start,
    Configure,
    Seed,
    Verify,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Preflight,
        Phase::Init,
        Phase::Start,
        Phase::Configure,
        Phase::Seed,
        Phase::Verify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preflight => "PREFLIGHT",
            Phase::Init => "INIT",
            Phase::Start => "START",
            Phase::Configure => "CONFIGURE",
            Phase::Seed => "SEED",
            Phase::Verify => "VERIFY",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// The deployment state a phase runs in.
    fn state(self) -> DeploymentState {
        match self {
            Phase::Preflight => DeploymentState::Pending,
            Phase::Init => DeploymentState::Initializing,
            Phase::Start => DeploymentState::Deploying,
            Phase::Configure | Phase::Seed => DeploymentState::Configuring,
            Phase::Verify => DeploymentState::Verifying,
        }
    }
}

/// Which phases an operator asked for (`--skip-phase`, `--only-phase`, `--from-phase` are
/// mutually exclusive). PREFLIGHT always runs: it takes the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PhaseSelection {
    #[default]
    All,
    Skip(BTreeSet<Phase>),
    Only(Phase),
    /// Run this phase and the later ones even where a checkpoint would let them be skipped;
    /// the earlier ones are skipped.
    From(Phase),
}

impl PhaseSelection {
    fn includes(&self, p: Phase) -> bool {
        match self {
            _ if p == Phase::Preflight => true,
            PhaseSelection::All => true,
            PhaseSelection::Skip(s) => !s.contains(&p),
            PhaseSelection::Only(o) => *o == p,
            PhaseSelection::From(f) => p >= *f,
        }
    }

    fn forces(&self, p: Phase) -> bool {
        match self {
            PhaseSelection::Only(o) => *o == p,
            PhaseSelection::From(f) => p >= *f,
            _ => false,
        }
    }
}

/// The operator's choice about the seed job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedChoice {
    /// `Some(true)`: `--seed`; `Some(false)`: `--no-seed`; `None`: as configured.
    pub enabled: Option<bool>,
    pub count: Option<u32>,
    pub seed_value: Option<String>,
    /// Run the seed job again even if it completed with the same definition (`dive hub seed`).
    pub rerun: bool,
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub home: PathBuf,
    pub code: CountryCode,
    pub role: Role,
    /// `--<service>-port` flags (environment overrides are looked up by [`resolve`]).
    pub port_flags: BTreeMap<Service, u16>,
    /// `--public-host` and `--bind-host` (`DIVE_PUBLIC_HOST` and `DIVE_BIND_HOST` are looked up
    /// by [`resolve`]).
    pub hosts: HostFlags,
    pub seed: SeedChoice,
    pub stack: StackSource,
    /// The `dive` binary the services run (the running one).
    pub bin: PathBuf,
    pub phases: PhaseSelection,
    /// `false` for `up`: VERIFY is skipped.
    pub verify: bool,
    /// `up` and `seed` refuse an instance that was never deployed.
    pub require_existing: bool,
}

/// Where an instance is reached and listens, as flags gave them.
#[derive(Debug, Clone, Default)]
pub struct HostFlags {
    pub public_host: Option<String>,
    pub bind_host: Option<String>,
}

/// Cancels a deployment (Ctrl-C): clone it into the signal handler and call [`Cancel::cancel`].
#[derive(Debug, Clone)]
pub struct Cancel(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Cancel(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Cancel {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// How a deployment ended.
#[derive(Debug)]
pub enum DeployOutcome {
    /// Healthy and unchanged: nothing was done or recorded.
    UpToDate {
        cfg: InstanceConfig,
        services: usize,
        last_verify: Option<VerifyReport>,
    },
    Deployed {
        cfg: InstanceConfig,
        deployed: Box<Deployed>,
        verify: Option<VerifyReport>,
    },
}

/// Resolve the configuration a request asks for: `instance.json` if the instance exists (else
/// the defaults), then flags and environment. Nothing is written.
pub fn resolve(req: &DeployRequest) -> Result<InstanceConfig, InstanceError> {
    if req.role == Role::Spoke && req.code.as_str() == config::HUB_CODE {
        return Err(InstanceError::invalid(format!(
            "{} is the hub; deploy it with `dive hub deploy`",
            req.code
        )));
    }
    let paths = InstancePaths::new(&req.home, req.code);
    let existing = config::load(&paths)?;
    if req.require_existing && existing.is_none() {
        return Err(InstanceError::invalid(format!(
            "instance {} has never been deployed; run `dive {}` first",
            req.code,
            deploy_command(req.role, req.code)
        )));
    }
    let mut cfg = existing.unwrap_or_else(|| InstanceConfig::new(req.code, req.role));
    if cfg.role != req.role {
        return Err(InstanceError::invalid(format!(
            "instance {} is a {}, not a {}",
            req.code, cfg.role, req.role
        )));
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let overrides = PortOverrides::resolve(req.code, &req.port_flags, &lookup)?;
    cfg = cfg.with_ports(&overrides)?;
    let public = req
        .hosts
        .public_host
        .clone()
        .or_else(|| lookup("DIVE_PUBLIC_HOST"));
    let bind = req
        .hosts
        .bind_host
        .clone()
        .or_else(|| lookup("DIVE_BIND_HOST"));
    cfg = cfg.with_hosts(public.as_deref(), bind.as_deref())?;
    if let Some(e) = req.seed.enabled {
        cfg.seed.enabled = e;
    }
    if let Some(c) = req.seed.count {
        cfg.seed.count = c;
    }
    if let Some(v) = &req.seed.seed_value {
        cfg.seed.seed_value = v.clone();
    }
    config::check_port_clashes(&req.home, &cfg)?;
    Ok(cfg)
}

/// `hub deploy` or `spoke deploy FRA`.
pub fn deploy_command(role: Role, code: CountryCode) -> String {
    match role {
        Role::Hub => "hub deploy".to_string(),
        Role::Spoke => format!("spoke deploy {code}"),
    }
}

/// What a dry run found: one line per phase.
pub async fn dry_run(req: &DeployRequest) -> Result<Vec<String>, InstanceError> {
    let cfg = resolve(req)?;
    let paths = InstancePaths::new(&req.home, req.code);
    let stack = stacks::load(&req.home, &cfg, &req.bin, &req.stack)?;
    let mut lines = vec![format!(
        "dry run: {} {} from {} — nothing will be changed",
        cfg.role,
        cfg.code,
        stack.source.display()
    )];
    lines.push("  PREFLIGHT  take the deployment lock; check ports, disk and binary".into());
    lines.push(format!(
        "  INIT       {}",
        match crate::init::quick_check(&paths, &cfg) {
            Ok(()) => "configuration, PKI, secrets and policy data present: keep them".to_string(),
            Err(why) => format!("create or update what is missing ({why})"),
        }
    ));
    let current = match Client::connect(&StackPaths::new(&req.home, &cfg.stack_name())).await {
        Ok(mut c) => Some(c.status().await?),
        Err(_) => None,
    };
    let action = |name: &str| -> &'static str {
        let spec = &stack.plan.services[name].spec;
        match current
            .as_ref()
            .and_then(|c| c.services.iter().find(|s| s.name == name))
        {
            Some(r) if r.definition_hash == spec.definition_hash() && r.state.is_active() => {
                "keep (unchanged)"
            }
            Some(r)
                if r.definition_hash == spec.definition_hash()
                    && r.state == ServiceState::Completed =>
            {
                "keep (completed)"
            }
            Some(r) if r.state.is_active() => "restart (definition changed)",
            _ => "start",
        }
    };
    for name in &stack.start {
        lines.push(format!("  START      {name:<10} {}", action(name)));
    }
    lines.push("  CONFIGURE  test users (created if missing)".into());
    if stack.seed.is_empty() {
        lines.push(if cfg.seed.enabled {
            "  SEED       skipped: the stack has no init job".into()
        } else {
            "  SEED       skipped: seeding not enabled (--seed)".into()
        });
    }
    // SEED's reality check, as the deployment would make it (a job the supervisor never ran).
    let seed_done = if !req.seed.rerun
        && seed_only_jobs(&stack)
        && !stack.seed.iter().any(|n| {
            current
                .as_ref()
                .is_some_and(|c| c.services.iter().any(|s| &s.name == n))
        }) {
        crate::seed_record::seed_done(&paths, &cfg).await.ok()
    } else {
        None
    };
    for name in &stack.seed {
        lines.push(format!(
            "  SEED       {name:<10} {}",
            if req.seed.rerun {
                "run again".to_string()
            } else if let Some(found) = &seed_done {
                format!("skip: already done ({found})")
            } else {
                action(name).to_string()
            }
        ));
    }
    lines.push(if req.verify {
        "  VERIFY     run every check".into()
    } else {
        "  VERIFY     skipped (`up`)".into()
    });
    for (s, p) in cfg.ports.iter() {
        lines.push(format!("  port {s:<4} {p}"));
    }
    Ok(lines)
}

/// The deployments of a stack that got past PREFLIGHT (took the lock), newest first, with
/// their steps. Deployments refused by the lock changed nothing and are left out.
async fn effective_deployments(
    store: &StateStore,
    stack: &str,
    limit: u32,
) -> Result<Vec<(DeploymentRecord, Vec<StepRecord>)>, InstanceError> {
    let mut out = Vec::new();
    for d in store.list_deployments(Some(stack), limit).await? {
        let steps = store.steps(&d.id).await?;
        let locked = steps.iter().any(|s| {
            s.phase == Phase::Preflight.as_str() && s.state == StepState::Finished(StepStatus::Done)
        });
        if locked {
            out.push((d, steps));
        }
    }
    Ok(out)
}

/// Where a new deployment resumes: walking back through the failed or interrupted
/// deployments since the last successful one, a phase is a checkpoint if the most recent
/// deployment that ran it finished it (a phase skipped on a checkpoint points further back).
async fn checkpoints(
    store: &StateStore,
    stack: &str,
) -> Result<BTreeMap<Phase, DeploymentId>, InstanceError> {
    let mut decided: BTreeMap<Phase, Option<DeploymentId>> = BTreeMap::new();
    for (d, steps) in effective_deployments(store, stack, 50).await? {
        if !matches!(
            d.state,
            DeploymentState::Failed | DeploymentState::Interrupted
        ) {
            break;
        }
        for p in Phase::ALL.into_iter().filter(|p| *p != Phase::Preflight) {
            if decided.contains_key(&p) {
                continue;
            }
            match steps
                .iter()
                .find(|s| s.phase == p.as_str())
                .map(|s| s.state)
            {
                Some(StepState::Finished(StepStatus::Done)) => {
                    decided.insert(p, Some(d.id.clone()));
                }
                Some(StepState::Finished(StepStatus::Failed) | StepState::Running) => {
                    decided.insert(p, None);
                }
                _ => {}
            }
        }
    }
    Ok(decided
        .into_iter()
        .filter_map(|(p, id)| Some((p, id?)))
        .collect())
}

/// The services in `names` run (or completed) healthy with their planned definitions.
fn services_match(
    stack: &InstanceStack,
    names: &BTreeSet<String>,
    st: &StackStatus,
) -> Result<(), String> {
    for name in names {
        let spec = &stack.plan.services[name].spec;
        let Some(s) = st.services.iter().find(|s| &s.name == name) else {
            return Err(format!("{name} is not running"));
        };
        if s.definition_hash != spec.definition_hash() {
            return Err(format!("{name}'s definition changed"));
        }
        let ok = match s.state {
            ServiceState::Completed => true,
            ServiceState::Running => matches!(s.health, Health::Healthy | Health::None),
            _ => false,
        };
        if !ok {
            return Err(format!("{name} is {}", s.state.as_str()));
        }
    }
    Ok(())
}

/// Whether a re-deployment has nothing to do: files in place, every planned service healthy
/// with an unchanged definition, and the last deployment completed (with VERIFY when asked).
async fn up_to_date(
    store: &StateStore,
    req: &DeployRequest,
    cfg: &InstanceConfig,
    stack: &InstanceStack,
) -> Result<Option<usize>, InstanceError> {
    let paths = InstancePaths::new(&req.home, cfg.code);
    if req.seed.rerun || req.phases != PhaseSelection::All {
        return Ok(None);
    }
    if crate::init::quick_check(&paths, cfg).is_err() {
        return Ok(None);
    }
    if stack.source == paths.stack_file()
        && std::fs::read_to_string(paths.stack_file()).ok().as_deref() != Some(stack.text.as_str())
    {
        return Ok(None);
    }
    let mut client = match Client::connect(&StackPaths::new(&req.home, &cfg.stack_name())).await {
        Ok(c) => c,
        Err(SupervisorError::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let status = client.status().await?;
    // Seed jobs a new supervisor never ran (after `down`) count as done when SEED's reality
    // check holds: their documents are in the store.
    let unknown_jobs: BTreeSet<&String> = stack
        .seed
        .iter()
        .filter(|n| !status.services.iter().any(|s| &&s.name == n))
        .collect();
    let skip_unknown = !unknown_jobs.is_empty()
        && seed_only_jobs(stack)
        && crate::seed_record::seed_done(&paths, cfg).await.is_ok();
    let services: Vec<&ServiceSpec> = stack
        .plan
        .services
        .values()
        .map(|p| &p.spec)
        .filter(|s| !(skip_unknown && unknown_jobs.contains(&s.name)))
        .collect();
    if !is_noop(&services, &status) {
        return Ok(None);
    }
    let Some((last, steps)) = effective_deployments(store, &cfg.stack_name(), 10)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    if last.state != DeploymentState::Complete {
        return Ok(None);
    }
    if req.verify {
        let verified = steps.iter().any(|s| {
            s.phase == Phase::Verify.as_str() && s.state == StepState::Finished(StepStatus::Done)
        });
        if !verified {
            return Ok(None);
        }
    }
    Ok(Some(services.len()))
}

/// Deploy an instance. `events` sees the orchestrator's events (phases and services),
/// `checks` each verification result. Errors before the deployment is recorded (bad flags, bad
/// stack file, port clashes) are returned; failures after it are a FAILED deployment.
#[allow(clippy::too_many_arguments)]
pub async fn deploy(
    store: &StateStore,
    req: &DeployRequest,
    spawn: SpawnDaemon<'_>,
    events: &mut dyn FnMut(&DeployEvent),
    checks: &mut dyn FnMut(&CheckResult),
    cancel: &Cancel,
    hooks: &[&dyn ConfigureHook],
) -> Result<DeployOutcome, InstanceError> {
    let cfg = resolve(req)?;
    let paths = InstancePaths::new(&req.home, cfg.code);
    let stack = stacks::load(&req.home, &cfg, &req.bin, &req.stack)?;
    if req.seed.rerun && stack.seed.is_empty() {
        return Err(InstanceError::invalid(format!(
            "{} has no init job to run again",
            stack.source.display()
        )));
    }
    if let Some(services) = up_to_date(store, req, &cfg, &stack).await? {
        return Ok(DeployOutcome::UpToDate {
            last_verify: verify::last(&paths),
            cfg,
            services,
        });
    }
    let name = cfg.stack_name();
    let stack_paths = StackPaths::new(&req.home, &name);
    let resume = checkpoints(store, &name).await?;
    let (mut client, orphans) = ensure_running(&stack_paths, spawn).await?;
    let hash = stack_hash(&stack);
    let mut s = Session::create(
        store,
        &req.home,
        &name,
        cfg.role.as_str(),
        &hash,
        &stack.source.display().to_string(),
        events,
    )
    .await?;
    let rerun = format!("dive {}", deploy_command(cfg.role, cfg.code));

    // PREFLIGHT: the lock first, then what would make later phases fail for reasons outside DIVE.
    s.begin_phase(Phase::Preflight.as_str()).await?;
    s.note_spec(&stack.spec);
    if !orphans.is_empty() {
        s.say(
            Level::Warn,
            "PREFLIGHT",
            "orphans_cleaned",
            &format!(
                "the previous supervisor had died; stopped its orphaned services: {}",
                orphans.killed.join(", ")
            ),
        );
    }
    s.lock().await?;
    let current = client.status().await?;
    if let Err(why) = preflight(&req.home, &cfg, &stack, &current, &req.bin) {
        let d = s.abort(Phase::Preflight.as_str(), &why).await?;
        return Ok(deployed(cfg, d, None));
    }
    s.finish_phase(Phase::Preflight.as_str(), StepStatus::Done, None)
        .await?;

    let mut verify_report = None;
    let mut degraded = false;
    for phase in [
        Phase::Init,
        Phase::Start,
        Phase::Configure,
        Phase::Seed,
        Phase::Verify,
    ] {
        if cancel.is_cancelled() {
            let d = s
                .finish(
                    DeploymentState::Interrupted,
                    "interrupted by the operator",
                    vec![format!("run `{rerun}` again to continue")],
                )
                .await?;
            return Ok(deployed(cfg, d, verify_report));
        }
        let p = phase.as_str();
        s.transition(phase.state(), &format!("{p} phase"))
            .await
            .or_else(|e| match e {
                // Phases sharing a state (CONFIGURE, SEED) do not move it.
                dive_orchestrator::deploy::DeployError::State(
                    dive_orchestrator::state::StateError::InvalidTransition { .. },
                ) => Ok(()),
                e => Err(e),
            })?;
        if !req.phases.includes(phase) || (phase == Phase::Verify && !req.verify) {
            let why = if phase == Phase::Verify && !req.verify {
                format!("not part of `up`; run `{}`", instance_cmd(&cfg, "verify"))
            } else {
                "not selected (--skip-phase/--only-phase/--from-phase)".to_string()
            };
            s.finish_phase(p, StepStatus::Skipped, Some(&why)).await?;
            continue;
        }
        if let Some(from) = resume.get(&phase)
            && !req.phases.forces(phase)
            && phase != Phase::Verify
        {
            let still = match phase {
                Phase::Init => crate::init::check(&paths, &cfg).await,
                Phase::Start => services_match(&stack, &stack.start, &client.status().await?),
                Phase::Configure => crate::configure::check(&paths, &cfg, hooks).await,
                Phase::Seed if req.seed.rerun => Err("a new seed run was asked for".into()),
                Phase::Seed => match services_match(&stack, &stack.seed, &client.status().await?) {
                    Ok(()) => Ok(()),
                    Err(why) if seed_only_jobs(&stack) => {
                        crate::seed_record::seed_done(&paths, &cfg)
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("{why}; {e}"))
                    }
                    Err(why) => Err(why),
                },
                _ => Err(String::new()),
            };
            match still {
                Ok(()) => {
                    s.finish_phase(
                        p,
                        StepStatus::Skipped,
                        Some(&format!("checkpoint of deployment {from} still holds")),
                    )
                    .await?;
                    continue;
                }
                Err(why) => s.say(
                    Level::Info,
                    p,
                    "checkpoint_stale",
                    &format!(
                        "checkpoint of deployment {from} no longer holds ({why}); running {p} again"
                    ),
                ),
            }
        }
        s.begin_phase(p).await?;
        let result: Result<PhaseEnd, InstanceError> = match phase {
            Phase::Init => {
                let cancelled = cancel.cancelled();
                tokio::select! {
                    r = crate::init::run(&paths, &cfg, &stack) => r.map(|r| PhaseEnd::Done(r.summary())),
                    () = cancelled => Ok(PhaseEnd::Interrupted),
                }
            }
            Phase::Start | Phase::Seed => {
                let only = if phase == Phase::Start {
                    stack.start.clone()
                } else {
                    stack.seed.clone()
                };
                if only.is_empty() {
                    let why = if cfg.seed.enabled {
                        "the stack has no init job"
                    } else {
                        "seeding not enabled (the hub seeds by default; spokes with --seed)"
                    };
                    s.finish_phase(p, StepStatus::Skipped, Some(why)).await?;
                    continue;
                }
                if phase == Phase::Seed && req.seed.rerun {
                    forget(&mut client, &only).await?;
                }
                // SEED's reality check: a seed job unknown to this supervisor (after `down`)
                // whose last run left exactly these documents in the store is not run again.
                if phase == Phase::Seed
                    && !req.seed.rerun
                    && !req.phases.forces(phase)
                    && seed_only_jobs(&stack)
                {
                    let st = client.status().await?;
                    let known = only
                        .iter()
                        .any(|n| st.services.iter().any(|s| &s.name == n));
                    if !known && let Ok(found) = crate::seed_record::seed_done(&paths, &cfg).await {
                        s.say(Level::Info, p, "seed_done", &found);
                        s.finish_phase(
                            p,
                            StepStatus::Skipped,
                            Some(&format!("already done: {found}")),
                        )
                        .await?;
                        continue;
                    }
                }
                let current = client.status().await?;
                let scope = (phase == Phase::Start).then_some(&only);
                let state = s
                    .run_services(
                        &mut client,
                        &stack.plan,
                        scope,
                        &current,
                        &SchedulerConfig::default(),
                        &BreakerConfig::default(),
                        async {
                            cancel.cancelled().await;
                            Interruption::Operator
                        },
                    )
                    .await?;
                let reason = s.start_reason();
                match state {
                    DeploymentState::Failed => Ok(PhaseEnd::ServicesFailed(reason)),
                    DeploymentState::Interrupted => Ok(PhaseEnd::Interrupted),
                    DeploymentState::Degraded => {
                        degraded = true;
                        Ok(PhaseEnd::Done(reason))
                    }
                    _ => Ok(PhaseEnd::Done(reason)),
                }
            }
            Phase::Configure => {
                let cancelled = cancel.cancelled();
                tokio::select! {
                    r = crate::configure::run(&paths, &cfg, hooks) => r.map(PhaseEnd::Done),
                    () = cancelled => Ok(PhaseEnd::Interrupted),
                }
            }
            Phase::Verify => {
                let req_v = verify::VerifyRequest {
                    home: req.home.clone(),
                    cfg: cfg.clone(),
                    planned: verify::planned_services(&stack),
                };
                let cancelled = cancel.cancelled();
                tokio::select! {
                    r = verify::run(req_v, checks) => r.map(|report| {
                        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                        let _ = std::fs::write(s.dir().join("verify.json"), text);
                        let summary = report.summary();
                        let ok = report.ok();
                        verify_report = Some(report);
                        if ok { PhaseEnd::Done(summary) } else { PhaseEnd::VerifyFailed(summary) }
                    }),
                    () = cancelled => Ok(PhaseEnd::Interrupted),
                }
            }
            Phase::Preflight => Ok(PhaseEnd::Done(String::new())),
        };
        match result {
            Ok(PhaseEnd::Done(detail)) => {
                s.finish_phase(p, StepStatus::Done, Some(&detail)).await?;
            }
            Ok(PhaseEnd::Interrupted) => {
                s.finish_phase(p, StepStatus::Failed, Some("interrupted"))
                    .await?;
                let mut next = instance_hints(&cfg, s.service_next_steps(&rerun));
                if next.is_empty() {
                    next.push(format!("run `{rerun}` again to continue"));
                }
                let d = s
                    .finish(
                        DeploymentState::Interrupted,
                        &format!("interrupted by the operator during {p}"),
                        next,
                    )
                    .await?;
                return Ok(deployed(cfg, d, verify_report));
            }
            Ok(PhaseEnd::ServicesFailed(reason)) => {
                s.finish_phase(p, StepStatus::Failed, Some(&reason)).await?;
                let next = instance_hints(&cfg, s.service_next_steps(&rerun));
                let d = s.finish(DeploymentState::Failed, &reason, next).await?;
                return Ok(deployed(cfg, d, verify_report));
            }
            Ok(PhaseEnd::VerifyFailed(summary)) => {
                s.finish_phase(p, StepStatus::Failed, Some(&summary))
                    .await?;
                let d = s
                    .finish(
                        DeploymentState::Failed,
                        &format!("verification failed: {summary}"),
                        vec![format!(
                            "see each failed check with `{}`; fix, then run `{rerun}` (it resumes at VERIFY)",
                            instance_cmd(&cfg, "verify")
                        )],
                    )
                    .await?;
                return Ok(deployed(cfg, d, verify_report));
            }
            Err(e) => {
                let d = s.abort(p, &e.to_string()).await?;
                return Ok(deployed(cfg, d, verify_report));
            }
        }
    }
    let (state, reason) = if degraded {
        (
            DeploymentState::Degraded,
            "deployed; some non-core services failed".to_string(),
        )
    } else {
        (DeploymentState::Complete, "deployed".to_string())
    };
    let d = s.finish(state, &reason, Vec::new()).await?;
    Ok(deployed(cfg, d, verify_report))
}

enum PhaseEnd {
    Done(String),
    Interrupted,
    ServicesFailed(String),
    VerifyFailed(String),
}

fn deployed(cfg: InstanceConfig, d: Deployed, verify: Option<VerifyReport>) -> DeployOutcome {
    DeployOutcome::Deployed {
        cfg,
        deployed: Box::new(d),
        verify,
    }
}

/// How an operator runs `sub` on this instance: `dive hub logs` / `dive spoke logs FRA`.
pub fn instance_cmd(cfg: &InstanceConfig, sub: &str) -> String {
    match cfg.role {
        Role::Hub => format!("dive hub {sub}"),
        Role::Spoke => format!("dive spoke {sub} {}", cfg.code),
    }
}

/// The orchestrator's hints name the generic `dive stack logs -p <stack> <service>`; an
/// instance's operator reads a service's log with `dive hub logs kas` / `dive spoke logs FRA kas`.
fn instance_hints(cfg: &InstanceConfig, hints: Vec<String>) -> Vec<String> {
    let generic = format!("dive stack logs -p {} ", cfg.stack_name());
    let ours = format!("{} ", instance_cmd(cfg, "logs"));
    hints
        .into_iter()
        .map(|h| h.replace(&generic, &ours))
        .collect()
}

/// SEED runs only init jobs (nothing else waits for them), so skipping it holds nothing back.
fn seed_only_jobs(stack: &InstanceStack) -> bool {
    !stack.seed.is_empty()
        && stack.seed.iter().all(|n| {
            stack
                .plan
                .services
                .get(n)
                .is_some_and(|p| p.spec.class == dive_orchestrator::spec::ServiceClass::Init)
        })
}

async fn forget(client: &mut Client, names: &BTreeSet<String>) -> Result<(), InstanceError> {
    let services: Vec<String> = names.iter().cloned().collect();
    client
        .request(&Request::Stop {
            services: services.clone(),
        })
        .await?;
    client.request(&Request::Forget { services }).await?;
    Ok(())
}

fn stack_hash(stack: &InstanceStack) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, p) in &stack.plan.services {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update(p.spec.definition_hash().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Minimum free space under `DIVE_HOME` to start a deployment.
const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// PREFLIGHT checks after the lock: the binary the services will run exists, there is disk
/// space, and every port a planned service needs is free — or held by that service itself.
fn preflight(
    home: &Path,
    cfg: &InstanceConfig,
    stack: &InstanceStack,
    current: &StackStatus,
    bin: &Path,
) -> Result<(), String> {
    if !bin.is_file() {
        return Err(format!(
            "the dive binary {} is missing; the services could not be started",
            bin.display()
        ));
    }
    if let Some(free) = free_bytes(home)
        && free < MIN_FREE_BYTES
    {
        return Err(format!(
            "only {} MiB free under {}; at least {} MiB are needed",
            free / (1024 * 1024),
            home.display(),
            MIN_FREE_BYTES / (1024 * 1024)
        ));
    }
    for (service, port) in cfg.ports.iter() {
        let Some(planned) = stack.plan.services.get(service.as_str()) else {
            continue;
        };
        let ours = current
            .services
            .iter()
            .any(|s| s.name == planned.spec.name && s.state.is_active());
        if ours {
            continue; // our own service holds it (START replaces it if its definition changed)
        }
        if let Err(e) = std::net::TcpListener::bind((cfg.bind_host.as_str(), port)) {
            return Err(format!(
                "port {port} ({service} of {}) on {} is not available: {e}; stop what uses it, or choose another port with --{service}-port or {}",
                cfg.code,
                cfg.bind_host,
                PortOverrides::env_name(cfg.code, service)
            ));
        }
    }
    Ok(())
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) == 0 {
            Some(st.f_bavail as u64 * st.f_frsize as u64)
        } else {
            None
        }
    }
}

/// Rotate client secrets: new secrets written 0600, the IdP's registrations replaced, and the
/// secrets generation bumped so that the next deployment restarts the services holding them.
pub async fn rotate_secrets(
    home: &Path,
    code: CountryCode,
    services: &[&str],
) -> Result<Vec<String>, InstanceError> {
    let paths = InstancePaths::new(home, code);
    let Some(mut cfg) = config::load(&paths)? else {
        return Err(InstanceError::invalid(format!(
            "instance {code} has never been deployed: it has no secrets to rotate"
        )));
    };
    for s in services {
        if !crate::secrets::SECRET_SERVICES.contains(s) {
            return Err(InstanceError::invalid(format!(
                "{s} has no client secret (services with one: {})",
                crate::secrets::SECRET_SERVICES.join(", ")
            )));
        }
        crate::secrets::rotate(&paths, s)?;
    }
    cfg.secrets_generation += 1;
    config::save(&paths, &cfg)?;
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string()).await?;
    let changed = crate::secrets::register_clients(&db, &cfg, &paths).await;
    db.pool.close().await;
    let (created, replaced) = changed?;
    Ok(created.into_iter().chain(replaced).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_hints_name_the_instance_log_commands() {
        let hub = InstanceConfig::new(CountryCode::new("USA").unwrap(), Role::Hub);
        let fra = InstanceConfig::new(CountryCode::new("FRA").unwrap(), Role::Spoke);
        let hint = |stack: &str| {
            vec![format!(
                "kas: read its log with `dive stack logs -p {stack} kas` (/x/kas.log)"
            )]
        };
        assert_eq!(
            instance_hints(&hub, hint("usa")),
            ["kas: read its log with `dive hub logs kas` (/x/kas.log)"]
        );
        assert_eq!(
            instance_hints(&fra, hint("fra")),
            ["kas: read its log with `dive spoke logs FRA kas` (/x/kas.log)"]
        );
    }
}
