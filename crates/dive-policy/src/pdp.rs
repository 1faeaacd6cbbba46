//! The policy decision point: compiled Rego entrypoints over a data snapshot, a decision cache,
//! and atomic hot reload of policies and data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dive_core::Clearance;
use regorus::{CompiledPolicy, Engine};
use serde_json::Value;
use time::OffsetDateTime;

use crate::cache::DecisionCache;
use crate::decision::{Decision, DecisionData};
use crate::error::PolicyError;
use crate::input::Input;
use crate::sources::{Snapshot, Sources};

/// The decision entrypoints DIVE's policy package provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entrypoint {
    /// Access to a resource (`data.dive.authz.decision`).
    Authz,
    /// Administrative operations (`data.dive.admin.decision`).
    Admin,
    /// Session and token lifetime guardrails (`data.dive.guardrails.decision`).
    Guardrails,
}

impl Entrypoint {
    pub const ALL: [Entrypoint; 3] = [Entrypoint::Authz, Entrypoint::Admin, Entrypoint::Guardrails];

    /// The package path, as in the Data API URL (`dive/authz`).
    pub fn package_path(self) -> &'static str {
        match self {
            Entrypoint::Authz => "dive/authz",
            Entrypoint::Admin => "dive/admin",
            Entrypoint::Guardrails => "dive/guardrails",
        }
    }

    fn rule(self) -> String {
        format!("data.{}.decision", self.package_path().replace('/', "."))
    }
}

const CACHE_CAPACITY: usize = 100_000;

const DEFAULT_TTL_SECONDS: [u64; 5] = [120, 90, 60, 30, 15];

/// Everything compiled from one snapshot.
struct Loaded {
    policies: [CompiledPolicy; 3],
    version: String,
    generation: u64,
    /// Cache TTL per classification rank.
    ttl: [Duration; 5],
    embargo_skew: Duration,
}

/// The PDP. Share it (`Arc<Pdp>`) between threads: decisions take a read lock only to clone the
/// current compiled policy handle.
pub struct Pdp {
    sources: Sources,
    loaded: RwLock<Arc<Loaded>>,
    cache: DecisionCache,
    generation: AtomicU64,
    fingerprint: Mutex<u64>,
    cache_enabled: bool,
}

impl Pdp {
    /// Load and compile the policies and data of `sources`.
    pub fn new(sources: Sources) -> Result<Pdp, PolicyError> {
        let fingerprint = sources.fingerprint();
        let loaded = compile(&sources.load()?, 1)?;
        Ok(Pdp {
            sources,
            loaded: RwLock::new(Arc::new(loaded)),
            cache: DecisionCache::new(CACHE_CAPACITY),
            generation: AtomicU64::new(1),
            fingerprint: Mutex::new(fingerprint),
            cache_enabled: true,
        })
    }

    /// The policies and data embedded in the binary.
    pub fn embedded() -> Result<Pdp, PolicyError> {
        Pdp::new(Sources::embedded())
    }

    /// Turn the decision cache off (benchmarks of uncached decisions, debugging).
    pub fn without_cache(mut self) -> Pdp {
        self.cache_enabled = false;
        self
    }

    /// The content version of the policies and data in force.
    pub fn version(&self) -> String {
        self.current().version.clone()
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Number of cached decisions.
    pub fn cached_decisions(&self) -> usize {
        self.cache.len()
    }

    fn current(&self) -> Arc<Loaded> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is intact.
        match self.loaded.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Decide access to a resource. Never fails: an evaluation error is a deny that says so.
    pub fn decide(&self, input: &Input) -> Decision {
        self.decide_at(Entrypoint::Authz, input)
    }

    /// Decide an administrative operation (admin role, own issuer, MFA).
    pub fn decide_admin(&self, input: &Input) -> Decision {
        self.decide_at(Entrypoint::Admin, input)
    }

    /// Check session and token lifetimes against the instance's guardrails.
    pub fn decide_guardrails(&self, input: &Input) -> Decision {
        self.decide_at(Entrypoint::Guardrails, input)
    }

    pub fn decide_at(&self, entrypoint: Entrypoint, input: &Input) -> Decision {
        let loaded = self.current();
        // Only access decisions are cached: admin decisions are rare and guardrails depend on now.
        let cacheable = self.cache_enabled && entrypoint == Entrypoint::Authz;
        if cacheable
            && let Some(d) = self.cache.get(
                input.key(),
                input.as_json(),
                loaded.generation,
                Instant::now(),
            )
        {
            return d;
        }
        let decision = match evaluate(&loaded, entrypoint, input) {
            Ok(d) => d,
            Err(why) => {
                tracing::warn!(entrypoint = ?entrypoint, error = %why, "policy evaluation failed; denying");
                return Decision::fail_closed(why);
            }
        };
        if cacheable {
            let ttl = ttl_for(&loaded, input, &decision);
            self.cache.insert(
                input.key(),
                input.as_json(),
                &decision,
                ttl,
                loaded.generation,
            );
        }
        decision
    }

    /// Re-read and recompile policies and data now. On error the policies in force stay.
    pub fn reload(&self) -> Result<String, PolicyError> {
        let fingerprint = self.sources.fingerprint();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let loaded = compile(&self.sources.load()?, generation)?;
        let version = loaded.version.clone();
        match self.loaded.write() {
            Ok(mut g) => *g = Arc::new(loaded),
            Err(p) => *p.into_inner() = Arc::new(loaded),
        }
        self.cache.clear();
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fingerprint;
        }
        tracing::info!(version = %version, "policies and data reloaded");
        Ok(version)
    }

