//! Federated search: one query answered by this instance and, in parallel, by every active
//! partner instance's resource service with the caller's own token, each partner bounded by a
//! timeout and guarded by a circuit breaker, the answers merged.
//!
//! Partners are read from `<instance>/federation/partners.json` (written by federation linking;
//! re-read when it changes). Only `active` links are asked. Each partner applies its own policy to
//! the caller's token, so what comes back is what the caller may see there. A partner that is
//! down, slow or refusing costs at most its timeout and is reported; the answer is then marked
//! `partial`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dive_core::CountryCode;
use dive_watch::{Followed, Stamp};
use serde::Serialize;
use serde_json::{Value, json};

/// Per-partner time limit when the request names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);
/// Bounds of a requested per-partner time limit.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(50);
pub const MAX_TIMEOUT: Duration = Duration::from_millis(10_000);

pub use dive_core::federation::{LinkStatus, Partner, PartnersFile};

/// The partners listed, or why the file cannot be used.
pub type PartnerList = Arc<Result<Vec<Partner>, String>>;

/// The partners file, re-read when it changes (looked at on every use: one `stat`). A missing
/// file means no partners; a malformed one is an error (reported with every federated search,
/// which then asks no partner: never guess who to send a user's token to).
pub struct Partners {
    file: PathBuf,
    listed: Followed<Result<Vec<Partner>, String>>,
}

impl Partners {
    pub fn new(file: PathBuf) -> Partners {
        let stamp = Stamp::of_file(&file);
        let listed = Followed::new(read_partners(&file), stamp, Duration::ZERO);
        Partners { file, listed }
    }

    /// The partners listed now.
    pub fn current(&self) -> PartnerList {
        self.listed.current(
            || Stamp::of_file(&self.file),
            |_| Some(read_partners(&self.file)),
        )
    }
}

fn read_partners(file: &Path) -> Result<Vec<Partner>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    PartnersFile::from_json(&text)
        .map(|f| f.partners)
        .map_err(|e| format!("{}: {e}", file.display()))
}

pub use dive_http::{BreakerState, Permit};

/// Per-partner circuit breakers (see [`dive_http::Breakers`]).
pub type Breakers = dive_http::Breakers<CountryCode>;

/// How one instance answered.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub instance: String,
    /// `ok`, `error`, `timeout` or `breaker_open`.
    pub status: &'static str,
    pub count: usize,
    pub total: usize,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub breaker: BreakerState,
}

/// One instance's search answer (the body of `GET /api/resources`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub instance: String,
    pub body: Value,
}

/// Merge the answers, this instance's first: items de-duplicated by resource id (the first
/// instance's copy kept, each tagged with the instance that answered), ordered as `sort` asks,
/// cut to `limit`; totals and facet counts summed.
pub fn merge(answers: &[Answer], sort: &str, limit: usize) -> (Vec<Value>, usize, Value) {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let mut total = 0usize;
    let mut facets: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for a in answers {
        total += a.body["total"].as_u64().unwrap_or(0) as usize;
        if let Some(list) = a.body["items"].as_array() {
            for it in list {
                let Some(id) = it["id"].as_str() else {
                    continue;
                };
                if seen.insert(id.to_string()) {
                    let mut it = it.clone();
                    it["instance"] = json!(a.instance);
                    items.push(it);
                }
            }
        }
        if let Some(f) = a.body["facets"].as_object() {
            for (facet, counts) in f {
                let into = facets.entry(facet.clone()).or_default();
                for (k, v) in counts.as_object().into_iter().flatten() {
                    *into.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
        }
    }
    let created = |v: &Value| v["createdAt"].as_str().unwrap_or("").to_string();
    match sort {
        "oldest" => items.sort_by_key(created),
        "title" => items.sort_by_key(|v| v["title"].as_str().unwrap_or("").to_lowercase()),
        // RFC 3339 in UTC sorts as text; stable, so ties keep instance order.
        _ => items.sort_by_key(|v| std::cmp::Reverse(created(v))),
    }
    items.truncate(limit);
    (items, total, json!(facets))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn partners_file_is_validated_and_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partners.json");
        let p = Partners::new(file.clone());
        assert_eq!(p.current().as_ref(), &Ok(Vec::new()), "missing: none");
        std::fs::write(
            &file,
            r#"{"partners":[{"code":"FRA","apiUrl":"https://localhost:8551","status":"active"}]}"#,
        )
        .unwrap();
        let got = p.current();
        let list = got.as_ref().as_ref().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, LinkStatus::Active);
        for (bad, why) in [
            (
                r#"{"partners":[{"code":"FRA","apiUrl":"http://x","status":"active"}]}"#,
                "https://",
            ),
            (
                r#"{"partners":[{"code":"FRA","apiUrl":"https://x","status":"on"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"partners":[{"code":"FRA","apiUrl":"https://x","status":"active"},{"code":"FRA","apiUrl":"https://y","status":"active"}]}"#,
                "twice",
            ),
            (r#"{"partners":[],"extra":1}"#, "unknown field"),
        ] {
            std::fs::write(&file, bad).unwrap();
            // Make sure the modification time moves even on coarse clocks.
            let t = SystemTime::now() + Duration::from_secs(seen_secs());
            let f = std::fs::File::options().write(true).open(&file).unwrap();
            f.set_modified(t).unwrap();
            let got = p.current();
            let err = got.as_ref().as_ref().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn seen_secs() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(1);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn answers_merge_deduplicated_sorted_cut_and_summed() {
        let a = Answer {
            instance: "USA".into(),
            body: json!({"total": 3, "items": [
                {"id": "d1", "title": "b", "createdAt": "2026-01-02T00:00:00Z"},
                {"id": "d2", "title": "a", "createdAt": "2026-01-01T00:00:00Z"}],
                "facets": {"classification": {"SECRET": 2}, "coi": {"NATO": 1}}}),
        };
        let b = Answer {
            instance: "FRA".into(),
            body: json!({"total": 2, "items": [
                {"id": "d1", "title": "dup", "createdAt": "2026-01-09T00:00:00Z"},
                {"id": "f1", "title": "c", "createdAt": "2026-01-03T00:00:00Z"}],
                "facets": {"classification": {"SECRET": 1, "CONFIDENTIAL": 1}}}),
        };
        let (items, total, facets) = merge(&[a.clone(), b.clone()], "newest", 10);
        let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["f1", "d1", "d2"]);
        assert_eq!(
            items[1]["instance"], "USA",
            "the first instance's copy is kept"
        );
        assert_eq!(total, 5);
        assert_eq!(facets["classification"]["SECRET"], 3);
        assert_eq!(facets["classification"]["CONFIDENTIAL"], 1);
        assert_eq!(facets["coi"]["NATO"], 1);
        let (items, _, _) = merge(&[a.clone(), b.clone()], "title", 2);
        let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["d2", "d1"]);
        let (items, _, _) = merge(&[a, b], "oldest", 1);
        assert_eq!(items[0]["id"], "d2");
    }
}
