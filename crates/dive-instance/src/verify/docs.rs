//! What the resource-service and KAS checks share: the three test users they act as (of three
//! clearances), the documents in the instance's resource store, and for each user a permitted
//! and a forbidden document, chosen by the local PDP — fed the user's verified token claims and
//! the instance's policy data, with exactly the inputs the resource service builds
//! (`dive_api::access::input`).

use std::collections::HashSet;
use std::sync::Arc;

use dive_api::{ResourceMeta, ResourceStore};
use dive_core::{Clearance, Equivalency, SubjectAttributes};
use dive_policy::Pdp;

use tokio::task::JoinHandle;

use super::{Ctx, PlannedService, UserToken};
use crate::config::InstancePaths;
use crate::seed_record::{self, SeedRecord};

/// Test users of these levels act in the checks: lowest, middle and highest clearance.
const LEVELS: [usize; 3] = [1, 3, 5];

/// Documents created less than this long before now (or after it) are not picked: their
/// embargo decision could change between the local decision and the service's.
const EMBARGO_MARGIN_MS: i64 = 10 * 60 * 1000;

pub struct Shared {
    /// The stack runs these services.
    pub api: bool,
    pub kas: bool,
    /// Epoch ms when these checks began (audit rows are looked for from here).
    pub started_ms: i64,
    pub store: Result<Store, String>,
    pub pdp: Result<Arc<Pdp>, String>,
    pub record: Result<Option<SeedRecord>, String>,
    pub actors: Vec<Actor>,
}

pub struct Store {
    pub store: ResourceStore,
    pub location: String,
    pub metas: Arc<Vec<ResourceMeta>>,
}

/// A test user the checks act as.
pub struct Actor {
    pub name: String,
    /// `Err`: why the user cannot act (no token: the login failed).
    pub token: Result<UserToken, String>,
    pub subject: Option<SubjectAttributes>,
    pub unique_id: String,
    pub permitted: Result<Pick, String>,
    pub forbidden: Result<Pick, String>,
}

/// A document and the local PDP's decision on reading it.
#[derive(Clone)]
pub struct Pick {
    pub meta: ResourceMeta,
    pub reason: String,
}

/// What is read from disk: the seed record and the store with every document's metadata.
pub struct Loaded {
    store: Result<Store, String>,
    record: Result<Option<SeedRecord>, String>,
}

/// Start reading the store on a blocking thread, so that it overlaps
/// the earlier checks (logins mostly wait for the IdP): `None` when the stack has neither api
/// nor kas.
pub fn start_loading(
    paths: &InstancePaths,
    planned: &[PlannedService],
) -> Option<JoinHandle<Loaded>> {
    if !planned.iter().any(|s| s.name == "api" || s.name == "kas") {
        return None;
    }
    let paths = paths.clone();
    let handle = tokio::runtime::Handle::current();
    Some(tokio::task::spawn_blocking(move || Loaded {
        record: seed_record::read(&paths),
        store: handle.block_on(open_store(&paths)),
    }))
}

