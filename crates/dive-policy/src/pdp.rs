//! The policy decision point: compiled Rego entrypoints over a data snapshot, a decision cache,
//! and atomic hot reload of policies and data.
//!
//! A decision normalises the raw input in Rust (see [`crate::normalize`]) and evaluates the Rego
//! with regorus: access decisions on regorus's register VM (RVM) when it agrees with regorus's
//! interpreter on a self-check corpus at load time, otherwise — and for the admin and guardrail
//! entrypoints — on the interpreter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dive_core::Clearance;
use regorus::rvm::{Program, RegoVM};
use regorus::{CompiledPolicy, Engine};
use serde_json::Value;
use time::OffsetDateTime;

use crate::cache::DecisionCache;
use crate::decision::Decision;
use crate::error::PolicyError;
use crate::input::Input;
use crate::normalize::Normalizer;
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

impl Entrypoint {
    /// Whether this entrypoint decides on the normalised input (guardrails read their own
    /// `{token, session}` document as given).
    fn normalised(self) -> bool {
        self != Entrypoint::Guardrails
    }
}

/// Which regorus engine evaluates an entrypoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// regorus's register VM (compiled program).
    Vm,
    /// regorus's tree-walking interpreter.
    Interpreter,
}

const CACHE_CAPACITY: usize = 100_000;

/// A generous bound on VM instructions per decision (DIVE's policy needs a few hundred); past it
/// the evaluation fails closed.
const VM_MAX_INSTRUCTIONS: usize = 2_000_000;

const DEFAULT_TTL_SECONDS: [u64; 5] = [120, 90, 60, 30, 15];

/// One entrypoint, compiled for the interpreter and, when it passed the self-check, for the VM
/// (otherwise why not).
struct Compiled {
    policy: CompiledPolicy,
    vm: Result<VmRunner, String>,
}

/// The entrypoint's VM program and a pool of machines loaded with it and the data (a machine is
/// mutable while it runs; each evaluation borrows one).
struct VmRunner {
    program: Arc<Program>,
    policy: CompiledPolicy,
    data: regorus::Value,
    pool: Mutex<Vec<RegoVM>>,
}

impl VmRunner {
    fn new(policy: &CompiledPolicy, data: &regorus::Value, rule: &str) -> Result<VmRunner, String> {
        let program =
            regorus::languages::rego::compiler::Compiler::compile_from_policy(policy, &[rule])
                .map_err(|e| e.to_string())?;
        let runner = VmRunner {
            program,
            policy: policy.clone(),
            data: data.clone(),
            pool: Mutex::new(Vec::new()),
        };
        // Fail at load time, not on the first decision, if the data does not fit the program.
        let vm = runner.machine()?;
        runner.give_back(vm);
        Ok(runner)
    }

    fn machine(&self) -> Result<RegoVM, String> {
        if let Some(vm) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(vm);
        }
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone()).map_err(|e| e.to_string())?;
        vm.set_max_instructions(VM_MAX_INSTRUCTIONS);
        Ok(vm)
    }

    fn give_back(&self, vm: RegoVM) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(vm);
        }
    }

    fn eval(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        let mut vm = self.machine()?;
        vm.set_input(input);
        let out = vm.execute().map_err(|e| e.to_string());
        // Drop the input now rather than holding it in the pooled machine.
        vm.set_input(regorus::Value::Null);
        self.give_back(vm);
        out
    }
}

impl Compiled {
    fn kind(&self) -> EngineKind {
        if self.vm.is_ok() {
            EngineKind::Vm
        } else {
            EngineKind::Interpreter
        }
    }

    fn eval(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        match &self.vm {
            Ok(vm) => vm.eval(input),
            Err(_) => self
                .policy
                .eval_with_input(input)
                .map_err(|e| e.to_string()),
        }
    }
}

/// Everything compiled from one snapshot.
struct Loaded {
    entrypoints: [Compiled; 3],
    normalizer: Normalizer,
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
    /// Decisions by the raw bytes of a Data API request body (see [`Pdp::decide_request_body`]).
    body_cache: DecisionCache<Box<[u8]>>,
    generation: AtomicU64,
    fingerprint: Mutex<u64>,
    cache_enabled: bool,
    vm_enabled: bool,
}

