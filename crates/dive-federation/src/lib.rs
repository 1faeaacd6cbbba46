//! Federation between DIVE instances of one installation: the hub keeps the registry of its links
//! (pending → active ⇄ suspended → revoked, with history), and every operation writes what the
//! link's state means to **both** sides' files — each side's PDP data trusts the other's issuer
//! and lists it in the federation matrix while the link is active, and each side's partners file
//! tells its resource service whom federated search asks; and each side's IdP brokers the other
//! (an upstream with a client registered at the other side and a generated shared secret). Services re-read those files, so
//! `suspend` and `revoke` take effect immediately: the partner's tokens are refused.
//!
//! Operations are idempotent: running one again re-applies the files (repairing drift) and
//! records nothing new.

pub mod broker;
pub mod descriptor;
pub mod endpoints;
pub mod health;
pub mod invites;
pub mod registry;
pub mod remote;
pub mod spoke;
pub mod trust;
pub mod verify;

use std::path::{Path, PathBuf};

use dive_core::CountryCode;
use dive_core::federation::LinkStatus;
use dive_instance::{InstanceConfig, InstancePaths, Role};

pub use descriptor::Descriptor;
pub use registry::{Change, Link, Registry};

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(transparent)]
    Db(#[from] dive_db::DbError),
    #[error("federation registry: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Instance(Box<dive_instance::InstanceError>),
    #[error("{0}")]
    Corrupt(String),
    #[error("identity provider: {0}")]
    Idp(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not linked (run `dive federation link {0}` first)")]
    NotLinked(CountryCode),
    #[error("the link with {partner} is {from}; it cannot become {to}")]
    Transition {
        partner: CountryCode,
        from: LinkStatus,
        to: LinkStatus,
    },
    #[error(
        "the circuit breaker of the link with {partner} is open after {failures} failed \
         verifications (last: {last_error}); the next verification is allowed at {until}, \
         or now with `dive federation verify {partner} --force`"
    )]
    BreakerOpen {
        partner: CountryCode,
        failures: u32,
        last_error: String,
        until: String,
    },
    /// A remote partner could not be reached, refused, or answered something unacceptable.
    #[error("{0}")]
    Remote(String),
    /// Bad input: the operator named something that cannot be linked.
    #[error("{0}")]
    Invalid(String),
}

impl From<dive_instance::InstanceError> for FederationError {
    fn from(e: dive_instance::InstanceError) -> Self {
        FederationError::Instance(Box::new(e))
    }
}

impl FederationError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        FederationError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the operator's input is at fault (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            FederationError::Invalid(_)
                | FederationError::NotLinked(_)
                | FederationError::Transition { .. }
        )
    }
}

/// The hub and one spoke of an installation, as their `instance.json` describe them.
pub struct Pair {
    pub home: PathBuf,
    pub hub: InstanceConfig,
    pub spoke: InstanceConfig,
}

impl Pair {
    /// Load the installation's hub and the spoke `spoke`. Both must have been deployed (or at
    /// least initialised) here.
    pub fn load(home: &Path, spoke: CountryCode) -> Result<Pair, FederationError> {
        let all = dive_instance::config::all(home)?;
        let hub = all
            .iter()
            .find(|c| c.role == Role::Hub)
            .cloned()
            .ok_or_else(|| {
                FederationError::Invalid(format!(
                    "no hub in {}: deploy one first (`dive hub deploy`)",
                    home.display()
                ))
            })?;
        if spoke == hub.code {
            return Err(FederationError::Invalid(format!(
                "{spoke} is the hub; link a spoke to it"
            )));
        }
        let spoke_cfg = all
            .iter()
            .find(|c| c.code == spoke)
            .cloned()
            .ok_or_else(|| {
                FederationError::Invalid(format!(
                    "no instance {spoke} in {}: deploy it first (`dive spoke deploy {spoke}`)",
                    home.display()
                ))
            })?;
        Ok(Pair {
            home: home.to_path_buf(),
            hub,
            spoke: spoke_cfg,
        })
    }

    /// The registry's location: `$DIVE_HOME/instances/<hub>/federation.db`.
    pub fn registry_location(&self) -> PathBuf {
        InstancePaths::new(&self.home, self.hub.code).federation_db()
    }

    pub async fn registry(&self) -> Result<Registry, FederationError> {
        Registry::open(&self.registry_location().display().to_string()).await
    }

    pub async fn lock(&self) -> Result<std::fs::File, FederationError> {
        lock(&self.home, self.hub.code).await
    }

    /// Write the link's state to both sides: PDP data and partners files, and both IdPs'
    /// upstreams and broker clients. Returns what changed.
    pub async fn apply(&self, status: Option<LinkStatus>) -> Result<Vec<String>, FederationError> {
        let (hub, spoke) = (Descriptor::from(&self.hub), Descriptor::from(&self.spoke));
        let mut changed = trust::apply(&self.home, hub.code, &spoke, status)?;
        changed.extend(trust::apply(&self.home, spoke.code, &hub, status)?);
        changed.extend(broker::apply(&self.home, &self.hub, &self.spoke, status).await?);
        changed.extend(broker::apply(&self.home, &self.spoke, &self.hub, status).await?);
        Ok(changed)
    }
}

/// Hold the installation's federation lock: every link operation rewrites the hub's shared
/// files (trusted issuers, federation matrix, partners), so two spokes deploying (or joining) at
/// once must take turns or one's read-modify-write would drop the other's partner. The lock is
/// an OS file lock on `instances/<hub>/federation.lock`, released when the returned file is
/// dropped, also if the process dies.
pub async fn lock(home: &Path, hub: CountryCode) -> Result<std::fs::File, FederationError> {
    let path = InstancePaths::new(home, hub).federation_lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FederationError::io("open", &path, e))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| FederationError::Corrupt(format!("federation lock task: {e}")))?
        .map_err(|e| FederationError::io("lock", &path, e))
}

