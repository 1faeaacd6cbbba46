//! The command tree. Each domain has its own module; this file only routes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::context::Context;

pub mod bench;
pub mod bench_api;
pub mod bench_federation;
pub mod bench_goals;
pub mod bench_instance;
pub mod bench_kas;
pub mod bench_load;
pub mod bench_pdp;
pub mod bench_web;
pub mod bench_wrk;
pub mod federation;
pub mod history;
pub mod idp;
pub mod instance;
pub mod kas;
pub mod metrics;
pub mod nuke;
pub mod orch_db;
pub mod policy;
pub mod progress;
pub mod seed;
pub mod serve;
pub mod stack;
pub mod stack_runtime;
pub mod stack_up;
pub mod ztdf;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where DIVE keeps its state.
    Home,
    /// The hub instance (USA): deploy, up, down, status, verify, logs, seed, rotate-secrets.
    #[command(subcommand)]
    Hub(instance::HubCommand),
    /// Spoke instances (any other ISO 3166-1 alpha-3 code): deploy, up, down, status, verify, logs.
    #[command(subcommand)]
    Spoke(instance::SpokeCommand),
    /// Federation between the hub and its spokes: link, unlink, suspend, resume, revoke, status.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Compose-format stacks of local processes: plan, up, status, logs, ps, down.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Past deployments with p50/p95/p99 of total and per-service durations.
    History(history::HistoryArgs),
    /// Prometheus text metrics of deployments, services, breakers and locks.
    Metrics,
    /// Stop and delete an instance (hub, spoke CODE), a stack, or everything, and verify
    /// nothing is left.
    Nuke(nuke::NukeArgs),
    /// The orchestration state store.
    #[command(subcommand)]
    OrchDb(orch_db::OrchDbCommand),
    /// Policy tools: run the Rego unit tests, evaluate an input document.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run a DIVE service in the foreground.
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// The identity provider's users and clients.
    #[command(subcommand)]
    Idp(idp::IdpCommand),
    /// The Key Access Service's keys and audit log.
    #[command(subcommand)]
    Kas(kas::KasCommand),
    /// Create an instance's test users and N realistic ZTDF documents (the stack's init job).
    Seed(seed::SeedArgs),
    /// ZTDF (OpenTDF BaseTDF 4.4) documents: encrypt, inspect, decrypt.
    #[command(subcommand)]
    Ztdf(ztdf::ZtdfCommand),
    /// Re-runnable benchmarks and load tests of DIVE's own components.
    Bench(bench::BenchArgs),
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Home => {
            println!("{}", ctx.home.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Hub(cmd) => instance::run_hub(cmd, ctx),
        Command::Spoke(cmd) => instance::run_spoke(cmd, ctx),
        Command::Federation(cmd) => federation::run(cmd, ctx),
        Command::Stack(cmd) => stack::run(cmd, ctx),
        Command::History(a) => history::run(ctx, &a),
        Command::Metrics => metrics::run(ctx),
        Command::Nuke(a) => nuke::run(ctx, &a),
        Command::OrchDb(cmd) => orch_db::run(cmd, ctx),
        Command::Policy(c) => policy::run(c, ctx),
        Command::Serve(c) => serve::run(c, ctx),
        Command::Idp(cmd) => idp::run(cmd, ctx),
        Command::Kas(cmd) => kas::run(cmd, ctx),
        Command::Seed(a) => seed::run(ctx, a),
        Command::Ztdf(cmd) => ztdf::run(cmd, ctx),
        Command::Bench(a) => bench::run(ctx, a),
    }
}

/// Open the orchestration state store (`--state-url`, else `$DIVE_HOME/state.db`).
pub async fn open_store(ctx: &Context) -> anyhow::Result<dive_orchestrator::state::StateStore> {
    let location = orch_db::state_location(ctx);
    Ok(dive_orchestrator::state::StateStore::open(&location).await?)
}
