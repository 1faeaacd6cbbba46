//! INIT: everything an instance needs on disk before its services start — configuration, PKI,
//! client secrets, PDP data, the stack file, and the clients registered in the IdP's database.
//! Idempotent: what exists is kept (secrets and keys are never regenerated here), what drifted
//! is brought back in line, and the report says which is which.

use dive_pki::Pki;

use crate::config::{self, InstanceConfig, InstancePaths};
use crate::error::InstanceError;
use crate::secrets::{self, SECRET_SERVICES};
use crate::stacks::{self, InstanceStack};

/// The services that get a TLS certificate from the installation CA.
pub const CERT_SERVICES: [&str; 5] = ["idp", "kas", "api", "web", "pdp"];

/// What INIT did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InitReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub kept: usize,
}

impl InitReport {
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.created.is_empty() {
            parts.push(format!("created {}", self.created.join(", ")));
        }
        if !self.updated.is_empty() {
            parts.push(format!("updated {}", self.updated.join(", ")));
        }
        parts.push(format!("{} kept as they were", self.kept));
        parts.join("; ")
    }
}

/// Run INIT for `cfg`.
pub async fn run(
    paths: &InstancePaths,
    cfg: &InstanceConfig,
    stack: &InstanceStack,
) -> Result<InitReport, InstanceError> {
    let mut r = InitReport::default();
    let existed = paths.config().exists();
    let note =
        |changed: bool, created: bool, what: String, r: &mut InitReport| match (changed, created) {
            (true, true) => r.created.push(what),
            (true, false) => r.updated.push(what),
            (false, _) => r.kept += 1,
        };
    config::check_port_clashes(&paths.home, cfg)?;
    std::fs::create_dir_all(&paths.dir)
        .map_err(crate::error::io("create directory", &paths.dir))?;
    let changed = config::save(paths, cfg)?;
    note(changed, !existed, "instance.json".into(), &mut r);

    let pki_existed = paths.home.join("pki/ca/key.pem").exists();
    let pki = Pki::open(&paths.home)?;
    note(!pki_existed, true, "installation CA".into(), &mut r);
    // The certificates are the installation's: they name every instance's public host. This
    // instance's config is saved above, so whoever holds the lock next sees its host.
    // Held only while names are read and certificates issued (milliseconds), so blocking
    // this thread for it is acceptable.
    let certificates_lock = pki.lock_certificates()?;
    let hosts = config::installation_cert_hosts(&paths.home)?;
    for name in CERT_SERVICES {
        let existed = paths
            .home
            .join("pki/services")
            .join(name)
            .join("key.pem")
            .exists();
        let (_, reissued) = pki.service_for(name, &hosts)?;
        let what = match (existed && reissued, hosts.is_empty()) {
            (true, false) => format!("{name} certificate (for {})", hosts.join(", ")),
            _ => format!("{name} certificate"),
        };
        note(!existed || reissued, !existed, what, &mut r);
    }
    drop(certificates_lock);
    for service in SECRET_SERVICES {
        let (_, created) = secrets::ensure(paths, service)?;
        note(created, true, format!("{service} client secret"), &mut r);
    }
    let policy_existed = paths.policy_dir().exists();
    let written = crate::policy::ensure(paths, cfg)?;
    note(
        !written.is_empty(),
        !policy_existed,
        "policy data".into(),
        &mut r,
    );
    crate::policy::check(paths, cfg)?;
    let stack_existed = paths.stack_file().exists();
    let changed = stacks::write_out(paths, stack)?;
    if stack.source == paths.stack_file() {
        note(changed, !stack_existed, "stack.yml".into(), &mut r);
    }

    let idp_existed = paths.idp_db().exists();
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string()).await?;
    note(!idp_existed, true, "IdP database".into(), &mut r);
    let registered = secrets::register_clients(&db, cfg, paths).await;
    db.pool.close().await;
    let (created, replaced) = registered?;
    if !created.is_empty() {
        r.created
            .push(format!("IdP clients {}", created.join(", ")));
    }
    if !replaced.is_empty() {
        r.updated
            .push(format!("IdP clients {}", replaced.join(", ")));
    }
    if created.is_empty() && replaced.is_empty() {
        r.kept += 1;
    }
    Ok(r)
}

/// Whether an INIT checkpoint still matches reality: the configuration on disk is `cfg`, the
/// PKI, secrets (0600) and policy data are there and valid, the clients are registered as
/// wanted. `Err` says what no longer matches.
pub async fn check(paths: &InstancePaths, cfg: &InstanceConfig) -> Result<(), String> {
    quick_check(paths, cfg)?;
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string())
        .await
        .map_err(|e| e.to_string())?;
    let ok = secrets::clients_registered(&db, cfg, paths).await;
    db.pool.close().await;
    match ok {
        Ok(true) => Ok(()),
        Ok(false) => Err("the IdP's client registrations do not match the secrets".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The file-level part of [`check`], cheap enough for the no-op path of a re-deployment.
pub fn quick_check(paths: &InstancePaths, cfg: &InstanceConfig) -> Result<(), String> {
    match config::load(paths) {
        Ok(Some(on_disk)) if &on_disk == cfg => {}
        Ok(Some(_)) => return Err("instance.json differs from the requested configuration".into()),
        Ok(None) => return Err("instance.json is missing".into()),
        Err(e) => return Err(e.to_string()),
    }
    for f in [
        paths.home.join("pki/ca/cert.pem"),
        paths.home.join("pki/ca/key.pem"),
    ] {
        if !f.is_file() {
            return Err(format!("{} is missing", f.display()));
        }
    }
    let hosts = cfg.cert_hosts();
    let pki = (!hosts.is_empty())
        .then(|| Pki::open(&paths.home).map_err(|e| e.to_string()))
        .transpose()?;
    for name in CERT_SERVICES {
        let dir = paths.home.join("pki/services").join(name);
        if !dir.join("cert.pem").is_file() || !dir.join("key.pem").is_file() {
            return Err(format!(
                "the {name} certificate under {} is missing",
                dir.display()
            ));
        }
        // Only an instance with a public host has names to check beyond the defaults.
        if let Some(pki) = &pki {
            let cert = pki.service(name).map_err(|e| e.to_string())?;
            pki.check_names(&cert, &hosts)?;
        }
    }
    for service in SECRET_SERVICES {
        secrets::read(paths, service).map_err(|e| e.to_string())?;
    }
    for name in crate::policy::DOCUMENTS {
        let p = paths.policy_dir().join(name);
        if !p.is_file() {
            return Err(format!("{} is missing", p.display()));
        }
    }
    if !paths.idp_db().is_file() {
        return Err(format!("{} is missing", paths.idp_db().display()));
    }
    Ok(())
}
