//! Print the mix of a seed corpus (classification, template, content type, embargo, industry,
//! original markings) and a few sample markings, without encrypting anything.
//!
//! ```text
//! cargo run --release -p dive-seed --example corpus_stats -- USA 5000 1
//! ```

use std::collections::BTreeMap;

use dive_core::CountryCode;
use dive_seed::{CorpusSpec, Generator};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let instance = args.first().map_or("USA", String::as_str);
    let Ok(instance) = CountryCode::new(instance) else {
        eprintln!("corpus_stats: {instance:?} is not an ISO 3166-1 alpha-3 code");
        std::process::exit(2);
    };
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let spec = CorpusSpec::new(instance, count, seed);
    let generator = Generator::new(&spec);

    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    let mut templates: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut originals: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples: BTreeMap<String, String> = BTreeMap::new();
    let (mut embargoed, mut industry, mut bytes) = (0usize, 0usize, 0usize);
    for i in 0..count {
        let d = generator.document(i);
        let m = &d.meta;
        let l = &m.label;
        *levels
            .entry(format!("{} {}", l.classification.rank(), l.classification))
            .or_default() += 1;
        *templates.entry(m.template.to_string()).or_default() += 1;
        *kinds.entry(m.mime_type.to_string()).or_default() += 1;
        *originals
            .entry(format!(
                "{} {}",
                l.original_country
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                l.original_classification.clone().unwrap_or_default()
            ))
            .or_default() += 1;
        samples
            .entry(m.template.to_string())
            .or_insert_with(|| format!("{} — {}", l.marking(), m.title));
        embargoed += usize::from(m.created_at > spec.now);
        industry += usize::from(l.releasable_to_industry);
        bytes += d.plaintext.len();
    }
    let pct = |n: usize| n as f64 * 100.0 / count.max(1) as f64;
    let table = |title: &str, map: &BTreeMap<String, usize>| {
        println!("\n{title}");
        for (k, n) in map {
            println!("  {k:<40} {n:>7}  {:>5.1} %", pct(*n));
        }
    };
    println!("{count} documents of {instance}, seed {seed}");
    table("classification", &levels);
    table("template", &templates);
    table("content type", &kinds);
    table("original marking", &originals);
    println!(
        "\nembargoed {embargoed} ({:.1} %), releasable to industry {industry} ({:.1} %), mean plaintext {} B",
        pct(embargoed),
        pct(industry),
        bytes / count.max(1)
    );
    println!("\nsample per template");
    for (t, s) in samples {
        println!("  {t:<18} {s}");
    }
}
