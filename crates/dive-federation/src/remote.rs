//! Links with a spoke of **another installation** (remote hubs, issue 7), hub side: an operator
//! invites the spoke (`dive federation invite FRA`: a one-time join token), the spoke joins over
//! the network (`POST /federation/join` on the hub's IdP, see [`crate::endpoints`]) and the hub
//! writes only its own side — trust files, partners file, its IdP's upstream and client — with
//! the secrets exchanged in the join. Later status changes are applied on the hub at once and
//! pushed to the spoke (`POST /federation/link-status` on the spoke's IdP), authenticated by the
//! link key the hub handed out when the spoke joined.

use std::path::{Path, PathBuf};

use dive_core::CountryCode;
use dive_core::federation::LinkStatus;
use dive_instance::{InstanceConfig, InstancePaths, Role};
use serde::{Deserialize, Serialize};

use crate::descriptor::Descriptor;
use crate::invites::TokenRefusal;
use crate::{FederationError, Outcome, Registry, broker, trust};

/// What a spoke sends to join: who it is, its CA, and the secret of the broker client it
/// registered at its IdP for the hub (`dive-broker-<hub>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    pub code: CountryCode,
    pub issuer: String,
    pub api_url: String,
    pub ca_pem: String,
    pub client_secret: String,
}

/// What the hub answers: who it is, the secret of the client it registered for the spoke's
/// broker (`dive-broker-<spoke>`), and the key that authenticates its later status pushes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinResponse {
    pub hub: Descriptor,
    pub client_secret: String,
    pub link_key: String,
}

/// A status change pushed by the hub to a remote spoke.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusPush {
    pub hub: CountryCode,
    pub status: LinkStatus,
    pub reason: String,
}

/// Why a join was refused, each with the HTTP status the endpoint answers.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Token(#[from] TokenRefusal),
    #[error("missing bearer join token (Authorization: Bearer <token>)")]
    NoToken,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this instance is not a hub: join the installation's hub")]
    NotHub,
    #[error(transparent)]
    Internal(#[from] FederationError),
}

/// Shortest secret accepted from a partner (the generated ones are 43 characters).
const MIN_SECRET_LEN: usize = 32;

/// `instances/<hub>/secrets/federation/<CODE>.link-key` (0600): the hub must present the key
/// to the spoke, so it keeps the key itself, as a secret file.
pub fn link_key_file(home: &Path, hub: CountryCode, partner: CountryCode) -> PathBuf {
    InstancePaths::new(home, hub)
        .secrets_dir()
        .join("federation")
        .join(format!("{partner}.link-key"))
}

/// The hub of the installation at `home`, if `code` is it.
pub fn load_hub(home: &Path, code: CountryCode) -> Result<InstanceConfig, JoinError> {
    match dive_instance::config::load(&InstancePaths::new(home, code))
        .map_err(FederationError::from)?
    {
        Some(c) if c.role == Role::Hub => Ok(c),
        _ => Err(JoinError::NotHub),
    }
}

/// Create an invitation for `partner` at the installation's hub.
pub async fn invite(
    home: &Path,
    hub: &InstanceConfig,
    partner: CountryCode,
    ttl_ms: i64,
) -> Result<crate::invites::Invitation, FederationError> {
    if partner == hub.code {
        return Err(FederationError::Invalid(format!(
            "{partner} is the hub; invite a spoke"
        )));
    }
    if dive_instance::config::all(home)?
        .iter()
        .any(|c| c.code == partner)
    {
        return Err(FederationError::Invalid(format!(
            "{partner} is deployed in this installation: link it with `dive federation link {partner}`"
        )));
    }
    let reg = registry(home, hub.code).await?;
    let r = reg.create_invite(partner, ttl_ms).await;
    reg.close().await;
    r
}

pub(crate) async fn registry(home: &Path, hub: CountryCode) -> Result<Registry, FederationError> {
    Registry::open(
        &InstancePaths::new(home, hub)
            .federation_db()
            .display()
            .to_string(),
    )
    .await
}

fn validate(req: &JoinRequest, hub: &InstanceConfig) -> Result<Descriptor, JoinError> {
    if req.code == hub.code {
        return Err(JoinError::BadRequest(format!(
            "code {} is the hub's own",
            req.code
        )));
    }
    let d = Descriptor {
        code: req.code,
        role: Role::Spoke,
        issuer: req.issuer.clone(),
        api_url: req.api_url.clone(),
    };
    d.validate().map_err(JoinError::BadRequest)?;
    dive_pki::partners::pem_fingerprint(&req.ca_pem, "caPem")
        .map_err(|e| JoinError::BadRequest(e.to_string()))?;
    if req.client_secret.len() < MIN_SECRET_LEN {
        return Err(JoinError::BadRequest(format!(
            "clientSecret must have at least {MIN_SECRET_LEN} characters"
        )));
    }
    Ok(d)
}

