//! The generated corpus: every label coherent, the documented mix, determinism, valid contents.

use std::collections::{BTreeMap, BTreeSet};

use dive_core::{Clearance, CoiOperator, CoiRegistry, CountryCode, Equivalency, SecurityLabel};
use dive_seed::{
    CLASSIFICATION_WEIGHTS, ContentKind, CorpusSpec, DocumentMeta, Generator, SeedDocument,
    Template, generate,
};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);
const LARGE: usize = 20_000;

fn cc(s: &str) -> CountryCode {
    CountryCode::new(s).unwrap()
}

fn spec(instance: &str, count: usize, seed: u64) -> CorpusSpec {
    CorpusSpec {
        instance: cc(instance),
        count,
        seed,
        now: NOW,
    }
}

fn members(tag: &str) -> BTreeSet<CountryCode> {
    CoiRegistry::builtin()
        .get(tag)
        .and_then(|d| d.members.clone())
        .unwrap_or_default()
}

/// Whether the label names only program COIs (membership by tag: strict coverage impossible).
fn program_only(label: &SecurityLabel) -> bool {
    !label.coi.is_empty() && label.coi.iter().all(|t| members(t).is_empty())
}

fn check_label(m: &DocumentMeta, instance: CountryCode) {
    let (r, eq) = (CoiRegistry::builtin(), Equivalency::builtin());
    let l = &m.label;
    let ctx = || format!("doc {} ({}): {}", m.index, m.template, l.marking());
    assert_eq!(l.coherence(r, eq, false), vec![], "{}", ctx());
    if !l.coi.is_empty() && !program_only(l) {
        assert_eq!(l.coherence(r, eq, true), vec![], "strict: {}", ctx());
    }
    // The label must also be writable into a ZTDF and survive its JSON form.
    dive_ztdf::label::validate(l).unwrap_or_else(|e| panic!("{}: {e}", ctx()));
    if m.index.is_multiple_of(8) {
        // The JSON form (every 8th document: serde dominates this test's time in debug builds).
        let json = serde_json::to_string(l).unwrap();
        assert_eq!(&serde_json::from_str::<SecurityLabel>(&json).unwrap(), l);
    }

    let origin = l.original_country.expect("original country");
    assert!(l.releasability_to.contains(&origin), "{}", ctx());
    if l.releasability_to.contains(&instance) {
        assert_eq!(origin, instance, "{}", ctx());
    }
    let original = l
        .original_classification
        .as_deref()
        .expect("original marking");
    assert!(
        eq.labels(origin, l.classification)
            .iter()
            .any(|x| x == original),
        "{original:?} is not a {origin} label for {}",
        l.classification
    );
    assert_eq!(l.creation_date, Some(m.created_at));
    assert_eq!(
        l.originator
            .as_deref()
            .map(|o| o.starts_with(origin.as_str())),
        Some(true)
    );
    if l.caveats.iter().any(|c| c == "NOFORN") {
        assert_eq!(l.coi, vec!["US-ONLY"], "{}", ctx());
        assert_eq!(l.releasability_to, vec![cc("USA")], "{}", ctx());
        assert_eq!(m.template, Template::UsOnlyNoforn);
    }
    if l.coi.iter().any(|c| c == "US-ONLY") {
        assert_eq!(l.releasability_to, vec![cc("USA")], "{}", ctx());
    }
    // Releasability within the COIs' members: all of them under ALL, one of them under ANY.
    let national: Vec<BTreeSet<CountryCode>> = l
        .coi
        .iter()
        .map(|t| members(t))
        .filter(|m| !m.is_empty())
        .collect();
    for c in &l.releasability_to {
        match l.coi_operator {
            CoiOperator::All => assert!(national.iter().all(|m| m.contains(c)), "{}", ctx()),
            CoiOperator::Any => assert!(national.iter().any(|m| m.contains(c)), "{}", ctx()),
        }
    }
    if program_only(l) {
        assert_eq!(l.releasability_to, vec![origin], "{}", ctx());
    }
    if m.template == Template::NatoCosmic {
        assert_eq!(l.classification, Clearance::TopSecret);
    }
    if l.releasable_to_industry {
        assert!(l.classification < Clearance::TopSecret, "{}", ctx());
    }
    assert_eq!(m.mime_type, m.kind.mime_type());
    assert!(
        m.file_name.ends_with(&format!(".{}", m.kind.extension())),
        "{}",
        m.file_name
    );
    assert!(!m.title.is_empty() && !m.description.is_empty());
}

#[test]
fn every_label_is_coherent_and_the_mix_is_as_documented() {
    // One thread per instance: 80,000 documents are checked.
    std::thread::scope(|s| {
        for (instance, seed) in [("USA", 1), ("FRA", 7), ("DEU", 42), ("GBR", 0xDEAD_BEEF)] {
            s.spawn(move || check_corpus(instance, seed));
        }
    });
}

