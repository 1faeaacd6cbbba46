//! `dive serve <component>`: run a service of an instance in the foreground until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// The instance's OpenID Provider (HTTPS).
    Idp(ServeIdpArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SigningAlg {
    Rs256,
    Es256,
}

#[derive(Debug, Args)]
pub struct ServeIdpArgs {
    /// The instance (ISO 3166-1 alpha-3 code, e.g. USA, FRA).
    #[arg(long)]
    pub instance: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub bind: SocketAddr,
    /// The issuer URL (default https://localhost:<port>).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Database: a postgres:// URL or a SQLite path (default $DIVE_HOME/instances/<code>/idp.db).
    #[arg(long, env = "DIVE_IDP_DATABASE")]
    pub database: Option<String>,
    /// Token signing algorithm.
    #[arg(long, value_enum, default_value = "rs256")]
    pub alg: SigningAlg,
}

pub fn run(command: ServeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ServeCommand::Idp(a) => serve_idp(ctx, a),
    }
}

pub fn instance(code: &str) -> anyhow::Result<dive_core::CountryCode> {
    dive_core::CountryCode::new(&code.to_ascii_uppercase())
        .map_err(|e| crate::exit::bad_input(format!("--instance {code}: {e}")))
}

fn serve_idp(ctx: &Context, a: ServeIdpArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = dive_idp::IdpConfig::new(instance(&a.instance)?, ctx.home.clone());
    cfg.bind = a.bind;
    cfg.issuer = a.issuer;
    cfg.database = a.database;
    cfg.alg = match a.alg {
        SigningAlg::Rs256 => dive_idp::server::Alg::RS256,
        SigningAlg::Es256 => dive_idp::server::Alg::ES256,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = dive_idp::start(cfg, true).await?;
        println!(
            "idp {} listening on {} (issuer {})",
            a.instance, running.addr, running.issuer
        );
        running.wait().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
