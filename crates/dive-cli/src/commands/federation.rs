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
    /// partner test user each way; for a spoke of another installation, the spoke runs its half
    /// when asked) and record the result; exit 1 if a check fails.
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
    /// Invite a spoke of another installation: a one-time join token (stored hashed, bound to
    /// the code, expiring) and the command to run on the spoke's machine.
    Invite {
        /// The spoke's ISO 3166-1 alpha-3 code, e.g. FRA.
        code: String,
        /// How long the token is valid (e.g. 30m, 1h, 24h).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Join a hub of another installation with an invitation (for an already deployed spoke;
    /// `dive spoke deploy CODE --hub …` does this as its last step).
    Join(JoinArgs),
    /// Every link of the hub, what each side's files say now, and its history.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Where the hub is and how to trust it: printed by the hub's `dive federation invite`.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// The hub's IdP URL (its issuer), e.g. https://hub.example:8443.
    #[arg(long, value_name = "URL")]
    pub hub: String,
    /// The SHA-256 fingerprint of the hub's installation CA certificate (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub hub_ca_sha256: String,
    /// The one-time join token.
    #[arg(long, value_name = "TOKEN")]
    pub join_token: String,
}

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The spoke of this installation that joins (default: the only one).
    #[arg(long, value_name = "CODE")]
    pub instance: Option<String>,
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
        FederationCommand::Invite { code, ttl } => return invite(ctx, &code, &ttl),
        FederationCommand::Join(a) => return join_cmd(ctx, &a),
        FederationCommand::Link(a) => (a, None),
        FederationCommand::Unlink(a) => (a, Some(None)),
        FederationCommand::Suspend(a) => (a, Some(Some(LinkStatus::Suspended))),
        FederationCommand::Resume(a) => (a, Some(Some(LinkStatus::Active))),
        FederationCommand::Revoke(a) => (a, Some(Some(LinkStatus::Revoked))),
    };
    let code = spoke_code(&args.code)?;
    if let Some((hub, spoke)) = rt
        .block_on(dive_federation::remote::find(&ctx.home, code))
        .map_err(classify)?
    {
        return remote_op(ctx, &rt, &hub, &spoke, op, &args.reason);
    }
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
    print_changes(pair.hub.code, o);
}

