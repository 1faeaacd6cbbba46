//! The command tree. Each domain has its own module; this file only routes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::context::Context;

pub mod stack;
pub mod stack_runtime;
pub mod orch_db;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where DIVE keeps its state.
    Home,
    /// Compose-format stacks of local processes: plan (and later up, down, status, logs, ps).
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// The orchestration state store.
    #[command(subcommand)]
    OrchDb(orch_db::OrchDbCommand),
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Home => {
            println!("{}", ctx.home.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Stack(cmd) => stack::run(cmd, ctx),
        Command::OrchDb(cmd) => orch_db::run(cmd, ctx),
    }
}
