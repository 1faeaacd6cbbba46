//! Times uncached decisions of the policies in a directory (iterate on Rego without rebuilding):
//! `cargo run --release -p dive-policy --example policy_timing -- policies`.
//!
//! Prints p50/p99 of a whole uncached decision (`Pdp::decide`, cache off), of its Rust
//! normalisation alone, of the same policy on regorus's interpreter, and of a bare regorus
//! three-rule policy measured interleaved in the same run (the reference point). For the
//! tail, it also splits the decisions by whether the thread was switched out while deciding
//! (preemption on a shared machine) and prints the p99 of those that ran undisturbed (what is
//! left is the decision's own jitter: allocation, caches).
//!
//! `policy_timing policies --loop N` only makes N uncached decisions and prints nothing else, for
//! instruction counts: `valgrind --tool=callgrind --toggle-collect='dive_policy::pdp::Pdp::decide_at'
//! target/release/examples/policy_timing policies --loop 2000` (divide the total by N).

use std::time::{Duration, Instant};

use dive_policy::{Entrypoint, Input, Normalizer, Pdp, Sources, timing, workload};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "policies".into());
    let loops = match (args.get(2).map(String::as_str), args.get(3)) {
        (None, _) => None,
        (Some("--loop"), Some(n)) if n.parse::<usize>().is_ok() => n.parse::<usize>().ok(),
        _ => {
            eprintln!("usage: policy_timing [POLICY_DIR [--loop N]]");
            std::process::exit(2);
        }
    };
    let sources = Sources {
        policy_dir: Some(dir.into()),
        data_dir: None,
    };
    if let Some(n) = loops {
        let pdp = match Pdp::new(sources) {
            Ok(p) => p.without_cache(),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        let input = Input::from_json(workload::typical());
        for _ in 0..n {
            drop(std::hint::black_box(pdp.decide(&input)));
        }
        return;
    }
    let (pdp, interpreted) = match Pdp::new(sources.clone()).and_then(|p| {
        Ok((
            p.without_cache(),
            Pdp::new(sources)?.without_vm()?.without_cache(),
        ))
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "engine {:?} {}",
        pdp.engine(Entrypoint::Authz),
        pdp.interpreter_reason(Entrypoint::Authz)
            .unwrap_or_default()
    );
    let raw = workload::typical();
    let input = Input::from_json(raw.clone());
    println!("{}", pdp.decide(&input).reason);
    let normalizer = Normalizer::builtin();
    let bare = timing::bare_policy().expect("bare policy compiles");
    let bare_input = regorus::Value::from(raw.clone());
    let (mut ours, mut theirs, mut norm, mut interp) = (vec![], vec![], vec![], vec![]);
    // Interleaved rounds, so that every series sees the same machine load.
    for _ in 0..20 {
        ours.extend(sample(200, || {
            drop(std::hint::black_box(pdp.decide(&input)))
        }));
        theirs.extend(sample(200, || {
            std::hint::black_box(bare.eval_with_input(bare_input.clone()).ok());
        }));
        norm.extend(sample(200, || {
            std::hint::black_box(normalizer.normalize(&raw));
        }));
        interp.extend(sample(20, || {
            drop(std::hint::black_box(interpreted.decide(&input)))
        }));
    }
    let p = |v: &mut Vec<Duration>, q: f64| timing::quantile(v, q);
    let (mut calm, switched): (Vec<Duration>, Vec<Duration>) = {
        let (a, b): (Vec<_>, Vec<_>) = ours.iter().copied().partition(|&(_, s)| !s);
        (
            a.into_iter().map(|(d, _)| d).collect(),
            b.into_iter().map(|(d, _)| d).collect(),
        )
    };
    let mut ours: Vec<Duration> = ours.into_iter().map(|(d, _)| d).collect();
    let [mut theirs, mut norm, mut interp] =
        [theirs, norm, interp].map(|v| v.into_iter().map(|(d, _)| d).collect::<Vec<_>>());
    let (o50, o99) = (p(&mut ours, 0.5), p(&mut ours, 0.99));
    let (b50, b99) = (p(&mut theirs, 0.5), p(&mut theirs, 0.99));
    println!("uncached decision        p50 {o50:?} p99 {o99:?}");
    println!(
        "  not switched out ({} of {}) p50 {:?} p99 {:?}; switched out: {}",
        calm.len(),
        ours.len(),
        p(&mut calm, 0.5),
        p(&mut calm, 0.99),
        switched.len()
    );
    println!(
        "  of which normalisation p50 {:?} p99 {:?}",
        p(&mut norm, 0.5),
        p(&mut norm, 0.99)
    );
    println!(
        "same policy, interpreter p50 {:?} p99 {:?}",
        p(&mut interp, 0.5),
        p(&mut interp, 0.99)
    );
    println!("bare regorus 3-rule      p50 {b50:?} p99 {b99:?}");
    println!(
        "ratio uncached/bare      p50 {:.1}x",
        o50.as_secs_f64() / b50.as_secs_f64()
    );
}

/// `n` timings of `f`, each with whether the thread was switched out meanwhile (its context
/// switch count, read outside the timed region, moved).
fn sample(n: usize, mut f: impl FnMut()) -> Vec<(Duration, bool)> {
    (0..n)
        .map(|_| {
            let before = context_switches();
            let t = Instant::now();
            f();
            let elapsed = t.elapsed();
            (elapsed, context_switches() != before)
        })
        .collect()
}

/// Voluntary plus involuntary context switches of the calling thread.
fn context_switches() -> i64 {
    // SAFETY: getrusage only writes the rusage struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        // Without the count the split would claim every decision ran undisturbed.
        eprintln!("getrusage: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    u.ru_nvcsw + u.ru_nivcsw
}
