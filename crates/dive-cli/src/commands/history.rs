//! `dive history`: past deployments with percentiles of total and per-service durations.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use dive_orchestrator::fmt::{millis, rfc3339_ms};
use dive_orchestrator::state::percentiles as nearest_rank;

use super::stack_runtime::runtime;
use crate::context::Context;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this stack.
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: Option<String>,
    /// How many recent deployments to list (percentiles use up to 1000).
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Percentiles {
    count: usize,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
    p99_ms: Option<i64>,
}

fn percentiles(values: &[i64]) -> Percentiles {
    let p = nearest_rank(&values.iter().map(|v| *v as f64).collect::<Vec<_>>());
    Percentiles {
        count: values.len(),
        p50_ms: p.map(|p| p.p50 as i64),
        p95_ms: p.map(|p| p.p95 as i64),
        p99_ms: p.map(|p| p.p99 as i64),
    }
}

pub fn run(ctx: &Context, a: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let (deployments, all, services) = rt.block_on(async {
        let store = super::open_store(ctx).await?;
        let stack = a.project.as_deref();
        let recent = store
            .list_deployments(stack, a.limit.min(u32::MAX as usize) as u32)
            .await?;
        let all = store.list_deployments(stack, 1000).await?;
        let services = store.service_durations(stack, 1000).await?;
        anyhow::Ok((recent, all, services))
    })?;
    let totals: Vec<i64> = all
        .iter()
        .filter(|d| d.state.is_success())
        .filter_map(|d| d.duration_ms)
        .collect();
    let mut per_service: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in &services {
        per_service
            .entry(s.service.clone())
            .or_default()
            .push(s.time_to_healthy_ms);
    }
    let total_p = percentiles(&totals);
    let service_p: BTreeMap<&String, Percentiles> = per_service
        .iter()
        .map(|(k, v)| (k, percentiles(v)))
        .collect();
    if a.json {
        let v = serde_json::json!({
            "deployments": deployments,
            "total": total_p,
            "services": service_p,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if deployments.is_empty() {
        println!("no deployments recorded");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<16} {:<6} {:<12} {:<25} {:>9}",
        "DEPLOYMENT", "STACK", "KIND", "STATE", "STARTED", "DURATION"
    );
    for d in &deployments {
        println!(
            "{:<28} {:<16} {:<6} {:<12} {:<25} {:>9}",
            d.id.to_string(),
            d.stack,
            d.kind,
            d.state.to_string(),
            rfc3339_ms(d.started_at),
            d.duration_ms.map(millis).unwrap_or_else(|| "-".into())
        );
    }
    let show = |p: &Percentiles| {
        format!(
            "p50 {}  p95 {}  p99 {}  (n={})",
            p.p50_ms.map(millis).unwrap_or_else(|| "-".into()),
            p.p95_ms.map(millis).unwrap_or_else(|| "-".into()),
            p.p99_ms.map(millis).unwrap_or_else(|| "-".into()),
            p.count
        )
    };
    println!("\nsuccessful deployments: {}", show(&total_p));
    if !service_p.is_empty() {
        println!("time to healthy per service:");
        for (s, p) in &service_p {
            println!("  {s:<24} {}", show(p));
        }
    }
    Ok(ExitCode::SUCCESS)
}
