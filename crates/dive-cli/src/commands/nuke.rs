//! `dive nuke`: stop everything of a target, delete its state, logs and data, and verify that
//! nothing is left.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::supervisor::{shutdown_stack, supervisor_alive};

use super::stack_runtime::{runtime, validate_stack_name};
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct NukeArgs {
    #[command(subcommand)]
    pub target: NukeTarget,
    /// Really do it (required when not asked interactively).
    #[arg(long, global = true)]
    pub confirm: bool,
}

#[derive(Debug, Subcommand)]
pub enum NukeTarget {
    /// The hub instance (USA): processes, recorded state, logs, configuration, secrets and data.
    Hub,
    /// A spoke instance: processes, recorded state, logs, configuration, secrets and data.
    Spoke { code: String },
    /// One stack: its processes, logs, reports and recorded state.
    Stack { name: String },
    /// Everything under DIVE_HOME and every stack recorded in the state store.
    All,
}

pub fn run(ctx: &Context, a: &NukeArgs) -> anyhow::Result<ExitCode> {
    let instance = match &a.target {
        NukeTarget::Hub => Some(dive_core::CountryCode::new(
            dive_instance::config::HUB_CODE,
        )?),
        NukeTarget::Spoke { code } => Some(super::instance::spoke_code(code)?),
        _ => None,
    };
    if let Some(code) = instance {
        return nuke_instance(ctx, a, code);
    }
    let (what, stacks) = match &a.target {
        NukeTarget::Hub | NukeTarget::Spoke { .. } => unreachable!("handled above"),
        NukeTarget::Stack { name } => {
            validate_stack_name(name)?;
            (format!("stack {name}"), vec![name.clone()])
        }
        NukeTarget::All => {
            let mut names: Vec<String> = StackPaths::all(&ctx.home)?
                .into_iter()
                .map(|p| p.name)
                .collect();
            let rt = runtime()?;
            if let Ok(store) = rt.block_on(super::open_store(ctx)) {
                for d in rt.block_on(store.list_deployments(None, 100_000))? {
                    if !names.contains(&d.stack) {
                        names.push(d.stack);
                    }
                }
            }
            (format!("everything under {}", ctx.home.display()), names)
        }
    };
    if ctx.dry_run {
        println!("dry run: would stop and delete {what}:");
        for s in &stacks {
            println!(
                "  stack {s}: processes, logs, reports ({}), recorded state",
                StackPaths::new(&ctx.home, s).dir.display()
            );
        }
        if matches!(a.target, NukeTarget::All) {
            println!("  and the whole directory {}", ctx.home.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let expected = match &a.target {
        NukeTarget::Hub | NukeTarget::Spoke { .. } => unreachable!("handled above"),
        NukeTarget::Stack { name } => name.clone(),
        NukeTarget::All => "nuke all".to_string(),
    };
    confirm(ctx, a, &what, &expected)?;
    let rt = runtime()?;
    let mut left = Vec::new();
    for s in &stacks {
        let paths = StackPaths::new(&ctx.home, s);
        let (_, orphans) = rt.block_on(shutdown_stack(&paths))?;
        if !orphans.killed.is_empty() {
            println!(
                "stack {s}: stopped orphaned services {}",
                orphans.killed.join(", ")
            );
        }
        if let Ok(store) = rt.block_on(super::open_store(ctx)) {
            rt.block_on(store.delete_stack(s))?;
        }
        if paths.dir.exists() {
            std::fs::remove_dir_all(&paths.dir)?;
        }
        if supervisor_alive(&paths) || paths.dir.exists() {
            left.push(format!("stack {s}"));
        }
        println!("stack {s}: stopped and deleted");
    }
    if matches!(a.target, NukeTarget::All) && ctx.home.exists() {
        std::fs::remove_dir_all(&ctx.home)?;
        if ctx.home.exists() {
            left.push(ctx.home.display().to_string());
        }
    }
    if left.is_empty() {
        println!("verified: nothing of {what} is left");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow::anyhow!(
            "still present after nuke: {}",
            left.join(", ")
        ))
    }
}

/// Confirmation for a mutating nuke: `--confirm`, or the target typed at a terminal.
fn confirm(ctx: &Context, a: &NukeArgs, what: &str, expected: &str) -> anyhow::Result<()> {
    if a.confirm {
        return Ok(());
    }
    if !ctx.interactive {
        return Err(bad_input(format!(
            "refusing to nuke {what} without --confirm (non-interactive run)"
        )));
    }
    eprint!("This stops and deletes {what}. Type {expected:?} to confirm: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != expected {
        return Err(bad_input("confirmation did not match; nothing was changed"));
    }
    Ok(())
}

/// `dive nuke hub` / `dive nuke spoke CODE`: only that instance; the installation PKI (shared by
/// every instance) and other instances stay.
fn nuke_instance(
    ctx: &Context,
    a: &NukeArgs,
    code: dive_core::CountryCode,
) -> anyhow::Result<ExitCode> {
    let role = if code.as_str() == dive_instance::config::HUB_CODE {
        "hub"
    } else {
        "spoke"
    };
    let what = format!("{role} {code}");
    if ctx.dry_run {
        println!("dry run: would stop and delete {what}:");
        for line in dive_instance::remove::plan(&ctx.home, code) {
            println!("  {line}");
        }
        println!(
            "  (the installation PKI under {} stays)",
            ctx.home.join("pki").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    confirm(ctx, a, &what, &code.as_str().to_lowercase())?;
    let rt = runtime()?;
    let store = rt.block_on(super::open_store(ctx)).ok();
    let r = rt.block_on(dive_instance::remove::remove(
        &ctx.home,
        code,
        store.as_ref(),
    ))?;
    if r.stopped {
        println!("{what}: services and supervisor stopped");
    }
    if !r.orphans.is_empty() {
        println!("{what}: stopped orphaned services {}", r.orphans.join(", "));
    }
    if r.deployments_deleted {
        println!("{what}: recorded deployments, locks and breakers deleted");
    }
    for d in &r.removed {
        println!("{what}: removed {d}");
    }
    if r.left.is_empty() {
        println!(
            "verified: nothing of {what} is left (the installation PKI under {} is shared and stays)",
            ctx.home.join("pki").display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow::anyhow!(
            "still present after nuke: {}",
            r.left.join(", ")
        ))
    }
}
