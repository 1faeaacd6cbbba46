//! `dive hub …` and `dive spoke …`: deploy, operate and verify an instance. The work is done by
//! `dive-instance`; this parses, shows progress and prints results.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use dive_core::CountryCode;
use dive_instance::deploy::{
    self, Cancel, DeployOutcome, DeployRequest, Phase, PhaseSelection, SeedChoice,
};
use dive_instance::stacks::StackSource;
use dive_instance::verify::{CheckResult, Status, VerifyReport};
use dive_instance::{InstanceConfig, InstanceError, InstancePaths, Role, Service};
use dive_orchestrator::deploy::DeployError;
use dive_orchestrator::fmt::{duration, millis};
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::state::{DeploymentState, StateError};

use super::progress::Progress;
use super::stack_runtime::{self, runtime, spawn_supervisor};
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Deploy the hub (USA): PREFLIGHT → INIT → START → CONFIGURE → SEED → VERIFY. A healthy,
    /// unchanged hub is left as it is; an interrupted or failed deployment resumes.
    Deploy(DeployArgs),
    /// Start an already deployed hub's services (deploy without VERIFY).
    Up(DeployArgs),
    /// Stop the hub's services and its supervisor (data is kept).
    Down,
    /// The hub's URLs, services, last deployment and last verification.
    Status(StatusArgs),
    /// Run the verification checks against the running hub.
    Verify(VerifyArgs),
    /// Print the hub's service logs.
    Logs(LogsArgs),
    /// Run the seed job again (test users and ZTDF documents; replaces, never duplicates).
    Seed(SeedArgs),
    /// Replace client secrets (all, or the named services'), re-register them at the IdP and
    /// restart the services that hold them.
    RotateSecrets(RotateArgs),
}

#[derive(Debug, Subcommand)]
pub enum SpokeCommand {
    /// Deploy a spoke (any ISO 3166-1 alpha-3 code but USA), e.g. `dive spoke deploy FRA`.
    Deploy(SpokeDeployArgs),
    /// Start an already deployed spoke's services (deploy without VERIFY).
    Up(SpokeDeployArgs),
    /// Stop a spoke's services and its supervisor (data is kept).
    Down(CodeArg),
    /// A spoke's URLs, services, last deployment and last verification.
    Status(SpokeStatusArgs),
    /// Run the verification checks against a running spoke.
    Verify(SpokeVerifyArgs),
    /// Print a spoke's service logs.
    Logs(SpokeLogsArgs),
    /// Replace a spoke's client secrets and restart the services that hold them.
    RotateSecrets(SpokeRotateArgs),
}

