//! The in-memory catalog: every document's metadata, sorted for listing, with the documents
//! grouped into **access classes** — documents whose labels are equal once the creation date
//! (handled separately as the embargo), the originator (not read by the policy) and the
//! releasability list (handled separately as "the subject's country is listed") are set aside.
//! A subject's access to every document of a class is one PDP decision (see `access`).
//!
//! The releasability list stays in the class when the policy reads more of it than the subject's
//! own country: for NOFORN labels (coherent only when releasable to exactly USA), and, in the
//! policy's strict coherence mode, for every label (each releasable country must be in a listed
//! COI). For the latter, every document also has a `full_class` that keeps the list.
//!
//! A catalog is an immutable snapshot of one store generation; the service swaps in a new one
//! when the store changes (its own uploads at once, other writers' changes by polling).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use dive_core::SecurityLabel;

use crate::store::{ResourceMeta, to_ms};

/// One document in the catalog.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: Arc<ResourceMeta>,
    /// Index into [`Catalog::classes`]: the class without the releasability list (unless the
    /// label is NOFORN).
    pub class: u32,
    /// The class with the releasability list always kept (used in strict coherence mode).
    pub full_class: u32,
    pub created_ms: i64,
    /// Lower-cased title, for sorting by title.
    pub title_lc: String,
    /// Lower-cased title, description, file name and id: what the text query searches.
    pub text: String,
}

/// Documents whose labels decide alike.
#[derive(Debug, Clone)]
pub struct AccessClass {
    /// The shared label, without creation date and originator; its releasability list is
    /// meaningful only when `releasability_kept`.
    pub label: SecurityLabel,
    /// The releasability list is part of the class (NOFORN, or a full class).
    pub releasability_kept: bool,
}

/// Orders in which a listing can be returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first (the default).
    Newest,
    Oldest,
    /// By title, A–Z.
    Title,
}

impl Sort {
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Title => "title",
        }
    }

    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "newest" => Some(Sort::Newest),
            "oldest" => Some(Sort::Oldest),
            "title" => Some(Sort::Title),
            _ => None,
        }
    }
}

/// The position of a document in a sort order (what a cursor remembers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SortKey {
    #[serde(rename = "c")]
    pub created_ms: i64,
    #[serde(rename = "t")]
    pub title_lc: String,
    #[serde(rename = "i")]
    pub id: String,
}

impl SortKey {
    pub fn of(e: &Entry) -> SortKey {
        SortKey {
            created_ms: e.created_ms,
            title_lc: e.title_lc.clone(),
            id: e.meta.id.clone(),
        }
    }
}

/// Compare two documents in `sort` order; ids break ties so the order is total.
pub fn compare(sort: Sort, a: (i64, &str, &str), b: (i64, &str, &str)) -> Ordering {
    let (ac, at, ai) = a;
    let (bc, bt, bi) = b;
    match sort {
        Sort::Newest => bc.cmp(&ac).then_with(|| ai.cmp(bi)),
        Sort::Oldest => ac.cmp(&bc).then_with(|| ai.cmp(bi)),
        Sort::Title => at.cmp(bt).then_with(|| ai.cmp(bi)),
    }
}

/// A snapshot of the store's documents.
#[derive(Debug, Default)]
pub struct Catalog {
    pub generation: i64,
    /// Newest first.
    entries: Vec<Entry>,
    by_id: HashMap<String, u32>,
    classes: Vec<AccessClass>,
    /// The classes entries refer to as `class` and as `full_class`.
    used_classes: Vec<u32>,
    used_full_classes: Vec<u32>,
    /// Entry indexes in each sort order.
    oldest: Vec<u32>,
    by_title: Vec<u32>,
}

/// Whether the policy reads a label's releasability list beyond the subject's own country
/// (outside strict coherence mode): NOFORN requires it to be exactly `[USA]`.
pub fn releasability_decides(label: &SecurityLabel) -> bool {
    label.caveats.iter().any(|c| c == "NOFORN")
}

/// The label with the fields that do not enter the class removed; the releasability list too,
/// unless `keep_releasability`.
pub fn class_label(label: &SecurityLabel, keep_releasability: bool) -> SecurityLabel {
    let mut l = label.clone();
    l.creation_date = None;
    l.originator = None;
    if !keep_releasability {
        l.releasability_to.clear();
    }
    l
}

/// Interns class labels.
#[derive(Default)]
struct Classes {
    keys: HashMap<String, u32>,
    classes: Vec<AccessClass>,
}

