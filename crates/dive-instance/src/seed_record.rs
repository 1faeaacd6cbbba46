//! What the last seed job stored: `$DIVE_HOME/instances/<code>/seed.json`, written by
//! `dive seed` after its documents are committed.
//!
//! Two readers need it. SEED's reality check: a re-deployment after `down`/`up` finds the seed
//! job unknown to the new supervisor, and would otherwise generate and store thousands of
//! documents again although the store already holds exactly them. And verify: the plaintext
//! SHA-256 of each seeded document lets a KAS rewrap round trip be compared with the original
//! bytes without regenerating the document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{InstanceConfig, InstancePaths};
use crate::error::InstanceError;

/// `seed.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRecord {
    /// Documents asked for (`--count`).
    pub count: u64,
    /// `--seed-value`.
    pub seed_value: String,
    /// Seeded documents the store holds after the run.
    pub stored: u64,
    /// RFC 3339.
    pub finished_at: String,
    /// Plaintext SHA-256 (hex) of every seeded document, by document id.
    pub plaintext_sha256: BTreeMap<String, String>,
}

/// Forget the record (before a new run replaces the documents: a run that dies half-way must
/// not leave a record describing documents that are gone).
pub fn remove(paths: &InstancePaths) -> Result<(), InstanceError> {
    let p = paths.seed_record();
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::io("remove", &p)(e)),
    }
}

pub fn write(paths: &InstancePaths, r: &SeedRecord) -> Result<(), InstanceError> {
    let text = serde_json::to_string(r).unwrap_or_default() + "\n";
    crate::config::write_atomic(&paths.seed_record(), text.as_bytes(), 0o644)
}

/// The record, if a seed job ever completed; an unreadable record is an error naming the file.
pub fn read(paths: &InstancePaths) -> Result<Option<SeedRecord>, String> {
    let p = paths.seed_record();
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// The instance's resource store (the `dive serve api` default, which the stacks use).
pub fn api_database(paths: &InstancePaths) -> String {
    dive_api::default_database(&paths.home, paths.code)
        .display()
        .to_string()
}

/// Whether the seeding the configuration asks for is already done: the last seed job completed
/// with the same count and seed value, and the resource store holds exactly that many seeded
/// documents. `Ok` says what was found, `Err` why seeding must run.
pub async fn seed_done(paths: &InstancePaths, cfg: &InstanceConfig) -> Result<String, String> {
    let Some(r) = read(paths)? else {
        return Err("no seed job has completed".into());
    };
    if r.count != u64::from(cfg.seed.count) || r.seed_value != cfg.seed.seed_value {
        return Err(format!(
            "the last seed job made {} documents with seed value {:?}; {} with {:?} are asked for",
            r.count, r.seed_value, cfg.seed.count, cfg.seed.seed_value
        ));
    }
    let db = api_database(paths);
    if !std::path::Path::new(&db).exists() {
        return Err(format!("the resource store {db} does not exist"));
    }
    let store = dive_api::ResourceStore::open(&db)
        .await
        .map_err(|e| format!("resource store {db}: {e}"))?;
    let n = store.count(Some(true)).await;
    store.close().await;
    let n = n.map_err(|e| format!("resource store {db}: {e}"))?;
    if n != r.count {
        return Err(format!(
            "the resource store holds {n} seeded documents, not {}",
            r.count
        ));
    }
    Ok(format!(
        "the seed job completed at {} ({} documents, seed value {:?}) and the store holds them",
        r.finished_at, r.count, r.seed_value
    ))
}
