//! The hub and spoke stack files (`stacks/hub.yml`, `stacks/spoke.yml`), embedded in the binary,
//! and the variables a deployment interpolates them with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dive_orchestrator::plan::Plan;
use dive_orchestrator::spec::{self, Environment, ServiceClass, StackSpec};

use crate::config::{self, InstanceConfig, InstancePaths, Role, write_if_changed};
use crate::error::{InstanceError, io};

pub const HUB_YML: &str = include_str!("../../../stacks/hub.yml");
pub const SPOKE_YML: &str = include_str!("../../../stacks/spoke.yml");

/// The profile that enables the `seed` job.
pub const SEED_PROFILE: &str = "seed";

/// The embedded stack of a role.
pub fn embedded(role: Role) -> &'static str {
    match role {
        Role::Hub => HUB_YML,
        Role::Spoke => SPOKE_YML,
    }
}

/// The embedded stack by name (`hub` or `spoke`), for `dive stack export`.
pub fn embedded_by_name(name: &str) -> Option<&'static str> {
    match name {
        "hub" => Some(HUB_YML),
        "spoke" => Some(SPOKE_YML),
        _ => None,
    }
}

/// Identifies the binary the services run: its version, size and modification time. A rebuilt
/// binary at the same path changes it, and with it every service's definition.
pub fn binary_id(bin: &Path) -> String {
    let meta = std::fs::metadata(bin).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{}-{mtime}",
        env!("CARGO_PKG_VERSION"),
        meta.map_or(0, |m| m.len())
    )
}

/// The variables of the stack files (see the header of `stacks/hub.yml`).
pub fn variables(home: &Path, cfg: &InstanceConfig, bin: &Path) -> BTreeMap<String, String> {
    let paths = InstancePaths::new(home, cfg.code);
    let v = |k: &str, val: String| (k.to_string(), val);
    BTreeMap::from([
        v("DIVE_STACK_NAME", cfg.stack_name()),
        v("DIVE_BIN", bin.display().to_string()),
        v("DIVE_BINARY_ID", binary_id(bin)),
        v("DIVE_HOME", home.display().to_string()),
        v("DIVE_INSTANCE", cfg.code.to_string()),
        v("DIVE_BIND_HOST", config::url_host(&cfg.bind_host)),
        v("DIVE_LOCAL_HOST", cfg.local_host()),
        v("DIVE_IDP_PORT", cfg.ports.idp.to_string()),
        v("DIVE_API_PORT", cfg.ports.api.to_string()),
        v("DIVE_KAS_PORT", cfg.ports.kas.to_string()),
        v("DIVE_WEB_PORT", cfg.ports.web.to_string()),
        v("DIVE_PDP_PORT", cfg.ports.pdp.to_string()),
        v("DIVE_ISSUER", cfg.urls.issuer.clone()),
        v("DIVE_KAS_URL", cfg.urls.kas.clone()),
        v("DIVE_API_URL", cfg.urls.api.clone()),
        v("DIVE_POLICY_DIR", paths.policy_dir().display().to_string()),
        v(
            "DIVE_CA_FILE",
            home.join("pki/ca/cert.pem").display().to_string(),
        ),
        v(
            "DIVE_SECRETS_GENERATION",
            cfg.secrets_generation.to_string(),
        ),
        v("DIVE_SEED_COUNT", cfg.seed.count.to_string()),
        v("DIVE_SEED_VALUE", cfg.seed.seed_value.clone()),
    ])
}

/// Which stack file an instance runs.
#[derive(Debug, Clone)]
pub enum StackSource {
    /// The embedded one for the role; written to `instances/<code>/stack.yml` by INIT.
    Embedded,
    /// An operator's file (`--stack-file`).
    File(PathBuf),
}

/// The instance's stack, resolved, and its plan.
#[derive(Debug, Clone)]
pub struct InstanceStack {
    pub spec: StackSpec,
    /// Every planned service (the seed job only when seeding is enabled).
    pub plan: Plan,
    /// What START brings up: every planned service that does not wait for an init job.
    pub start: BTreeSet<String>,
    /// What SEED runs: the init jobs (the `seed` job) and whatever waits for them.
    pub seed: BTreeSet<String>,
    /// Where the text came from, for messages.
    pub source: PathBuf,
    /// The stack text (the embedded one, or the file's).
    pub text: String,
}

