//! `dive kas`: the Key Access Service's keys (list, rotate) and its audit log. Logic lives in
//! `dive-kas`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use dive_kas::{KeyAlgorithm, KeyStore};

use crate::commands::serve::instance;
use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum KasCommand {
    /// Make a new current RSA-2048 and EC P-256 key; old keys stay usable for unwrapping. A
    /// running KAS serves the new keys within two seconds.
    RotateKeys(InstanceArgs),
    /// List the KAS keys (kid, algorithm, created, current).
    Keys(KeysArgs),
    /// Show the most recent audit entries of rewrap requests.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// The instance (ISO 3166-1 alpha-3 code).
    #[arg(long)]
    instance: String,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The instance (ISO 3166-1 alpha-3 code).
    #[arg(long)]
    instance: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The instance (ISO 3166-1 alpha-3 code).
    #[arg(long)]
    instance: String,
    /// Audit database: a postgres:// URL or a SQLite path (default $DIVE_HOME/instances/<code>/kas.db).
    #[arg(long, env = "DIVE_KAS_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// How many entries.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: KasCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        KasCommand::RotateKeys(a) => rotate(ctx, &a),
        KasCommand::Keys(a) => keys(ctx, &a),
        KasCommand::Audit(a) => audit(ctx, &a),
    }
}

fn store(ctx: &Context, code: &str) -> anyhow::Result<KeyStore> {
    Ok(KeyStore::for_instance(&ctx.home, instance(code)?))
}

fn rotate(ctx: &Context, a: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let store = store(ctx, &a.instance)?;
    if ctx.dry_run {
        println!(
            "would make a new current RSA-2048 and EC P-256 key in {}",
            store.dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (alg, kid) in store.rotate()? {
        println!("new current {alg} key: {kid}");
    }
    println!(
        "older keys stay in {} for files wrapped to them",
        store.dir().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn keys(ctx: &Context, a: &KeysArgs) -> anyhow::Result<ExitCode> {
    let store = store(ctx, &a.instance)?;
    let ring = store.load()?;
    let rows: Vec<serde_json::Value> = ring
        .all()
        .iter()
        .map(|k| {
            let current = ring.current(k.algorithm).is_some_and(|c| c.kid == k.kid);
            serde_json::json!({"kid": k.kid, "algorithm": k.algorithm.as_str(),
                               "created_at": k.created_at, "current": current})
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<16} {:<14} {:<12} current",
            "kid", "algorithm", "created"
        );
        for r in &rows {
            println!(
                "{:<16} {:<14} {:<12} {}",
                r["kid"].as_str().unwrap_or_default(),
                r["algorithm"].as_str().unwrap_or_default(),
                r["created_at"],
                if r["current"] == true { "yes" } else { "" }
            );
        }
    }
    // Both algorithms always have a current key in a valid store (load checks it).
    debug_assert!(KeyAlgorithm::ALL.iter().all(|a| ring.current(*a).is_some()));
    Ok(ExitCode::SUCCESS)
}

fn audit(ctx: &Context, a: &AuditArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = dive_kas::KasConfig::new(instance(&a.instance)?, ctx.home.clone());
    cfg.database = a.database.clone();
    let location = cfg.database_location();
    if a.database.is_none() && !std::path::Path::new(&location).exists() {
        return Err(crate::exit::bad_input(format!(
            "no KAS audit log at {location}: has the KAS of {} run yet?",
            a.instance
        )));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let rows = runtime.block_on(async {
        let log = dive_kas::audit::AuditLog::open(&location).await?;
        anyhow::Ok(log.recent(a.limit).await?)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in rows {
        println!(
            "{} {} {:<8} subject={} policy={} kao={} kid={} {}us  {}",
            r.at_ms,
            r.transport,
            r.decision,
            r.subject.as_deref().unwrap_or("-"),
            r.policy_uuid.as_deref().unwrap_or("-"),
            r.kao_id.as_deref().unwrap_or("-"),
            r.kid.as_deref().unwrap_or("-"),
            r.latency_us,
            r.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
