//! Parse + plan of a synthetic 200-service stack (each service depends on up to three earlier
//! ones, deterministic), and the critical path over it: the orchestrator's fixed cost before the
//! first process starts.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dive_orchestrator::plan::{Plan, default_estimate};
use dive_orchestrator::spec::{Environment, parse_str};

/// `n` services; service `i` depends (service_healthy) on `i-1`, `i/2` and `i/3` when distinct.
fn stack(n: usize) -> String {
    let mut s = String::from("name: bench\nservices:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  s{i:03}:\n    command: sleep 60\n    environment: {{PORT: \"{}\"}}\n    labels: {{dive.service.class: core}}\n    healthcheck: {{test: [CMD, 'true'], interval: 1s}}\n",
            10000 + i
        );
        let mut deps: Vec<usize> = [i.wrapping_sub(1), i / 2, i / 3]
            .into_iter()
            .filter(|d| *d < i)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        if !deps.is_empty() {
            s.push_str("    depends_on:\n");
            for d in deps {
                let _ = writeln!(s, "      s{d:03}: {{condition: service_healthy}}");
            }
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = stack(200);
    let env = Environment::from_map([("HOME", "/root")]);
    let path = Path::new("/nonexistent-dive-bench/stack.yml");
    c.bench_function("parse_200_services", |b| {
        b.iter(|| parse_str(black_box(&text), path, None, &env).map(|s| s.services.len()))
    });
    let spec = parse_str(&text, path, None, &env).expect("the synthetic stack is valid");
    c.bench_function("plan_200_services", |b| {
        b.iter(|| Plan::build(black_box(&spec), &[]).map(|p| p.levels.len()))
    });
    let plan = Plan::build(&spec, &[]).expect("the synthetic stack is acyclic");
    c.bench_function("critical_path_200_services", |b| {
        b.iter(|| {
            plan.critical_path(|n| {
                plan.get(n)
                    .map_or(Duration::ZERO, |s| default_estimate(&s.spec))
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
