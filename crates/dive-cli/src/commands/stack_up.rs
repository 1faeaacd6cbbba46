//! `dive stack up`: deploy a compose-format stack and report how it went.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use dive_orchestrator::deploy::{self, UpRequest, UpResult};
use dive_orchestrator::fmt::{duration, millis};
use dive_orchestrator::logs::tail_lines;
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::scheduler::{Interruption, SchedulerConfig, ServiceOutcome};
use dive_orchestrator::state::{BreakerConfig, DeploymentState, StateError};
use dive_orchestrator::supervisor::Client;

use super::progress::Progress;
use super::stack_runtime::{runtime, spawn_supervisor};
use crate::context::Context;

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: super::stack::StackFileArgs,
    /// Give up waiting after this many seconds (the deployment is recorded as interrupted;
    /// services already up keep running).
    #[arg(long, value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    /// Stream events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn up(ctx: &Context, a: &UpArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let (spec, plan) = super::stack::load_and_plan(&a.stack)?;
    let paths = StackPaths::new(&ctx.home, &spec.name);
    let rt = runtime()?;
    if ctx.dry_run {
        return rt.block_on(dry_run(&spec, &plan, &paths));
    }
    let store = rt.block_on(super::open_store(ctx))?;
    let names: Vec<String> = plan.services.keys().cloned().collect();
    let mut progress = Progress::new(a.json, ctx, &names);
    let cancel = stop_waiting(a.wait_timeout.map(Duration::from_secs));
    let spawn = || spawn_supervisor(ctx, &paths);
    let result = rt.block_on(deploy::up(
        &store,
        UpRequest {
            home: &ctx.home,
            spec: &spec,
            plan: &plan,
            kind: "stack",
            scheduler: SchedulerConfig::default(),
            breaker: BreakerConfig::default(),
        },
        &spawn,
        &mut |e| progress.show(e),
        cancel,
    ));
    progress.finish();
    let result = match result {
        Ok(r) => r,
        Err(deploy::DeployError::State(e @ StateError::LockHeld { .. })) => {
            return Err(anyhow::Error::new(e).context(format!(
                "another deployment of stack {} is in progress; wait for it to finish (`dive stack status -p {}`)",
                spec.name, spec.name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    match result {
        UpResult::NoOp { services } => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"stack": spec.name, "state": "UNCHANGED", "services": services})
                );
            } else if ctx.verbosity >= 0 {
                println!(
                    "stack {} is up to date: {services} services running with unchanged definitions; nothing to do ({})",
                    spec.name,
                    duration(t0.elapsed())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UpResult::Deployed(d) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"stack": spec.name, "deployment": d.deployment_id, "state": d.state.to_string(), "report": d.report_dir.join("report.json")})
                );
            } else {
                summarise(&spec.name, &d, &paths);
            }
            Ok(match d.state {
                DeploymentState::Complete | DeploymentState::Degraded => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            })
        }
    }
}

