//! Links with a hub of **another installation**, spoke side: joining (`dive spoke deploy FRA
//! --hub URL …`, `dive federation join …`) and applying the status changes the hub pushes.
//!
//! Joining trusts nothing it has not checked: the hub's CA is fetched without verification, but
//! used only if its SHA-256 fingerprint is the one the operator pinned (printed by the hub's
//! `dive federation invite`); everything after goes over TLS verified against that CA.

use std::path::{Path, PathBuf};

use dive_core::CountryCode;
use dive_core::federation::LinkStatus;
use dive_instance::{InstanceConfig, InstancePaths, Role};
use serde::{Deserialize, Serialize};

use crate::descriptor::{Descriptor, https_base};
use crate::remote::{self, JoinRequest, JoinResponse, StatusPush};
use crate::{FederationError, broker, trust};

/// What the spoke keeps about its hub: `instances/<spoke>/federation/hub.json` (0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HubLink {
    pub hub: Descriptor,
    /// SHA-256 (hex) of the link key: enough to check the hub's pushes, useless to a reader.
    pub link_key_sha256: String,
    pub status: LinkStatus,
    pub hub_ca_sha256: String,
    pub updated_at_ms: i64,
}

pub fn hub_file(home: &Path, spoke: CountryCode) -> PathBuf {
    InstancePaths::new(home, spoke)
        .partners_file()
        .with_file_name("hub.json")
}

pub fn read_hub_link(home: &Path, spoke: CountryCode) -> Result<Option<HubLink>, FederationError> {
    let path = hub_file(home, spoke);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| FederationError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FederationError::io("read", &path, e)),
    }
}

fn write_hub_link(home: &Path, spoke: CountryCode, link: &HubLink) -> Result<(), FederationError> {
    let path = hub_file(home, spoke);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| FederationError::io("create", dir, e))?;
    }
    let text = serde_json::to_string_pretty(link)
        .map_err(|e| FederationError::Corrupt(format!("{}: {e}", path.display())))?
        + "\n";
    dive_instance::config::write_if_changed(&path, text.as_bytes(), 0o600)?;
    Ok(())
}

fn remote_err(what: &str, e: impl std::fmt::Display) -> FederationError {
    FederationError::Remote(format!("{what}: {e}"))
}

/// Fetch the hub's CA without trusting it, and accept it only if its fingerprint is `pin`.
pub async fn fetch_pinned_ca(hub_url: &str, pin: &str) -> Result<String, FederationError> {
    let pin = dive_pki::partners::normalise_fingerprint(pin).ok_or_else(|| {
        FederationError::Invalid(format!(
            "--hub-ca-sha256 {pin:?} is not a SHA-256 fingerprint (64 hex digits)"
        ))
    })?;
    // Unverified on purpose: the pin below is the check. Nothing but the CA is read this way.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| remote_err("HTTPS client", e))?;
    let url = format!("{hub_url}/federation/ca.pem");
    let r = http
        .get(&url)
        .send()
        .await
        .map_err(|e| remote_err(&url, crate::health::root_cause(&e)))?;
    if !r.status().is_success() {
        return Err(remote_err(&url, format!("answered {}", r.status())));
    }
    let pem = r.text().await.map_err(|e| remote_err(&url, e))?;
    let actual = dive_pki::partners::pem_fingerprint(&pem, &url)
        .map_err(|e| remote_err("the hub's CA", e))?;
    if actual != pin {
        return Err(FederationError::Remote(format!(
            "the CA served by {hub_url} has SHA-256 fingerprint {actual}, but --hub-ca-sha256 \
             pins {pin}: refusing to trust it (check the URL and the fingerprint the hub's \
             operator gave you)"
        )));
    }
    Ok(pem)
}

/// What joining did.
pub struct Joined {
    pub hub: Descriptor,
    pub changed: Vec<String>,
}

