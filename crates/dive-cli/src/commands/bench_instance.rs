//! `dive bench instance`: deploys the hub from nothing into fresh temporary DIVE_HOMEs with the
//! real `dive` binary, re-deploys it while healthy (the no-op), and reports medians and p95,
//! per-phase times and the instance's resident memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use dive_orchestrator::process::{pss_bytes, rss_bytes};
use dive_orchestrator::state::percentiles;

#[derive(Debug, Args)]
pub struct InstanceBenchArgs {
    /// Cold deployments to measure (each in a fresh DIVE_HOME).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// No-op re-deployments to measure per cold deployment.
    #[arg(long, default_value_t = 5)]
    pub noops: usize,
    /// Deploy the whole embedded hub stack (idp, kas, api, seed). Without it, the IdP alone
    /// (the embedded stack cut before `kas`), until the other services exist.
    #[arg(long)]
    pub full: bool,
    /// Documents the seed job creates (with --full).
    #[arg(long, default_value_t = 5000)]
    pub seed_count: u32,
    #[arg(long)]
    pub json: bool,
}

/// Five ports free now (for a benchmark's own hub beside whatever else runs here).
pub(super) fn free_ports() -> anyhow::Result<Vec<u16>> {
    let ls: Vec<std::net::TcpListener> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    ls.iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<anyhow::Result<Vec<u16>>>()
}

/// Run `dive --home HOME ARGS…`: its wall time in ms and standard output, or an error with all
/// it printed.
pub(super) fn dive<S: AsRef<str>>(
    exe: &Path,
    home: &Path,
    args: &[S],
) -> anyhow::Result<(f64, String)> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let t0 = Instant::now();
    let out = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run dive")?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("dive {} failed:\n{text}", args.join(" "));
    }
    Ok((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn stats(v: &[f64]) -> (f64, f64) {
    let p = percentiles(v);
    (p.map_or(0.0, |p| p.p50), p.map_or(0.0, |p| p.p95))
}

pub fn instance(a: &InstanceBenchArgs) -> anyhow::Result<ExitCode> {
    if a.runs == 0 {
        return Err(crate::exit::bad_input("--runs must be at least 1"));
    }
    let exe = std::env::current_exe()?;
    let work = tempfile::Builder::new().prefix("dive-bench-").tempdir()?;
    let stack = work.path().join("hub.yml");
    let text = dive_instance::stacks::HUB_YML;
    let text = if a.full {
        text.to_string()
    } else {
        let cut = text
            .find("\n  kas:\n")
            .context("the embedded hub stack has no kas service")?;
        text[..cut].to_string() + "\n"
    };
    std::fs::write(&stack, text)?;
    let mut cold = Vec::new();
    let mut noop = Vec::new();
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    let mut checks = String::new();
    for i in 0..a.runs {
        let home = work.path().join(format!("h{i}"));
        let mut args: Vec<String> = vec![
            "hub".into(),
            "deploy".into(),
            "--stack-file".into(),
            stack.display().to_string(),
            "--json".into(),
        ];
        for (flag, p) in [
            "--idp-port",
            "--api-port",
            "--kas-port",
            "--web-port",
            "--pdp-port",
        ]
        .iter()
        .zip(free_ports()?)
        {
            args.push(flag.to_string());
            args.push(p.to_string());
        }
        if a.full {
            args.push("--seed-count".into());
            args.push(a.seed_count.to_string());
        }
        let (ms, out) = dive(&exe, &home, &args)?;
        cold.push(ms);
        let result: serde_json::Value = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v.get("phases").is_some())
            .context("no deployment result in the output")?;
        if result["state"] != "COMPLETE" {
            bail!("the deployment ended {}: {result}", result["state"]);
        }
        for p in result["phases"].as_array().into_iter().flatten() {
            if p["status"] == "DONE" {
                phases
                    .entry(p["phase"].as_str().unwrap_or("?").to_string())
                    .or_default()
                    .push(p["duration_ms"].as_f64().unwrap_or(0.0));
            }
        }
        checks = result["verify"]["passed"].to_string() + " checks passed";
        for _ in 0..a.noops {
            let (ms, out) = dive(&exe, &home, &args)?;
            if !out.contains("UNCHANGED") {
                bail!("the re-deployment was not a no-op: {out}");
            }
            noop.push(ms);
        }
        // Resident memory of the instance: supervisor and services.
        let status: serde_json::Value = serde_json::from_str(
            &dive(
                &exe,
                &home,
                &["stack", "status", "-p", "usa", "--json"].map(String::from),
            )?
            .1,
        )?;
        let pids: Vec<u32> = status["supervisor"]["pid"]
            .as_u64()
            .into_iter()
            .chain(
                status["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["pid"].as_u64()),
            )
            .map(|p| p as u32)
            .collect();
        let sum = |f: fn(u32) -> Option<u64>| {
            pids.iter().map(|p| f(*p).unwrap_or(0)).sum::<u64>() as f64 / 1e6
        };
        rss.push(sum(rss_bytes));
        pss.push(sum(pss_bytes));
        dive(
            &exe,
            &home,
            &["-q", "nuke", "hub", "--confirm"].map(String::from),
        )?;
    }
    let what = if a.full {
        format!("hub (idp, kas, api, web, seed {})", a.seed_count)
    } else {
        "hub, IdP only".to_string()
    };
    let (c50, c95) = stats(&cold);
    let (n50, n95) = stats(&noop);
    let (r50, _) = stats(&rss);
    let (p50, _) = stats(&pss);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "stack": what,
                "cold_deploy_ms": {"median": c50, "p95": c95, "runs": cold.len()},
                "noop_redeploy_ms": {"median": n50, "p95": n95, "runs": noop.len()},
                "phases_median_ms": phases.iter().map(|(k, v)| (k.clone(), stats(v).0)).collect::<BTreeMap<_, _>>(),
                "rss_mb_median": r50,
                "pss_mb_median": p50,
                "verify": checks,
            }))?
        );
    } else {
        println!("{:<58} {:>10} {:>10}  goal", "measurement", "median", "p95");
        println!(
            "{:<58} {:>10} {:>10}  ≤ 5 s with 5,000 documents",
            format!(
                "{what}: deploy from nothing to verified ({} runs)",
                cold.len()
            ),
            format!("{c50:.0} ms"),
            format!("{c95:.0} ms")
        );
        for p in ["PREFLIGHT", "INIT", "START", "CONFIGURE", "SEED", "VERIFY"] {
            if let Some(v) = phases.get(p) {
                let (m, p95) = stats(v);
                println!(
                    "{:<58} {:>10} {:>10}",
                    format!("  phase {p}"),
                    format!("{m:.0} ms"),
                    format!("{p95:.0} ms")
                );
            }
        }
        println!(
            "{:<58} {:>10} {:>10}  ≤ 0.5 s",
            format!("healthy no-op re-deploy ({} runs)", noop.len()),
            format!("{n50:.0} ms"),
            format!("{n95:.0} ms")
        );
        // The processes run one binary: PSS counts its shared code once, a sum of RSS per process.
        println!(
            "{:<58} {:>10} {:>10}  ≤ 150 MB (whole hub)",
            "resident memory (PSS): supervisor + services",
            format!("{p50:.1} MB"),
            ""
        );
        println!(
            "{:<58} {:>10} {:>10}",
            "  sum of RSS (shared code counted per process)",
            format!("{r50:.1} MB"),
            ""
        );
        println!("verification: {checks}");
    }
    Ok(ExitCode::SUCCESS)
}
