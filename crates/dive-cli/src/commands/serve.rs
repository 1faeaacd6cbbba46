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
    /// The instance's Key Access Service (HTTPS): OpenTDF public-key and rewrap, REST and Connect.
    Kas(ServeKasArgs),
    /// The instance's resource service and policy enforcement point (HTTPS).
    Api(ServeApiArgs),
    /// The instance's browser UI (HTTPS): sign-in through the IdP, documents, decisions, opening.
    Web(ServeWebArgs),
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
        ServeCommand::Kas(a) => serve_kas(ctx, a),
        ServeCommand::Api(a) => serve_api(ctx, a),
        ServeCommand::Web(a) => serve_web(ctx, a),
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
        let engine = match pdp.interpreter_reason(dive_policy::Entrypoint::Authz) {
            None => "access decisions on the regorus VM".to_string(),
            Some(why) => format!("access decisions on the regorus interpreter: {why}"),
        };
        eprintln!(
            "PDP listening on http://{} (policy version {}, {engine})",
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
    /// Token signing algorithm. RS256 is what OpenID Connect requires an OP to support and
    /// relying parties expect by default; ES256 signs about seven times faster here (issuance
    /// throughput), at the cost of slower verification (see docs/identity.md).
    #[arg(long, value_enum, default_value = "rs256", env = "DIVE_IDP_ALG")]
    pub alg: SigningAlg,
}

pub fn instance(code: &str) -> anyhow::Result<dive_core::CountryCode> {
    dive_core::CountryCode::new(&code.to_ascii_uppercase())
        .map_err(|e| crate::exit::bad_input(format!("--instance {code}: {e}")))
}

fn serve_idp(ctx: &Context, a: ServeIdpArgs) -> anyhow::Result<ExitCode> {
    limit_arena_growth();
    let code = instance(&a.instance)?;
    let mut cfg = dive_idp::IdpConfig::new(code, ctx.home.clone());
    cfg.extra_routes = Some(dive_federation::endpoints::router(ctx.home.clone(), code));
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

#[derive(Debug, Args)]
pub struct ServeKasArgs {
    /// The instance (ISO 3166-1 alpha-3 code, e.g. USA, FRA).
    #[arg(long)]
    pub instance: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub bind: SocketAddr,
    /// PDP data directory (default $DIVE_HOME/instances/<code>/policy/ if it exists, else the
    /// embedded data). Its trusted_issuers.json is the set of issuers whose tokens are accepted.
    #[arg(long, value_name = "DIR")]
    pub policy_data: Option<PathBuf>,
    /// Audit database: a postgres:// URL or a SQLite path (default $DIVE_HOME/instances/<code>/kas.db).
    #[arg(long, env = "DIVE_KAS_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Audit rows older than this many days are deleted (0 keeps everything).
    #[arg(long, default_value_t = dive_kas::server::DEFAULT_AUDIT_RETENTION_DAYS, value_name = "DAYS")]
    pub audit_retention_days: u32,
}

fn serve_kas(ctx: &Context, a: ServeKasArgs) -> anyhow::Result<ExitCode> {
    limit_arena_growth();
    let mut cfg = dive_kas::KasConfig::new(instance(&a.instance)?, ctx.home.clone());
    cfg.bind = a.bind;
    if let Some(dir) = &a.policy_data
        && !dir.is_dir()
    {
        return Err(bad_input(format!(
            "--policy-data {}: not a directory",
            dir.display()
        )));
    }
    cfg.policy_data = a.policy_data;
    cfg.database = a.database;
    cfg.audit_retention_days = a.audit_retention_days;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = dive_kas::start(cfg, true).await?;
        println!(
            "kas {} listening on {} (KAS URL {})",
            a.instance, running.addr, running.url
        );
        running.wait().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ServeApiArgs {
    /// The instance (ISO 3166-1 alpha-3 code, e.g. USA, FRA).
    #[arg(long)]
    pub instance: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub bind: SocketAddr,
    /// This instance's KAS base URL (uploads are encrypted to its public key, fetched from
    /// <URL>/v2/kas_public_key, or <URL>/kas/v2/… when the URL does not end in /kas).
    #[arg(long, value_name = "URL", env = "DIVE_KAS_URL")]
    pub kas_url: String,
    /// Policy data directory (default $DIVE_HOME/instances/<code>/policy if it exists, else the
    /// embedded data). Changes are picked up live.
    #[arg(long, value_name = "DIR")]
    pub policy_data: Option<PathBuf>,
    /// Database: a postgres:// URL or a SQLite path (default $DIVE_HOME/instances/<code>/api.db).
    #[arg(long, env = "DIVE_API_DATABASE")]
    pub database: Option<String>,
    /// Largest accepted upload, in bytes.
    #[arg(long, default_value_t = dive_api::upload::DEFAULT_MAX_BYTES, value_name = "BYTES")]
    pub max_upload_bytes: usize,
    /// Audit entries older than this many days are deleted (0 keeps everything).
    #[arg(long, default_value_t = 90, value_name = "DAYS")]
    pub audit_retention_days: u32,
    /// How long federated search leaves a failing partner alone (its circuit breaker open)
    /// before one trial request.
    #[arg(
        long,
        default_value_t = 30_000,
        value_name = "MS",
        env = "DIVE_PARTNER_BREAKER_COOLDOWN_MS"
    )]
    pub partner_breaker_cooldown_ms: u64,
}

