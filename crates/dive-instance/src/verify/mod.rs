//! `dive hub|spoke verify`: concrete checks of a running instance, each with its result and what
//! it found. Every check talks to the real thing — the supervisor, the HTTPS endpoints (trusting
//! only the installation CA), the IdP's login pages and token endpoint, the policy engine with
//! the instance's data — and nothing is assumed.
//!
//! Checks are grouped in modules, each an `async fn run(&mut Ctx, &mut Recorder)`; adding a
//! group (the KAS and resource-service checks) is one more module and one line in [`run`].

mod docs;
mod kas;
mod local;
mod oidc;
mod resources;
mod services;
mod users;

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{InstanceConfig, InstancePaths};
use crate::error::InstanceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable identifier, e.g. `users.testuser-usa-4.login`.
    pub id: String,
    pub title: String,
    pub status: Status,
    /// What was found (on failure: what is wrong and, when known, what to do).
    pub detail: String,
    pub duration_ms: u64,
}

/// Every check of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub instance: String,
    pub role: String,
    /// RFC 3339.
    pub started_at: String,
    pub duration_ms: u64,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub checks: Vec<CheckResult>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// `47/47 checks passed` or `45/47 checks passed, 2 FAILED: a, b`.
    pub fn summary(&self) -> String {
        let total = self.checks.len();
        let mut s = format!("{}/{} checks passed", self.passed, total - self.skipped);
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped", self.skipped));
        }
        if self.failed > 0 {
            let failed: Vec<&str> = self
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| c.id.as_str())
                .collect();
            s.push_str(&format!(", {} FAILED: {}", self.failed, failed.join(", ")));
        }
        s
    }
}

/// What a check found.
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl<E: std::fmt::Display> From<Result<String, E>> for Outcome {
    fn from(r: Result<String, E>) -> Outcome {
        match r {
            Ok(s) => Outcome::Pass(s),
            Err(e) => Outcome::Fail(e.to_string()),
        }
    }
}

/// A result found by a check run concurrently with others, recorded afterwards.
pub(crate) struct Found {
    pub id: String,
    pub title: String,
    pub outcome: Outcome,
    pub ms: u64,
}

/// Run one check, timing it, for recording later.
pub(crate) async fn found<O: Into<Outcome>, F: Future<Output = O>>(
    id: impl Into<String>,
    title: impl Into<String>,
    f: F,
) -> Found {
    let t0 = Instant::now();
    let outcome = f.await.into();
    Found {
        id: id.into(),
        title: title.into(),
        outcome,
        ms: t0.elapsed().as_millis() as u64,
    }
}

/// Collects results and shows each as it is known.
pub struct Recorder<'a> {
    results: Vec<CheckResult>,
    sink: &'a mut dyn FnMut(&CheckResult),
}

