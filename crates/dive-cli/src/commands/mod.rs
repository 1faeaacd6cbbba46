//! The command tree. Each domain has its own module; this file only routes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::context::Context;

pub mod stack;
pub mod stack_runtime;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where DIVE keeps its state.
    Home,
    /// Compose-format stacks: plan, up, status, logs, down.
    Stack {
        #[command(subcommand)]
        command: stack::StackCommand,
    },
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Home => {
            println!("{}", ctx.home.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Stack { command } => stack::run(command, ctx),
    }
}
