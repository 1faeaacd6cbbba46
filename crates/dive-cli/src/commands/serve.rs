//! `dive serve <component>`: run one DIVE service in the foreground until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use dive_policy::{Pdp, Sources};

use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// The OPA-compatible policy decision API (POST /v1/data/dive/authz, GET /health).
    Pdp(PdpArgs),
    /// The instance's OpenID Provider (HTTPS).
    Idp(ServeIdpArgs),
}

#[derive(Debug, Args)]
pub struct PdpArgs {
    /// Address to listen on. Plain HTTP, so loopback only until TLS from the installation CA lands.
    #[arg(long, default_value = "127.0.0.1:8181", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Directory of .rego policies (default: the embedded ones).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Directory of data documents (default: the embedded ones). Changes are picked up live.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// How often to check the policy and data files for changes, in seconds.
    #[arg(long, default_value_t = 2, value_name = "SECONDS")]
    pub reload_interval: u64,
}

pub fn run(command: ServeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ServeCommand::Pdp(args) => pdp(args),
        ServeCommand::Idp(a) => serve_idp(ctx, a),
    }
}

fn pdp(args: PdpArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        return Err(bad_input(format!(
            "--listen {}: the PDP serves plain HTTP, so only loopback addresses are allowed",
            args.listen
        )));
    }
    let pdp = Pdp::new(Sources {
        policy_dir: args.policies,
        data_dir: args.data,
    })
    .map_err(|e| bad_input(e.to_string()))?;
    let pdp = Arc::new(pdp);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        eprintln!(
            "PDP listening on http://{} (policy version {})",
            args.listen,
            pdp.version()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        dive_policy::server::serve(
            pdp,
            listener,
            Duration::from_secs(args.reload_interval.max(1)),
            shutdown,
        )
        .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
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

pub fn instance(code: &str) -> anyhow::Result<dive_core::CountryCode> {
    dive_core::CountryCode::new(&code.to_ascii_uppercase())
        .map_err(|e| crate::exit::bad_input(format!("--instance {code}: {e}")))
}

fn serve_idp(ctx: &Context, a: ServeIdpArgs) -> anyhow::Result<ExitCode> {
    limit_arena_growth();
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

/// argon2id allocates 19 MiB per password hash, on whichever blocking thread runs it. With
/// glibc's dynamic mmap threshold, freeing such a block raises the threshold, so later blocks come
/// from per-thread arenas and stay resident: the IdP grew by about 80 MB per round of seven
/// logins. A fixed threshold keeps large blocks mmapped, returned to the system when freed.
fn limit_arena_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
