//! PDP benchmarks: uncached decision latency (with p50/p99), a bare regorus three-rule policy in
//! the same run for the ratio, cache hits, and decisions/s on 2 threads with a realistic hit rate.
//!
//! `cargo bench -p dive-policy` (figures recorded in docs/PERFORMANCE.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dive_policy::{Input, Pdp, workload};

const BARE: &str = r#"package bare
import rego.v1
default allow := false
allow if {
    input.subject.clearance == "SECRET DÉFENSE"
    input.resource.classification == "SECRET"
}
reason := "ok" if allow
"#;

fn bare_policy() -> regorus::CompiledPolicy {
    let modules = vec![regorus::PolicyModule {
        id: "bare.rego".into(),
        content: BARE.into(),
    }];
    regorus::compile_policy_with_entrypoint(
        regorus::Value::new_object(),
        &modules,
        "data.bare.allow".into(),
    )
    .expect("bare policy compiles")
}

/// Per-call latencies of `f`, sorted.
fn sample(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
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

/// Decisions per second on 2 threads. The workload cycles through the realistic inputs; one in
/// `MISS_EVERY` requests carries a fresh auth_time (a new login), so it misses the cache.
fn throughput(c: &mut Criterion) {
    let _ = c;
    const MISS_EVERY: usize = 20;
    let pdp = Arc::new(Pdp::embedded().expect("pdp"));
    let inputs: Arc<Vec<Input>> = Arc::new(
        (0..workload::DISTINCT)
            .map(|i| Input::from_json(workload::input(i)))
            .collect(),
    );
    for i in inputs.iter() {
        pdp.decide(i);
    }
    let run = Duration::from_secs(3);
    let started = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let (pdp, inputs) = (pdp.clone(), inputs.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while started.elapsed() < run {
                    for _ in 0..64 {
                        let k = n * 2 + t;
                        if k.is_multiple_of(MISS_EVERY) {
                            let mut v = workload::input(k % workload::DISTINCT);
                            v["context"]["auth_time"] =
                                serde_json::json!(k as i64 + 2_000_000_000 + t as i64);
                            black_box(pdp.decide(&Input::from_json(v)));
                        } else {
                            black_box(pdp.decide(&inputs[k % inputs.len()]));
                        }
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "THROUGHPUT 2 threads, {:.0}% cache hits: {:.0} decisions/s ({total} in {secs:.2}s)",
        100.0 * (1.0 - 1.0 / MISS_EVERY as f64),
        total as f64 / secs
    );
}

criterion_group!(benches, percentiles, latency, throughput);
criterion_main!(benches);