/// Accept a spoke's join at the hub `hub_code` of `home`: check the token, store the spoke's CA,
/// record the link (pending → active) and write the hub's side.
pub async fn accept_join(
    home: &Path,
    hub_code: CountryCode,
    token: Option<&str>,
    req: &JoinRequest,
) -> Result<JoinResponse, JoinError> {
    let hub = load_hub(home, hub_code)?;
    let token = token.ok_or(JoinError::NoToken)?;
    let spoke = validate(req, &hub)?;
    if dive_instance::config::all(home)
        .map_err(FederationError::from)?
        .iter()
        .any(|c| c.code == spoke.code)
    {
        return Err(JoinError::Conflict(format!(
            "{} is an instance of the hub's own installation",
            spoke.code
        )));
    }
    let _lock = crate::lock(home, hub.code).await?;
    let reg = registry(home, hub.code).await?;
    let result = join_locked(home, &reg, &hub, &spoke, token, req).await;
    reg.close().await;
    result
}

async fn join_locked(
    home: &Path,
    reg: &Registry,
    hub: &InstanceConfig,
    spoke: &Descriptor,
    token: &str,
    req: &JoinRequest,
) -> Result<JoinResponse, JoinError> {
    let current = reg.get(spoke.code).await?.map(|l| l.status);
    if current == Some(LinkStatus::Suspended) {
        return Err(JoinError::Conflict(format!(
            "the link with {} is suspended: the hub's operator resumes it (`dive federation resume {}`)",
            spoke.code, spoke.code
        )));
    }
    reg.consume_invite(spoke.code, token).await??;
    const REASON: &str = "joined remotely";
    if current != Some(LinkStatus::Active) {
        reg.transition(spoke.code, LinkStatus::Pending, REASON)
            .await?;
    }
    dive_pki::partners::store_partner_ca(home, spoke.code.as_str(), &req.ca_pem)
        .map_err(|e| FederationError::Invalid(e.to_string()))?;
    reg.put_remote(spoke).await?;
    reg.transition(spoke.code, LinkStatus::Active, REASON)
        .await?;
    trust::apply(home, hub.code, spoke, Some(LinkStatus::Active))?;
    let hub_desc = Descriptor::from(hub);
    let client_secret = dive_idp::util::random_token(32);
    let db = broker::open(home, hub.code).await?;
    let written = write_hub_idp(&db, &hub_desc, spoke, &req.client_secret, &client_secret).await;
    db.pool.close().await;
    written?;
    let link_key = dive_idp::util::random_token(32);
    let key_file = link_key_file(home, hub.code, spoke.code);
    if let Some(dir) = key_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| FederationError::io("create", dir, e))?;
    }
    dive_instance::config::write_if_changed(&key_file, link_key.as_bytes(), 0o600)
        .map_err(FederationError::from)?;
    Ok(JoinResponse {
        hub: hub_desc,
        client_secret,
        link_key,
    })
}

/// The hub's IdP: the spoke as an upstream (with the secret the spoke chose for its client
/// `dive-broker-<hub>`), and a client `dive-broker-<spoke>` for the spoke's broker.
async fn write_hub_idp(
    db: &dive_idp::Db,
    hub: &Descriptor,
    spoke: &Descriptor,
    spoke_secret: &str,
    hub_secret: &str,
) -> Result<(), FederationError> {
    broker::put_upstream(
        db,
        hub.code,
        spoke,
        &broker::broker_client_id(hub.code),
        Some(spoke_secret.to_string()),
        true,
    )
    .await?;
    broker::register_client(
        db,
        hub.code,
        &broker::broker_client_id(spoke.code),
        hub_secret,
        &callback(spoke, hub.code),
    )
    .await?;
    Ok(())
}

/// The broker callback of `side`'s upstream for `partner`.
pub fn callback(side: &Descriptor, partner: CountryCode) -> String {
    format!(
        "{}/broker/{}/callback",
        side.issuer,
        broker::upstream_alias(partner)
    )
}

