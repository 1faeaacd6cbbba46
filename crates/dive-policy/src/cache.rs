//! Decision cache: keyed on the whole input document (every attribute the policy reads,
//! including COI tags, acr/amr and action) plus the policy generation; entries expire by TTL and
//! the whole cache is dropped when policy or data change.
//!
//! The key document is generic: a parsed input (`Value`) for [`crate::Pdp::decide_at`], or the
//! raw bytes of a Data API request body, so that a repeated request skips JSON parsing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::decision::Decision;

const SHARDS: usize = 16;

struct Entry<K> {
    input: K,
    decision: Decision,
    expires: Instant,
    generation: u64,
}

pub(crate) struct DecisionCache<K = Value> {
    shards: Vec<Mutex<HashMap<u64, Entry<K>>>>,
    per_shard: usize,
}

impl<K: PartialEq + Clone> DecisionCache<K> {
    pub(crate) fn new(capacity: usize) -> DecisionCache<K> {
        DecisionCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, Entry<K>>> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// The live decision for `input` (compared in full, so hash collisions cannot mix decisions);
    /// `input` may be a borrowed form of the key document (a byte slice for request bodies).
    pub(crate) fn get<Q: PartialEq + ?Sized>(
        &self,
        key: u64,
        input: &Q,
        generation: u64,
        now: Instant,
    ) -> Option<Decision>
    where
        K: std::borrow::Borrow<Q>,
    {
        let shard = self.shard(key).lock().ok()?;
        let e = shard.get(&key)?;
        (e.generation == generation && e.expires > now && e.input.borrow() == input)
            .then(|| e.decision.clone())
    }

    pub(crate) fn insert(
        &self,
        key: u64,
        input: &K,
        decision: &Decision,
        ttl: Duration,
        generation: u64,
    ) {
        if ttl.is_zero() {
            return;
        }
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        let now = Instant::now();
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard {
                // Still full of live entries: start over rather than track recency per hit.
                shard.clear();
            }
        }
        shard.insert(
            key,
            Entry {
                input: input.clone(),
                decision: decision.clone(),
                expires: now + ttl,
                generation,
            },
        );
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut s) = s.lock() {
                s.clear();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.len()))
            .sum()
    }
}
