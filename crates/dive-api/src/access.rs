//! Which documents a subject may read, without asking the PDP once per document.
//!
//! The policy's decision for a `read` depends on the document only through its label (and, for
//! the embargo, on its creation date against the clock). Of the releasability list it reads
//! only whether the subject's country is listed — except for NOFORN labels (coherent only when
//! releasable to exactly USA) and in strict coherence mode (every listed country must be in a
//! listed COI). The catalog groups documents into access classes of equal labels with creation
//! date, originator and (where allowed) the releasability list set aside, so a subject's access
//! to a whole corpus is:
//!
//! * one **PDP decision per class** — the real policy, with the subject's real attributes and the
//!   class's label, without a creation date (so the embargo check passes) and, for classes
//!   without a releasability list, releasable to exactly the subject's country (so the
//!   releasability check passes and nothing else changes);
//! * the **releasability** per document for those classes: the subject's country is listed;
//! * the **embargo** per document: embargoed while `now < creationDate − skew`, the skew read from
//!   the policy's own settings (`embargoSkewSeconds`).
//!
//! Since every other check reads only the subject, the class's label and the context, "class
//! allowed, country listed and not embargoed" is exactly the PDP's decision for the document.
//! Before asking the PDP about a
//! class, three necessary conditions of an allow are tested in Rust (clearance rank, country in
//! the releasability list, the COI rule, the industry flag); each holds whenever the policy
//! allows, so they only save PDP calls and never admit anything. The test
//! `tests/prefilter.rs` checks the equality against one full PDP decision per document over a
//! generated corpus, and the search confirms every returned item with a full decision anyway.
//!
//! Views (the per-class answers for one subject) are memoised per subject, catalog generation and
//! policy version; a change of any of them computes a new view.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use dive_core::{
    Clearance, CoiOperator, CoiRegistry, Equivalency, OrganizationType, ResourceAttributes,
    SecurityLabel, SubjectAttributes, US_ONLY,
};
use dive_policy::{Decision, Input, Pdp, RequestContext};
use serde_json::Value;
use time::OffsetDateTime;

use crate::catalog::{Catalog, Entry};
use crate::error::ApiError;
use crate::store::ResourceMeta;

/// Facts of the policy data the service needs besides decisions.
#[derive(Debug, Clone)]
pub struct PolicyFacts {
    pub version: String,
    /// `embargoSkewSeconds` in milliseconds.
    pub embargo_skew_ms: i64,
    /// `cacheTtlSeconds` per classification rank, where the settings give one.
    pub cache_ttl: [Option<Duration>; 5],
    /// `strictCoherence`.
    pub strict_coherence: bool,
    pub coi: CoiRegistry,
    pub equivalency: Equivalency,
}

