//! DIVE's seed corpus: realistic, coherent, deterministic documents for an instance, and their
//! encryption into real ZTDF in parallel.
//!
//! - [`generate`] / [`Generator::document`]: document `i` of a corpus is a pure function of
//!   `(instance, seed, now, i)` — same inputs, byte-identical label and plaintext; the document
//!   id depends only on `(instance, seed, i)`, so re-seeding replaces rather than duplicates.
//! - [`encrypt_batch`], [`seed_batches`], [`seed_with`], [`encrypt_corpus`]: ZTDF creation
//!   across threads (std scoped threads), in bounded batches so a caller inserting into a store
//!   never holds the whole corpus in memory.
//!
//! Pure generation: no database, no network. See `docs/seeding.md`.

mod content;
mod encrypt;
mod error;
mod pdf;
mod png;
mod rng;
mod templates;
mod vocab;

use dive_core::{CountryCode, SecurityLabel};
use time::OffsetDateTime;
use uuid::Uuid;

pub use content::ContentKind;
pub use encrypt::{
    EncryptedDocument, KasRecipient, SeedBatches, SeedOptions, SeedReport, encrypt_batch,
    encrypt_corpus, encrypt_document, seed_batches, seed_with,
};
pub use error::SeedError;
pub use templates::{CLASSIFICATION_WEIGHTS, Template};

use rng::{Rng, mix};
use templates::Tables;

/// Changes whenever the generator's output for a given spec changes (recorded in docs/seeding.md).
pub const GENERATOR_VERSION: u32 = 1;

/// Namespace of seed document ids (UUIDv5 over `"{instance}/{seed}/{index}"`).
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d1e_5eed_d17e_4c0a_8a1b_5eed_c0a1_1710);

/// Which corpus to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorpusSpec {
    /// The instance being seeded: its nation originates most documents.
    pub instance: CountryCode,
    pub count: usize,
    pub seed: u64,
    /// Creation dates lie in the year before `now`; about 1 % are embargoed after it.
    pub now: OffsetDateTime,
}

impl CorpusSpec {
    /// A spec with `now` = the current time (whole seconds).
    pub fn new(instance: CountryCode, count: usize, seed: u64) -> Self {
        let now = OffsetDateTime::now_utc();
        CorpusSpec {
            instance,
            count,
            seed,
            now: now.replace_nanosecond(0).unwrap_or(now),
        }
    }
}

/// Everything about a document except its bytes (what a resource store indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    /// Deterministic UUIDv5 of `(instance, seed, index)`.
    pub id: Uuid,
    /// Position in the corpus.
    pub index: usize,
    pub title: String,
    pub description: String,
    /// Coherent against dive-core's built-in COI registry and equivalency tables; its
    /// `creation_date` equals `created_at`.
    pub label: SecurityLabel,
    pub template: Template,
    pub kind: ContentKind,
    pub mime_type: &'static str,
    pub file_name: String,
    /// Whole seconds, UTC. After `spec.now` for embargoed documents.
    pub created_at: OffsetDateTime,
}

/// A generated document: metadata and plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDocument {
    pub meta: DocumentMeta,
    pub plaintext: Vec<u8>,
}

/// Generates documents of one corpus; cheap to share between threads (`&Generator` is `Sync`).
pub struct Generator {
    spec: CorpusSpec,
    tables: Tables,
}

/// The documents of `spec`, in index order.
pub fn generate(spec: &CorpusSpec) -> Documents {
    Documents {
        generator: Generator::new(spec),
        next: 0,
    }
}

