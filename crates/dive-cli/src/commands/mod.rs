//! The command tree. Each domain has its own module; this file only routes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::context::Context;

mod bench;
mod policy;
mod serve;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where DIVE keeps its state.
    Home,
    /// Policy tools: run the Rego unit tests, evaluate an input document.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run a DIVE service in the foreground.
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// Load-test a DIVE service.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Home => {
            println!("{}", ctx.home.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(c) => policy::run(c, ctx),
        Command::Serve(c) => serve::run(c, ctx),
        Command::Bench(c) => bench::run(c, ctx),
    }
}