/// What an operation did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub partner: CountryCode,
    pub status: Option<LinkStatus>,
    /// Files rewritten on either side.
    pub changed: Vec<String>,
}

/// Link the spoke with the hub (or re-apply an active link): pending, trust written both ways,
/// active. A suspended link stays suspended (use `resume`); a revoked one starts over.
pub async fn link(pair: &Pair, reason: &str) -> Result<Outcome, FederationError> {
    let _lock = pair.lock().await?;
    let reg = pair.registry().await?;
    let code = pair.spoke.code;
    let current = reg.get(code).await?.map(|l| l.status);
    let result = async {
        let status = match current {
            Some(LinkStatus::Suspended) => LinkStatus::Suspended,
            Some(LinkStatus::Active) => LinkStatus::Active,
            _ => {
                reg.transition(code, LinkStatus::Pending, reason).await?;
                LinkStatus::Active
            }
        };
        reg.transition(code, status, reason).await?;
        let changed = pair.apply(Some(status)).await?;
        Ok(Outcome {
            partner: code,
            status: Some(status),
            changed,
        })
    }
    .await;
    reg.close().await;
    result
}

/// Move an existing link to `to` (suspend, resume, revoke), both sides at once.
///
/// Trust is granted only after the registry records it and withdrawn before: a failure in
/// between leaves a partner less trusted than recorded, never more (re-running repairs it).
pub async fn set_status(
    pair: &Pair,
    to: LinkStatus,
    reason: &str,
) -> Result<Outcome, FederationError> {
    let _lock = pair.lock().await?;
    let reg = pair.registry().await?;
    let code = pair.spoke.code;
    let result = async {
        let link = reg
            .get(code)
            .await?
            .ok_or(FederationError::NotLinked(code))?;
        if !link.status.can_become(to) {
            return Err(FederationError::Transition {
                partner: code,
                from: link.status,
                to,
            });
        }
        let changed = if to.is_active() {
            reg.transition(code, to, reason).await?;
            pair.apply(Some(to)).await?
        } else {
            let c = pair.apply(Some(to)).await?;
            reg.transition(code, to, reason).await?;
            c
        };
        Ok(Outcome {
            partner: code,
            status: Some(to),
            changed,
        })
    }
    .await;
    reg.close().await;
    result
}

/// Remove the link: trust withdrawn on both sides, partner entries removed, the registry row
/// revoked and deleted (its history stays). Unlinking what is not linked changes nothing.
pub async fn unlink(pair: &Pair, reason: &str) -> Result<Outcome, FederationError> {
    let _lock = pair.lock().await?;
    let reg = pair.registry().await?;
    let result = async {
        let changed = pair.apply(None).await?;
        reg.remove(pair.spoke.code, reason).await?;
        Ok(Outcome {
            partner: pair.spoke.code,
            status: None,
            changed,
        })
    }
    .await;
    reg.close().await;
    result
}

/// Every link of the installation's hub, with what each side's files say now.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkReport {
    #[serde(flatten)]
    pub link: Link,
    /// The hub trusts the spoke's issuer now (its PDP data says so).
    pub hub_trusts_spoke: bool,
    /// The spoke trusts the hub's issuer now; `None` for a remote spoke, whose files are in
    /// another installation.
    pub spoke_trusts_hub: Option<bool>,
    /// Set for a spoke of another installation (joined over the network): how it is reached.
    pub remote: Option<Descriptor>,
    /// Whether each side answers now (its IdP and resource service), probed during `status`.
    pub hub_health: health::Health,
    pub spoke_health: health::Health,
    pub history: Vec<Change>,
}

pub async fn status(home: &Path) -> Result<Vec<LinkReport>, FederationError> {
    let all = dive_instance::config::all(home)?;
    let Some(hub) = all.iter().find(|c| c.role == Role::Hub) else {
        return Ok(Vec::new());
    };
    let location = InstancePaths::new(home, hub.code).federation_db();
    if !location.exists() {
        return Ok(Vec::new());
    }
    let reg = Registry::open(&location.display().to_string()).await?;
    let result = async {
        let mut out = Vec::new();
        let hub_trusts = trust::trusted_partners(home, hub.code)?;
        let http = health::client(home).map_err(|e| e.to_string());
        let links = reg.list().await?;
        let hub_health = health::probe_with(&http, &Descriptor::from(hub)).await;
        for link in links {
            let remote = reg.remote(link.partner).await?;
            let local = all.iter().find(|c| c.code == link.partner);
            let spoke_health = match (local, &remote) {
                (Some(cfg), _) => health::probe_with(&http, &Descriptor::from(cfg)).await,
                (None, Some(d)) => health::probe_with(&http, d).await,
                (None, None) => health::Health::unknown(link.partner),
            };
            let spoke_trusts_hub = match remote {
                Some(_) => None,
                None => Some(
                    trust::trusted_partners(home, link.partner)
                        .unwrap_or_default()
                        .iter()
                        .any(|(i, _)| i == hub.code.as_str()),
                ),
            };
            out.push(LinkReport {
                hub_health: hub_health.clone(),
                spoke_health,
                hub_trusts_spoke: hub_trusts.iter().any(|(i, _)| i == link.partner.as_str()),
                spoke_trusts_hub,
                remote,
                history: reg.history(link.partner).await?,
                link,
            });
        }
        Ok(out)
    }
    .await;
    reg.close().await;
    result
}
