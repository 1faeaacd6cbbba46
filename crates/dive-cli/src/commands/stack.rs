//! `dive stack …` (temporary routing until the plan command lands).

use std::process::ExitCode;

use clap::Subcommand;

use super::stack_runtime::{self, RuntimeCommand};
use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    #[command(flatten)]
    Runtime(RuntimeCommand),
}

pub fn run(cmd: StackCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        StackCommand::Runtime(c) => stack_runtime::run(c, ctx),
    }
}
