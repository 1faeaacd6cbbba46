//! Times uncached decisions of the policies in a directory (iterate on Rego without rebuilding):
//! `cargo run --release -p dive-policy --example policy_timing -- policies`.

use std::time::Instant;

use dive_policy::{Entrypoint, Input, Pdp, Sources, workload};

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "policies".into());
    let pdp = match Pdp::new(Sources {
        policy_dir: Some(dir.into()),
        data_dir: None,
    }) {
        Ok(p) => p.without_cache(),
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
    let input = Input::from_json(workload::typical());
    let d = pdp.decide(&input);
    println!("{}", d.reason);
    let mut v: Vec<_> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(pdp.decide(&input));
            t.elapsed()
        })
        .collect();
    v.sort_unstable();
    println!("p50 {:?} p99 {:?}", v[1000], v[1980]);
}
