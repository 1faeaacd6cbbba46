//! `dive`: one binary for every DIVE component. Thin: parses, then calls the libraries.

mod closed_pipe;
mod commands;
mod context;
mod exit;

use clap::Parser;

use crate::context::{Context, GlobalArgs};

#[derive(Debug, Parser)]
#[command(
    name = "dive",
    version,
    about = "DIVE coalition ICAM: deploy, federate and operate hub and spoke instances",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> std::process::ExitCode {
    closed_pipe::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let ctx = match Context::from_args(&cli.global) {
        Ok(ctx) => ctx,
        Err(e) => return exit::report(&e, cli.global.log_format),
    };
    context::init_logging(&ctx);
    match commands::run(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) => exit::report(&e, ctx.log_format),
    }
}
