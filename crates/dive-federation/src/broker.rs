//! What a link's state means for the two identity providers: while it is active, each side's IdP
//! has the other as an upstream (`<partner>-idp`, offered on its login page) and the other side's
//! IdP has a confidential client for it (`dive-broker-<side>`), both holding one generated shared
//! secret. Suspended: the upstream is disabled (not offered, in-flight logins refused). Revoked or
//! unlinked: upstream and client removed.
//!
//! Instances of one installation write each other's IdP databases directly ([`apply`]); a side
//! linked with a remote partner writes only its own database, with the secrets exchanged when
//! joining ([`put_upstream`], [`register_client`]). The running IdPs read upstreams and clients
//! from their databases on use.

use dive_core::CountryCode;
use dive_core::federation::LinkStatus;
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::upstreams::{self, Upstream, UpstreamSpec};
use dive_instance::{InstanceConfig, InstancePaths};

use crate::FederationError;
use crate::descriptor::Descriptor;

/// The alias of `partner`'s upstream in a side's IdP, e.g. `fra-idp`.
pub fn upstream_alias(partner: CountryCode) -> String {
    format!("{}-idp", partner.as_str().to_ascii_lowercase())
}

/// The client `side`'s broker uses at its partner's IdP, e.g. `dive-broker-usa`.
pub fn broker_client_id(side: CountryCode) -> String {
    format!("dive-broker-{}", side.as_str().to_ascii_lowercase())
}

/// Open `code`'s IdP database in this installation (it must have been deployed).
pub async fn open(
    home: &std::path::Path,
    code: CountryCode,
) -> Result<dive_idp::Db, FederationError> {
    let path = InstancePaths::new(home, code).idp_db();
    if !path.is_file() {
        return Err(FederationError::Invalid(format!(
            "{code} has no identity provider database at {}: deploy it first",
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
/// link being `status` (`None`: no link), both IdPs in this installation. Returns what changed.
pub async fn apply(
    home: &std::path::Path,
    side: &InstanceConfig,
    partner: &InstanceConfig,
    status: Option<LinkStatus>,
) -> Result<Vec<String>, FederationError> {
    let side_db = open(home, side.code).await?;
    let partner_db = open(home, partner.code).await?;
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
    let client_id = broker_client_id(side.code);
    let partner_desc = Descriptor::from(partner);
    match status {
        Some(s @ (LinkStatus::Active | LinkStatus::Suspended)) => {
            // One shared secret per link: kept while the upstream exists, generated otherwise.
            let (upstream, mut changed) = put_upstream(
                side_db,
                side.code,
                &partner_desc,
                &client_id,
                None,
                s == LinkStatus::Active,
            )
            .await?;
            // The partner's client for this broker, with the same secret (re-registered so the
            // two can never drift apart).
            changed.extend(
                register_client(
                    partner_db,
                    partner.code,
                    &client_id,
                    &upstream.client_secret,
                    &upstream.redirect_uri(&side.urls.issuer),
                )
                .await?,
            );
            Ok(changed)
        }
        Some(LinkStatus::Pending | LinkStatus::Revoked) | None => {
            let mut changed = remove_upstream(side_db, side.code, partner.code).await?;
            changed.extend(remove_client(partner_db, partner.code, &client_id).await?);
            Ok(changed)
        }
    }
}

/// `side`'s upstream for `partner`, using `client_id` at the partner's IdP. Its secret is
/// `secret` when given (a remote partner chose it), else the existing upstream's (when it still
/// points at the same issuer and client), else a new random one. Returns it and what changed.
pub async fn put_upstream(
    db: &dive_idp::Db,
    side: CountryCode,
    partner: &Descriptor,
    client_id: &str,
    secret: Option<String>,
    enabled: bool,
) -> Result<(Upstream, Vec<String>), FederationError> {
    let alias = upstream_alias(partner.code);
    let existing = upstreams::find(db, &alias).await.map_err(idp_err)?;
    let secret = secret.unwrap_or_else(|| {
        existing
            .as_ref()
            .filter(|u| u.client_id == client_id && u.issuer == partner.issuer)
            .map(|u| u.client_secret.clone())
            .unwrap_or_else(|| dive_idp::util::random_token(32))
    });
    let (upstream, created) = upstreams::put(
        db,
        UpstreamSpec {
            alias: alias.clone(),
            display_name: Some(format!("{} (federation partner)", partner.code)),
            issuer: partner.issuer.clone(),
            client_id: client_id.to_string(),
            client_secret: secret,
            scopes: None,
            claim_mapping: None,
            country: Some(partner.code.as_str().to_string()),
            ca_pem: None,
            enabled: Some(enabled),
        },
    )
    .await
    .map_err(idp_err)?;
    let mut changed = Vec::new();
    if created || existing.is_some_and(|u| u.enabled != upstream.enabled) {
        changed.push(format!(
            "{side} IdP: upstream {alias} {}",
            if upstream.enabled {
                "enabled"
            } else {
                "disabled"
            }
        ));
    }
    Ok((upstream, changed))
}

/// (Re-)register the confidential client `client_id` at `owner`'s IdP with `secret`, for a
/// partner's broker whose callback is `redirect`.
pub async fn register_client(
    db: &dive_idp::Db,
    owner: CountryCode,
    client_id: &str,
    secret: &str,
    redirect: &str,
) -> Result<Vec<String>, FederationError> {
    let mut changed = Vec::new();
    if dive_idp::clients::find(db, client_id)
        .await
        .map_err(idp_err)?
        .is_some()
    {
        dive_idp::clients::remove(db, client_id)
            .await
            .map_err(idp_err)?;
    } else {
        changed.push(format!("{owner} IdP: client {client_id} registered"));
    }
    dive_idp::clients::create(
        db,
        &NewClient {
            client_id: client_id.to_string(),
            auth: NewClientAuth::Secret(secret.to_string()),
            redirect_uris: vec![redirect.to_string()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
        },
    )
    .await
    .map_err(idp_err)?;
    Ok(changed)
}

/// Remove `side`'s upstream for `partner`, if any.
pub async fn remove_upstream(
    db: &dive_idp::Db,
    side: CountryCode,
    partner: CountryCode,
) -> Result<Vec<String>, FederationError> {
    let alias = upstream_alias(partner);
    if upstreams::find(db, &alias)
        .await
        .map_err(idp_err)?
        .is_none()
    {
        return Ok(Vec::new());
    }
    upstreams::remove(db, &alias).await.map_err(idp_err)?;
    Ok(vec![format!("{side} IdP: upstream {alias} removed")])
}

/// Remove the client `client_id` from `owner`'s IdP, if any.
pub async fn remove_client(
    db: &dive_idp::Db,
    owner: CountryCode,
    client_id: &str,
) -> Result<Vec<String>, FederationError> {
    if dive_idp::clients::find(db, client_id)
        .await
        .map_err(idp_err)?
        .is_none()
    {
        return Ok(Vec::new());
    }
    dive_idp::clients::remove(db, client_id)
        .await
        .map_err(idp_err)?;
    Ok(vec![format!("{owner} IdP: client {client_id} removed")])
}
