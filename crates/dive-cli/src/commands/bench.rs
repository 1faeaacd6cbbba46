//! `dive bench orchestrate`: measures the orchestrator end to end by running the real `dive`
//! binary on generated stacks in a temporary DIVE_HOME, and compares against the critical path.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use dive_orchestrator::process::{cpu_ticks, rss_bytes};
use dive_orchestrator::state::percentiles;

use crate::context::Context;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Plan + start + healthy for synthetic stacks; no-op re-up; supervisor idle footprint.
    Orchestrate(OrchestrateArgs),
    /// Load-test the PDP Data API with decision requests over keep-alive connections.
    Pdp(super::bench_pdp::PdpBenchArgs),
    /// Rewraps per second through the KAS's HTTPS endpoint vs openssl's RSA-2048 private-op rate.
    Kas(super::bench_kas::KasBenchArgs),
    /// Deploy the hub from nothing to verified, re-deploy it healthy (no-op), measure memory.
    Instance(super::bench_instance::InstanceBenchArgs),
    /// The resource service: seeding, GET with decision at N connections, search latency.
    Api(super::bench_api::ApiBenchArgs),
    /// Federated search latency on a running, federated installation (a partner down or
    /// hanging costs at most its timeout).
    FederatedSearch(super::bench_federation::FederatedSearchBenchArgs),
    /// The web UI of a deployed instance: page server time at N concurrent signed-in users,
    /// the size of a 50-item list page, opening a 1 MiB document.
    Web(super::bench_web::WebBenchArgs),
    /// Every performance goal of the issues in one run: goal, figure, met or not, command.
    Goals(super::bench_goals::GoalsArgs),
}

#[derive(Debug, Args)]
pub struct OrchestrateArgs {
    /// Services in the wide synthetic stack.
    #[arg(long, default_value_t = 200)]
    pub services: usize,
    /// Repetitions of each measurement (medians and p95 are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Figure {
    name: String,
    runs: usize,
    median_ms: f64,
    p95_ms: f64,
    goal: String,
    note: String,
}

pub fn run(ctx: &Context, a: BenchArgs) -> anyhow::Result<ExitCode> {
    match a.what {
        BenchWhat::Orchestrate(o) => orchestrate(&o),
        BenchWhat::Pdp(p) => super::bench_pdp::pdp(p),
        BenchWhat::Kas(k) => super::bench_kas::kas(k),
        BenchWhat::Instance(i) => super::bench_instance::instance(&i),
        BenchWhat::Api(p) => super::bench_api::api(ctx, p),
        BenchWhat::FederatedSearch(f) => super::bench_federation::run(ctx, f),
        BenchWhat::Web(w) => super::bench_web::run(ctx, w),
        BenchWhat::Goals(g) => super::bench_goals::run(g),
    }
}

