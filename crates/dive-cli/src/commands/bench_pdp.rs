//! `dive bench pdp`: load-test the PDP Data API and print throughput and latency.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dive_policy::loadtest::{self, LoadConfig};
use dive_policy::{Pdp, workload};

use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct PdpBenchArgs {
    /// Base URL of a running `dive serve pdp`; without it, a PDP is started in this process on a
    /// free loopback port.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Duration in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Number of distinct decision inputs cycled through (fewer: more cache hits).
    #[arg(long, default_value_t = workload::DISTINCT)]
    pub distinct: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn pdp(args: PdpBenchArgs) -> anyhow::Result<ExitCode> {
    if args.connections == 0 || args.duration == 0 || args.distinct == 0 {
        return Err(bad_input(
            "--connections, --duration and --distinct must be at least 1",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (base, server) = match args.url {
            Some(u) => (u.trim_end_matches('/').to_string(), None),
            None => {
                let pdp = Arc::new(Pdp::embedded()?);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(dive_policy::server::serve(
                    pdp,
                    listener,
                    Duration::from_secs(3600),
                    async move {
                        let _ = rx.await;
                    },
                ));
                (format!("http://{addr}"), Some((tx, task)))
            }
        };
        let config = LoadConfig {
            url: format!("{base}/v1/data/dive/authz/decision"),
            connections: args.connections,
            duration: Duration::from_secs(args.duration),
            inputs: (0..args.distinct).map(workload::input).collect(),
        };
        let report = loadtest::run(&config).await?;
        if let Some((tx, task)) = server {
            let _ = tx.send(());
            let _ = task.await;
        }
        let code = if report.errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
        if args.json {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "target": config.url,
                    "connections": config.connections,
                    "distinct_inputs": args.distinct,
                    "requests": report.requests,
                    "errors": report.errors,
                    "seconds": report.elapsed.as_secs_f64(),
                    "per_second": report.per_second(),
                    "p50_ms": ms(report.p50),
                    "p90_ms": ms(report.p90),
                    "p99_ms": ms(report.p99),
                    "max_ms": ms(report.max),
                }))?
            );
            return anyhow::Ok(code);
        }
        println!("target       {}", config.url);
        println!("connections  {}", config.connections);
        println!("inputs       {} distinct", args.distinct);
        println!(
            "requests     {} in {:.2}s ({} errors)",
            report.requests,
            report.elapsed.as_secs_f64(),
            report.errors
        );
        println!("throughput   {:.0} decisions/s", report.per_second());
        println!(
            "latency      p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
            report.p50, report.p90, report.p99, report.max
        );
        anyhow::Ok(code)
    })
}
