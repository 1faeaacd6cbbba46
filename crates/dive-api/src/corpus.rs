//! A deterministic synthetic corpus of real ZTDF documents with a realistic label mix, for the
//! service's tests and benchmarks (`dive bench api`). Instances are seeded by `dive seed`; this
//! generator only exists so that the resource service can be tested and measured on its own.
//!
//! Mix: classifications about 20/15/25/25/15 % from UNCLASSIFIED to TOP_SECRET; COI templates
//! (US-ONLY with and without NOFORN, bilateral X-US, FVEY, AUKUS, NATO, NATO-COSMIC,
//! EU-RESTRICTED, QUAD, combatant commands, program COIs, ANY-combinations, no COI with explicit
//! releasability) with releasability drawn from the COI's members; some releasable to industry;
//! half with the instance nation's original marking; dates over the past year, 1 % embargoed.

use dive_core::{Clearance, CoiOperator, CoiRegistry, CountryCode, Equivalency, SecurityLabel};
use dive_ztdf::{EncryptOptions, KeyAccessPlan, Recipient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};

use crate::store::NewResource;

fn cc(code: &str) -> CountryCode {
    // Only called with the literal codes below and the COI registry's members.
    CountryCode::new(code).unwrap_or_else(|_| unreachable!("valid literal country {code}"))
}