fn check_corpus(instance: &str, seed: u64) {
    let instance_cc = cc(instance);
    let mut levels = [0usize; 5];
    let mut templates: BTreeMap<Template, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<ContentKind, usize> = BTreeMap::new();
    let (mut embargoed, mut industry, mut own_marking) = (0usize, 0usize, 0usize);
    let mut ids = BTreeSet::new();
    // Metadata only (content is checked below on fewer documents): the same draws.
    let generator = Generator::new(&spec(instance, LARGE, seed));
    for i in 0..LARGE {
        let meta = generator.meta(i);
        check_label(&meta, instance_cc);
        let m = &meta;
        levels[usize::from(m.label.classification.rank())] += 1;
        *templates.entry(m.template).or_default() += 1;
        *kinds.entry(m.kind).or_default() += 1;
        if m.created_at > NOW {
            embargoed += 1;
            assert!(m.created_at <= NOW + time::Duration::days(60));
        } else {
            assert!(m.created_at >= NOW - time::Duration::days(365));
        }
        industry += usize::from(m.label.releasable_to_industry);
        own_marking += usize::from(m.label.original_country == Some(instance_cc));
        assert!(ids.insert(m.id), "duplicate id {}", m.id);
    }
    for (i, weight) in CLASSIFICATION_WEIGHTS.iter().enumerate() {
        let pct = levels[i] as f64 * 100.0 / LARGE as f64;
        assert!(
            (pct - f64::from(*weight)).abs() < 1.5,
            "{instance}: level {i} is {pct:.2} %, expected {weight} %"
        );
    }
    for t in Template::ALL {
        let n = templates.get(&t).copied().unwrap_or(0);
        assert!(n >= LARGE / 200, "{instance}: template {t} only {n} times");
    }
    for k in ContentKind::ALL {
        let n = kinds.get(&k).copied().unwrap_or(0);
        assert!(n >= LARGE / 50, "{instance}: kind {k:?} only {n} times");
    }
    let embargo_pct = embargoed as f64 * 100.0 / LARGE as f64;
    assert!(
        (0.6..1.4).contains(&embargo_pct),
        "{instance}: {embargo_pct} % embargoed"
    );
    assert!(industry > LARGE / 10 && industry < LARGE / 2, "{industry}");
    // Most documents are the instance's own, with its national marking.
    assert!(own_marking > LARGE * 3 / 5, "{instance}: {own_marking}");
}

#[test]
fn national_markings_follow_the_instance() {
    let generator = Generator::new(&spec("FRA", 2_000, 3));
    let fra: Vec<String> = (0..2_000)
        .map(|i| generator.document(i).meta.label)
        .filter(|l| l.original_country == Some(cc("FRA")))
        .filter_map(|l| l.original_classification)
        .collect();
    assert!(fra.iter().any(|m| m == "SECRET DÉFENSE"), "{fra:?}");
    assert!(fra.iter().any(|m| m.starts_with("TRÈS SECRET")));
    assert!(fra.iter().any(|m| m == "DIFFUSION RESTREINTE"));
    let deu = Generator::new(&spec("DEU", 500, 3));
    assert!((0..500).any(|i| {
        deu.document(i)
            .meta
            .label
            .original_classification
            .as_deref()
            == Some("STRENG GEHEIM")
    }));
    // US-ONLY material on a French instance is US-originated, with a US marking.
    let us_only: Vec<_> = (0..2_000)
        .map(|i| generator.document(i).meta.label)
        .filter(|l| l.coi == ["US-ONLY"])
        .collect();
    assert!(!us_only.is_empty());
    assert!(
        us_only
            .iter()
            .all(|l| l.original_country == Some(cc("USA")))
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_corpus() {
    let a: Vec<SeedDocument> = generate(&spec("USA", 400, 99)).collect();
    let b: Vec<SeedDocument> = generate(&spec("USA", 400, 99)).collect();
    assert_eq!(a, b);
    let generator = Generator::new(&spec("USA", 400, 99));
    assert_eq!(generator.document(123), a[123]);
    assert_eq!(
        generate(&spec("USA", 400, 99)).nth(250).as_ref(),
        Some(&a[250])
    );
    assert_eq!(generate(&spec("USA", 400, 99)).len(), 400);
    assert!(a.iter().all(|d| generator.meta(d.meta.index) == d.meta));

    for other in [spec("USA", 400, 100), spec("FRA", 400, 99)] {
        let c: Vec<SeedDocument> = generate(&other).collect();
        let same_plain = a
            .iter()
            .zip(&c)
            .filter(|(x, y)| x.plaintext == y.plaintext)
            .count();
        let same_label = a
            .iter()
            .zip(&c)
            .filter(|(x, y)| x.meta.label == y.meta.label)
            .count();
        assert_eq!(same_plain, 0);
        assert!(same_label < 40, "{same_label} identical labels");
        assert!(a.iter().zip(&c).all(|(x, y)| x.meta.id != y.meta.id));
    }
}

/// Minimal RFC 4180 reader: fields per record.
fn csv_records(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut fields, mut quoted, mut prev_quote) = (1usize, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                prev_quote = true;
                continue;
            }
            ',' if !quoted => fields += 1,
            '\r' if !quoted && chars.peek() == Some(&'\n') => {}
            '\n' if !quoted => {
                out.push(fields);
                fields = 1;
            }
            _ => {}
        }
        prev_quote = false;
    }
    let _ = prev_quote;
    assert!(!quoted, "unterminated quote");
    out
}