fn serve_api(ctx: &Context, a: ServeApiArgs) -> anyhow::Result<ExitCode> {
    limit_arena_growth();
    let url = a.kas_url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad_input(format!(
            "--kas-url {url:?}: expected an absolute https:// URL"
        )));
    }
    if let Some(dir) = &a.policy_data
        && !dir.is_dir()
    {
        return Err(bad_input(format!(
            "--policy-data {}: not a directory",
            dir.display()
        )));
    }
    if a.max_upload_bytes == 0 {
        return Err(bad_input("--max-upload-bytes must be at least 1"));
    }
    let mut cfg = dive_api::ApiConfig::new(instance(&a.instance)?, ctx.home.clone(), url);
    cfg.bind = a.bind;
    cfg.policy_data = a.policy_data;
    cfg.database = a.database;
    cfg.max_upload_bytes = a.max_upload_bytes;
    cfg.audit_retention_days = a.audit_retention_days;
    cfg.breaker_cooldown = std::time::Duration::from_millis(a.partner_breaker_cooldown_ms);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = dive_api::start(cfg, true).await?;
        println!(
            "api {} listening on {} (store {})",
            a.instance,
            running.addr,
            running.store.location()
        );
        running.wait().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ServeWebArgs {
    /// The instance (ISO 3166-1 alpha-3 code, e.g. USA, FRA). Its URLs and the UI's client
    /// secret are read from $DIVE_HOME/instances/<code>/ (written when the instance is deployed).
    #[arg(long)]
    pub instance: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8446")]
    pub bind: SocketAddr,
}

fn serve_web(ctx: &Context, a: ServeWebArgs) -> anyhow::Result<ExitCode> {
    limit_arena_growth();
    let mut cfg = dive_web::WebConfig::new(instance(&a.instance)?, ctx.home.clone());
    cfg.bind = a.bind;
    cfg.state_location = Some(super::orch_db::state_location(ctx));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = dive_web::start(cfg, true).await.map_err(|e| match e {
            dive_web::WebError::Config(m) => bad_input(m),
            other => anyhow::Error::new(other),
        })?;
        println!(
            "web {} listening on {} (open {})",
            a.instance, running.addr, running.url
        );
        running.wait().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Allocator tuning for the long-running services, before any thread exists.
///
/// argon2id allocates 19 MiB per password hash, on whichever blocking thread runs it. With
/// glibc's dynamic mmap threshold, freeing such a block raises the threshold, so later blocks come
/// from per-thread arenas and stay resident: the IdP grew by about 80 MB per round of seven
/// logins. A fixed threshold keeps large blocks mmapped, returned to the system when freed.
///
/// glibc also gives every thread that allocates its own arena (up to 8 per core); Tokio's
/// workers, the blocking pool and SQLite's threads each kept freed memory resident in theirs.
/// Two arenas suffice on this machine class: the resource service's resident memory after a
/// deployment fell from 79 MB to 61 MB, and the hub's below its 150 MB budget.
pub(crate) fn limit_arena_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
