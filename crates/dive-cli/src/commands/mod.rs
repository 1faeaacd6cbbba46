//! The command tree. Each domain has its own module; this file only routes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::context::Context;

pub mod orch_db;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where DIVE keeps its state.
    Home,
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
        Command::OrchDb(cmd) => orch_db::run(cmd, ctx),
    }
}