impl PolicyFacts {
    /// Read from the PDP's sources: the settings document and, when the data directory replaces
    /// them, its `coi.json` and `equivalency.json`.
    pub fn load(pdp: &Pdp) -> Result<PolicyFacts, ApiError> {
        let snapshot = pdp.sources().load()?;
        let settings = snapshot.data.pointer("/dive/settings");
        let skew = settings
            .and_then(|s| s.get("embargoSkewSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(300);
        let strict = settings
            .and_then(|s| s.get("strictCoherence"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut cache_ttl = [None; 5];
        for level in Clearance::ALL {
            cache_ttl[usize::from(level.rank())] = settings
                .and_then(|s| s.get("cacheTtlSeconds"))
                .and_then(|t| t.get(level.as_str()))
                .and_then(Value::as_u64)
                .map(Duration::from_secs);
        }
        let dir: Option<PathBuf> = pdp.sources().data_dir.clone();
        let file = |name: &str| -> Option<PathBuf> {
            dir.as_deref()
                .map(|d: &Path| d.join(name))
                .filter(|p| p.is_file())
        };
        let coi = match file("coi.json") {
            Some(p) => CoiRegistry::load(&p).map_err(|e| ApiError::Config(e.to_string()))?,
            None => CoiRegistry::builtin().clone(),
        };
        let equivalency = match file("equivalency.json") {
            Some(p) => Equivalency::load(&p).map_err(|e| ApiError::Config(e.to_string()))?,
            None => Equivalency::builtin().clone(),
        };
        Ok(PolicyFacts {
            version: snapshot.version,
            embargo_skew_ms: skew.saturating_mul(1000),
            cache_ttl,
            strict_coherence: strict,
            coi,
            equivalency,
        })
    }
}

/// One subject's access to every class of one catalog generation under one policy version.
#[derive(Debug)]
pub struct View {
    subject: SubjectAttributes,
    pub generation: i64,
    pub policy_version: String,
    /// Strict coherence mode: documents are decided by their full classes.
    pub strict: bool,
    allowed: Vec<bool>,
    /// PDP decisions this view took (classes not excluded by the necessary conditions).
    pub pdp_calls: usize,
}

impl View {
    pub fn class_allowed(&self, class: u32) -> bool {
        self.allowed.get(class as usize).copied().unwrap_or(false)
    }

    /// Whether the document is readable, embargo aside.
    pub fn admits(&self, catalog: &Catalog, entry: &Entry) -> bool {
        let class = if self.strict {
            entry.full_class
        } else {
            entry.class
        };
        if !self.class_allowed(class) {
            return false;
        }
        let kept = catalog
            .classes()
            .get(class as usize)
            .is_some_and(|c| c.releasability_kept);
        kept || entry
            .meta
            .label
            .releasability_to
            .contains(&self.subject.country_of_affiliation)
    }
}

/// Necessary conditions of a `read` allow, tested in Rust. Each is implied by the policy
/// allowing (an allow requires the subject's normalised level to equal `clearance`, the resource's
/// to equal `classification`, and the COI and industry rules below), so `false` here means the
/// PDP would deny.
pub fn may_pass(subject: &SubjectAttributes, label: &SecurityLabel) -> bool {
    if subject.clearance.rank() < label.classification.rank() {
        return false;
    }
    if !label
        .releasability_to
        .contains(&subject.country_of_affiliation)
    {
        return false;
    }
    if subject.organization_type == OrganizationType::Industry && !label.releasable_to_industry {
        return false;
    }
    coi_passes(&subject.acp_coi, &label.coi, label.coi_operator)
}

/// The policy's COI rule: no COI passes; US-ONLY needs the subject's tags to be exactly
/// `[US-ONLY]`; ALL needs every tag; ANY needs one.
pub fn coi_passes(subject: &[String], resource: &[String], op: CoiOperator) -> bool {
    if resource.is_empty() {
        return true;
    }
    if resource.iter().any(|t| t == US_ONLY) {
        return subject.len() == 1 && subject[0] == US_ONLY;
    }
    match op {
        CoiOperator::All => resource.iter().all(|t| subject.contains(t)),
        CoiOperator::Any => resource.iter().any(|t| subject.contains(t)),
    }
}

/// The full PDP input for `action` on a document.
pub fn input(subject: &SubjectAttributes, action: &str, id: &str, label: &SecurityLabel) -> Input {
    Input::new(
        subject,
        action,
        &ResourceAttributes::from_label(id, label.clone(), true),
        &RequestContext::default(),
    )
}

/// Access evaluation shared by the service's requests.
pub struct Access {
    pdp: Arc<Pdp>,
    facts: RwLock<Arc<PolicyFacts>>,
    views: Mutex<HashMap<u64, Arc<View>>>,
    documents: DocumentMemo,
}

/// The PDP's decision on one document for one subject and action, as [`Access::decide_document`]
/// hands it out, with room for what a handler renders from it once (the same for every request
/// it answers).
#[derive(Debug)]
pub struct DocumentDecision {
    pub decision: Decision,
    pub meta: Arc<ResourceMeta>,
    rendered: OnceLock<Bytes>,
}

impl DocumentDecision {
    /// `render(decision, meta)`, computed on first use and shared afterwards.
    pub fn rendered(&self, render: impl FnOnce(&Decision, &ResourceMeta) -> Bytes) -> Bytes {
        self.rendered
            .get_or_init(|| render(&self.decision, &self.meta))
            .clone()
    }
}

struct Memo {
    subject: SubjectAttributes,
    action: Box<str>,
    expires: Instant,
    /// Its `meta` is the catalog's metadata the decision was made on: a hit needs the same
    /// allocation (held here, so it cannot be reused for another document), hence the same id
    /// and label.
    shared: Arc<DocumentDecision>,
}

/// Per-document decisions of the GET and download path, so that a repeated request skips
/// building the PDP input (the subject and label serialised to JSON and hashed) and the PDP
/// cache's comparison of whole input documents. A hit is exactly the PDP's decision: same subject
/// attributes, action and document metadata (compared, not hashed), made under the policy version
/// in force, and — since the policy reads the clock only for the embargo — not past the moment
/// the document's embargo lifts; it is never kept longer than the PDP would cache it
/// (`cacheTtlSeconds` of its classification; without settings, [`MEMO_DEFAULT_TTL`]).
struct DocumentMemo {
    shards: Vec<Mutex<HashMap<u64, Memo>>>,
}

const MEMO_SHARDS: usize = 8;
/// Memoised document decisions per shard; beyond it, expired ones go, then all. An entry holds a
/// copy of the subject's attributes and shares the decision and its rendered body (1–2 KB), so
/// the 32,768 in all stay within tens of MB.
const MEMO_PER_SHARD: usize = 4_096;
/// How long a decision is memoised when the policy settings give no TTL: no longer than the
/// PDP's shortest default.
pub const MEMO_DEFAULT_TTL: Duration = Duration::from_secs(15);

fn memo_key(subject: &SubjectAttributes, action: &str, id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (&subject.unique_id, &subject.issuer, action, id).hash(&mut h);
    h.finish()
}

/// How long the PDP's `decision` on `label` may be memoised from `now` (`None`: not at all). The
/// TTL the settings give the decision's classification (as the PDP reads it from the evaluation
/// details; unknown: the shortest), and never past `creationDate − skew` while that is ahead.
pub fn memo_lifetime(
    facts: &PolicyFacts,
    decision: &Decision,
    label: &SecurityLabel,
    now: OffsetDateTime,
) -> Option<Duration> {
    // An evaluation failure carries no policy version: decided again next time.
    decision.policy_version.as_ref()?;
    let ttl_of = |rank: usize| facts.cache_ttl[rank].unwrap_or(MEMO_DEFAULT_TTL);
    let rank = decision
        .evaluation_details
        .pointer("/resource/classification")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<Clearance>().ok())
        .map(|c| usize::from(c.rank()));
    let mut ttl = match rank {
        Some(r) => ttl_of(r),
        None => (0..5).map(ttl_of).min().unwrap_or(Duration::ZERO),
    };
    if let Some(created) = label.creation_date {
        let lifts = created - time::Duration::milliseconds(facts.embargo_skew_ms);
        if lifts > now {
            ttl = ttl.min((lifts - now).try_into().unwrap_or(Duration::ZERO));
        }
    }
    (!ttl.is_zero()).then_some(ttl)
}

impl DocumentMemo {
    fn new() -> DocumentMemo {
        DocumentMemo {
            shards: (0..MEMO_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, Memo>> {
        &self.shards[(key as usize) % MEMO_SHARDS]
    }

    fn get(
        &self,
        key: u64,
        subject: &SubjectAttributes,
        action: &str,
        meta: &Arc<ResourceMeta>,
        version: &str,
        now: Instant,
    ) -> Option<Arc<DocumentDecision>> {
        let shard = self.shard(key).lock().ok()?;
        let m = shard.get(&key)?;
        (m.expires > now
            && Arc::ptr_eq(&m.shared.meta, meta)
            && *m.action == *action
            && m.shared.decision.policy_version.as_deref() == Some(version)
            && m.subject == *subject)
            .then(|| m.shared.clone())
    }

    fn insert(&self, key: u64, memo: Memo) {
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        if shard.len() >= MEMO_PER_SHARD {
            let now = Instant::now();
            shard.retain(|_, m| m.expires > now);
            if shard.len() >= MEMO_PER_SHARD {
                shard.clear();
            }
        }
        shard.insert(key, memo);
    }

    fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut s) = s.lock() {
                s.clear();
            }
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.len()))
            .sum()
    }
}

/// Subjects whose views are kept; beyond this the memo starts over (views are cheap to rebuild).
const MAX_VIEWS: usize = 4096;

fn subject_key(s: &SubjectAttributes) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(s).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl Access {
    pub fn new(pdp: Arc<Pdp>) -> Result<Access, ApiError> {
        let facts = PolicyFacts::load(&pdp)?;
        Ok(Access {
            pdp,
            facts: RwLock::new(Arc::new(facts)),
            views: Mutex::new(HashMap::new()),
            documents: DocumentMemo::new(),
        })
    }

    pub fn pdp(&self) -> &Arc<Pdp> {
        &self.pdp
    }

    /// The policy facts for the policy version in force (re-read after a reload).
    pub fn facts(&self) -> Arc<PolicyFacts> {
        let current = match self.facts.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let version = self.pdp.version();
        if current.version == version {
            return current;
        }
        match PolicyFacts::load(&self.pdp) {
            Ok(f) => {
                let f = Arc::new(f);
                match self.facts.write() {
                    Ok(mut g) => *g = f.clone(),
                    Err(p) => *p.into_inner() = f.clone(),
                }
                f
            }
            Err(e) => {
                // The PDP accepted the data, so this is a race with a file being rewritten; the
                // previous facts stay until the next call.
                tracing::warn!(error = %e, "re-reading policy settings failed");
                current
            }
        }
    }

    /// Decide one request with the PDP.
    pub fn decide(&self, input: &Input) -> Decision {
        self.pdp.decide(input)
    }

    /// The PDP's decision of `action` on the catalog document `meta` for `subject` (memoised:
    /// see [`DocumentMemo`]).
    pub fn decide_document(
        &self,
        subject: &SubjectAttributes,
        action: &str,
        meta: &Arc<ResourceMeta>,
    ) -> Arc<DocumentDecision> {
        let key = memo_key(subject, action, &meta.id);
        let version = self.pdp.version();
        // Taken before deciding: the embargo side and the lifetime are judged no later than the
        // decision was made.
        let (now, now_utc) = (Instant::now(), OffsetDateTime::now_utc());
        if let Some(hit) = self
            .documents
            .get(key, subject, action, meta, &version, now)
        {
            return hit;
        }
        let decision = self
            .pdp
            .decide(&input(subject, action, &meta.id, &meta.label));
        let shared = Arc::new(DocumentDecision {
            decision,
            meta: meta.clone(),
            rendered: OnceLock::new(),
        });
        let facts = self.facts();
        // Only a decision of the version that was in force before deciding: one of a policy
        // that was reloaded meanwhile is answered, but not kept under the older version.
        if shared.decision.policy_version.as_deref() == Some(version.as_str())
            && let Some(ttl) = memo_lifetime(&facts, &shared.decision, &meta.label, now_utc)
        {
            self.documents.insert(
                key,
                Memo {
                    subject: subject.clone(),
                    action: action.into(),
                    expires: now + ttl,
                    shared: shared.clone(),
                },
            );
        }
        shared
    }

    /// Document decisions memoised now (tests, diagnostics).
    pub fn memoised_documents(&self) -> usize {
        self.documents.len()
    }

    /// The subject's view of `catalog` (memoised).
    pub fn view(&self, subject: &SubjectAttributes, catalog: &Catalog) -> Arc<View> {
        let version = self.pdp.version();
        let key = subject_key(subject);
        if let Ok(views) = self.views.lock()
            && let Some(v) = views.get(&key)
            && v.generation == catalog.generation
            && v.policy_version == version
            && v.subject == *subject
        {
            return v.clone();
        }
        let view = Arc::new(self.compute(subject, catalog, version));
        if let Ok(mut views) = self.views.lock() {
            if views.len() >= MAX_VIEWS {
                views.clear();
            }
            views.insert(key, view.clone());
        }
        view
    }

    fn compute(&self, subject: &SubjectAttributes, catalog: &Catalog, version: String) -> View {
        let strict = self.facts().strict_coherence;
        let mut pdp_calls = 0;
        let mut allowed = vec![false; catalog.classes().len()];
        for &i in catalog.decision_classes(strict) {
            let class = &catalog.classes()[i as usize];
            let mut probe = class.label.clone();
            if !class.releasability_kept {
                probe.releasability_to = vec![subject.country_of_affiliation];
            }
            if !may_pass(subject, &probe) {
                continue;
            }
            pdp_calls += 1;
            let id = format!("class:{}:{i}", catalog.generation);
            allowed[i as usize] = self.pdp.decide(&input(subject, "read", &id, &probe)).allow;
        }
        View {
            subject: subject.clone(),
            generation: catalog.generation,
            policy_version: version,
            strict,
            allowed,
            pdp_calls,
        }
    }

    /// Forget every view and memoised decision (e.g. after a policy reload, to free memory
    /// early).
    pub fn clear(&self) {
        if let Ok(mut v) = self.views.lock() {
            v.clear();
        }
        self.documents.clear();
    }
}

/// Whether a document is embargoed at `now_ms` (the policy's rule: available from
/// creationDate − skew).
pub fn embargoed(entry: &Entry, now_ms: i64, skew_ms: i64) -> bool {
    now_ms < entry.created_ms.saturating_sub(skew_ms)
}

/// Whether the view admits the document now.
pub fn accessible(
    view: &View,
    catalog: &Catalog,
    entry: &Entry,
    now_ms: i64,
    skew_ms: i64,
) -> bool {
    view.admits(catalog, entry) && !embargoed(entry, now_ms, skew_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn coi_rule() {
        let all = CoiOperator::All;
        let any = CoiOperator::Any;
        assert!(coi_passes(&[], &[], all));
        assert!(coi_passes(&tags(&["FVEY", "NATO"]), &tags(&["FVEY"]), all));
        assert!(!coi_passes(&tags(&["FVEY"]), &tags(&["FVEY", "NATO"]), all));
        assert!(coi_passes(&tags(&["FVEY"]), &tags(&["FVEY", "NATO"]), any));
        assert!(!coi_passes(&tags(&["QUAD"]), &tags(&["FVEY", "NATO"]), any));
        assert!(coi_passes(&tags(&["US-ONLY"]), &tags(&["US-ONLY"]), all));
        assert!(!coi_passes(
            &tags(&["US-ONLY", "FVEY"]),
            &tags(&["US-ONLY"]),
            any
        ));
    }
}