/// Write one side's IdP for a link with a remote partner being `status`: the upstream enabled
/// or disabled (its secret kept), or upstream and the partner's client removed.
pub async fn apply_idp(
    db: &dive_idp::Db,
    side: CountryCode,
    partner: &Descriptor,
    status: LinkStatus,
) -> Result<Vec<String>, FederationError> {
    match status {
        LinkStatus::Active | LinkStatus::Suspended => {
            let (_, changed) = broker::put_upstream(
                db,
                side,
                partner,
                &broker::broker_client_id(side),
                None,
                status == LinkStatus::Active,
            )
            .await?;
            Ok(changed)
        }
        LinkStatus::Pending | LinkStatus::Revoked => {
            let mut changed = broker::remove_upstream(db, side, partner.code).await?;
            changed.extend(
                broker::remove_client(db, side, &broker::broker_client_id(partner.code)).await?,
            );
            Ok(changed)
        }
    }
}

/// The result of a status change of a remote link: the hub's side took effect; the push to the
/// spoke may have failed (`pushed` says why).
pub struct RemoteOutcome {
    pub outcome: Outcome,
    pub pushed: Result<(), String>,
}

/// Move a remote link to `to` on the hub (at once, as for a local link), then push the change to
/// the spoke.
pub async fn set_status(
    home: &Path,
    hub: &InstanceConfig,
    spoke: &Descriptor,
    to: LinkStatus,
    reason: &str,
) -> Result<RemoteOutcome, FederationError> {
    let _lock = crate::lock(home, hub.code).await?;
    let reg = registry(home, hub.code).await?;
    let result = async {
        let link = reg
            .get(spoke.code)
            .await?
            .ok_or(FederationError::NotLinked(spoke.code))?;
        if !link.status.can_become(to) && link.status != to {
            return Err(FederationError::Transition {
                partner: spoke.code,
                from: link.status,
                to,
            });
        }
        // Trust granted only after the registry records it, withdrawn before.
        if to.is_active() {
            reg.transition(spoke.code, to, reason).await?;
        }
        let mut changed = trust::apply(home, hub.code, spoke, Some(to))?;
        let db = broker::open(home, hub.code).await?;
        let idp = apply_idp(&db, hub.code, spoke, to).await;
        db.pool.close().await;
        changed.extend(idp?);
        if !to.is_active() {
            reg.transition(spoke.code, to, reason).await?;
        }
        Ok(Outcome {
            partner: spoke.code,
            status: Some(to),
            changed,
        })
    }
    .await;
    reg.close().await;
    let outcome = result?;
    let pushed = push(home, hub.code, spoke, to, reason).await;
    Ok(RemoteOutcome { outcome, pushed })
}

/// Tell the spoke its link is now `status`, authenticated by the link key.
pub async fn push(
    home: &Path,
    hub: CountryCode,
    spoke: &Descriptor,
    status: LinkStatus,
    reason: &str,
) -> Result<(), String> {
    let http = dive_http::trust::partner_client(home).map_err(|e| e.to_string())?;
    let body = StatusPush {
        hub,
        status,
        reason: reason.to_string(),
    };
    post_with_link_key(home, &http, hub, spoke, "link-status", &body, 10)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// What the hub asks a remote spoke to verify (its half of their link).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    pub hub: CountryCode,
}

/// The spoke's answer: the checks it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyAnswer {
    pub spoke: CountryCode,
    pub checks: Vec<crate::verify::Check>,
}

/// How long the hub waits for a spoke's half of a verification: its checks retry with back-off
/// and include two logins across the installations.
const VERIFY_TIMEOUT_S: u64 = 60;

/// Ask the spoke to run its half of the verification of the link (`POST
/// <spoke>/federation/verify`, authenticated by the link key).
pub async fn ask_verify(
    home: &Path,
    http: &reqwest::Client,
    hub: CountryCode,
    spoke: &Descriptor,
) -> Result<Vec<crate::verify::Check>, PostError> {
    let body = VerifyRequest { hub };
    let answer =
        post_with_link_key(home, http, hub, spoke, "verify", &body, VERIFY_TIMEOUT_S).await?;
    let refused = PostError::Refused;
    let answer: VerifyAnswer = serde_json::from_value(answer)
        .map_err(|e| refused(format!("{}'s verification answer: {e}", spoke.code)))?;
    if answer.spoke != spoke.code {
        return Err(refused(format!(
            "{} answered as {}, not {}",
            spoke.issuer, answer.spoke, spoke.code
        )));
    }
    // Only the spoke's checks of this link are taken (ids naming the two of them).
    let (a, b) = (
        format!("{}→{hub}.", spoke.code),
        format!("{hub}→{}.", spoke.code),
    );
    if let Some(c) = answer
        .checks
        .iter()
        .find(|c| !c.id.starts_with(&a) && !c.id.starts_with(&b))
    {
        return Err(refused(format!(
            "{} reported a check of another link: {}",
            spoke.code, c.id
        )));
    }
    Ok(answer.checks)
}

