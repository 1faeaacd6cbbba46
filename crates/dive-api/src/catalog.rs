//! The in-memory catalog: every document's metadata, sorted for listing, with the documents
//! grouped into **access classes** — documents whose labels are equal once the creation date
//! (handled separately as the embargo) and the originator (not read by the policy) are set aside.
//! A subject's access to every document of a class is one PDP decision (see `access`).
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
    /// Index into [`Catalog::classes`].
    pub class: u32,
    pub created_ms: i64,
    /// Lower-cased title, for sorting by title.
    pub title_lc: String,
    /// Lower-cased title, description, file name and id: what the text query searches.
    pub text: String,
}

/// Documents whose labels decide alike.
#[derive(Debug, Clone)]
pub struct AccessClass {
    /// The shared label, without creation date and originator.
    pub label: SecurityLabel,
    /// Documents in the class.
    pub documents: usize,
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
    /// Entry indexes in each sort order.
    oldest: Vec<u32>,
    by_title: Vec<u32>,
}

/// The label with the fields that do not enter the class removed.
pub fn class_label(label: &SecurityLabel) -> SecurityLabel {
    let mut l = label.clone();
    l.creation_date = None;
    l.originator = None;
    l
}

fn entry(meta: Arc<ResourceMeta>, class: u32) -> Entry {
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
    }
}

impl Catalog {
    /// Build from the store's documents.
    pub fn build(generation: i64, docs: Vec<ResourceMeta>) -> Catalog {
        Catalog::from_arcs(generation, docs.into_iter().map(Arc::new).collect())
    }

    fn from_arcs(generation: i64, docs: Vec<Arc<ResourceMeta>>) -> Catalog {
        let mut keys: HashMap<String, u32> = HashMap::new();
        let mut classes: Vec<AccessClass> = Vec::new();
        let mut entries: Vec<Entry> = docs
            .into_iter()
            .map(|meta| {
                let label = class_label(&meta.label);
                // The JSON form is a canonical key: fields in declaration order.
                let key = serde_json::to_string(&label).unwrap_or_default();
                let class = *keys.entry(key).or_insert_with(|| {
                    classes.push(AccessClass {
                        label,
                        documents: 0,
                    });
                    (classes.len() - 1) as u32
                });
                classes[class as usize].documents += 1;
                entry(meta, class)
            })
            .collect();
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

    pub fn classes(&self) -> &[AccessClass] {
        &self.classes
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