/// Read and plan the instance's stack with the deployment's variables; the process environment
/// is beneath them (so that an operator's file may use variables of its own). Embedded stacks
/// are resolved as if read from `instances/<code>/stack.yml`, their working directory.
pub fn load(
    home: &Path,
    cfg: &InstanceConfig,
    bin: &Path,
    source: &StackSource,
) -> Result<InstanceStack, InstanceError> {
    let paths = InstancePaths::new(home, cfg.code);
    let (text, path) = match source {
        StackSource::Embedded => (embedded(cfg.role).to_string(), paths.stack_file()),
        StackSource::File(f) => (
            std::fs::read_to_string(f).map_err(io("read", f))?,
            f.clone(),
        ),
    };
    let mut vars: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    vars.extend(variables(home, cfg, bin));
    let spec = spec::parse_str(
        &text,
        &path,
        Some(&cfg.stack_name()),
        &Environment::from_map(vars),
    )?;
    let profiles: Vec<String> = if cfg.seed.enabled {
        vec![SEED_PROFILE.to_string()]
    } else {
        Vec::new()
    };
    let plan = Plan::build(&spec, &profiles)?;
    // SEED runs the init jobs and everything that waits for one (directly or not); START runs
    // the rest, so nothing START waits for is held back until SEED.
    let mut seed: BTreeSet<String> = plan
        .services
        .iter()
        .filter(|(_, p)| p.spec.class == ServiceClass::Init)
        .map(|(n, _)| n.clone())
        .collect();
    loop {
        let more: Vec<String> = plan
            .services
            .iter()
            .filter(|(n, p)| {
                !seed.contains(*n) && p.spec.depends_on.iter().any(|d| seed.contains(&d.service))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        seed.extend(more);
    }
    let start: BTreeSet<String> = plan
        .services
        .keys()
        .filter(|n| !seed.contains(*n))
        .cloned()
        .collect();
    if start.is_empty() {
        return Err(InstanceError::invalid(format!(
            "{}: the stack has no service that runs before its init jobs",
            path.display()
        )));
    }
    Ok(InstanceStack {
        spec,
        plan,
        start,
        seed,
        source: path,
        text,
    })
}

/// Write the embedded stack to `instances/<code>/stack.yml` so the operator can see what runs.
pub fn write_out(paths: &InstancePaths, stack: &InstanceStack) -> Result<bool, InstanceError> {
    if stack.source != paths.stack_file() {
        return Ok(false);
    }
    write_if_changed(&paths.stack_file(), stack.text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dive_core::CountryCode;
    use dive_orchestrator::spec::{DependencyCondition, Probe};

    #[test]
    fn embedded_stacks_resolve_with_the_instances_ports_and_binary() {
        let home = tempfile::tempdir().unwrap();
        let bin = PathBuf::from("/opt/dive/bin/dive");
        let usa = InstanceConfig::new(CountryCode::new("USA").unwrap(), Role::Hub);
        let s = load(home.path(), &usa, &bin, &StackSource::Embedded).unwrap();
        assert_eq!(s.spec.name, "usa");
        assert_eq!(
            s.start.iter().map(String::as_str).collect::<Vec<_>>(),
            ["api", "idp", "kas", "web"]
        );
        assert_eq!(
            s.seed.iter().map(String::as_str).collect::<Vec<_>>(),
            ["seed"]
        );
        let idp = &s.plan.services["idp"].spec;
        assert_eq!(idp.argv[0], "/opt/dive/bin/dive");
        assert!(
            idp.argv.contains(&"127.0.0.1:8443".to_string()),
            "{:?}",
            idp.argv
        );
        assert!(idp.argv.contains(&"https://localhost:8443".to_string()));
        let Some(Probe::Http { url, ca_file }) = idp.healthcheck.as_ref().map(|h| h.probe.clone())
        else {
            panic!("idp has an http probe");
        };
        assert_eq!(url, "https://localhost:8443/ready");
        assert_eq!(ca_file.unwrap(), home.path().join("pki/ca/cert.pem"));
        let api = &s.plan.services["api"].spec;
        assert!(api.argv.contains(&"https://localhost:8445/kas".to_string()));
        let web = &s.plan.services["web"].spec;
        assert!(
            web.argv.contains(&"127.0.0.1:8446".to_string()),
            "{:?}",
            web.argv
        );
        assert!(
            ["idp", "kas", "api"].iter().all(|d| web
                .depends_on
                .iter()
                .any(|x| x.service == *d && x.condition == DependencyCondition::Healthy)),
            "{:?}",
            web.depends_on
        );
        let seed = &s.plan.services["seed"].spec;
        assert!(seed.argv.ends_with(&[
            "--count".into(),
            "5000".into(),
            "--seed-value".into(),
            "dive-usa".into()
        ]));
        assert!(
            seed.depends_on
                .iter()
                .all(|d| d.condition == DependencyCondition::Healthy)
        );

        // A spoke without --seed plans no seed job, on its own ports.
        let fra = InstanceConfig::new(CountryCode::new("FRA").unwrap(), Role::Spoke);
        let s = load(home.path(), &fra, &bin, &StackSource::Embedded).unwrap();
        assert_eq!(s.spec.name, "fra");
        assert!(s.seed.is_empty());
        assert!(
            s.plan.services["kas"]
                .spec
                .argv
                .contains(&"127.0.0.1:8455".to_string())
        );
    }

    #[test]
    fn services_waiting_for_a_job_run_in_seed_after_it() {
        let home = tempfile::tempdir().unwrap();
        let f = home.path().join("s.yml");
        std::fs::write(
            &f,
            "services:\n  a:\n    command: x\n    labels: {dive.service.class: core}\n  web:\n    command: x\n    labels: {dive.service.class: core}\n    depends_on:\n      j: {condition: service_completed_successfully}\n  j:\n    command: y\n    labels: {dive.service.class: init}\n    depends_on: [a]\n",
        )
        .unwrap();
        let cfg = InstanceConfig::new(CountryCode::new("USA").unwrap(), Role::Hub);
        let s = load(
            home.path(),
            &cfg,
            Path::new("/bin/true"),
            &StackSource::File(f),
        )
        .unwrap();
        assert_eq!(s.start.iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.seed.iter().collect::<Vec<_>>(), ["j", "web"]);
    }
}