/// Why a request to a remote spoke failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Not answered (connection refused, timeout, TLS): may pass when tried again.
    #[error("{0}")]
    Unreachable(String),
    /// Answered with a refusal or something unacceptable, or not sent (no link key).
    #[error("{0}")]
    Refused(String),
}

/// `POST <spoke issuer>/federation/<path>` with the link key as bearer; the JSON answer, or why
/// not (unreachable, or its status and message).
async fn post_with_link_key<T: Serialize>(
    home: &Path,
    http: &reqwest::Client,
    hub: CountryCode,
    spoke: &Descriptor,
    path: &str,
    body: &T,
    timeout_s: u64,
) -> Result<serde_json::Value, PostError> {
    let key_file = link_key_file(home, hub, spoke.code);
    let key = std::fs::read_to_string(&key_file)
        .map_err(|e| PostError::Refused(format!("cannot read {}: {e}", key_file.display())))?;
    let url = format!("{}/federation/{path}", spoke.issuer);
    let r = http
        .post(&url)
        .bearer_auth(key.trim())
        .json(body)
        .timeout(std::time::Duration::from_secs(timeout_s))
        .send()
        .await
        .map_err(|e| PostError::Unreachable(format!("{url}: {}", crate::health::root_cause(&e))))?;
    let code = r.status();
    let answer: serde_json::Value = r.json().await.unwrap_or_default();
    if code.is_success() {
        return Ok(answer);
    }
    Err(PostError::Refused(format!(
        "{url} answered {code}: {}",
        answer["message"].as_str().unwrap_or("(no message)")
    )))
}

/// The remote partner `code` of the installation's hub at `home`, if it is one: the hub and how
/// the partner is reached.
pub async fn find(
    home: &Path,
    code: CountryCode,
) -> Result<Option<(InstanceConfig, Descriptor)>, FederationError> {
    let Some(hub) = dive_instance::config::all(home)?
        .into_iter()
        .find(|c| c.role == Role::Hub)
    else {
        return Ok(None);
    };
    if !InstancePaths::new(home, hub.code).federation_db().exists() {
        return Ok(None);
    }
    let reg = registry(home, hub.code).await?;
    let found = reg.remote(code).await;
    reg.close().await;
    Ok(found?.map(|d| (hub, d)))
}

/// Remove a remote link: the spoke is told the link is revoked (unless it already is), then the
/// hub withdraws its side, forgets the partner (history kept) and its CA and link key.
pub async fn unlink(
    home: &Path,
    hub: &InstanceConfig,
    spoke: &Descriptor,
    reason: &str,
) -> Result<RemoteOutcome, FederationError> {
    let _lock = crate::lock(home, hub.code).await?;
    let reg = registry(home, hub.code).await?;
    let result = async {
        let was = reg.get(spoke.code).await?.map(|l| l.status);
        let mut changed = trust::apply(home, hub.code, spoke, None)?;
        let db = broker::open(home, hub.code).await?;
        let idp = apply_idp(&db, hub.code, spoke, LinkStatus::Revoked).await;
        db.pool.close().await;
        changed.extend(idp?);
        let pushed = match was {
            Some(LinkStatus::Revoked) | None => Ok(()),
            Some(_) => push(home, hub.code, spoke, LinkStatus::Revoked, reason).await,
        };
        reg.remove(spoke.code, reason).await?;
        reg.remove_remote(spoke.code).await?;
        if dive_pki::partners::remove_partner_ca(home, spoke.code.as_str())
            .map_err(|e| FederationError::Invalid(e.to_string()))?
        {
            changed.push(format!("partner CA of {} removed", spoke.code));
        }
        let key = link_key_file(home, hub.code, spoke.code);
        match std::fs::remove_file(&key) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FederationError::io("remove", &key, e)),
        }
        Ok(RemoteOutcome {
            outcome: Outcome {
                partner: spoke.code,
                status: None,
                changed,
            },
            pushed,
        })
    }
    .await;
    reg.close().await;
    result
}