fn orchestrate(o: &OrchestrateArgs) -> anyhow::Result<ExitCode> {
    if o.runs == 0 || o.services == 0 {
        return Err(crate::exit::bad_input(
            "--runs and --services must be at least 1",
        ));
    }
    let exe = std::env::current_exe()?;
    let work = tempfile::Builder::new().prefix("dive-bench-").tempdir()?;
    let mut figures = Vec::new();

    // 0. The physical floor on this machine, measured in the same run: spawning the same number
    //    of processes directly (own process group, piped output), with no orchestration at all.
    let mut floor = Vec::new();
    for _ in 0..o.runs {
        floor.push(spawn_floor(o.services)?);
    }
    figures.push(figure(
        &format!(
            "floor: spawn {} processes directly, no orchestration",
            o.services
        ),
        &floor,
        "-",
        format!("{:.2} ms per process", median(&floor) / o.services as f64),
    ));

    // 1. Wide DAG, ready at once (no probe; service_started dependencies).
    let wide = work.path().join("wide.yml");
    std::fs::write(&wide, wide_stack(o.services, false))?;
    let (times, _) = repeat_up(&exe, work.path(), &wide, "wide", o.runs)?;
    figures.push(figure(
        &format!(
            "{} services, DAG of 10 levels, ready at once (plan+start+ready)",
            o.services
        ),
        &times,
        "< 1 s",
        format!(
            "{:.2} ms per service beyond the spawn floor (goal < 5 ms); {:.1}x the floor",
            (median(&times) - median(&floor)) / o.services as f64,
            median(&times) / median(&floor).max(0.001)
        ),
    ));

    // 2. The same DAG with a command health probe per service and service_healthy dependencies.
    let wide_h = work.path().join("wide-healthy.yml");
    std::fs::write(&wide_h, wide_stack(o.services, true))?;
    let (times, _) = repeat_up(&exe, work.path(), &wide_h, "wideh", o.runs)?;
    figures.push(figure(
        &format!(
            "{} services with CMD health probes, service_healthy deps",
            o.services
        ),
        &times,
        "-",
        format!(
            "{:.2} ms per service, each also running one probe process",
            median(&times) / o.services as f64
        ),
    ));

    // 3. A 4-deep chain whose services each take 300 ms to become ready.
    let chain = work.path().join("chain.yml");
    std::fs::write(&chain, chain_stack(4, 300))?;
    let (times, home) = repeat_up(&exe, work.path(), &chain, "chain", o.runs)?;
    let chain = work
        .path()
        .join(format!("chain-{}-files", o.runs - 1))
        .join("stack.yml");
    figures.push(figure(
        "4-deep chain, each service ready after 300 ms (critical path 1.2 s)",
        &times,
        "< 1.4 s",
        format!("{:.0} ms above the critical path", median(&times) - 1200.0),
    ));

    // 4. No-op re-up of the healthy chain (the last run left it up).
    let mut noop = Vec::new();
    for _ in 0..o.runs.max(5) {
        noop.push(time_up(&exe, &home, &chain, "chain")?);
    }
    figures.push(figure(
        "healthy no-op re-up (process start to exit)",
        &noop,
        "< 100 ms",
        String::new(),
    ));

    // 5. Supervisor idle footprint (the chain stack's supervisor, services idle).
    let (rss, cpu) = supervisor_idle(&home, "chain")?;
    down(&exe, &home, "chain")?;

    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "figures": figures,
                "supervisor_idle_rss_bytes": rss,
                "supervisor_idle_cpu_percent": cpu,
            }))?
        );
    } else {
        println!("{:<78} {:>10} {:>10}  goal", "measurement", "median", "p95");
        for f in &figures {
            println!(
                "{:<78} {:>10} {:>10}  {}  {}",
                f.name,
                format!("{:.1} ms", f.median_ms),
                format!("{:.1} ms", f.p95_ms),
                f.goal,
                f.note
            );
        }
        println!(
            "supervisor idle: RSS {:.1} MB (goal < 15 MB), CPU {:.2}% over 3 s (goal ≈ 0)",
            rss as f64 / 1e6,
            cpu
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn figure(name: &str, times: &[f64], goal: &str, note: String) -> Figure {
    Figure {
        name: name.to_string(),
        runs: times.len(),
        median_ms: median(times),
        p95_ms: percentiles(times).map_or(0.0, |p| p.p95),
        goal: goal.to_string(),
        note,
    }
}

fn median(times: &[f64]) -> f64 {
    let mut v = times.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Deploy `file` from scratch `runs` times (a fresh DIVE_HOME each time, torn down after all but
/// the last), returning wall times in ms and the last home.
fn repeat_up(
    exe: &Path,
    work: &Path,
    file: &Path,
    name: &str,
    runs: usize,
) -> anyhow::Result<(Vec<f64>, PathBuf)> {
    let mut times = Vec::new();
    let mut last = PathBuf::new();
    for i in 0..runs {
        let home = work.join(format!("{name}-{i}"));
        // Each run gets its own copy of the stack file, so services start in a clean directory
        // (no readiness marker left by an earlier run).
        let run_dir = work.join(format!("{name}-{i}-files"));
        std::fs::create_dir_all(&run_dir)?;
        let run_file = run_dir.join("stack.yml");
        std::fs::copy(file, &run_file)?;
        times.push(time_up(exe, &home, &run_file, name)?);
        if i + 1 < runs {
            down(exe, &home, name)?;
        }
        last = home;
    }
    Ok((times, last))
}

fn time_up(exe: &Path, home: &Path, file: &Path, name: &str) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let out = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(["-q", "stack", "up", "-p", name, "-f"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .context("cannot run dive")?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "dive stack up failed for {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ms)
}

fn down(exe: &Path, home: &Path, name: &str) -> anyhow::Result<()> {
    let st = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(["-q", "stack", "down", "-p", name])
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("dive stack down failed for {name}");
    }
    Ok(())
}

fn supervisor_idle(home: &Path, name: &str) -> anyhow::Result<(u64, f64)> {
    let id: serde_json::Value = serde_json::from_slice(&std::fs::read(
        home.join("stacks").join(name).join("supervisor.json"),
    )?)?;
    let pid = id["process"]["pid"]
        .as_u64()
        .context("supervisor.json has no pid")? as u32;
    std::thread::sleep(Duration::from_millis(500));
    let t0 = cpu_ticks(pid).context("supervisor not running")?;
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let t1 = cpu_ticks(pid).context("supervisor not running")?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = (t1 - t0) as f64 / hz / window.as_secs_f64() * 100.0;
    Ok((rss_bytes(pid).unwrap_or(0), cpu))
}

/// `n` services in 10 levels; each service of level k>0 depends on up to 3 of level k-1.
fn wide_stack(n: usize, probes: bool) -> String {
    let levels = 10.min(n);
    let per = n.div_ceil(levels);
    let cond = if probes {
        "service_healthy"
    } else {
        "service_started"
    };
    let mut y = String::from("services:\n");
    for i in 0..n {
        let level = i / per;
        y.push_str(&format!(
            "  s{i}:\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    labels:\n      dive.service.class: core\n"
        ));
        if probes {
            y.push_str("    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 30s\n");
        }
        if level > 0 {
            let prev_start = (level - 1) * per;
            let deps: std::collections::BTreeSet<usize> =
                (0..3).map(|k| prev_start + (i + k * 7) % per).collect();
            y.push_str("    depends_on:\n");
            for d in deps {
                y.push_str(&format!("      s{d}:\n        condition: {cond}\n"));
            }
        }
    }
    y
}

/// A chain `c0 <- c1 <- … ` of `depth` services, each healthy `ready_ms` after it starts.
fn chain_stack(depth: usize, ready_ms: u64) -> String {
    let mut y = String::from("services:\n");
    let secs = ready_ms as f64 / 1000.0;
    for i in 0..depth {
        y.push_str(&format!(
            "  c{i}:\n    command: [\"sh\", \"-c\", \"rm -f c{i}.ready; sleep {secs}; touch c{i}.ready; exec sleep 3600\"]\n    stop_grace_period: 1s\n    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"c{i}.ready\"]\n      interval: 30s\n    labels:\n      dive.service.class: core\n"
        ));
        if i > 0 {
            y.push_str(&format!(
                "    depends_on:\n      c{}:\n        condition: service_healthy\n",
                i - 1
            ));
        }
    }
    y
}

/// Spawn `n` `sleep` processes the way the supervisor does (own process group, output piped),
/// then kill them; returns the spawn time in ms.
fn spawn_floor(n: usize) -> anyhow::Result<f64> {
    use std::os::unix::process::CommandExt;
    let t0 = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(
            Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()?,
        );
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(ms)
}
