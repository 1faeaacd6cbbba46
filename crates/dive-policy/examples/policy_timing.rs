//! Times uncached decisions of the policies in a directory (iterate on Rego without rebuilding):
//! `cargo run --release -p dive-policy --example policy_timing -- policies`.
//!
//! Prints p50/p99 of a whole uncached decision (`Pdp::decide`, cache off), of its Rust
//! normalisation alone, of the same policy on regorus's interpreter, and of a bare regorus
//! three-rule policy measured interleaved in the same run (the issue's reference point).

use std::time::{Duration, Instant};

use dive_policy::{Entrypoint, Input, Normalizer, Pdp, Sources, workload};

const BARE: &str = r#"package bare
import rego.v1
default allow := false
allow if {
    input.subject.clearance == "SECRET DÉFENSE"
    input.resource.classification == "SECRET"
}
reason := "ok" if allow
"#;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "policies".into());
    let sources = Sources {
        policy_dir: Some(dir.into()),
        data_dir: None,
    };
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
    let bare = regorus::compile_policy_with_entrypoint(
        regorus::Value::new_object(),
        &[regorus::PolicyModule {
            id: "bare.rego".into(),
            content: BARE.into(),
        }],
        "data.bare.allow".into(),
    )
    .expect("bare policy compiles");
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
    let p = |v: &mut Vec<Duration>, q: f64| {
        v.sort_unstable();
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
    };
    let (o50, o99) = (p(&mut ours, 0.5), p(&mut ours, 0.99));
    let (b50, b99) = (p(&mut theirs, 0.5), p(&mut theirs, 0.99));
    println!("uncached decision        p50 {o50:?} p99 {o99:?}");
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

fn sample(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}