impl<'a> Recorder<'a> {
    pub fn new(sink: &'a mut dyn FnMut(&CheckResult)) -> Recorder<'a> {
        Recorder {
            results: Vec::new(),
            sink,
        }
    }

    /// Run one check and record its outcome.
    pub async fn check<O: Into<Outcome>, F: Future<Output = O>>(
        &mut self,
        id: impl Into<String>,
        title: impl Into<String>,
        f: F,
    ) {
        let t0 = Instant::now();
        let outcome = f.await.into();
        self.record(
            id.into(),
            title.into(),
            outcome,
            t0.elapsed().as_millis() as u64,
        );
    }

    /// Record an outcome found elsewhere (e.g. by a task run concurrently).
    pub fn record(&mut self, id: String, title: String, outcome: Outcome, duration_ms: u64) {
        let (status, detail) = match outcome {
            Outcome::Pass(d) => (Status::Pass, d),
            Outcome::Fail(d) => (Status::Fail, d),
            Outcome::Skip(d) => (Status::Skip, d),
        };
        let r = CheckResult {
            id,
            title,
            status,
            detail,
            duration_ms,
        };
        (self.sink)(&r);
        self.results.push(r);
    }
}

/// What the checks share: the instance, an HTTPS client trusting only the installation CA, and
/// what earlier checks found (discovery document, tokens).
pub struct Ctx {
    pub paths: InstancePaths,
    pub cfg: InstanceConfig,
    pub http: Option<reqwest::Client>,
    /// The stack's planned services (from its stack file) with their probe URLs.
    pub planned: Vec<PlannedService>,
    /// The IdP's discovery document, once fetched.
    pub discovery: Option<serde_json::Value>,
    /// Verified access-token claims of each test user that logged in.
    pub tokens: std::collections::BTreeMap<String, UserToken>,
    /// The policy engine with the instance's data, compiled once for every check that needs it.
    pdp: Option<Result<std::sync::Arc<dive_policy::Pdp>, String>>,
}

impl Ctx {
    /// The policy engine fed the instance's PDP data (what kas and api load), or why it does
    /// not load.
    pub fn pdp(&mut self) -> Result<std::sync::Arc<dive_policy::Pdp>, String> {
        let dir = self.paths.policy_dir();
        self.pdp
            .get_or_insert_with(|| {
                dive_policy::Pdp::new(dive_policy::Sources {
                    policy_dir: None,
                    data_dir: Some(dir),
                })
                .map(std::sync::Arc::new)
                .map_err(|e| format!("the policy does not load: {e}"))
            })
            .clone()
    }
}

/// A service the stack plans, as far as verification cares.
#[derive(Debug, Clone)]
pub struct PlannedService {
    pub name: String,
    pub init_job: bool,
    /// The URL of its `dive.health.http` probe, if it has one.
    pub probe_url: Option<String>,
}

/// A test user's login result.
#[derive(Debug, Clone)]
pub struct UserToken {
    pub access_token: String,
    pub claims: serde_json::Value,
}

/// What verification needs besides the instance's files.
pub struct VerifyRequest {
    pub home: PathBuf,
    pub cfg: InstanceConfig,
    pub planned: Vec<PlannedService>,
}

/// Run every check. `sink` sees each result as it is known.
pub async fn run(
    req: VerifyRequest,
    sink: &mut dyn FnMut(&CheckResult),
) -> Result<VerifyReport, InstanceError> {
    let started_at = now_rfc3339();
    let t0 = Instant::now();
    let paths = InstancePaths::new(&req.home, req.cfg.code);
    let http = dive_pki::Pki::open(&req.home)
        .ok()
        .and_then(|pki| dive_http::https_client(&pki).ok());
    let mut ctx = Ctx {
        paths,
        cfg: req.cfg,
        http,
        planned: req.planned,
        discovery: None,
        tokens: Default::default(),
        pdp: None,
    };
    let loading = docs::start_loading(&ctx.paths, &ctx.planned);
    let mut rec = Recorder::new(sink);
    local::run(&mut ctx, &mut rec).await;
    services::run(&mut ctx, &mut rec).await;
    oidc::run(&mut ctx, &mut rec).await;
    users::run(&mut ctx, &mut rec).await;
    // The resource-service and KAS checks share what they found about the documents and run
    // concurrently; their results are recorded in a fixed order.
    let pdp = ctx.pdp();
    let shared = docs::prepare(&ctx, pdp, loading).await;
    if shared.api
        && let Ok(store) = &shared.store
    {
        resources::wait_for_catalog(
            &ctx,
            store.metas.len() as u64,
            std::time::Duration::from_secs(10),
        )
        .await;
    }
    let (api, kas) = tokio::join!(resources::run(&ctx, &shared), kas::run(&ctx, &shared));
    for f in api.into_iter().chain(kas) {
        rec.record(f.id, f.title, f.outcome, f.ms);
    }
    let checks = rec.results;
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let report = VerifyReport {
        instance: ctx.cfg.code.to_string(),
        role: ctx.cfg.role.to_string(),
        started_at,
        duration_ms: t0.elapsed().as_millis() as u64,
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        skipped: count(Status::Skip),
        checks,
    };
    let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    crate::config::write_atomic(&ctx.paths.last_verify(), text.as_bytes(), 0o644)?;
    Ok(report)
}

/// The planned services of a stack, for [`VerifyRequest`].
pub fn planned_services(stack: &crate::stacks::InstanceStack) -> Vec<PlannedService> {
    use dive_orchestrator::spec::{Probe, ServiceClass};
    stack
        .plan
        .services
        .values()
        .map(|p| PlannedService {
            name: p.spec.name.clone(),
            init_job: p.spec.class == ServiceClass::Init,
            probe_url: match p.spec.healthcheck.as_ref().map(|h| &h.probe) {
                Some(Probe::Http { url, .. }) => Some(url.clone()),
                _ => None,
            },
        })
        .collect()
}

/// The last verification of an instance, if any.
pub fn last(paths: &InstancePaths) -> Option<VerifyReport> {
    let text = std::fs::read_to_string(paths.last_verify()).ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