impl Classes {
    fn intern(&mut self, label: &SecurityLabel, keep: bool) -> u32 {
        let label = class_label(label, keep);
        // The JSON form is a canonical key: fields in declaration order.
        let key = format!(
            "{}{}",
            u8::from(keep),
            serde_json::to_string(&label).unwrap_or_default()
        );
        let classes = &mut self.classes;
        *self.keys.entry(key).or_insert_with(|| {
            classes.push(AccessClass {
                label,
                releasability_kept: keep,
            });
            (classes.len() - 1) as u32
        })
    }
}

fn entry(meta: Arc<ResourceMeta>, class: u32, full_class: u32) -> Entry {
    let mut text = meta.title.to_lowercase();
    for extra in [
        meta.description.as_deref().unwrap_or(""),
        &meta.file_name,
        &meta.id,
    ] {
        text.push('\n');
        text.push_str(&extra.to_lowercase());
    }
    Entry {
        created_ms: to_ms(meta.created_at),
        title_lc: meta.title.to_lowercase(),
        text,
        meta,
        class,
        full_class,
    }
}

impl Catalog {
    /// Build from the store's documents.
    pub fn build(generation: i64, docs: Vec<ResourceMeta>) -> Catalog {
        Catalog::from_arcs(generation, docs.into_iter().map(Arc::new).collect())
    }

    fn from_arcs(generation: i64, docs: Vec<Arc<ResourceMeta>>) -> Catalog {
        let mut interned = Classes::default();
        let mut entries: Vec<Entry> = docs
            .into_iter()
            .map(|meta| {
                let class = interned.intern(&meta.label, releasability_decides(&meta.label));
                let full_class = interned.intern(&meta.label, true);
                entry(meta, class, full_class)
            })
            .collect();
        let classes = interned.classes;
        let used = |f: fn(&Entry) -> u32| {
            let mut seen = vec![false; classes.len()];
            entries.iter().for_each(|e| seen[f(e) as usize] = true);
            (0..classes.len() as u32)
                .filter(|&i| seen[i as usize])
                .collect::<Vec<u32>>()
        };
        let used_classes = used(|e| e.class);
        let used_full_classes = used(|e| e.full_class);
        entries.sort_by(|a, b| {
            compare(
                Sort::Newest,
                (a.created_ms, &a.title_lc, &a.meta.id),
                (b.created_ms, &b.title_lc, &b.meta.id),
            )
        });
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.meta.id.clone(), i as u32))
            .collect();
        let order = |sort: Sort| {
            let mut idx: Vec<u32> = (0..entries.len() as u32).collect();
            idx.sort_by(|&a, &b| {
                let (a, b) = (&entries[a as usize], &entries[b as usize]);
                compare(
                    sort,
                    (a.created_ms, &a.title_lc, &a.meta.id),
                    (b.created_ms, &b.title_lc, &b.meta.id),
                )
            });
            idx
        };
        let oldest = order(Sort::Oldest);
        let by_title = order(Sort::Title);
        Catalog {
            generation,
            entries,
            by_id,
            classes,
            used_classes,
            used_full_classes,
            oldest,
            by_title,
        }
    }

    /// This catalog plus one document, as of `generation`.
    pub fn with_added(&self, meta: ResourceMeta, generation: i64) -> Catalog {
        let mut docs: Vec<Arc<ResourceMeta>> =
            self.entries.iter().map(|e| e.meta.clone()).collect();
        docs.retain(|d| d.id != meta.id);
        docs.push(Arc::new(meta));
        Catalog::from_arcs(generation, docs)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|&i| &self.entries[i as usize])
    }

    /// Every class (both kinds: see [`Entry::class`] and [`Entry::full_class`]).
    pub fn classes(&self) -> &[AccessClass] {
        &self.classes
    }

    /// The classes documents are decided by: outside strict coherence mode ([`Entry::class`]),
    /// or in it ([`Entry::full_class`]).
    pub fn decision_classes(&self, strict: bool) -> &[u32] {
        if strict {
            &self.used_full_classes
        } else {
            &self.used_classes
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries in `sort` order.
    pub fn iter_sorted(&self, sort: Sort) -> Box<dyn Iterator<Item = &Entry> + '_> {
        match sort {
            Sort::Newest => Box::new(self.entries.iter()),
            Sort::Oldest => Box::new(self.oldest.iter().map(|&i| &self.entries[i as usize])),
            Sort::Title => Box::new(self.by_title.iter().map(|&i| &self.entries[i as usize])),
        }
    }
}
