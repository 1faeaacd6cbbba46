//! Timing the PDP in process, for `dive bench goals` and the benchmarks: uncached decisions
//! against a bare regorus evaluation of a three-rule policy interleaved in the same run (the
//! issue's reference point, so that the ratio travels between machines), cache hits, and
//! decisions per second on two threads with a realistic cache hit rate.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Input, Pdp, PolicyError, workload};

/// The reference: a bare regorus policy of three rules.
pub const BARE: &str = r#"package bare
import rego.v1
default allow := false
allow if {
    input.subject.clearance == "SECRET DÉFENSE"
    input.resource.classification == "SECRET"
}
reason := "ok" if allow
"#;

/// [`BARE`] compiled for its `allow` entrypoint.
pub fn bare_policy() -> Result<regorus::CompiledPolicy, PolicyError> {
    regorus::compile_policy_with_entrypoint(
        regorus::Value::new_object(),
        &[regorus::PolicyModule {
            id: "bare.rego".into(),
            content: BARE.into(),
        }],
        "data.bare.allow".into(),
    )
    .map_err(|e| PolicyError::Compile {
        entrypoint: "data.bare.allow".into(),
        why: e.to_string(),
    })
}

/// Per-call latencies of `n` calls of `f`.
pub fn sample(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// The `q` quantile (0–1) of `v`, sorting it; zero for an empty series.
pub fn quantile(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// Uncached decisions and the bare reference, measured interleaved.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct UncachedTiming {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub bare_p50: Duration,
    pub bare_p99: Duration,
}

impl UncachedTiming {
    /// Our p50 over the bare policy's p50.
    pub fn ratio(&self) -> f64 {
        self.p50.as_secs_f64() / self.bare_p50.as_secs_f64().max(1e-12)
    }
}

/// `rounds` × 200 uncached decisions of [`workload::typical`] with the embedded policies,
/// interleaved with as many bare evaluations so that both see the same machine load.
pub fn uncached(rounds: usize) -> Result<UncachedTiming, PolicyError> {
    let pdp = Pdp::embedded()?.without_cache();
    let input = Input::from_json(workload::typical());
    let bare = bare_policy()?;
    let bare_input = regorus::Value::from(workload::typical());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        ours.extend(sample(200, || drop(black_box(pdp.decide(&input)))));
        theirs.extend(sample(200, || {
            black_box(bare.eval_with_input(bare_input.clone()).ok());
        }));
    }
    Ok(UncachedTiming {
        samples: ours.len(),
        p50: quantile(&mut ours, 0.5),
        p99: quantile(&mut ours, 0.99),
        bare_p50: quantile(&mut theirs, 0.5),
        bare_p99: quantile(&mut theirs, 0.99),
    })
}

/// p50 of a cache hit (the input already built), over `n` decisions.
pub fn cache_hit(n: usize) -> Result<Duration, PolicyError> {
    let pdp = Pdp::embedded()?;
    let input = Input::from_json(workload::typical());
    pdp.decide(&input);
    let mut v = sample(n.max(1), || drop(black_box(pdp.decide(&input))));
    Ok(quantile(&mut v, 0.5))
}

/// One in this many decisions carries a fresh `auth_time` (a new login) and misses the cache.
pub const MISS_EVERY: usize = 20;

/// Decisions per second on two threads for `run`, cycling through [`workload`]'s inputs with
/// one cache miss in [`MISS_EVERY`].
pub fn throughput_two_threads(run: Duration) -> Result<f64, PolicyError> {
    let pdp = Arc::new(Pdp::embedded()?);
    let inputs: Arc<Vec<Input>> = Arc::new(
        (0..workload::DISTINCT)
            .map(|i| Input::from_json(workload::input(i)))
            .collect(),
    );
    for i in inputs.iter() {
        pdp.decide(i);
    }
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
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
