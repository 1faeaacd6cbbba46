//! `dive federation link|unlink|suspend|resume|revoke CODE` and `dive federation status`: the
//! hub's links with its spokes (see `docs/federation.md`).

use std::process::ExitCode;

use clap::Subcommand;
use dive_core::federation::LinkStatus;
use dive_federation::{FederationError, Outcome, Pair};

use super::instance::spoke_code;
use super::stack_runtime::runtime;
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Link a spoke with the hub both ways (idempotent; re-applies an active link's trust).
    Link(LinkArgs),
    /// Remove a link: trust withdrawn on both sides, the registry entry deleted (history kept).
    Unlink(LinkArgs),
    /// Suspend an active link at once: each side stops trusting the other's tokens.
    Suspend(LinkArgs),
    /// Resume a suspended link.
    Resume(LinkArgs),
    /// Revoke a link for good (linking again later starts a new link).
    Revoke(LinkArgs),
    /// Check a link both ways (discovery, upstream and client, trust, a real brokered login of a
    /// partner test user each way) and record the result; exit 1 if a check fails.
    Verify {
        /// The spoke's ISO 3166-1 alpha-3 code.
        code: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Verify even while the link's circuit breaker is open (a trial now; its success
        /// closes the breaker).
        #[arg(long)]
        force: bool,
    },
    /// Every link of the hub, what each side's files say now, and its history.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The spoke's ISO 3166-1 alpha-3 code, e.g. FRA.
    pub code: String,
    /// Why (recorded in the link's history).
    #[arg(long, default_value = "operator request")]
    pub reason: String,
}

pub fn run(cmd: FederationCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let (args, op) = match cmd {
        FederationCommand::Status { json } => return status(ctx, json),
        FederationCommand::Verify { code, json, force } => {
            return verify(ctx, &code, json, force);
        }
        FederationCommand::Link(a) => (a, None),
        FederationCommand::Unlink(a) => (a, Some(None)),
        FederationCommand::Suspend(a) => (a, Some(Some(LinkStatus::Suspended))),
        FederationCommand::Resume(a) => (a, Some(Some(LinkStatus::Active))),
        FederationCommand::Revoke(a) => (a, Some(Some(LinkStatus::Revoked))),
    };
    let code = spoke_code(&args.code)?;
    let pair = Pair::load(&ctx.home, code).map_err(classify)?;
    if ctx.dry_run {
        println!(
            "would {} the link between {} and {code} (files under {})",
            match op {
                None => "create or re-apply",
                Some(None) => "remove",
                Some(Some(LinkStatus::Suspended)) => "suspend",
                Some(Some(LinkStatus::Active)) => "resume",
                Some(Some(_)) => "revoke",
            },
            pair.hub.code,
            ctx.home.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = rt
        .block_on(async {
            match op {
                None => dive_federation::link(&pair, &args.reason).await,
                Some(None) => dive_federation::unlink(&pair, &args.reason).await,
                Some(Some(to)) => dive_federation::set_status(&pair, to, &args.reason).await,
            }
        })
        .map_err(classify)?;
    print_outcome(&pair, &outcome);
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(pair: &Pair, o: &Outcome) {
    match o.status {
        Some(s) => println!("{} ⇄ {}: {s}", pair.hub.code, o.partner),
        None => println!("{} ⇄ {}: unlinked", pair.hub.code, o.partner),
    }
    if o.changed.is_empty() {
        println!("  both sides already in line; nothing changed");
    }
    for f in &o.changed {
        println!("  updated {f}");
    }
}

fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let report = runtime()?
        .block_on(dive_federation::status(&ctx.home))
        .map_err(classify)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.is_empty() {
        println!("no federation links (link a spoke: dive federation link CODE)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8} {:<10} {:<13} {:<13} {:<25} {:<8} {:<10} last verification",
        "partner", "status", "hub trusts", "spoke trusts", "since", "changes", "breaker"
    );
    for r in &report {
        let since = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(r.link.updated_at_ms) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
        let verified = match &r.link.last_verification {
            None => "never".to_string(),
            Some(v) => {
                let checks = v["checks"].as_array().map_or(0, Vec::len);
                let passed = v["checks"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|c| c["ok"] == true).count());
                format!("{passed}/{checks} passed")
            }
        };
        println!(
            "{:<8} {:<10} {:<13} {:<13} {:<25} {:<8} {:<10} {verified}",
            r.link.partner.as_str(),
            r.link.status.as_str(),
            yes_no(r.hub_trusts_spoke),
            yes_no(r.spoke_trusts_hub),
            since,
            r.history.len(),
            r.link.breaker.state.as_str()
        );
        for (side, h) in [("hub", &r.hub_health), ("spoke", &r.spoke_health)] {
            println!(
                "         {side:<6} {} {}",
                if h.ok { "up  " } else { "DOWN" },
                h.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Context, code: &str, json: bool, force: bool) -> anyhow::Result<ExitCode> {
    let code = spoke_code(code)?;
    let pair = Pair::load(&ctx.home, code).map_err(classify)?;
    let report = runtime()?
        .block_on(dive_federation::verify::verify(&pair, force))
        .map_err(classify)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            let retries = if c.attempts > 1 {
                format!(" (after {} attempts)", c.attempts)
            } else {
                String::new()
            };
            println!(
                "{} {:<28} {}{retries}",
                if c.ok { "PASS" } else { "FAIL" },
                c.id,
                c.detail
            );
        }
        let passed = report.checks.iter().filter(|c| c.ok).count();
        println!(
            "{} ⇄ {}: {passed}/{} checks passed (link breaker {})",
            report.hub,
            report.spoke,
            report.checks.len(),
            report.breaker
        );
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn classify(e: FederationError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}