fn members(tag: &str) -> Vec<CountryCode> {
    CoiRegistry::builtin()
        .get(tag)
        .and_then(|d| d.members.clone())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// Some of `pool` (always including `must` when it is a member), at least one.
fn some_of(rng: &mut StdRng, pool: &[CountryCode], must: CountryCode) -> Vec<CountryCode> {
    if rng.random_bool(0.5) {
        return pool.to_vec();
    }
    let mut out: Vec<CountryCode> = Vec::new();
    if pool.contains(&must) {
        out.push(must);
    }
    for c in pool {
        if !out.contains(c) && rng.random_bool(0.4) {
            out.push(*c);
        }
    }
    if out.is_empty() {
        out.push(pool[rng.random_range(0..pool.len())]);
    }
    out
}

fn classification(rng: &mut StdRng) -> Clearance {
    match rng.random_range(0..100) {
        0..20 => Clearance::Unclassified,
        20..35 => Clearance::Restricted,
        35..60 => Clearance::Confidential,
        60..85 => Clearance::Secret,
        _ => Clearance::TopSecret,
    }
}

/// A coherent label for a document of `nation`'s instance.
pub fn label(rng: &mut StdRng, nation: CountryCode) -> SecurityLabel {
    let level = classification(rng);
    let usa = cc("USA");
    let (op, cois, rel, caveats): (CoiOperator, Vec<&str>, Vec<CountryCode>, Vec<&str>) = match rng
        .random_range(0..22)
    {
        0 => (CoiOperator::All, vec!["US-ONLY"], vec![usa], vec!["NOFORN"]),
        1 => (CoiOperator::All, vec!["US-ONLY"], vec![usa], vec![]),
        2..=5 => {
            let tag = ["CAN-US", "GBR-US", "FRA-US", "DEU-US"][rng.random_range(0..4)];
            (CoiOperator::All, vec![tag], members(tag), vec![])
        }
        6 | 7 => (
            CoiOperator::All,
            vec!["FVEY"],
            some_of(rng, &members("FVEY"), nation),
            vec![],
        ),
        8 => (CoiOperator::All, vec!["AUKUS"], members("AUKUS"), vec![]),
        9 | 10 => (
            CoiOperator::All,
            vec!["NATO"],
            some_of(rng, &members("NATO"), nation),
            vec![],
        ),
        11 => (
            CoiOperator::All,
            vec!["NATO-COSMIC"],
            some_of(rng, &members("NATO-COSMIC"), nation),
            vec![],
        ),
        12 => (
            CoiOperator::All,
            vec!["EU-RESTRICTED"],
            some_of(rng, &members("EU-RESTRICTED"), nation),
            vec![],
        ),
        13 => (CoiOperator::All, vec!["QUAD"], members("QUAD"), vec![]),
        14 | 15 => {
            let tag = ["NORTHCOM", "EUCOM", "PACOM", "CENTCOM", "SOCOM"][rng.random_range(0..5)];
            (CoiOperator::All, vec![tag], members(tag), vec![])
        }
        16 => {
            let tag = ["Alpha", "Beta", "Gamma"][rng.random_range(0..3)];
            let rel = if rng.random_bool(0.5) {
                vec![usa]
            } else {
                vec![usa, cc("GBR")]
            };
            (CoiOperator::All, vec![tag], rel, vec![])
        }
        17 | 18 => {
            let pairs = [["FVEY", "NATO"], ["EUCOM", "PACOM"], ["QUAD", "NATO"]];
            let pair = pairs[rng.random_range(0..pairs.len())];
            let mut rel = members(pair[0]);
            for c in members(pair[1]) {
                if !rel.contains(&c) {
                    rel.push(c);
                }
            }
            (CoiOperator::Any, pair.to_vec(), rel, vec![])
        }
        _ => {
            let pool: Vec<CountryCode> = [
                "USA", "GBR", "FRA", "DEU", "CAN", "ITA", "ESP", "POL", "NLD", "NOR", "AUS", "JPN",
            ]
            .iter()
            .map(|c| cc(c))
            .collect();
            let mut rel = some_of(rng, &pool, nation);
            if !rel.contains(&nation) {
                rel.insert(0, nation);
            }
            (CoiOperator::All, vec![], rel, vec![])
        }
    };
    let mut l = SecurityLabel::new(level, rel)
        .with_coi(op, cois)
        .with_caveats(caveats)
        .with_originator(format!("{nation}/dive-corpus"));
    if level <= Clearance::Secret && rng.random_bool(0.2) {
        l = l.with_releasable_to_industry(true);
    }
    if rng.random_bool(0.5) {
        let labels = Equivalency::builtin().labels(nation, level);
        if let Some(orig) = labels.first() {
            l.original_classification = Some(orig.clone());
            l.original_country = Some(nation);
        }
    }
    l
}

const TOPICS: &[&str] = &[
    "Logistics",
    "Fuel",
    "Maritime",
    "Air Defence",
    "Cyber",
    "Medical",
    "Training",
    "Exercise",
    "Intelligence",
    "Satellite",
    "Convoy",
    "Readiness",
    "Procurement",
    "Engineering",
    "Signals",
];
const KINDS: &[&str] = &[
    "Report",
    "Assessment",
    "Summary",
    "Plan",
    "Brief",
    "Inventory",
    "Note",
];

/// The file types of the corpus: (MIME type, extension).
pub const TYPES: &[(&str, &str)] = &[
    ("text/plain", "txt"),
    ("text/markdown", "md"),
    ("application/json", "json"),
    ("text/csv", "csv"),
    ("text/html", "html"),
    ("application/pdf", "pdf"),
    ("image/png", "png"),
];

fn content(rng: &mut StdRng, mime: &str, title: &str) -> Vec<u8> {
    let n = rng.random_range(2..12);
    match mime {
        "text/markdown" => format!("# {title}\n\n{}\n", "- item\n".repeat(n)).into_bytes(),
        "application/json" => serde_json::json!({"title": title, "items": n}).to_string().into_bytes(),
        "text/csv" => {
            let mut s = String::from("unit,quantity\n");
            for i in 0..n {
                s += &format!("u{i},{}\n", rng.random_range(0..1000));
            }
            s.into_bytes()
        }
        "text/html" => format!("<html><body><h1>{title}</h1><p>{n}</p></body></html>").into_bytes(),
        "application/pdf" => format!(
            "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\ntrailer<</Root 1 0 R>>\n%% {title}\n%%EOF\n"
        )
        .into_bytes(),
        "image/png" => {
            let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
            b.extend((0..64).map(|_| rng.random::<u8>()));
            b
        }
        _ => format!("{title}\n\n{}", "Lorem ipsum dolor sit amet. ".repeat(n)).into_bytes(),
    }
}

/// Generate `n` documents (ids `doc-00000`, …) encrypted to `recipient`, dated relative to `now`.
/// Same `seed` → same labels, titles, dates and contents (keys and ciphertexts differ).
pub fn generate(
    n: usize,
    seed: u64,
    nation: CountryCode,
    recipient: &Recipient,
    now: OffsetDateTime,
) -> Result<Vec<NewResource>, dive_ztdf::Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let label = label(&mut rng, nation);
        let title = format!(
            "{} {} {i}",
            TOPICS[rng.random_range(0..TOPICS.len())],
            KINDS[rng.random_range(0..KINDS.len())]
        );
        let (mime, ext) = TYPES[rng.random_range(0..TYPES.len())];
        let created_at = if rng.random_range(0..100) == 0 {
            now + Duration::days(rng.random_range(1..30))
        } else {
            now - Duration::seconds(rng.random_range(3600..365 * 86_400))
        };
        let label = label.with_creation_date(created_at);
        let plain = content(&mut rng, mime, &title);
        let opts = EncryptOptions::new(KeyAccessPlan::single(recipient.clone()))
            .label(label.clone())
            .mime_type(mime)
            .plaintext_len(plain.len() as u64);
        let mut ztdf = Vec::with_capacity(plain.len() + 4096);
        let summary = dive_ztdf::encrypt(&plain[..], &mut ztdf, &opts)?;
        out.push(NewResource {
            id: format!("doc-{i:05}"),
            description: Some(format!("Synthetic {} document {i}", label.classification)),
            file_name: format!("{}.{ext}", title.to_lowercase().replace(' ', "-")),
            title,
            label,
            mime_type: mime.to_string(),
            size: summary.plaintext_len,
            created_at,
            creator: "dive-corpus".to_string(),
            policy_uuid: summary.manifest.policy()?.uuid,
            ztdf,
            seeded: true,
        });
    }
    Ok(out)
}