/// The id document `index` of `spec` has (without generating it).
pub fn document_id(spec: &CorpusSpec, index: usize) -> Uuid {
    let name = format!("{}/{}/{}", spec.instance, spec.seed, index);
    let mut input = Vec::with_capacity(16 + name.len());
    input.extend_from_slice(ID_NAMESPACE.as_bytes());
    input.extend_from_slice(name.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

fn document_seed(spec: &CorpusSpec, index: usize) -> u64 {
    let b = spec.instance.as_str().as_bytes();
    let code = u64::from(b[0]) << 16 | u64::from(b[1]) << 8 | u64::from(b[2]);
    let corpus = mix(spec.seed ^ mix(code.wrapping_add(0x0D1E_5EED)));
    mix(corpus ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

impl Generator {
    pub fn new(spec: &CorpusSpec) -> Self {
        Generator {
            spec: *spec,
            tables: Tables::new(spec.instance),
        }
    }

    pub fn spec(&self) -> &CorpusSpec {
        &self.spec
    }

    /// Document `index` (defined for any index; a corpus is `0..spec.count`).
    pub fn document(&self, index: usize) -> SeedDocument {
        let mut d = self.draw(index);
        let meta = d.meta;
        let marking = meta.label.marking();
        let origin = d.origin;
        let original = format!("{} ({origin})", d.original_marking);
        let originator = format!("{origin} {}", d.unit_name);
        let nations: Vec<&str> = meta
            .label
            .releasability_to
            .iter()
            .map(CountryCode::as_str)
            .collect();
        let id_text = meta.id.to_string();
        let ctx = content::Ctx {
            id: &id_text,
            title: &meta.title,
            description: &meta.description,
            marking: &marking,
            original: &original,
            originator: &originator,
            created: meta.created_at,
            operation: &d.operation,
            topic: d.topic,
            region: d.region,
            nations: &nations,
        };
        let plaintext = content::generate(meta.kind, &ctx, &mut d.rng);
        SeedDocument { meta, plaintext }
    }

    /// The metadata of document `index` without generating its content (the same as
    /// `document(index).meta`, several times cheaper).
    pub fn meta(&self, index: usize) -> DocumentMeta {
        self.draw(index).meta
    }

    /// Everything but the content; the content is drawn last from the returned generator state.
    fn draw(&self, index: usize) -> Draw {
        let spec = &self.spec;
        let mut rng = Rng::new(document_seed(spec, index));
        let d = self.tables.draft(&mut rng);
        let kind = ContentKind::ALL[rng.weighted(&ContentKind::WEIGHTS)];
        let operation = format!(
            "{} {} {}",
            if rng.percent(60) {
                "Operation"
            } else {
                "Exercise"
            },
            rng.word(vocab::CODE_WORDS_A),
            rng.word(vocab::CODE_WORDS_B)
        );
        let topic = rng.word(vocab::TOPICS);
        let region = rng.word(vocab::REGIONS);
        let (unit_code, unit_name) = *rng.pick(vocab::UNITS);
        let doc_kind = *rng.pick(kind.document_kinds());
        // About 1 % embargoed: created between one hour and sixty days after `now`.
        let created_at = if rng.below(1000) < 10 {
            content::shift(spec.now, rng.range(3_600, 60 * 86_400) as i64)
        } else {
            content::shift(spec.now, -(rng.range(60, 365 * 86_400) as i64))
        };
        let origin = d.original_country;
        let label = SecurityLabel {
            classification: d.classification,
            original_classification: Some(d.original_marking.clone()),
            original_country: Some(origin),
            releasability_to: d.releasability,
            coi: d.coi.iter().map(|t| (*t).to_string()).collect(),
            coi_operator: d.operator,
            caveats: if d.noforn {
                vec!["NOFORN".to_string()]
            } else {
                Vec::new()
            },
            originator: Some(format!("{origin}/{unit_code}")),
            creation_date: Some(created_at),
            releasable_to_industry: d.industry,
        };
        let title = format!("{doc_kind}: {topic}, {region} ({operation})");
        let description = format!(
            "{doc_kind} from {origin} {unit_name} on {} in the {region}, {operation}.",
            topic.to_lowercase()
        );
        let file_name = format!(
            "{}-{}-{index:05}.{}",
            slug(doc_kind),
            slug(topic),
            kind.extension()
        );
        Draw {
            meta: DocumentMeta {
                id: document_id(spec, index),
                index,
                title,
                description,
                label,
                template: d.template,
                kind,
                mime_type: kind.mime_type(),
                file_name,
                created_at,
            },
            origin,
            original_marking: d.original_marking,
            unit_name,
            operation,
            topic,
            region,
            rng,
        }
    }
}

struct Draw {
    meta: DocumentMeta,
    origin: CountryCode,
    original_marking: String,
    unit_name: &'static str,
    operation: String,
    topic: &'static str,
    region: &'static str,
    rng: Rng,
}

/// Iterator over a corpus (see [`generate`]); random access through [`Documents::generator`].
pub struct Documents {
    generator: Generator,
    next: usize,
}

impl Documents {
    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

impl Iterator for Documents {
    type Item = SeedDocument;

    fn next(&mut self) -> Option<SeedDocument> {
        if self.next >= self.generator.spec.count {
            return None;
        }
        let doc = self.generator.document(self.next);
        self.next += 1;
        Some(doc)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.generator.spec.count.saturating_sub(self.next);
        (n, Some(n))
    }

    fn nth(&mut self, n: usize) -> Option<SeedDocument> {
        self.next = self.next.saturating_add(n);
        self.next()
    }
}

impl ExactSizeIterator for Documents {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuidv5_and_depend_on_instance_seed_index() {
        let spec = |c: &str, seed| CorpusSpec {
            instance: CountryCode::new(c).unwrap(),
            count: 1,
            seed,
            now: time::macros::datetime!(2026-06-01 12:00 UTC),
        };
        let a = document_id(&spec("USA", 1), 0);
        assert_eq!(a.get_version_num(), 5);
        assert_eq!(a, document_id(&spec("USA", 1), 0));
        assert_ne!(a, document_id(&spec("USA", 1), 1));
        assert_ne!(a, document_id(&spec("USA", 2), 0));
        assert_ne!(a, document_id(&spec("FRA", 1), 0));
        // Independent of `now`: a re-seed at another time replaces the same ids.
        let mut later = spec("USA", 1);
        later.now += time::Duration::days(3);
        assert_eq!(a, document_id(&later, 0));
    }

    #[test]
    fn extreme_now_does_not_panic() {
        for now in [
            time::PrimitiveDateTime::MIN.assume_utc(),
            time::PrimitiveDateTime::MAX.assume_utc(),
        ] {
            let spec = CorpusSpec {
                instance: CountryCode::new("USA").unwrap(),
                count: 50,
                seed: 3,
                now,
            };
            assert_eq!(generate(&spec).count(), 50);
        }
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Counter-Drone Operations"), "counter-drone-operations");
        assert_eq!(slug("Order of Battle Extract"), "order-of-battle-extract");
    }
}
