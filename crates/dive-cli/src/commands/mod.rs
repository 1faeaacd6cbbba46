//! The command tree. Each domain has its own module; this file only routes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::context::Context;

pub mod ztdf;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where DIVE keeps its state.
    Home,
    /// Zero Trust Data Format: encrypt, inspect and decrypt ZTDF (OpenTDF) files.
    #[command(subcommand)]
    Ztdf(ztdf::ZtdfCommand),
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Home => {
            println!("{}", ctx.home.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ztdf(cmd) => ztdf::run(cmd, ctx),
    }
}