    /// Reload if any policy or data file changed since the last load; `Ok(None)` if none did.
    pub fn reload_if_changed(&self) -> Result<Option<String>, PolicyError> {
        let now = self.sources.fingerprint();
        let last = self.fingerprint.lock().map(|f| *f).unwrap_or(0);
        if now == last {
            return Ok(None);
        }
        match self.reload() {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                // Remember the broken state so the same error is not logged every poll.
                if let Ok(mut f) = self.fingerprint.lock() {
                    *f = now;
                }
                Err(e)
            }
        }
    }
}

fn compile(snapshot: &Snapshot, generation: u64) -> Result<Loaded, PolicyError> {
    let data = regorus::Value::from(snapshot.data.clone());
    let compile_one = |ep: Entrypoint| -> Result<CompiledPolicy, PolicyError> {
        let mut engine = new_engine(snapshot, data.clone(), false)?;
        let rule: regorus::Rc<str> = ep.rule().into();
        engine
            .compile_with_entrypoint(&rule)
            .map_err(|e| PolicyError::Compile {
                entrypoint: ep.rule(),
                why: e.to_string(),
            })
    };
    let policies = [
        compile_one(Entrypoint::Authz)?,
        compile_one(Entrypoint::Admin)?,
        compile_one(Entrypoint::Guardrails)?,
    ];
    let settings = snapshot.data.pointer("/dive/settings");
    let mut ttl = DEFAULT_TTL_SECONDS.map(Duration::from_secs);
    for level in Clearance::ALL {
        if let Some(s) = settings
            .and_then(|s| s.pointer(&format!("/cacheTtlSeconds/{}", level.as_str())))
            .and_then(Value::as_u64)
        {
            ttl[usize::from(level.rank())] = Duration::from_secs(s);
        }
    }
    let skew = settings
        .and_then(|s| s.get("embargoSkewSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(300);
    Ok(Loaded {
        policies,
        version: snapshot.version.clone(),
        generation,
        ttl,
        embargo_skew: Duration::from_secs(skew),
    })
}

/// An engine with the snapshot's data and policies (`with_tests`: also the `*_test.rego` files).
pub(crate) fn new_engine(
    snapshot: &Snapshot,
    data: regorus::Value,
    with_tests: bool,
) -> Result<Engine, PolicyError> {
    let mut engine = Engine::new();
    // A builtin given a value of the wrong type is undefined (as in OPA), so malformed input is
    // denied by the policy with a reason instead of aborting the evaluation.
    engine.set_strict_builtin_errors(false);
    engine.add_data(data).map_err(|e| PolicyError::Data {
        path: "data".into(),
        why: e.to_string(),
    })?;
    for p in snapshot
        .policies
        .iter()
        .filter(|p| with_tests || !p.is_test())
    {
        engine
            .add_policy(p.path.clone(), p.text.clone())
            .map_err(|e| PolicyError::Parse {
                path: p.path.clone(),
                why: e.to_string(),
            })?;
    }
    Ok(engine)
}

fn evaluate(loaded: &Loaded, entrypoint: Entrypoint, input: &Input) -> Result<Decision, String> {
    let policy = &loaded.policies[entrypoint as usize];
    let value = policy
        .eval_with_input(input.rego_value())
        .map_err(|e| e.to_string())?;
    if value == regorus::Value::Undefined {
        return Err("the policy produced no decision".into());
    }
    let json = serde_json::to_value(&value).map_err(|e| e.to_string())?;
    let mut data: DecisionData =
        serde_json::from_value(json).map_err(|e| format!("malformed decision: {e}"))?;
    data.policy_version = Some(loaded.version.clone());
    Ok(Decision::new(data))
}

/// Shorter TTLs for higher classifications; never past the moment an embargo lifts when the
/// decision was taken against the clock.
fn ttl_for(loaded: &Loaded, input: &Input, decision: &Decision) -> Duration {
    let rank = decision
        .evaluation_details
        .pointer("/resource/classification")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<Clearance>().ok())
        .map_or(4, |c| usize::from(c.rank()));
    let mut ttl = loaded.ttl[rank];
    if !input.has_current_time()
        && let Some(created) = input.creation_date()
    {
        let lifts = created - loaded.embargo_skew;
        let now = OffsetDateTime::now_utc();
        if lifts > now {
            let until = (lifts - now).try_into().unwrap_or(Duration::ZERO);
            ttl = ttl.min(until);
        }
    }
    ttl
}