pub async fn prepare(
    ctx: &Ctx,
    pdp: Result<Arc<Pdp>, String>,
    loading: Option<JoinHandle<Loaded>>,
) -> Shared {
    let api = ctx.planned.iter().any(|s| s.name == "api");
    let kas = ctx.planned.iter().any(|s| s.name == "kas");
    let started_ms = dive_api::store::now_ms();
    let mut shared = Shared {
        api,
        kas,
        started_ms,
        store: Err("not opened".into()),
        pdp: Err("not loaded".into()),
        record: Ok(None),
        actors: Vec::new(),
    };
    let Some(loading) = loading else {
        return shared;
    };
    match loading.await {
        Ok(l) => {
            shared.store = l.store;
            shared.pdp = pdp;
            shared.record = l.record;
        }
        Err(e) => {
            let why = format!("reading the store and policy failed: {e}");
            shared.store = Err(why);
        }
    }
    let code = ctx.cfg.code.as_str().to_lowercase();
    let hashed: Arc<HashSet<String>> = Arc::new(match &shared.record {
        Ok(Some(r)) => r.plaintext_sha256.keys().cloned().collect(),
        _ => HashSet::new(),
    });
    // The picks are PDP decisions (CPU): one blocking task per user, concurrently.
    let mut picks = Vec::new();
    for level in LEVELS {
        let name = format!("testuser-{code}-{level}");
        let token = ctx
            .tokens
            .get(&name)
            .cloned()
            .ok_or_else(|| format!("{name} has no token (its login failed or did not run)"));
        let subject = token
            .as_ref()
            .ok()
            .and_then(|t| SubjectAttributes::from_claims(&t.claims, Equivalency::builtin()).ok());
        let unique_id = token
            .as_ref()
            .ok()
            .and_then(|t| t.claims["uniqueID"].as_str().map(str::to_string))
            .unwrap_or_default();
        let task = match (&subject, &shared.store, &shared.pdp) {
            (None, _, _) => {
                let why = match &token {
                    Err(e) => e.clone(),
                    Ok(_) => format!("{name}'s token claims do not form subject attributes"),
                };
                Err(why)
            }
            (_, Err(e), _) | (_, _, Err(e)) => Err(e.clone()),
            (Some(s), Ok(store), Ok(pdp)) => {
                let (s, metas, pdp, hashed) =
                    (s.clone(), store.metas.clone(), pdp.clone(), hashed.clone());
                Ok(tokio::task::spawn_blocking(move || {
                    pick(&pdp, &s, &metas, started_ms, &hashed)
                }))
            }
        };
        picks.push((name, token, subject, unique_id, task));
    }
    for (name, token, subject, unique_id, task) in picks {
        let (permitted, forbidden) = match task {
            Err(why) => (Err(why.clone()), Err(why)),
            Ok(t) => match t.await {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("choosing documents failed: {e}");
                    (Err(why.clone()), Err(why))
                }
            },
        };
        shared.actors.push(Actor {
            name,
            token,
            subject,
            unique_id,
            permitted,
            forbidden,
        });
    }
    shared
}

async fn open_store(paths: &InstancePaths) -> Result<Store, String> {
    let location = seed_record::api_database(paths);
    if !std::path::Path::new(&location).exists() {
        return Err(format!("the resource store {location} does not exist"));
    }
    let store = ResourceStore::open(&location)
        .await
        .map_err(|e| format!("resource store {location}: {e}"))?;
    let (_, metas) = store
        .load_all()
        .await
        .map_err(|e| format!("resource store {location}: {e}"))?;
    Ok(Store {
        store,
        location,
        metas: Arc::new(metas),
    })
}

/// A permitted document (preferring seeded ones whose plaintext hash is recorded) and a
/// forbidden one (preferring a clearance denial for users below TOP SECRET), outside the
/// embargo margin.
fn pick(
    pdp: &Pdp,
    subject: &SubjectAttributes,
    metas: &[ResourceMeta],
    now_ms: i64,
    hashed: &HashSet<String>,
) -> (Result<Pick, String>, Result<Pick, String>) {
    // Without recorded hashes (no seed job) any permitted document will do.
    let any_hashed = !hashed.is_empty();
    let prefer_clearance = subject.clearance < Clearance::TopSecret;
    let mut permitted: Option<Pick> = None;
    let mut permitted_unhashed: Option<Pick> = None;
    let mut forbidden: Option<Pick> = None;
    let mut forbidden_other: Option<Pick> = None;
    for m in metas {
        let created = dive_api::store::to_ms(m.created_at);
        if created > now_ms - EMBARGO_MARGIN_MS {
            continue;
        }
        let d = pdp.decide(&dive_api::access::input(subject, "read", &m.id, &m.label));
        let p = || Pick {
            meta: m.clone(),
            reason: d.reason.clone(),
        };
        if d.allow {
            if permitted.is_none() && hashed.contains(&m.id) {
                permitted = Some(p());
            } else if permitted_unhashed.is_none() {
                permitted_unhashed = Some(p());
            }
        } else if forbidden.is_none()
            && (!prefer_clearance || d.reason.starts_with("Insufficient clearance"))
        {
            forbidden = Some(p());
        } else if forbidden_other.is_none() {
            forbidden_other = Some(p());
        }
        let enough = permitted.is_some() || (!any_hashed && permitted_unhashed.is_some());
        if enough && forbidden.is_some() {
            break;
        }
    }
    (
        permitted
            .or(permitted_unhashed)
            .ok_or_else(|| format!("no document in the store ({}) is permitted", metas.len())),
        forbidden
            .or(forbidden_other)
            .ok_or_else(|| format!("no document in the store ({}) is forbidden", metas.len())),
    )
}