/// Join the hub at `hub_url` as `spoke` (deployed in this installation): pin and store the hub's
/// CA, register this side's broker client for the hub, send the join with `token`, then write
/// this side (trust files, partners file, upstream `<hub>-idp`) and `hub.json`.
pub async fn join(
    home: &Path,
    spoke: &InstanceConfig,
    hub_url: &str,
    pin: &str,
    token: &str,
) -> Result<Joined, FederationError> {
    let hub_url = hub_url.trim_end_matches('/');
    https_base("--hub", hub_url).map_err(FederationError::Invalid)?;
    if spoke.role != Role::Spoke {
        return Err(FederationError::Invalid(format!(
            "{} is a hub; only a spoke joins a hub",
            spoke.code
        )));
    }
    let ca_pem = fetch_pinned_ca(hub_url, pin).await?;
    let mut certs = dive_http::trust::trusted_certs(home).map_err(|e| remote_err("CAs", e))?;
    certs.extend(
        reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|e| remote_err("the hub's CA", e))?,
    );
    let http = dive_http::trust::client_trusting(certs).map_err(|e| remote_err("client", e))?;
    let own_ca_path = dive_pki::partners::installation_ca_path(home);
    let own_ca = std::fs::read_to_string(&own_ca_path)
        .map_err(|e| FederationError::io("read", &own_ca_path, e))?;
    let db = broker::open(home, spoke.code).await?;
    let secret = dive_idp::util::random_token(32);
    let req = JoinRequest {
        code: spoke.code,
        issuer: spoke.urls.issuer.clone(),
        api_url: spoke.urls.api.clone(),
        ca_pem: own_ca,
        client_secret: secret.clone(),
    };
    let result = async {
        let resp = send_join(&http, hub_url, token, &req).await?;
        let hub = &resp.hub;
        if hub.issuer != hub_url || hub.role != Role::Hub || hub.code == spoke.code {
            return Err(FederationError::Remote(format!(
                "{hub_url} answered as {} {} with issuer {}: not the hub that was asked",
                hub.role, hub.code, hub.issuer
            )));
        }
        dive_pki::partners::store_partner_ca(home, hub.code.as_str(), &ca_pem)
            .map_err(|e| FederationError::Invalid(e.to_string()))?;
        let me = Descriptor::from(spoke);
        let mut changed = broker::register_client(
            &db,
            spoke.code,
            &broker::broker_client_id(hub.code),
            &secret,
            &remote::callback(hub, spoke.code),
        )
        .await?;
        let (_, up) = broker::put_upstream(
            &db,
            spoke.code,
            hub,
            &broker::broker_client_id(me.code),
            Some(resp.client_secret.clone()),
            true,
        )
        .await?;
        changed.extend(up);
        changed.extend(trust::apply(
            home,
            spoke.code,
            hub,
            Some(LinkStatus::Active),
        )?);
        write_hub_link(
            home,
            spoke.code,
            &HubLink {
                hub: hub.clone(),
                link_key_sha256: dive_idp::util::sha256_hex(&resp.link_key),
                status: LinkStatus::Active,
                hub_ca_sha256: dive_pki::partners::pem_fingerprint(&ca_pem, "hub CA")
                    .map_err(|e| remote_err("the hub's CA", e))?,
                updated_at_ms: crate::registry::now_ms(),
            },
        )?;
        Ok(Joined {
            hub: hub.clone(),
            changed,
        })
    }
    .await;
    db.pool.close().await;
    result
}

async fn send_join(
    http: &reqwest::Client,
    hub_url: &str,
    token: &str,
    req: &JoinRequest,
) -> Result<JoinResponse, FederationError> {
    let url = format!("{hub_url}/federation/join");
    let r = http
        .post(&url)
        .bearer_auth(token)
        .json(req)
        .send()
        .await
        .map_err(|e| remote_err(&url, crate::health::root_cause(&e)))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.map_err(|e| remote_err(&url, e))?;
    if !status.is_success() {
        return Err(FederationError::Remote(format!(
            "the hub refused the join ({status}): {}",
            body["message"].as_str().unwrap_or("(no message)")
        )));
    }
    serde_json::from_value(body).map_err(|e| remote_err(&format!("{url} answer"), e))
}

/// Why a request of the hub (a pushed status change, a verification) was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0} has not joined a remote hub")]
    NoHub(CountryCode),
    #[error("missing or wrong link key")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Internal(#[from] FederationError),
}

/// The link with the remote hub `hub`, if `bearer` is its link key (checked in constant time
/// against the hash kept in `hub.json`).
fn authenticate(
    home: &Path,
    spoke: CountryCode,
    bearer: Option<&str>,
    hub: CountryCode,
) -> Result<HubLink, PushError> {
    let link = read_hub_link(home, spoke)?.ok_or(PushError::NoHub(spoke))?;
    let presented = dive_idp::util::sha256_hex(bearer.ok_or(PushError::Unauthorized)?);
    if !dive_idp::util::ct_eq(&presented, &link.link_key_sha256) {
        return Err(PushError::Unauthorized);
    }
    if hub != link.hub.code {
        return Err(PushError::BadRequest(format!(
            "this spoke's hub is {}, not {hub}",
            link.hub.code
        )));
    }
    Ok(link)
}

/// Run this spoke's half of the verification of its link with the hub, which asked with the
/// link key (`bearer`): the checks only this side can run (see
/// [`crate::verify::spoke_half`]). Changes nothing but what a login records.
pub async fn verify_for_hub(
    home: &Path,
    spoke: CountryCode,
    bearer: Option<&str>,
    req: &remote::VerifyRequest,
) -> Result<remote::VerifyAnswer, PushError> {
    let link = authenticate(home, spoke, bearer, req.hub)?;
    let cfg = dive_instance::config::load(&InstancePaths::new(home, spoke))
        .map_err(FederationError::from)?
        .ok_or(PushError::NoHub(spoke))?;
    Ok(remote::VerifyAnswer {
        spoke,
        checks: crate::verify::spoke_half(home, &cfg, &link).await,
    })
}

/// Apply a status change pushed by the hub to `spoke`'s side, after checking the link key
/// (`bearer`).
pub async fn apply_push(
    home: &Path,
    spoke: CountryCode,
    bearer: Option<&str>,
    push: &StatusPush,
) -> Result<Vec<String>, PushError> {
    let mut link = authenticate(home, spoke, bearer, push.hub)?;
    if push.status == LinkStatus::Pending {
        return Err(PushError::BadRequest(
            "a link is pending only while joining".into(),
        ));
    }
    let mut changed = trust::apply(home, spoke, &link.hub, Some(push.status))?;
    let db = broker::open(home, spoke).await?;
    let idp = remote::apply_idp(&db, spoke, &link.hub, push.status).await;
    db.pool.close().await;
    changed.extend(idp?);
    link.status = push.status;
    link.updated_at_ms = crate::registry::now_ms();
    write_hub_link(home, spoke, &link)?;
    tracing::info!(hub = %link.hub.code, status = %push.status, reason = %push.reason, "link status pushed by the hub applied");
    Ok(changed)
}