fn print_changes(hub: dive_core::CountryCode, o: &Outcome) {
    match o.status {
        Some(s) => println!("{hub} ⇄ {}: {s}", o.partner),
        None => println!("{hub} ⇄ {}: unlinked", o.partner),
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
        // No hub here: this installation's spokes may have joined a hub elsewhere.
        let joined = remote_hubs(ctx)?;
        if joined.is_empty() {
            println!("no federation links (link a spoke: dive federation link CODE)");
        }
        for (code, l) in joined {
            println!(
                "{code} is linked with the remote hub {} ({}): {} since {} (the hub's registry \
                 holds the link; `dive federation status` there shows it)",
                l.hub.code,
                l.hub.issuer,
                l.status,
                dive_federation::invites::rfc3339(l.updated_at_ms)
            );
        }
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
            r.spoke_trusts_hub.map_or("remote", yes_no),
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
    let rt = runtime()?;
    let report = match rt
        .block_on(dive_federation::remote::find(&ctx.home, code))
        .map_err(classify)?
    {
        // A spoke of another installation runs its half when the hub asks.
        Some((hub, spoke)) => rt.block_on(dive_federation::verify::verify_remote(
            &ctx.home, &hub, &spoke, force,
        )),
        None => {
            let pair = Pair::load(&ctx.home, code).map_err(classify)?;
            rt.block_on(dive_federation::verify::verify(&pair, force))
        }
    }
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

/// A change of a link with a spoke of another installation: the hub's side now, then the push
/// to the spoke (exit 1 when it fails: the hub's side still took effect).
fn remote_op(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    hub: &dive_instance::InstanceConfig,
    spoke: &dive_federation::Descriptor,
    op: Option<Option<LinkStatus>>,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let code = spoke.code;
    if ctx.dry_run {
        println!(
            "would change the link between {} and the remote spoke {code} ({}) and tell it",
            hub.code, spoke.issuer
        );
        return Ok(ExitCode::SUCCESS);
    }
    let done = rt
        .block_on(async {
            match op {
                None => Err(dive_federation::FederationError::Invalid(format!(
                    "{code} is a spoke of another installation: it links by joining \
                     (`dive federation invite {code}` here, then `dive federation join …` there)"
                ))),
                Some(None) => dive_federation::remote::unlink(&ctx.home, hub, spoke, reason).await,
                Some(Some(to)) => {
                    dive_federation::remote::set_status(&ctx.home, hub, spoke, to, reason).await
                }
            }
        })
        .map_err(classify)?;
    print_changes(hub.code, &done.outcome);
    match done.pushed {
        Ok(()) => {
            println!("  {code} (remote, {}) applied the change", spoke.issuer);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "error: the hub's side took effect, but telling {code} failed: {e}\n  \
                 retry: the same command again once {code} is reachable"
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn invite(ctx: &Context, code: &str, ttl: &str) -> anyhow::Result<ExitCode> {
    let code = spoke_code(code)?;
    let ttl = dive_orchestrator::spec::parse_duration(ttl)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            bad_input(format!(
                "--ttl {ttl:?}: expected a duration such as 30m or 1h"
            ))
        })?;
    let hub = dive_instance::config::all(&ctx.home)?
        .into_iter()
        .find(|c| c.role == dive_instance::Role::Hub)
        .ok_or_else(|| {
            bad_input(format!(
                "no hub in {}: deploy one first (`dive hub deploy`)",
                ctx.home.display()
            ))
        })?;
    let ca_path = dive_pki::partners::installation_ca_path(&ctx.home);
    let ca = std::fs::read_to_string(&ca_path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca_path.display()))?;
    let fingerprint = dive_pki::partners::pem_fingerprint(&ca, &ca_path.display().to_string())?;
    if ctx.dry_run {
        println!("would invite {code} to join {} for {ttl:?}", hub.code);
        return Ok(ExitCode::SUCCESS);
    }
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let inv = runtime()?
        .block_on(dive_federation::remote::invite(
            &ctx.home, &hub, code, ttl_ms,
        ))
        .map_err(classify)?;
    let hub_args = format!(
        "--hub {} --hub-ca-sha256 {fingerprint} --join-token {}",
        hub.urls.issuer, inv.token
    );
    println!(
        "invitation for {code} to join {} (one use, valid until {})",
        hub.code,
        dive_federation::invites::rfc3339(inv.expires_at_ms)
    );
    println!("on {code}'s machine, run:");
    println!("  dive spoke deploy {code} {hub_args}");
    println!("or, for a spoke already deployed there:");
    println!("  dive federation join --instance {code} {hub_args}");
    Ok(ExitCode::SUCCESS)
}

fn join_cmd(ctx: &Context, a: &JoinArgs) -> anyhow::Result<ExitCode> {
    let spokes: Vec<_> = dive_instance::config::all(&ctx.home)?
        .into_iter()
        .filter(|c| c.role == dive_instance::Role::Spoke)
        .collect();
    let spoke = match &a.instance {
        Some(c) => {
            let code = spoke_code(c)?;
            spokes.into_iter().find(|s| s.code == code).ok_or_else(|| {
                bad_input(format!(
                    "no spoke {code} in {}: deploy it (`dive spoke deploy {code} --hub …`)",
                    ctx.home.display()
                ))
            })?
        }
        None => match <[_; 1]>::try_from(spokes) {
            Ok([s]) => s,
            Err(v) if v.is_empty() => {
                return Err(bad_input(format!(
                    "no spoke in {}: deploy one and join in one go (`dive spoke deploy CODE --hub …`)",
                    ctx.home.display()
                )));
            }
            Err(v) => {
                return Err(bad_input(format!(
                    "{} spokes in {}: name the one that joins with --instance CODE",
                    v.len(),
                    ctx.home.display()
                )));
            }
        },
    };
    if ctx.dry_run {
        println!("would join {} with the hub at {}", spoke.code, a.hub.hub);
        return Ok(ExitCode::SUCCESS);
    }
    let joined = join_hub(ctx, &spoke, &a.hub).map_err(classify)?;
    println!(
        "{} ⇄ {}: active (joined {})",
        joined.hub.code, spoke.code, joined.hub.issuer
    );
    for c in &joined.changed {
        println!("  updated {c}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Join the hub described by `a` as `spoke` (shared with `dive spoke deploy --hub`).
pub fn join_hub(
    ctx: &Context,
    spoke: &dive_instance::InstanceConfig,
    a: &HubArgs,
) -> Result<dive_federation::spoke::Joined, FederationError> {
    runtime()
        .map_err(|e| FederationError::Invalid(e.to_string()))?
        .block_on(dive_federation::spoke::join(
            &ctx.home,
            spoke,
            &a.hub,
            &a.hub_ca_sha256,
            &a.join_token,
        ))
}

/// The spokes of this installation that joined a hub of another one, with what they keep of it.
fn remote_hubs(
    ctx: &Context,
) -> anyhow::Result<Vec<(dive_core::CountryCode, dive_federation::spoke::HubLink)>> {
    let mut out = Vec::new();
    for cfg in dive_instance::config::all(&ctx.home)? {
        if let Some(l) = dive_federation::spoke::read_hub_link(&ctx.home, cfg.code)? {
            out.push((cfg.code, l));
        }
    }
    Ok(out)
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
