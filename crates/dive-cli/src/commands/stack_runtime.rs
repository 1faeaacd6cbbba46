//! `dive stack status|logs|ps|down` and the hidden `dive stack supervise` daemon entry point:
//! the commands that work on running stacks, without a stack file.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use dive_orchestrator::fmt::{duration, now_ms};
use dive_orchestrator::logs::{LogFollower, tail_lines};
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::supervisor::protocol::StackStatus;
use dive_orchestrator::supervisor::{
    Client, SupervisorError, daemon, shutdown_stack, supervisor_alive,
};

use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Show each service of a running stack: state, pid, health, uptime, restarts, last exit.
    Status(StatusArgs),
    /// Print a stack's service logs (all services, or one).
    Logs(LogsArgs),
    /// List the stacks DIVE knows and whether their supervisor runs.
    Ps(PsArgs),
    /// Stop a stack's services in reverse dependency order, then its supervisor.
    Down(DownArgs),
    /// Run a stack's supervisor in the foreground (started by `up`; not for direct use).
    #[command(hide = true)]
    Supervise(SuperviseArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Stack name.
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: String,
    /// Only this service.
    pub service: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines of history to print first.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub tail: usize,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: String,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: String,
}

pub fn run(cmd: RuntimeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        RuntimeCommand::Status(a) => status(ctx, &a),
        RuntimeCommand::Logs(a) => logs(ctx, &a),
        RuntimeCommand::Ps(a) => ps(ctx, &a),
        RuntimeCommand::Down(a) => down(ctx, &a),
        RuntimeCommand::Supervise(a) => supervise(ctx, &a),
    }
}