impl Pdp {
    /// Load and compile the policies and data of `sources`.
    pub fn new(sources: Sources) -> Result<Pdp, PolicyError> {
        let fingerprint = sources.fingerprint();
        let loaded = compile(&sources.load()?, 1, true)?;
        Ok(Pdp {
            sources,
            loaded: RwLock::new(Arc::new(loaded)),
            cache: DecisionCache::new(CACHE_CAPACITY),
            body_cache: DecisionCache::new(CACHE_CAPACITY),
            generation: AtomicU64::new(1),
            fingerprint: Mutex::new(fingerprint),
            cache_enabled: true,
            vm_enabled: true,
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

    /// Evaluate everything on regorus's interpreter (comparisons with the VM, debugging). The
    /// policies are recompiled now and stay on the interpreter across reloads.
    pub fn without_vm(mut self) -> Result<Pdp, PolicyError> {
        self.vm_enabled = false;
        self.reload()?;
        Ok(self)
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

    /// The engine that evaluates `entrypoint` under the policies in force.
    pub fn engine(&self, entrypoint: Entrypoint) -> EngineKind {
        self.current().entrypoints[entrypoint as usize].kind()
    }

    /// Why `entrypoint` is not evaluated on the VM (`None` when it is).
    pub fn interpreter_reason(&self, entrypoint: Entrypoint) -> Option<String> {
        self.current().entrypoints[entrypoint as usize]
            .vm
            .as_ref()
            .err()
            .cloned()
    }

    /// The normalised input the policy sees for `input` (for `dive policy eval --normalized`
    /// and for writing Rego tests); guardrail inputs are passed through unchanged.
    pub fn normalized_input(&self, entrypoint: Entrypoint, input: &Input) -> Value {
        let loaded = self.current();
        if entrypoint.normalised() {
            loaded.normalizer.normalize(input.as_json()).to_json()
        } else {
            input.as_json().clone()
        }
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

    /// Decide an administrative operation on something that belongs to the instance as a whole
    /// (its audit log, …): the resource is the UNCLASSIFIED object `object` of `instance`. The
    /// admin policy reads the subject and the operation.
    pub fn decide_instance_admin(
        &self,
        subject: &dive_core::SubjectAttributes,
        operation: &str,
        instance: dive_core::CountryCode,
        object: &str,
    ) -> Decision {
        let label = dive_core::SecurityLabel::new(Clearance::Unclassified, [instance]);
        self.decide_admin(&Input::new(
            subject,
            operation,
            &dive_core::ResourceAttributes::from_label(object, label, false),
            &crate::input::RequestContext::default(),
        ))
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

    /// Decide from the raw bytes of a request whose input `parse` extracts (the Data API's hot
    /// path). A byte-identical request decided before, under the same policies and within the
    /// decision's TTL, costs a hash and a comparison of the bytes: no JSON parsing, no
    /// normalisation. Otherwise `parse` runs and the decision is made (and cached) as by
    /// [`Pdp::decide_at`]; a parse error is returned as is and caches nothing.
    pub fn decide_request_body<E>(
        &self,
        entrypoint: Entrypoint,
        body: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<Input, E>,
    ) -> Result<Decision, E> {
        let cacheable = self.cache_enabled && entrypoint == Entrypoint::Authz;
        if !cacheable {
            return Ok(self.decide_at(entrypoint, &parse(body)?));
        }
        let key = body_key(body);
        let generation = self.current().generation;
        // A hit compares the body in place; only a miss copies it into the cache.
        if let Some(d) = self.body_cache.get(key, body, generation, Instant::now()) {
            return Ok(d);
        }
        let input = parse(body)?;
        let decision = self.decide_at(entrypoint, &input);
        let loaded = self.current();
        // Only under the policies the decision was made with: a reload in between drops it.
        if loaded.generation == generation && decision.policy_version.is_some() {
            let ttl = ttl_for(&loaded, &input, &decision);
            self.body_cache
                .insert(key, &Box::from(body), &decision, ttl, generation);
        }
        Ok(decision)
    }

    /// Re-read and recompile policies and data now. On error the policies in force stay.
    pub fn reload(&self) -> Result<String, PolicyError> {
        let fingerprint = self.sources.fingerprint();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let loaded = compile(&self.sources.load()?, generation, self.vm_enabled)?;
        let version = loaded.version.clone();
        match self.loaded.write() {
            Ok(mut g) => *g = Arc::new(loaded),
            Err(p) => *p.into_inner() = Arc::new(loaded),
        }
        self.cache.clear();
        self.body_cache.clear();
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

fn compile(snapshot: &Snapshot, generation: u64, vm_allowed: bool) -> Result<Loaded, PolicyError> {
    let data = regorus::Value::from(snapshot.data.clone());
    let normalizer = Normalizer::new(snapshot.equivalency.clone(), snapshot.coi.clone());
    let compile_one = |ep: Entrypoint| -> Result<Compiled, PolicyError> {
        let mut engine = new_engine(snapshot, data.clone(), false)?;
        let rule: regorus::Rc<str> = ep.rule().into();
        let policy = engine
            .compile_with_entrypoint(&rule)
            .map_err(|e| PolicyError::Compile {
                entrypoint: ep.rule(),
                why: e.to_string(),
            })?;
        // Only access decisions are hot enough to need the VM; admin and guardrail decisions
        // are rare (and guardrails read the clock, so two engines could not be compared).
        let vm = if ep == Entrypoint::Authz && vm_allowed {
            vm_if_exact(&policy, &data, &ep.rule(), &normalizer)
        } else if vm_allowed {
            Err("admin and guardrail decisions are rare and run on the interpreter".into())
        } else {
            Err("the VM is turned off for this PDP".into())
        };
        if let Err(why) = &vm
            && ep == Entrypoint::Authz
        {
            tracing::warn!(rule = %ep.rule(), %why, "access decisions run on the regorus interpreter");
        }
        Ok(Compiled { policy, vm })
    };
    let entrypoints = [
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
        entrypoints,
        normalizer,
        version: snapshot.version.clone(),
        generation,
        ttl,
        embargo_skew: Duration::from_secs(skew),
    })
}

/// The VM for this policy, if it compiles and decides exactly like the interpreter on the
/// self-check corpus (realistic and malformed inputs). Policies are hot-reloadable, so this runs
/// on every load: a construct the VM evaluates differently falls back to the interpreter, slower
/// but exact, with a warning.
fn vm_if_exact(
    policy: &CompiledPolicy,
    data: &regorus::Value,
    rule: &str,
    normalizer: &Normalizer,
) -> Result<VmRunner, String> {
    let runner = VmRunner::new(policy, data, rule)
        .map_err(|why| format!("the policy does not compile for the regorus VM: {why}"))?;
    let clock = OffsetDateTime::now_utc();
    for raw in crate::workload::self_check_corpus() {
        let input = normalizer.normalize_at(&raw, clock).value;
        let by_vm = runner.eval(input.clone());
        let by_interpreter = policy.eval_with_input(input).map_err(|e| e.to_string());
        if by_vm != by_interpreter {
            let show = |r: &Result<regorus::Value, String>| match r {
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {e}"),
            };
            return Err(format!(
                "the regorus VM and interpreter disagree on input {raw}: VM {}, interpreter {}",
                show(&by_vm),
                show(&by_interpreter)
            ));
        }
    }
    Ok(runner)
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
    let value = if entrypoint.normalised() {
        loaded.normalizer.normalize(input.as_json()).value
    } else {
        regorus::Value::from(input.as_json().clone())
    };
    let value = loaded.entrypoints[entrypoint as usize].eval(value)?;
    let mut data = crate::decision::from_policy_value(&value)?;
    data.policy_version = Some(loaded.version.clone());
    Ok(Decision::new(data))
}

/// Shorter TTLs for higher classifications; never past the moment an embargo lifts when the
/// decision was taken against the clock.
fn body_key(body: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(body);
    h.finish()
}

fn ttl_for(loaded: &Loaded, input: &Input, decision: &Decision) -> Duration {
    let rank = decision
        .evaluation_details
        .str_at(&["resource", "classification"])
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