fn check_pdf(bytes: &[u8]) {
    assert!(bytes.starts_with(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n"));
    // Past the binary-marker comment, our PDFs are 7-bit: offsets are byte offsets in `text`.
    let mut ascii = bytes.to_vec();
    ascii[10..14].copy_from_slice(b"????");
    let text = String::from_utf8(ascii).expect("7-bit after the header");
    assert!(text.ends_with("%%EOF\n"));
    let tail: Vec<&str> = text.trim_end().lines().rev().take(3).collect();
    let startxref: usize = tail[1].parse().unwrap();
    assert!(text[startxref..].starts_with("xref\n0 8\n"));
    let entries: Vec<&str> = text[startxref..].lines().skip(3).take(7).collect();
    for (i, e) in entries.iter().enumerate() {
        let off: usize = e[..10].parse().unwrap();
        assert!(
            text[off..].starts_with(&format!("{} 0 obj\n", i + 1)),
            "xref entry {}",
            i + 1
        );
    }
    let len_at = text.find("/Length ").unwrap() + 8;
    let len: usize = text[len_at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let start = text.find("stream\n").unwrap() + 7;
    assert!(text[start + len..].starts_with("endstream"));
    assert!(text.contains("/Root 1 0 R"));
}

fn check_png(bytes: &[u8], marking: &str) {
    use std::io::Read;
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (mut at, mut width, mut height) = (8usize, 0u32, 0u32);
    let mut idat = Vec::new();
    let mut texts = BTreeMap::new();
    let mut kinds = Vec::new();
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(
            crc,
            crc32fast::hash(&bytes[at + 4..at + 8 + len]),
            "chunk CRC"
        );
        kinds.push(String::from_utf8_lossy(kind).to_string());
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(&data[8..], &[8, 2, 0, 0, 0]);
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"tEXt" => {
                let nul = data.iter().position(|b| *b == 0).unwrap();
                texts.insert(
                    String::from_utf8_lossy(&data[..nul]).to_string(),
                    data[nul + 1..].to_vec(),
                );
            }
            _ => {}
        }
        at += 12 + len;
    }
    assert_eq!(kinds.first().map(String::as_str), Some("IHDR"));
    assert_eq!(kinds.last().map(String::as_str), Some("IEND"));
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("IDAT is a valid zlib stream");
    let row = 1 + 3 * width as usize;
    assert_eq!(raw.len(), row * height as usize);
    assert!(raw.chunks(row).all(|r| r[0] == 0));
    assert_eq!(
        texts.get("Comment").map(Vec::as_slice),
        Some(marking.as_bytes())
    );
}

#[test]
fn contents_are_valid_documents_of_their_type() {
    let mut seen = BTreeSet::new();
    for doc in generate(&spec("FRA", 700, 11)) {
        let m = &doc.meta;
        check_label(m, cc("FRA"));
        let marking = m.label.marking();
        seen.insert(m.kind);
        let text = || String::from_utf8(doc.plaintext.clone()).expect("UTF-8");
        match m.kind {
            ContentKind::Text => {
                let t = text();
                assert_eq!(t.lines().next(), Some(marking.as_str()));
                assert_eq!(t.lines().last(), Some(marking.as_str()));
                assert!(t.contains(&m.title));
            }
            ContentKind::Markdown => {
                let t = text();
                assert!(t.starts_with(&format!("**{marking}**\n\n# {}\n", m.title)));
            }
            ContentKind::Json => {
                let v: serde_json::Value = serde_json::from_slice(&doc.plaintext).unwrap();
                assert_eq!(v["marking"], marking);
                assert_eq!(v["reportId"], m.id.to_string());
                assert!(!v["tracks"].as_array().unwrap().is_empty());
            }
            ContentKind::Csv => {
                let records = csv_records(&text());
                assert!(records.len() > 10);
                assert!(records.iter().all(|n| *n == records[0]), "{records:?}");
            }
            ContentKind::Html => {
                let t = text();
                assert!(t.starts_with("<!DOCTYPE html>"));
                assert!(t.contains("<meta charset=\"utf-8\">"));
                assert_eq!(t.matches("class=\"banner\"").count(), 2);
                assert!(t.trim_end().ends_with("</html>"));
            }
            ContentKind::Pdf => check_pdf(&doc.plaintext),
            ContentKind::Png => check_png(&doc.plaintext, &marking),
        }
        assert!(doc.plaintext.len() > 400 && doc.plaintext.len() < 40_000);
    }
    assert_eq!(seen.len(), ContentKind::ALL.len());
}
