//! What a link's state means for the two identity providers: while it is active, each side's IdP
//! has the other as an upstream (`<partner>-idp`, offered on its login page) and the other side's
//! IdP has a confidential client for it (`dive-broker-<side>`), both holding one generated shared
//! secret. Suspended: the upstream is disabled (not offered, in-flight logins refused). Revoked or
//! unlinked: upstream and client removed.
//!
//! Instances of one installation write each other's IdP databases directly; the running IdPs read
//! upstreams and clients from them on use.

use dive_core::federation::LinkStatus;
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::upstreams::{self, UpstreamSpec};
use dive_instance::{InstanceConfig, InstancePaths};

use crate::FederationError;

/// The alias of `partner`'s upstream in `side`'s IdP, e.g. `fra-idp`.
pub fn upstream_alias(partner: &InstanceConfig) -> String {
    format!("{}-idp", partner.code.as_str().to_ascii_lowercase())
}

/// The client `side`'s broker uses at `partner`'s IdP, e.g. `dive-broker-usa`.
pub fn broker_client_id(side: &InstanceConfig) -> String {
    format!("dive-broker-{}", side.code.as_str().to_ascii_lowercase())
}

async fn open(
    home: &std::path::Path,
    cfg: &InstanceConfig,
) -> Result<dive_idp::Db, FederationError> {
    let path = InstancePaths::new(home, cfg.code).idp_db();
    if !path.is_file() {
        return Err(FederationError::Invalid(format!(
            "{} has no identity provider database at {}: deploy it first",
            cfg.code,
            path.display()
        )));
    }
    dive_idp::Db::open(&path.display().to_string())
        .await
        .map_err(|e| FederationError::Idp(e.to_string()))
}

fn idp_err(e: dive_idp::IdpError) -> FederationError {
    FederationError::Idp(e.to_string())
}

/// Bring `side`'s upstream for `partner`, and `partner`'s client for `side`, in line with the
/// link being `status` (`None`: no link). Returns what changed, for the operator.
pub async fn apply(
    home: &std::path::Path,
    side: &InstanceConfig,
    partner: &InstanceConfig,
    status: Option<LinkStatus>,
) -> Result<Vec<String>, FederationError> {
    let side_db = open(home, side).await?;
    let partner_db = open(home, partner).await?;
    let result = apply_on(&side_db, &partner_db, side, partner, status).await;
    side_db.pool.close().await;
    partner_db.pool.close().await;
    result
}

async fn apply_on(
    side_db: &dive_idp::Db,
    partner_db: &dive_idp::Db,
    side: &InstanceConfig,
    partner: &InstanceConfig,
    status: Option<LinkStatus>,
) -> Result<Vec<String>, FederationError> {
    let alias = upstream_alias(partner);
    let client_id = broker_client_id(side);
    let existing = upstreams::find(side_db, &alias).await.map_err(idp_err)?;
    let mut changed = Vec::new();
    match status {
        Some(s @ (LinkStatus::Active | LinkStatus::Suspended)) => {
            // One shared secret per link: kept while the upstream exists, generated otherwise.
            let secret = existing
                .as_ref()
                .filter(|u| u.client_id == client_id && u.issuer == partner.urls.issuer)
                .map(|u| u.client_secret.clone())
                .unwrap_or_else(|| dive_idp::util::random_token(32));
            let (upstream, created) = upstreams::put(
                side_db,
                UpstreamSpec {
                    alias: alias.clone(),
                    display_name: Some(format!("{} (federation partner)", partner.code)),
                    issuer: partner.urls.issuer.clone(),
                    client_id: client_id.clone(),
                    client_secret: secret.clone(),
                    scopes: None,
                    claim_mapping: None,
                    country: Some(partner.code.as_str().to_string()),
                    ca_pem: None,
                    enabled: Some(s == LinkStatus::Active),
                },
            )
            .await
            .map_err(idp_err)?;
            if created
                || existing
                    .as_ref()
                    .is_some_and(|u| u.enabled != upstream.enabled)
            {
                changed.push(format!(
                    "{} IdP: upstream {alias} {}",
                    side.code,
                    if upstream.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                ));
            }
            // The partner's client for this broker, with the same secret (re-registered so the
            // two can never drift apart).
            let redirect = upstream.redirect_uri(&side.urls.issuer);
            let current = dive_idp::clients::find(partner_db, &client_id)
                .await
                .map_err(idp_err)?;
            if current.is_some() {
                dive_idp::clients::remove(partner_db, &client_id)
                    .await
                    .map_err(idp_err)?;
            } else {
                changed.push(format!(
                    "{} IdP: client {client_id} registered",
                    partner.code
                ));
            }
            dive_idp::clients::create(
                partner_db,
                &NewClient {
                    client_id: client_id.clone(),
                    auth: NewClientAuth::Secret(secret),
                    redirect_uris: vec![redirect],
                    post_logout_redirect_uris: vec![],
                    grant_types: vec![GrantType::AuthorizationCode],
                },
            )
            .await
            .map_err(idp_err)?;
        }
        Some(LinkStatus::Pending | LinkStatus::Revoked) | None => {
            if existing.is_some() {
                upstreams::remove(side_db, &alias).await.map_err(idp_err)?;
                changed.push(format!("{} IdP: upstream {alias} removed", side.code));
            }
            if dive_idp::clients::find(partner_db, &client_id)
                .await
                .map_err(idp_err)?
                .is_some()
            {
                dive_idp::clients::remove(partner_db, &client_id)
                    .await
                    .map_err(idp_err)?;
                changed.push(format!("{} IdP: client {client_id} removed", partner.code));
            }
        }
    }
    Ok(changed)
}