/// A current-thread runtime: the CLI's async work is I/O-bound and short.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Stack names become directory names: the spec's rule (`spec::valid_stack_name`) applies to
/// names given with `-p` too.
pub fn validate_stack_name(name: &str) -> anyhow::Result<()> {
    if dive_orchestrator::spec::valid_stack_name(name) {
        Ok(())
    } else {
        Err(bad_input(format!(
            "invalid stack name {name:?}: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )))
    }
}

fn stack_paths(ctx: &Context, name: &str) -> anyhow::Result<StackPaths> {
    validate_stack_name(name)?;
    Ok(StackPaths::new(&ctx.home, name))
}

pub fn status(ctx: &Context, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let paths = stack_paths(ctx, &a.project)?;
    let rt = runtime()?;
    let status = rt.block_on(async {
        match Client::connect(&paths).await {
            Ok(mut c) => c.status().await.map(Some),
            Err(SupervisorError::NotRunning { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    let Some(status) = status else {
        let known = paths.dir.exists();
        if a.json {
            println!(
                "{}",
                serde_json::json!({"stack": a.project, "running": false, "known": known})
            );
        } else if known {
            println!(
                "stack {} is not running (no supervisor){}",
                a.project,
                if paths.services_file().exists() {
                    "; its last supervisor died — `dive stack up` or `dive stack down` cleans up what it left"
                } else {
                    ""
                }
            );
        } else {
            println!("no stack named {} (see `dive stack ps`)", a.project);
        }
        return Ok(ExitCode::from(1));
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_status(s: &StackStatus) {
    println!(
        "stack {}  supervisor pid {}  up {}",
        s.stack,
        s.supervisor.pid,
        duration(Duration::from_millis(
            (now_ms() - s.supervisor_started_at_ms).max(0) as u64
        ))
    );
    println!(
        "{:<20} {:<9} {:<12} {:<10} {:>8} {:>9} {:>8}  LAST EXIT",
        "SERVICE", "CLASS", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS"
    );
    for svc in &s.services {
        let uptime = match (svc.state.is_active(), svc.started_at_ms) {
            (true, Some(t)) => duration(Duration::from_millis((now_ms() - t).max(0) as u64)),
            _ => "-".into(),
        };
        let last_exit = svc
            .last_exit
            .as_ref()
            .map(|e| e.describe())
            .unwrap_or_else(|| "-".into());
        let note = svc
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        println!(
            "{:<20} {:<9} {:<12} {:<10} {:>8} {:>9} {:>8}  {}{}",
            svc.name,
            svc.class.as_str(),
            svc.state.as_str(),
            svc.health.as_str(),
            svc.pid.map_or("-".into(), |p| p.to_string()),
            uptime,
            svc.restarts,
            last_exit,
            note
        );
        if let Some(d) = &svc.description {
            println!("{:<20} {d}", "");
        }
    }
}

pub fn logs(ctx: &Context, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    let paths = stack_paths(ctx, &a.project)?;
    let services: Vec<String> = match &a.service {
        Some(s) => {
            if !paths.service_log(s).exists() {
                return Err(bad_input(format!(
                    "stack {} has no log for service {s:?} (at {})",
                    a.project,
                    paths.service_log(s).display()
                )));
            }
            vec![s.clone()]
        }
        None => log_services(&paths)?,
    };
    if services.is_empty() {
        return Err(bad_input(format!(
            "stack {} has no service logs (at {})",
            a.project,
            paths.logs_dir().display()
        )));
    }
    let prefix = services.len() > 1;
    let width = services.iter().map(String::len).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for s in &services {
        for line in tail_lines(&paths.service_log(s), a.tail) {
            print_line(&mut out, prefix.then_some((s, width)), &line)?;
        }
    }
    out.flush()?;
    if a.follow {
        follow(&paths, &services, prefix.then_some(width))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn log_services(paths: &StackPaths) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let dir = paths.logs_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries {
        let name = e?.file_name();
        if let Some(s) = name.to_str().and_then(|n| n.strip_suffix(".log")) {
            out.push(s.to_string());
        }
    }
    out.sort();
    Ok(out)
}

fn print_line(
    out: &mut impl Write,
    prefix: Option<(&str, usize)>,
    line: &str,
) -> std::io::Result<()> {
    match prefix {
        Some((s, w)) => writeln!(out, "{s:<w$} | {line}"),
        None => writeln!(out, "{line}"),
    }
}

/// Poll the log files for new lines (across rotations) until interrupted.
fn follow(paths: &StackPaths, services: &[String], width: Option<usize>) -> anyhow::Result<()> {
    let mut followers: Vec<LogFollower> = services
        .iter()
        .map(|s| LogFollower::from_end(&paths.service_log(s)))
        .collect();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let mut out = std::io::stdout().lock();
        for (s, f) in services.iter().zip(&mut followers) {
            for line in f.poll()?.lines() {
                print_line(&mut out, width.map(|w| (s.as_str(), w)), &line?)?;
            }
        }
        out.flush()?;
    }
}

#[derive(serde::Serialize)]
struct PsRow {
    stack: String,
    running: bool,
    supervisor_pid: Option<u32>,
    services: usize,
    services_up: usize,
}

fn ps(ctx: &Context, a: &PsArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let mut rows = Vec::new();
    for paths in StackPaths::all(&ctx.home)? {
        let status = rt.block_on(async {
            match Client::connect(&paths).await {
                Ok(mut c) => c.status().await.ok(),
                Err(_) => None,
            }
        });
        rows.push(match status {
            Some(s) => PsRow {
                stack: paths.name.clone(),
                running: true,
                supervisor_pid: Some(s.supervisor.pid),
                services: s.services.len(),
                services_up: s
                    .services
                    .iter()
                    .filter(|x| {
                        x.state == dive_orchestrator::supervisor::protocol::ServiceState::Running
                    })
                    .count(),
            },
            None => PsRow {
                stack: paths.name.clone(),
                running: false,
                supervisor_pid: None,
                services: 0,
                services_up: 0,
            },
        });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no stacks under {}", ctx.home.display());
    } else {
        println!(
            "{:<24} {:<12} {:>8} {:>10}",
            "STACK", "SUPERVISOR", "PID", "RUNNING"
        );
        for r in rows {
            println!(
                "{:<24} {:<12} {:>8} {:>10}",
                r.stack,
                if r.running { "running" } else { "stopped" },
                r.supervisor_pid.map_or("-".into(), |p| p.to_string()),
                format!("{}/{}", r.services_up, r.services)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(ctx: &Context, a: &DownArgs) -> anyhow::Result<ExitCode> {
    let paths = stack_paths(ctx, &a.project)?;
    if ctx.dry_run {
        let rt = runtime()?;
        let status = rt.block_on(async {
            match Client::connect(&paths).await {
                Ok(mut c) => c.status().await.ok(),
                Err(_) => None,
            }
        });
        match status {
            Some(s) => {
                let specs: Vec<String> = s.services.iter().map(|x| x.name.clone()).collect();
                println!(
                    "dry run: would stop {} services of stack {} (dependents first) and its supervisor (pid {}): {}",
                    specs.len(),
                    a.project,
                    s.supervisor.pid,
                    specs.join(", ")
                );
            }
            None => println!(
                "dry run: stack {} is not running; nothing to stop",
                a.project
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    let t0 = std::time::Instant::now();
    let (was_running, orphans) = rt.block_on(shutdown_stack(&paths))?;
    if was_running {
        println!("stack {} stopped in {}", a.project, duration(t0.elapsed()));
    } else if !orphans.killed.is_empty() {
        println!(
            "stack {} had no supervisor; stopped its orphaned services: {}",
            a.project,
            orphans.killed.join(", ")
        );
    } else {
        println!("stack {} is not running", a.project);
    }
    Ok(ExitCode::SUCCESS)
}

fn supervise(ctx: &Context, a: &SuperviseArgs) -> anyhow::Result<ExitCode> {
    let paths = stack_paths(ctx, &a.project)?;
    if supervisor_alive(&paths) {
        return Err(anyhow::anyhow!(
            "a supervisor for stack {} is already running",
            a.project
        ));
    }
    super::serve::limit_arena_growth();
    // Two workers: spawning a process (fork/exec) blocks its thread, and a second one keeps
    // answering the scheduler and running probes meanwhile.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(daemon::run(paths, daemon::DaemonConfig::default()))?;
    Ok(ExitCode::SUCCESS)
}

/// Start `dive stack supervise` for `stack` as a detached daemon: its own session (so a Ctrl-C
/// in the operator's terminal does not reach it), no terminal, output to `supervisor.log`.
pub fn spawn_supervisor(ctx: &Context, paths: &StackPaths) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(&paths.dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.supervisor_log())?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--home")
        .arg(&ctx.home)
        .args(["stack", "supervise", "-p", &paths.name])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map(drop)
}
