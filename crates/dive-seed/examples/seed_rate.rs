//! Seeding rate: generate and encrypt a corpus into real ZTDF, as `dive seed` does, without a
//! store (batches are dropped). Reports the median of several runs for RSA-2048 and EC P-256
//! KAS keys, plus single-thread figures that show where the time goes.
//!
//! ```text
//! cargo run --release -p dive-seed --example seed_rate -- --count 5000 --runs 7
//! ```
//! Options: `--count N` (5000), `--runs R` (7), `--threads T` (0 = one per core),
//! `--batch B` (500), `--key rsa|ec|both` (both), `--instance CODE` (USA), `--seed S` (1),
//! `--kas-key FILE` (a PEM public key instead of generated ones), `--no-breakdown` (skip the
//! single-thread figures; with `perf stat -e instructions:u` this counts the pipeline only).

use std::time::{Duration, Instant};

use dive_core::CountryCode;
use dive_seed::{
    CorpusSpec, Generator, KasRecipient, SeedOptions, encrypt_document, generate, seed_with,
};
use dive_ztdf::KasPrivateKey;

struct Args {
    count: usize,
    runs: usize,
    threads: usize,
    batch: usize,
    keys: Vec<&'static str>,
    instance: CountryCode,
    seed: u64,
    kas_key: Option<String>,
    breakdown: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        count: 5000,
        runs: 7,
        threads: 0,
        batch: 500,
        keys: vec!["rsa", "ec"],
        instance: CountryCode::new("USA").map_err(|e| e.to_string())?,
        seed: 1,
        kas_key: None,
        breakdown: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--count" => a.count = num(value()?)? as usize,
            "--runs" => a.runs = (num(value()?)? as usize).max(1),
            "--threads" => a.threads = num(value()?)? as usize,
            "--batch" => a.batch = num(value()?)? as usize,
            "--seed" => a.seed = num(value()?)?,
            "--kas-key" => {
                let path = value()?;
                let pem = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                a.kas_key = Some(pem);
                a.keys = vec!["given"];
            }
            "--no-breakdown" => a.breakdown = false,
            "--instance" => a.instance = CountryCode::new(&value()?).map_err(|e| e.to_string())?,
            "--key" => {
                a.keys = match value()?.as_str() {
                    "rsa" => vec!["rsa"],
                    "ec" => vec!["ec"],
                    "both" => vec!["rsa", "ec"],
                    other => return Err(format!("--key: {other:?} is not rsa, ec or both")),
                }
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("seed_rate: {e}");
            std::process::exit(2);
        }
    };
    let spec = CorpusSpec::new(args.instance, args.count, args.seed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "seed_rate: {} documents of {}, seed {}, {} threads ({} cores), batches of {}, {} runs",
        args.count,
        args.instance,
        args.seed,
        if args.threads == 0 {
            cores
        } else {
            args.threads
        },
        cores,
        args.batch,
        args.runs
    );

    // Generation alone, one thread.
    if args.breakdown {
        let start = Instant::now();
        let bytes: usize = generate(&spec).map(|d| d.plaintext.len()).sum();
        let gen_secs = start.elapsed().as_secs_f64();
        println!(
            "generate only, 1 thread: {:.0} docs/s ({:.1} µs/doc, mean plaintext {} B)",
            args.count as f64 / gen_secs,
            gen_secs * 1e6 / args.count as f64,
            bytes / args.count.max(1)
        );
    }

    for key in &args.keys {
        let public = match (*key, &args.kas_key) {
            (_, Some(pem)) => pem.clone(),
            ("rsa", None) => {
                KasPrivateKey::generate_rsa_pem()
                    .unwrap_or_else(|e| panic!("key generation: {e}"))
                    .1
            }
            _ => {
                KasPrivateKey::generate_ec_pem()
                    .unwrap_or_else(|e| panic!("key generation: {e}"))
                    .1
            }
        };
        let kas =
            KasRecipient::from_pem("https://kas.usa.dive.test/kas", Some("k1".into()), &public)
                .unwrap_or_else(|e| panic!("{e}"));

        // One thread, generation + encryption of the first 1,000 documents (per-document cost).
        if args.breakdown {
            let generator = Generator::new(&spec);
            let n1 = args.count.min(1000);
            let start = Instant::now();
            for i in 0..n1 {
                encrypt_document(&generator.document(i), &kas).unwrap_or_else(|e| panic!("{e}"));
            }
            let one = start.elapsed().as_secs_f64();
            println!(
                "{key}: 1 thread, generate + encrypt: {:.0} docs/s ({:.1} µs/doc)",
                n1 as f64 / one,
                one * 1e6 / n1 as f64
            );
        }

        let opts = SeedOptions {
            threads: args.threads,
            batch_size: args.batch,
        };
        let mut rates = Vec::new();
        let mut elapsed = Vec::new();
        let mut ztdf_bytes = 0;
        for _ in 0..args.runs {
            let report = seed_with(&spec, &kas, &opts, |batch| {
                drop(batch);
                Ok::<_, std::io::Error>(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
            rates.push(report.documents as f64 / report.elapsed.as_secs_f64());
            elapsed.push(report.elapsed.as_secs_f64());
            ztdf_bytes = report.ztdf_bytes;
        }
        let (lo, hi) = (
            rates.iter().copied().fold(f64::MAX, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "{key}: seed_with (generate + ZTDF), all threads: median {:.0} docs/s \
             ({:.3} s for {} docs; min {:.0}, max {:.0}; mean ZTDF {} B)",
            median(rates),
            Duration::from_secs_f64(median(elapsed)).as_secs_f64(),
            args.count,
            lo,
            hi,
            ztdf_bytes / args.count.max(1) as u64
        );
    }
}