/// Resolves on Ctrl-C, or when `wait` (`--wait-timeout`) has passed, saying which.
async fn stop_waiting(wait: Option<Duration>) -> Interruption {
    let timeout = async {
        match wait {
            Some(w) => tokio::time::sleep(w).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Interruption::Operator,
        () = timeout => Interruption::WaitTimeout {
            after_ms: wait.map_or(0, |w| w.as_millis() as u64),
        },
    }
}

fn summarise(stack: &str, d: &deploy::Deployed, paths: &StackPaths) {
    let up: Vec<&str> = d
        .outcome
        .services
        .values()
        .filter(|s| s.outcome.is_up())
        .map(|s| s.name.as_str())
        .collect();
    let total = d.outcome.services.len();
    match d.state {
        DeploymentState::Complete => println!(
            "stack {stack} is up: {}/{total} services in {}",
            up.len(),
            millis(d.outcome.elapsed_ms)
        ),
        DeploymentState::Degraded => {
            println!(
                "stack {stack} is up, degraded: {}/{total} services in {}",
                up.len(),
                millis(d.outcome.elapsed_ms)
            );
            for s in d.outcome.services.values().filter(|s| !s.outcome.is_up()) {
                println!(
                    "  {} ({}) {}: {}",
                    s.name,
                    s.class.as_str(),
                    s.outcome.as_str(),
                    s.reason.as_deref().unwrap_or("")
                );
            }
        }
        _ => {
            if let Some(why) = d.outcome.interrupted {
                println!(
                    "stack {stack}: {why} after {}; {} services up and left running",
                    millis(d.outcome.elapsed_ms),
                    up.len()
                );
            } else {
                println!(
                    "stack {stack}: deployment FAILED after {}",
                    millis(d.outcome.elapsed_ms)
                );
            }
            for s in d.outcome.services.values() {
                if s.outcome == ServiceOutcome::Failed {
                    println!(
                        "  {} ({}) failed: {}",
                        s.name,
                        s.class.as_str(),
                        s.reason.as_deref().unwrap_or("")
                    );
                    let tail = tail_lines(&paths.service_log(&s.name), 10);
                    if !tail.is_empty() {
                        println!("  last log lines of {}:", s.name);
                        for l in tail {
                            println!("    | {l}");
                        }
                    }
                }
            }
            let waiting: Vec<&str> = d
                .outcome
                .services
                .values()
                .filter(|s| {
                    matches!(
                        s.outcome,
                        ServiceOutcome::NotStarted
                            | ServiceOutcome::Skipped
                            | ServiceOutcome::InProgress
                    )
                })
                .map(|s| s.name.as_str())
                .collect();
            if !waiting.is_empty() {
                println!("  not started or unfinished: {}", waiting.join(", "));
            }
        }
    }
    if let Some(msg) = &d.recovered_lock {
        println!("  note: {msg}");
    }
    for step in &d.report.next_steps {
        println!("  next: {step}");
    }
    if !d.report.critical_chain.is_empty() {
        println!("  critical chain: {}", d.report.critical_chain.join(" → "));
    }
    println!("  report: {}", d.report_dir.join("report.md").display());
}

async fn dry_run(
    spec: &dive_orchestrator::spec::StackSpec,
    plan: &dive_orchestrator::plan::Plan,
    paths: &StackPaths,
) -> anyhow::Result<ExitCode> {
    let current = match Client::connect(paths).await {
        Ok(mut c) => Some(c.status().await?),
        Err(_) => None,
    };
    println!(
        "dry run: stack {} from {} — nothing will be changed",
        spec.name,
        spec.source.display()
    );
    if current.is_none() {
        println!("  the stack's supervisor is not running: it would be started");
    }
    for (name, planned) in &plan.services {
        let s = &planned.spec;
        let running = current
            .as_ref()
            .and_then(|c| c.services.iter().find(|x| &x.name == name));
        let action = match running {
            Some(r) if r.definition_hash == s.definition_hash() && r.state.is_active() => {
                "keep (unchanged)"
            }
            Some(r) if r.state.is_active() => "restart (definition changed)",
            _ => "start",
        };
        println!("  {name:<24} {:<9} {action}", s.class.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ResetBreakerArgs {
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: String,
    /// Only this service (default: every breaker of the stack).
    pub service: Option<String>,
}

pub fn reset_breaker(ctx: &Context, a: &ResetBreakerArgs) -> anyhow::Result<ExitCode> {
    super::stack_runtime::validate_stack_name(&a.project)?;
    if ctx.dry_run {
        println!(
            "dry run: would close the circuit breaker of {} in stack {}",
            a.service.as_deref().unwrap_or("every service"),
            a.project
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    let n = rt.block_on(async {
        let store = super::open_store(ctx).await?;
        anyhow::Ok(
            store
                .reset_breaker(&a.project, a.service.as_deref())
                .await?,
        )
    })?;
    println!(
        "closed {n} circuit breaker{} of stack {}",
        if n == 1 { "" } else { "s" },
        a.project
    );
    Ok(ExitCode::SUCCESS)
}
