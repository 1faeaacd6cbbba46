//! `dive orch-db`: the orchestration state store.

use std::process::ExitCode;

use clap::Subcommand;
use dive_orchestrator::state::{StateStore, StoreSummary, format_millis};

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum OrchDbCommand {
    /// Summarise the state store: backend, location, schema, row counts, locks, open breakers.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The store location: `--state-url` / `DIVE_STATE_URL`, else `$DIVE_HOME/state.db`.
pub fn state_location(ctx: &Context) -> String {
    match &ctx.state_url {
        Some(url) if !url.trim().is_empty() => url.clone(),
        _ => ctx.home.join("state.db").display().to_string(),
    }
}

pub fn run(command: OrchDbCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        OrchDbCommand::Status { json } => status(ctx, json),
    }
}

fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let location = state_location(ctx);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        let store = StateStore::open(&location).await.map_err(|e| match e {
            dive_orchestrator::state::StateError::InvalidLocation { .. } => {
                crate::exit::bad_input(e.to_string())
            }
            other => anyhow::Error::new(other),
        })?;
        let summary = store.summary().await?;
        store.close().await;
        anyhow::Ok(summary)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(s: &StoreSummary) -> String {
    let mut out = format!(
        "backend:   {}\nlocation:  {}\nschema:    version {} (this build: {})\n\nrows:\n",
        s.backend, s.location, s.schema_version, s.latest_schema_version
    );
    for c in &s.counts {
        out.push_str(&format!("  {:<16} {}\n", c.table, c.rows));
    }
    if s.active_locks.is_empty() {
        out.push_str("\nactive locks: none\n");
    } else {
        out.push_str("\nactive locks:\n");
        for l in &s.active_locks {
            out.push_str(&format!(
                "  {}  deployment {}  pid {} on {}  since {}{}\n",
                l.stack,
                l.owner.deployment_id,
                l.owner.pid,
                l.owner.host,
                format_millis(l.owner.since),
                if l.stale { "  (stale: owner gone)" } else { "" }
            ));
        }
    }
    if s.open_breakers.is_empty() {
        out.push_str("open breakers: none\n");
    } else {
        out.push_str("open breakers:\n");
        for b in &s.open_breakers {
            out.push_str(&format!(
                "  {}/{}  {}  {} consecutive failures{}\n",
                b.stack,
                b.service,
                b.record.state,
                b.record.consecutive_failures,
                b.record
                    .last_error
                    .as_deref()
                    .map(|e| format!("  last error: {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}
