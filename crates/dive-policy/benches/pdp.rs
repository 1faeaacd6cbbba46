//! PDP benchmarks: uncached decision latency (with p50/p99), a bare regorus three-rule policy in
//! the same run for the ratio, cache hits, and decisions/s on 2 threads with a realistic hit rate.
//!
//! `cargo bench -p dive-policy` (figures recorded in docs/PERFORMANCE.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dive_policy::{Input, Pdp, timing, workload};

fn bare_policy() -> regorus::CompiledPolicy {
    timing::bare_policy().expect("bare policy compiles")
}

/// Per-call latencies of `f`, sorted.
fn sample(n: usize, f: impl FnMut()) -> Vec<Duration> {
    let mut v = timing::sample(n, f);
    v.sort_unstable();
    v
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn percentiles(c: &mut Criterion) {
    let _ = c;
    let pdp = Pdp::embedded().expect("pdp").without_cache();
    let input = Input::from_json(workload::typical());
    assert!(pdp.decide(&input).allow);
    let bare = bare_policy();
    let value = regorus::Value::from(workload::typical());
    // Interleave the two so that both see the same machine load.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        ours.extend(sample(200, || {
            black_box(pdp.decide(&input));
        }));
        theirs.extend(sample(200, || {
            black_box(bare.eval_with_input(value.clone()).ok());
        }));
    }
    ours.sort_unstable();
    theirs.sort_unstable();
    println!(
        "PERCENTILES uncached decision p50 {:?} p99 {:?} | bare regorus 3-rule p50 {:?} p99 {:?} | ratio p50 {:.1}x",
        pct(&ours, 0.5),
        pct(&ours, 0.99),
        pct(&theirs, 0.5),
        pct(&theirs, 0.99),
        pct(&ours, 0.5).as_secs_f64() / pct(&theirs, 0.5).as_secs_f64()
    );
}

fn latency(c: &mut Criterion) {
    let uncached = Pdp::embedded().expect("pdp").without_cache();
    let cached = Pdp::embedded().expect("pdp");
    let json = workload::typical();
    let input = Input::from_json(json.clone());
    cached.decide(&input);
    let bare = bare_policy();
    let value = regorus::Value::from(json.clone());
    let mut g = c.benchmark_group("pdp");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("uncached_decision", |b| {
        b.iter(|| black_box(uncached.decide(&input)))
    });
    g.bench_function("bare_regorus_three_rules", |b| {
        b.iter(|| black_box(bare.eval_with_input(value.clone()).ok()))
    });
    g.bench_function("cache_hit", |b| b.iter(|| black_box(cached.decide(&input))));
    g.bench_function("cache_hit_including_input_from_json", |b| {
        b.iter(|| black_box(cached.decide(&Input::from_json(json.clone()))))
    });
    g.finish();
}

/// Decisions per second on 2 threads with a realistic cache hit rate (`dive_policy::timing`).
fn throughput(c: &mut Criterion) {
    let _ = c;
    let rate = timing::throughput_two_threads(Duration::from_secs(3)).expect("pdp");
    println!(
        "THROUGHPUT 2 threads, {}% cache hits: {rate:.0} decisions/s",
        100 - 100 / timing::MISS_EVERY
    );
}

criterion_group!(benches, percentiles, latency, throughput);
criterion_main!(benches);