#[derive(Debug, Args)]
pub struct CodeArg {
    /// The spoke's ISO 3166-1 alpha-3 code (e.g. FRA).
    pub code: String,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Run this stack file instead of the embedded one (see `dive stack export`).
    #[arg(long, value_name = "FILE")]
    pub stack_file: Option<PathBuf>,
    #[command(flatten)]
    pub ports: PortArgs,
    /// The DNS name or IP address other machines reach this instance at: the host of its URLs
    /// and issuer, named by the service certificates (env DIVE_PUBLIC_HOST; kept in
    /// instance.json; default localhost, i.e. this machine only).
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// The IP address the services listen on, e.g. 0.0.0.0 for every interface (env
    /// DIVE_BIND_HOST; kept in instance.json; default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub bind_host: Option<String>,
    /// Do not run the seed job (the hub seeds by default).
    #[arg(long, conflicts_with = "seed")]
    pub no_seed: bool,
    /// Run the seed job (spokes do not by default).
    #[arg(long)]
    pub seed: bool,
    /// ZTDF documents the seed job creates.
    #[arg(long, value_name = "N")]
    pub seed_count: Option<u32>,
    /// Makes the seeded documents reproducible.
    #[arg(long, value_name = "S")]
    pub seed_value: Option<String>,
    #[command(flatten)]
    pub phases: PhaseArgs,
    /// Print the result as JSON (events stream as JSON lines on stdout).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpokeDeployArgs {
    /// The spoke's ISO 3166-1 alpha-3 code (e.g. FRA).
    pub code: String,
    /// Do not federate with this installation's hub (by default a deployed spoke is linked
    /// with the local hub both ways, as `dive federation link CODE` does).
    #[arg(long)]
    pub standalone: bool,
    /// Join the hub of another installation, at this URL (its IdP), instead of this
    /// installation's hub; with --hub-ca-sha256 and --join-token, as printed by the hub's
    /// `dive federation invite CODE`.
    #[arg(long, value_name = "URL", requires_all = ["hub_ca_sha256", "join_token"], conflicts_with = "standalone")]
    pub hub: Option<String>,
    /// The SHA-256 fingerprint of the remote hub's installation CA (refused if it differs).
    #[arg(long, value_name = "HEX", requires = "hub")]
    pub hub_ca_sha256: Option<String>,
    /// The one-time join token of the invitation.
    #[arg(long, value_name = "TOKEN", requires = "hub")]
    pub join_token: Option<String>,
    #[command(flatten)]
    pub deploy: DeployArgs,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct PhaseArgs {
    /// Skip these phases (repeatable): INIT, START, CONFIGURE, SEED, VERIFY.
    #[arg(long, value_name = "PHASE")]
    pub skip_phase: Vec<String>,
    /// Run only this phase (and PREFLIGHT, which takes the lock).
    #[arg(long, value_name = "PHASE")]
    pub only_phase: Option<String>,
    /// Run this phase and the later ones, even where a checkpoint would skip them.
    #[arg(long, value_name = "PHASE")]
    pub from_phase: Option<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// Port of the IdP (default: the port table; env DIVE_<CODE>_IDP_PORT).
    #[arg(long, value_name = "PORT")]
    pub idp_port: Option<u16>,
    /// Port of the resource service (env DIVE_<CODE>_API_PORT).
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<u16>,
    /// Port of the KAS (env DIVE_<CODE>_KAS_PORT).
    #[arg(long, value_name = "PORT")]
    pub kas_port: Option<u16>,
    /// Port reserved for the web UI (env DIVE_<CODE>_WEB_PORT).
    #[arg(long, value_name = "PORT")]
    pub web_port: Option<u16>,
    /// Port reserved for the decision API (env DIVE_<CODE>_PDP_PORT).
    #[arg(long, value_name = "PORT")]
    pub pdp_port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpokeStatusArgs {
    pub code: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpokeVerifyArgs {
    pub code: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this service.
    pub service: Option<String>,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines of history to print first.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub tail: usize,
}

#[derive(Debug, Args)]
pub struct SpokeLogsArgs {
    pub code: String,
    #[command(flatten)]
    pub logs: LogsArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// ZTDF documents to create (default: as configured, 5,000 on the hub).
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    #[arg(long, value_name = "S")]
    pub seed_value: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Services whose secret to rotate (default: kas, api, web).
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SpokeRotateArgs {
    pub code: String,
    pub services: Vec<String>,
}

pub fn run_hub(cmd: HubCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let usa = hub_code();
    match cmd {
        HubCommand::Deploy(a) => run_deploy(ctx, usa, Role::Hub, &a, Mode::Deploy),
        HubCommand::Up(a) => run_deploy(ctx, usa, Role::Hub, &a, Mode::Up),
        HubCommand::Down => down(ctx, usa),
        HubCommand::Status(a) => status(ctx, usa, Role::Hub, a.json),
        HubCommand::Verify(a) => verify(ctx, usa, Role::Hub, a.json),
        HubCommand::Logs(a) => logs(ctx, usa, &a),
        HubCommand::Seed(a) => {
            let args = DeployArgs {
                stack_file: last_stack_file(ctx, &load_config(ctx, usa, Role::Hub)?),
                ports: PortArgs::none(),
                public_host: None,
                bind_host: None,
                no_seed: false,
                seed: true,
                seed_count: a.count,
                seed_value: a.seed_value,
                phases: PhaseArgs::none(),
                json: a.json,
            };
            run_deploy(ctx, usa, Role::Hub, &args, Mode::Seed)
        }
        HubCommand::RotateSecrets(a) => rotate(ctx, usa, Role::Hub, &a.services),
    }
}

pub fn run_spoke(cmd: SpokeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        SpokeCommand::Deploy(a) => {
            let code = spoke_code(&a.code)?;
            let rc = run_deploy(ctx, code, Role::Spoke, &a.deploy, Mode::Deploy)?;
            federate(ctx, code, &a, rc)
        }
        SpokeCommand::Up(a) => {
            let code = spoke_code(&a.code)?;
            let rc = run_deploy(ctx, code, Role::Spoke, &a.deploy, Mode::Up)?;
            federate(ctx, code, &a, rc)
        }
        SpokeCommand::Down(a) => down(ctx, spoke_code(&a.code)?),
        SpokeCommand::Status(a) => status(ctx, spoke_code(&a.code)?, Role::Spoke, a.json),
        SpokeCommand::Verify(a) => verify(ctx, spoke_code(&a.code)?, Role::Spoke, a.json),
        SpokeCommand::Logs(a) => logs(ctx, spoke_code(&a.code)?, &a.logs),
        SpokeCommand::RotateSecrets(a) => {
            rotate(ctx, spoke_code(&a.code)?, Role::Spoke, &a.services)
        }
    }
}

/// After a successful spoke deployment: link it with this installation's hub (both ways,
/// idempotent), unless `--standalone`, a dry run, or there is no hub here.
fn federate(
    ctx: &Context,
    code: CountryCode,
    a: &SpokeDeployArgs,
    deployed: ExitCode,
) -> anyhow::Result<ExitCode> {
    if deployed != ExitCode::SUCCESS || a.standalone || ctx.dry_run {
        return Ok(deployed);
    }
    if let (Some(hub), Some(pin), Some(token)) = (&a.hub, &a.hub_ca_sha256, &a.join_token) {
        return join_remote(ctx, code, a, deployed, hub, pin, token);
    }
    let has_hub = dive_instance::config::all(&ctx.home)?
        .iter()
        .any(|c| c.role == Role::Hub);
    // JSON output stays one document on stdout: the federation summary goes to stderr.
    let say = |line: String| {
        if a.deploy.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    if !has_hub {
        // A spoke that joined a hub of another installation stays joined across redeploys.
        match dive_federation::spoke::read_hub_link(&ctx.home, code) {
            Ok(Some(l)) => say(format!(
                "  federation: {} ⇄ {code} {} (remote hub {})",
                l.hub.code, l.status, l.hub.issuer
            )),
            Ok(None) => say(format!(
                "  federation: no hub in this installation; {code} runs standalone"
            )),
            Err(e) => say(format!(
                "  federation: cannot read the link with the hub: {e}"
            )),
        }
        return Ok(deployed);
    }
    let outcome = dive_federation::Pair::load(&ctx.home, code).and_then(|pair| {
        super::stack_runtime::runtime()
            .map_err(|e| dive_federation::FederationError::Invalid(e.to_string()))?
            .block_on(dive_federation::link(&pair, "spoke deploy"))
            .map(|o| (pair.hub.code, o))
    });
    match outcome {
        Ok((hub, o)) => {
            say(format!(
                "  federation: {hub} ⇄ {code} {} (check it: dive federation verify {code})",
                o.status.map_or("unlinked", |s| s.as_str())
            ));
            Ok(deployed)
        }
        Err(e) => {
            eprintln!(
                "error: {code} is deployed, but linking it with the hub failed: {e}\n  retry: dive federation link {code}   (or deploy with --standalone)"
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `--hub URL`: join the hub of another installation (pinned CA, one-time token).
fn join_remote(
    ctx: &Context,
    code: CountryCode,
    a: &SpokeDeployArgs,
    deployed: ExitCode,
    hub: &str,
    pin: &str,
    token: &str,
) -> anyhow::Result<ExitCode> {
    let say = |line: String| {
        if a.deploy.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let cfg = dive_instance::config::load(&dive_instance::InstancePaths::new(&ctx.home, code))?
        .ok_or_else(|| anyhow::anyhow!("{code} has no instance.json after its deployment"))?;
    let args = super::federation::HubArgs {
        hub: hub.to_string(),
        hub_ca_sha256: pin.to_string(),
        join_token: token.to_string(),
    };
    match super::federation::join_hub(ctx, &cfg, &args) {
        Ok(j) => {
            say(format!(
                "  federation: {} ⇄ {code} active (remote hub {})",
                j.hub.code, j.hub.issuer
            ));
            Ok(deployed)
        }
        Err(e) => {
            eprintln!(
                "error: {code} is deployed, but joining the hub at {hub} failed: {e}\n  retry: dive federation join --instance {code} --hub {hub} --hub-ca-sha256 {pin} --join-token <a new token if this one was used>"
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn hub_code() -> CountryCode {
    // The constant is an assigned code; dive-instance's tests check it.
    CountryCode::new(dive_instance::config::HUB_CODE).unwrap_or_else(|_| unreachable!())
}

/// A spoke code: upper-cased, an assigned ISO 3166-1 alpha-3 code, not the hub's.
pub fn spoke_code(code: &str) -> anyhow::Result<CountryCode> {
    let c = CountryCode::new(&code.to_ascii_uppercase())
        .map_err(|e| bad_input(format!("spoke {code}: {e}")))?;
    if c.as_str() == dive_instance::config::HUB_CODE {
        return Err(bad_input(format!(
            "{c} is the hub; use `dive hub …` for it"
        )));
    }
    Ok(c)
}

impl PortArgs {
    fn none() -> PortArgs {
        PortArgs {
            idp_port: None,
            api_port: None,
            kas_port: None,
            web_port: None,
            pdp_port: None,
        }
    }

    fn flags(&self) -> BTreeMap<Service, u16> {
        [
            (Service::Idp, self.idp_port),
            (Service::Api, self.api_port),
            (Service::Kas, self.kas_port),
            (Service::Web, self.web_port),
            (Service::Pdp, self.pdp_port),
        ]
        .into_iter()
        .filter_map(|(s, p)| p.map(|p| (s, p)))
        .collect()
    }
}

impl PhaseArgs {
    fn none() -> PhaseArgs {
        PhaseArgs {
            skip_phase: vec![],
            only_phase: None,
            from_phase: None,
        }
    }

    fn selection(&self) -> anyhow::Result<PhaseSelection> {
        let parse = |flag: &str, s: &str| {
            Phase::parse(s)
                .filter(|p| *p != Phase::Preflight)
                .ok_or_else(|| {
                    bad_input(format!(
                        "{flag} {s}: expected one of INIT, START, CONFIGURE, SEED, VERIFY"
                    ))
                })
        };
        if let Some(p) = &self.only_phase {
            return Ok(PhaseSelection::Only(parse("--only-phase", p)?));
        }
        if let Some(p) = &self.from_phase {
            return Ok(PhaseSelection::From(parse("--from-phase", p)?));
        }
        if !self.skip_phase.is_empty() {
            let set: anyhow::Result<BTreeSet<Phase>> = self
                .skip_phase
                .iter()
                .map(|p| parse("--skip-phase", p))
                .collect();
            return Ok(PhaseSelection::Skip(set?));
        }
        Ok(PhaseSelection::All)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Deploy,
    Up,
    Seed,
}

/// dive-instance errors: operator input is exit 2.
fn instance_err(e: InstanceError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

fn request(
    ctx: &Context,
    code: CountryCode,
    role: Role,
    a: &DeployArgs,
    mode: Mode,
) -> anyhow::Result<DeployRequest> {
    let bin = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the running dive binary: {e}"))?;
    // `up` (like verify, seed and rotate-secrets) keeps to the stack file of the last deployment.
    let remembered = match (&a.stack_file, mode) {
        (None, Mode::Up) => dive_instance::config::load(&InstancePaths::new(&ctx.home, code))
            .ok()
            .flatten()
            .and_then(|cfg| last_stack_file(ctx, &cfg)),
        _ => None,
    };
    let stack = match a.stack_file.as_ref().or(remembered.as_ref()) {
        Some(f) => {
            let f = if f.is_absolute() {
                f.clone()
            } else {
                std::env::current_dir()?.join(f)
            };
            StackSource::File(f)
        }
        None => StackSource::Embedded,
    };
    Ok(DeployRequest {
        home: ctx.home.clone(),
        code,
        role,
        port_flags: a.ports.flags(),
        hosts: dive_instance::deploy::HostFlags {
            public_host: a.public_host.clone(),
            bind_host: a.bind_host.clone(),
        },
        seed: SeedChoice {
            enabled: if a.seed {
                Some(true)
            } else if a.no_seed {
                Some(false)
            } else {
                None
            },
            count: a.seed_count,
            seed_value: a.seed_value.clone(),
            rerun: mode == Mode::Seed,
        },
        stack,
        bin,
        phases: a.phases.selection()?,
        verify: mode != Mode::Up,
        require_existing: mode != Mode::Deploy,
    })
}

fn run_deploy(
    ctx: &Context,
    code: CountryCode,
    role: Role,
    a: &DeployArgs,
    mode: Mode,
) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let req = request(ctx, code, role, a, mode)?;
    let rt = runtime()?;
    if ctx.dry_run {
        for line in rt.block_on(deploy::dry_run(&req)).map_err(instance_err)? {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = rt.block_on(super::open_store(ctx))?;
    let stack_paths = StackPaths::new(&ctx.home, &dive_instance::config::stack_name(code));
    let names: Vec<String> = ["idp", "kas", "api", "seed"].map(String::from).to_vec();
    let mut progress = Progress::new(a.json, ctx, &names);
    let mut failed_checks: Vec<CheckResult> = Vec::new();
    let cancel = Cancel::default();
    let spawn = || spawn_supervisor(ctx, &stack_paths);
    let result = rt.block_on(async {
        let c = cancel.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel();
            }
        });
        let r = deploy::deploy(
            &store,
            &req,
            &spawn,
            &mut |e| progress.show(e),
            &mut |c| {
                if c.status == Status::Fail {
                    failed_checks.push(c.clone());
                }
            },
            &cancel,
            &[],
        )
        .await;
        ctrl_c.abort();
        r
    });
    progress.finish();
    let outcome = match result {
        Ok(o) => o,
        Err(InstanceError::Deploy(DeployError::State(e @ StateError::LockHeld { .. }))) => {
            eprintln!("error: {e}");
            eprintln!(
                "  another deployment of {} {code} is in progress; wait for it to finish (`dive {} status`)",
                role,
                status_cmd(role, code)
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(instance_err(e)),
    };
    let paths = InstancePaths::new(&ctx.home, code);
    match outcome {
        DeployOutcome::UpToDate {
            cfg,
            services,
            last_verify,
        } => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"instance": code.as_str(), "role": role.as_str(), "state": "UNCHANGED", "services": services, "urls": cfg.urls, "elapsed_ms": t0.elapsed().as_millis() as u64})
                );
            } else if ctx.verbosity >= 0 {
                println!(
                    "{role} {code} is up to date: {services} services healthy with unchanged definitions; nothing to do ({})",
                    duration(t0.elapsed())
                );
                print_access(&cfg, &paths, &ctx.home);
                if let Some(v) = last_verify {
                    println!("  last verification ({}): {}", v.started_at, v.summary());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeployOutcome::Deployed {
            cfg,
            deployed,
            verify,
        } => {
            let ok = matches!(
                deployed.state,
                DeploymentState::Complete | DeploymentState::Degraded
            );
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "instance": code.as_str(),
                        "role": role.as_str(),
                        "deployment": deployed.deployment_id,
                        "state": deployed.state.to_string(),
                        "phases": deployed.report.phases,
                        "urls": cfg.urls,
                        "report": deployed.report_dir.join("report.json"),
                        "verify": verify,
                        "elapsed_ms": t0.elapsed().as_millis() as u64,
                    })
                );
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            let verb = match mode {
                Mode::Deploy => "deployed",
                Mode::Up => "up",
                Mode::Seed => "seeded",
            };
            match deployed.state {
                DeploymentState::Complete => println!(
                    "{role} {code} {verb} in {} ({})",
                    duration(t0.elapsed()),
                    deployed.deployment_id
                ),
                DeploymentState::Degraded => println!(
                    "{role} {code} {verb}, DEGRADED, in {}",
                    duration(t0.elapsed())
                ),
                DeploymentState::Interrupted => println!(
                    "{role} {code}: deployment INTERRUPTED after {}; services already up keep running",
                    duration(t0.elapsed())
                ),
                _ => println!(
                    "{role} {code}: deployment FAILED after {}",
                    duration(t0.elapsed())
                ),
            }
            let phases: Vec<String> = deployed
                .report
                .phases
                .iter()
                .map(|p| match p.status.as_str() {
                    "DONE" => format!("{} {}", p.phase, millis(p.duration_ms)),
                    "SKIPPED" => format!("{} skipped", p.phase),
                    other => format!("{} {other}", p.phase),
                })
                .collect();
            println!("  phases: {}", phases.join(" · "));
            for p in deployed
                .report
                .phases
                .iter()
                .filter(|p| p.status == "FAILED")
            {
                println!(
                    "  {} failed: {}",
                    p.phase,
                    p.detail.as_deref().unwrap_or("")
                );
            }
            for s in deployed
                .report
                .services
                .iter()
                .filter(|s| s.outcome == dive_orchestrator::scheduler::ServiceOutcome::Failed)
            {
                println!(
                    "  {} ({}) failed: {}",
                    s.name,
                    s.class.as_str(),
                    s.reason.as_deref().unwrap_or("")
                );
                for l in dive_orchestrator::logs::tail_lines(&stack_paths.service_log(&s.name), 10)
                {
                    println!("    | {l}");
                }
            }
            if ok {
                print_access(&cfg, &paths, &ctx.home);
            }
            if let Some(v) = &verify {
                println!("  verify: {}", v.summary());
                for c in &failed_checks {
                    println!("    FAIL {}: {}", c.id, c.detail);
                }
            }
            if let Some(msg) = &deployed.recovered_lock {
                println!("  note: {msg}");
            }
            for step in &deployed.report.next_steps {
                println!("  next: {step}");
            }
            println!(
                "  report: {}",
                deployed.report_dir.join("report.md").display()
            );
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn status_cmd(role: Role, code: CountryCode) -> String {
    match role {
        Role::Hub => "hub status".into(),
        Role::Spoke => format!("spoke status {code}"),
    }
}

/// URLs, the CA, and where the test users' credentials are.
fn print_access(cfg: &InstanceConfig, paths: &InstancePaths, home: &std::path::Path) {
    println!("  web UI  {}/ (sign in with a test user)", cfg.urls.web);
    println!("  issuer  {}", cfg.urls.issuer);
    println!("  idp     {}", cfg.urls.idp);
    println!("  api     {}", cfg.urls.api);
    println!("  kas     {}", cfg.urls.kas);
    println!(
        "  CA      {} (clients must trust it)",
        home.join("pki/ca/cert.pem").display()
    );
    println!(
        "  test users' passwords: {} (0600)",
        paths.test_users().display()
    );
    if paths.test_users_totp().exists() {
        println!(
            "  test users' TOTP secrets: {} (0600)",
            paths.test_users_totp().display()
        );
    }
    println!(
        "  client secrets: {}/ (0600)",
        paths.secrets_dir().display()
    );
}

fn down(ctx: &Context, code: CountryCode) -> anyhow::Result<ExitCode> {
    stack_runtime::down(
        ctx,
        &stack_runtime::DownArgs {
            project: dive_instance::config::stack_name(code),
        },
    )
}

fn logs(ctx: &Context, code: CountryCode, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    stack_runtime::logs(
        ctx,
        &stack_runtime::LogsArgs {
            project: dive_instance::config::stack_name(code),
            service: a.service.clone(),
            follow: a.follow,
            tail: a.tail,
        },
    )
}

fn load_config(ctx: &Context, code: CountryCode, role: Role) -> anyhow::Result<InstanceConfig> {
    let paths = InstancePaths::new(&ctx.home, code);
    match dive_instance::config::load(&paths).map_err(instance_err)? {
        Some(c) if c.role == role => Ok(c),
        Some(c) => Err(bad_input(format!(
            "instance {code} is a {}, not a {role}",
            c.role
        ))),
        None => Err(bad_input(format!(
            "instance {code} has not been deployed (no {}); run `dive {}`",
            paths.config().display(),
            deploy::deploy_command(role, code)
        ))),
    }
}

fn status(ctx: &Context, code: CountryCode, role: Role, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(ctx, code, role)?;
    let paths = InstancePaths::new(&ctx.home, code);
    let stack_paths = StackPaths::new(&ctx.home, &cfg.stack_name());
    let rt = runtime()?;
    let (supervisor, last) = rt.block_on(async {
        let sup = match dive_orchestrator::supervisor::Client::connect(&stack_paths).await {
            Ok(mut c) => c.status().await.ok(),
            Err(_) => None,
        };
        let last = match super::open_store(ctx).await {
            Ok(store) => store
                .latest_deployment(&cfg.stack_name())
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        (sup, last)
    });
    let verify = dive_instance::verify::last(&paths);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "instance": code.as_str(),
                "role": role.as_str(),
                "ports": cfg.ports,
                "urls": cfg.urls,
                "running": supervisor.is_some(),
                "supervisor": supervisor,
                "last_deployment": last,
                "last_verify": verify.as_ref().map(|v| serde_json::json!({
                    "started_at": v.started_at, "passed": v.passed, "failed": v.failed,
                    "skipped": v.skipped, "summary": v.summary()})),
            }))?
        );
    } else {
        println!("{role} {code}  ({})", paths.dir.display());
        print_access(&cfg, &paths, &ctx.home);
        match &last {
            Some(d) => println!(
                "  last deployment {} {} ({})",
                d.id,
                d.state,
                d.duration_ms
                    .map(millis)
                    .unwrap_or_else(|| "running".into())
            ),
            None => println!("  no deployment recorded"),
        }
        if let Some(v) = &verify {
            println!("  last verification ({}): {}", v.started_at, v.summary());
        }
        match &supervisor {
            Some(s) => stack_runtime::print_status(s),
            None => println!(
                "  not running (no supervisor); start it with `dive {}`",
                match role {
                    Role::Hub => "hub up".to_string(),
                    Role::Spoke => format!("spoke up {code}"),
                }
            ),
        }
    }
    Ok(if supervisor.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify(ctx: &Context, code: CountryCode, role: Role, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(ctx, code, role)?;
    let bin = std::env::current_exe()?;
    // The stack the instance runs: an operator's file if the last deployment used one.
    let stack = last_stack_file(ctx, &cfg)
        .map(StackSource::File)
        .unwrap_or(StackSource::Embedded);
    let stack = dive_instance::stacks::load(&ctx.home, &cfg, &bin, &stack).map_err(instance_err)?;
    let rt = runtime()?;
    let quiet = json || ctx.verbosity < 0;
    let report: VerifyReport = rt
        .block_on(dive_instance::verify::run(
            dive_instance::verify::VerifyRequest {
                home: ctx.home.clone(),
                cfg,
                planned: dive_instance::verify::planned_services(&stack),
            },
            &mut |c| {
                if !quiet {
                    print_check(c);
                }
            },
        ))
        .map_err(instance_err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{role} {code}: {} ({})",
            report.summary(),
            millis(report.duration_ms as i64)
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The stack file the last deployment used, when it was an operator's file (`--stack-file`).
fn last_stack_file(ctx: &Context, cfg: &InstanceConfig) -> Option<PathBuf> {
    let dir = StackPaths::new(&ctx.home, &cfg.stack_name()).deployments_dir();
    let mut ids: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    ids.sort();
    for d in ids.iter().rev() {
        let Ok(text) = std::fs::read_to_string(d.join("report.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let file = PathBuf::from(v["stack_file"].as_str()?);
        // The embedded stack is written out there; the binary's own copy is the one to use.
        let embedded = InstancePaths::new(&ctx.home, cfg.code).stack_file();
        return (file.is_file() && file != embedded).then_some(file);
    }
    None
}

fn print_check(c: &CheckResult) {
    println!(
        "{:<4}  {:<34} {} ({} ms){}",
        c.status.as_str(),
        c.id,
        c.title,
        c.duration_ms,
        if c.detail.is_empty() {
            String::new()
        } else {
            format!("\n      {}", c.detail)
        }
    );
}

fn rotate(
    ctx: &Context,
    code: CountryCode,
    role: Role,
    services: &[String],
) -> anyhow::Result<ExitCode> {
    load_config(ctx, code, role)?;
    let list: Vec<&str> = if services.is_empty() {
        dive_instance::secrets::SECRET_SERVICES.to_vec()
    } else {
        services.iter().map(String::as_str).collect()
    };
    if ctx.dry_run {
        println!(
            "dry run: would replace the client secrets of {} in {}, re-register them at the IdP and redeploy",
            list.join(", "),
            InstancePaths::new(&ctx.home, code).secrets_dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    let changed = rt
        .block_on(deploy::rotate_secrets(&ctx.home, code, &list))
        .map_err(instance_err)?;
    println!(
        "rotated the client secrets of {}; re-registered at the IdP: {}",
        list.join(", "),
        if changed.is_empty() {
            "none needed".to_string()
        } else {
            changed.join(", ")
        }
    );
    let args = DeployArgs {
        stack_file: last_stack_file(ctx, &load_config(ctx, code, role)?),
        ports: PortArgs::none(),
        public_host: None,
        bind_host: None,
        no_seed: false,
        seed: false,
        seed_count: None,
        seed_value: None,
        phases: PhaseArgs::none(),
        json: false,
    };
    run_deploy(ctx, code, role, &args, Mode::Deploy)
}
