//! `dive stack ...`: compose-format stacks of local processes.
//!
//! Each subcommand has its own args struct and `run_*` function; `run` only routes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use dive_orchestrator::plan::{Plan, default_estimate};
use dive_orchestrator::spec::{
    self, DependencyCondition, Environment, Probe, StackSpec, format_duration,
};

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Show what `up` would do: services by dependency level, health probes and the critical
    /// path. Reads the stack file only; touches nothing.
    ///
    /// The critical-path estimate per service is 0 without a health check, else its
    /// `start_period`, else 100 ms (about when DIVE's first probe runs).
    Plan(PlanArgs),
    /// Deploy the stack: start each service as soon as its dependencies allow, wait until the
    /// deployment has settled, record and report it. Services keep running under the stack's
    /// supervisor.
    Up(super::stack_up::UpArgs),
    /// Close a service's start circuit breaker (or all of a stack's) so that `up` tries it again.
    ResetBreaker(super::stack_up::ResetBreakerArgs),
    /// Write out an embedded stack file (`hub` or `spoke`), to read or to edit and run with
    /// `dive hub deploy --stack-file FILE`.
    Export(ExportArgs),
    #[command(flatten)]
    Runtime(super::stack_runtime::RuntimeCommand),
}

pub fn run(command: StackCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        StackCommand::Plan(args) => run_plan(&args, ctx),
        StackCommand::Up(args) => super::stack_up::up(ctx, &args),
        StackCommand::ResetBreaker(args) => super::stack_up::reset_breaker(ctx, &args),
        StackCommand::Export(args) => run_export(&args, ctx),
        StackCommand::Runtime(c) => super::stack_runtime::run(c, ctx),
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `hub` or `spoke`.
    pub name: String,
    /// Write to this file instead of standard output (an existing file is not overwritten
    /// unless --force).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

fn run_export(args: &ExportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let text = dive_instance::stacks::embedded_by_name(&args.name).ok_or_else(|| {
        crate::exit::bad_input(format!(
            "no embedded stack named {:?}: choose hub or spoke",
            args.name
        ))
    })?;
    match &args.output {
        None => emit(text)?,
        Some(path) => {
            if path.exists() && !args.force {
                return Err(crate::exit::bad_input(format!(
                    "{} exists; pass --force to overwrite it",
                    path.display()
                )));
            }
            if ctx.dry_run {
                println!(
                    "dry run: would write the {} stack to {}",
                    args.name,
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote the {} stack to {}", args.name, path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options that select and read a stack file; shared by subcommands that take a file.
#[derive(Debug, Args)]
pub struct StackFileArgs {
    /// The stack file (default: dive-stack.yml, compose.yaml or compose.yml in the current directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Stack name (default: the file's `name`, else its directory name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Enable services of this profile (repeatable).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackFileArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Stack file names looked for in the current directory, in order.
pub const DEFAULT_STACK_FILES: &[&str] = &["dive-stack.yml", "compose.yaml", "compose.yml"];

/// Find the stack file: `-f`, else the first default name present in the current directory.
pub fn stack_file(file: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(f) = file {
        return Ok(f.to_path_buf());
    }
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    DEFAULT_STACK_FILES
        .iter()
        .map(PathBuf::from)
        .find(|p| cwd.join(p).is_file())
        .ok_or_else(|| {
            crate::exit::bad_input(format!(
                "no stack file: pass -f FILE or create one of {} in {}",
                DEFAULT_STACK_FILES.join(", "),
                cwd.display()
            ))
        })
}

/// Read the stack file and plan it; spec errors are bad input (exit 2).
pub fn load_and_plan(args: &StackFileArgs) -> anyhow::Result<(StackSpec, Plan)> {
    let file = stack_file(args.file.as_deref())?;
    let spec = spec::load(
        &file,
        args.project_name.as_deref(),
        &Environment::from_process(),
    )
    .map_err(|e| crate::exit::bad_input(e.to_string()))?;
    let plan =
        Plan::build(&spec, &args.profiles).map_err(|e| crate::exit::bad_input(e.to_string()))?;
    Ok((spec, plan))
}

fn run_plan(args: &PlanArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    let (spec, plan) = load_and_plan(&args.stack)?;
    let (path, total) = plan.critical_path(|n| {
        plan.get(n)
            .map_or(Default::default(), |s| default_estimate(&s.spec))
    });
    if args.json {
        let out = serde_json::json!({
            "plan": plan,
            "critical_path": { "services": path, "estimate_ms": total.as_millis() as u64 },
            "ignored": spec.ignored,
            "notices": spec.notices,
        });
        emit(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        emit(&render_plan(&spec, &plan, &path, total))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Write to stdout; a closed pipe (`dive stack plan | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn render_plan(
    spec: &StackSpec,
    plan: &Plan,
    path: &[String],
    total: std::time::Duration,
) -> String {
    let mut o = String::new();
    let profiles = if plan.profiles.is_empty() {
        "none".to_string()
    } else {
        plan.profiles.join(", ")
    };
    let _ = writeln!(
        o,
        "stack {} ({}): {} services in {} levels; profiles: {profiles}",
        plan.stack,
        spec.source.display(),
        plan.services.len(),
        plan.levels.len()
    );
    let width = plan.services.keys().map(String::len).max().unwrap_or(0);
    for (i, level) in plan.levels.iter().enumerate() {
        let _ = writeln!(o, "\nlevel {i}");
        for name in level {
            let s = &plan.services[name].spec;
            let deps: Vec<String> = s
                .depends_on
                .iter()
                .map(|d| format!("{} ({})", d.service, condition(d.condition)))
                .collect();
            let _ = writeln!(
                o,
                "  {name:width$}  {:8}  health: {}",
                s.class.as_str(),
                health(s)
            );
            if !deps.is_empty() {
                let _ = writeln!(o, "  {:width$}  after: {}", "", deps.join(", "));
            }
            if let Some(d) = &s.description {
                let _ = writeln!(o, "  {:width$}  {d}", "");
            }
        }
    }
    let _ = writeln!(
        o,
        "\ncritical path (estimated {}): {}",
        format_duration(total),
        path.join(" -> ")
    );
    for e in &plan.excluded {
        let _ = writeln!(
            o,
            "excluded: {} (profiles: {})",
            e.service,
            e.profiles.join(", ")
        );
    }
    for d in &plan.dropped_dependencies {
        let _ = writeln!(
            o,
            "dropped: {} no longer waits for {} (not required, not enabled)",
            d.service, d.dependency
        );
    }
    if !spec.ignored.is_empty() {
        let _ = writeln!(o, "\nignored by the process runtime:");
        for k in &spec.ignored {
            let key = match &k.service {
                Some(s) => format!("services.{s}.{}", k.key),
                None => k.key.clone(),
            };
            let _ = writeln!(
                o,
                "  {}:{}:{}: {key}",
                spec.source.display(),
                k.pos.line,
                k.pos.column
            );
        }
    }
    if !spec.notices.is_empty() {
        let _ = writeln!(o, "\nnotices:");
        for n in &spec.notices {
            let _ = writeln!(
                o,
                "  {}:{}:{}: {}",
                spec.source.display(),
                n.pos.line,
                n.pos.column,
                n.message
            );
        }
    }
    o
}

fn condition(c: DependencyCondition) -> &'static str {
    match c {
        DependencyCondition::Started => "started",
        DependencyCondition::Healthy => "healthy",
        DependencyCondition::CompletedSuccessfully => "completed",
    }
}

fn health(s: &spec::ServiceSpec) -> String {
    let Some(hc) = &s.healthcheck else {
        return "none".into();
    };
    let probe = match &hc.probe {
        Probe::Cmd(argv) => format!("cmd {}", argv.join(" ")),
        Probe::Shell(cmd) => format!("sh -c {cmd:?}"),
        Probe::Http { url, ca_file: None } => format!("http {url}"),
        Probe::Http {
            url,
            ca_file: Some(ca),
        } => format!("http {url} (trusting {})", ca.display()),
        Probe::Tcp(addr) => format!("tcp {addr}"),
    };
    let mut out = format!(
        "{probe} (interval {}, timeout {}, retries {}",
        format_duration(hc.interval),
        format_duration(hc.timeout),
        hc.retries
    );
    if !hc.start_period.is_zero() {
        let _ = write!(out, ", start period {}", format_duration(hc.start_period));
    }
    if let Some(t) = s.start_timeout {
        let _ = write!(out, ", must be ready within {}", format_duration(t));
    }
    out.push(')');
    out
}
