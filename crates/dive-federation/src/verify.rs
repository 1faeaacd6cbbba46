//! `dive federation verify CODE`: concrete checks of a link, in both directions, each with what it
//! found — the partner's discovery document and JWKS reachable, the upstream configured and
//! enabled, the broker's client present at the partner with the same secret, the partner's issuer
//! trusted and in the federation matrix, and a real scripted brokered login of a partner test user
//! producing this side's tokens with the user's national attributes. Checks that can be caught
//! mid-propagation are retried with exponential backoff; the result is recorded in the registry.

use std::path::Path;
use std::time::{Duration, Instant};

use dive_core::CountryCode;
use dive_idp::login_helper::{BrokerRequest, LoginRequest, broker_login};
use dive_instance::{InstanceConfig, InstancePaths};
use dive_orchestrator::state::{BreakerConfig, BreakerState, format_millis, now_millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::descriptor::Descriptor;
use crate::{FederationError, Pair, broker};

/// Attempts of a check that may be caught while a change propagates, and the first back-off.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The link's breaker: three failed verifications in a row open it for a minute, during which
/// `verify` (and the deployments that run it) fail fast instead of retrying against a partner
/// that is down; after that one verification is let through as a trial.
pub const BREAKER: BreakerConfig = BreakerConfig {
    failure_threshold: 3,
    cooldown: Duration::from_secs(60),
    success_threshold: 1,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// e.g. `USA→FRA.brokered_login`: USA's side of its link with FRA.
    pub id: String,
    pub ok: bool,
    pub detail: String,
    pub attempts: u32,
    pub duration_ms: u64,
}

impl Check {
    fn failed(id: String, since: Instant, detail: String) -> Check {
        Check {
            id,
            ok: false,
            detail,
            attempts: 1,
            duration_ms: since.elapsed().as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub hub: String,
    pub spoke: String,
    pub ok: bool,
    pub checks: Vec<Check>,
    /// The link's breaker after this run.
    pub breaker: BreakerState,
}

/// Run every check of a link within this installation, in both directions, and record the
/// result. The link's breaker refuses the run while open, unless `force` (an operator asking for
/// a trial now).
pub async fn verify(pair: &Pair, force: bool) -> Result<Report, FederationError> {
    let reg = pair.registry().await?;
    let result = recorded(&reg, pair.hub.code, pair.spoke.code, force, async {
        let http = crate::health::client(&pair.home)?;
        let mut checks = Vec::new();
        for (side, partner) in [(&pair.hub, &pair.spoke), (&pair.spoke, &pair.hub)] {
            checks.extend(direction(&pair.home, &http, side, partner).await);
        }
        Ok(checks)
    })
    .await;
    reg.close().await;
    result
}

/// Verify the link of the hub of `home` with `spoke`, a spoke of another installation: the hub
/// runs its own side's checks and the brokered login of its test user into the spoke, and asks
/// the spoke (`POST <spoke>/federation/verify`, authenticated by the link key) for the checks
/// only it can run — its side's files and IdP, and its own test user brokered into the hub.
/// Recorded and guarded by the breaker exactly as [`verify`].
pub async fn verify_remote(
    home: &Path,
    hub: &InstanceConfig,
    spoke: &Descriptor,
    force: bool,
) -> Result<Report, FederationError> {
    let reg = crate::remote::registry(home, hub.code).await?;
    let result = recorded(&reg, hub.code, spoke.code, force, async {
        let http = crate::health::client(home)?;
        let me = Descriptor::from(hub);
        let (mut checks, theirs) = tokio::join!(
            hub_half(home, &http, &me, spoke),
            partner_half(home, &http, hub.code, spoke)
        );
        checks.extend(theirs);
        // Group by direction (the hub's side of the link first), keeping each side's order.
        let hub_prefix = format!("{}→", hub.code);
        checks.sort_by_key(|c| !c.id.starts_with(&hub_prefix));
        Ok(checks)
    })
    .await;
    reg.close().await;
    result
}

/// Check the breaker, run `checks`, record the result in the registry and update the breaker.
async fn recorded(
    reg: &crate::Registry,
    hub: CountryCode,
    code: CountryCode,
    force: bool,
    checks: impl std::future::Future<Output = Result<Vec<Check>, FederationError>>,
) -> Result<Report, FederationError> {
    let link = reg
        .get(code)
        .await?
        .ok_or(FederationError::NotLinked(code))?;
    if !force {
        let b = &link.breaker;
        if let Err(open) = b.check("federation", code.as_str(), now_millis(), &BREAKER) {
            return Err(FederationError::BreakerOpen {
                partner: code,
                failures: open.failures,
                last_error: open.last_error.unwrap_or_else(|| "unknown".into()),
                until: format_millis(open.until),
            });
        }
    }
    let checks = checks.await?;
    let failed = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut report = Report {
        hub: hub.to_string(),
        spoke: code.to_string(),
        ok: failed.is_empty(),
        checks,
        breaker: BreakerState::Closed,
    };
    let failure = format!("failed: {failed}");
    let outcome = if report.ok {
        Ok(())
    } else {
        Err(failure.as_str())
    };
    let value =
        serde_json::to_value(&report).map_err(|e| FederationError::Corrupt(e.to_string()))?;
    let breaker = reg
        .record_verification(code, &value, outcome, &BREAKER)
        .await?;
    report.breaker = breaker.state;
    Ok(report)
}

/// `side`'s half of the link: what it needs to trust and broker `partner`.
async fn direction(
    home: &Path,
    http: &reqwest::Client,
    side: &InstanceConfig,
    partner: &InstanceConfig,
) -> Vec<Check> {
    let prefix = format!("{}→{}", side.code, partner.code);
    let (side_d, partner_d) = (Descriptor::from(side), Descriptor::from(partner));
    vec![
        retried(format!("{prefix}.discovery"), || {
            discovery(http, &partner.urls.issuer)
        })
        .await,
        retried(format!("{prefix}.upstream"), || {
            upstream(home, side, partner)
        })
        .await,
        retried(format!("{prefix}.trust"), || async {
            trust(home, side.code, &partner_d)
        })
        .await,
        retried(format!("{prefix}.brokered_login"), || {
            brokered_login(http, home, &side_d, &partner_d)
        })
        .await,
    ]
}

/// What the hub checks of a link with a remote spoke by itself: its own side (the spoke's
/// discovery and JWKS through the pinned partner CA, its upstream and client, its trust files),
/// and its test user brokered into the spoke and its token accepted by the spoke's API.
async fn hub_half(
    home: &Path,
    http: &reqwest::Client,
    hub: &Descriptor,
    spoke: &Descriptor,
) -> Vec<Check> {
    let mut out = own_side(home, http, hub, spoke).await;
    out.extend(their_login(home, http, hub, spoke).await);
    out
}

/// The spoke's checks of the same link, as it reports them; one failed check naming why when
/// it cannot be asked or refuses. A spoke that does not answer is asked again with the same
/// back-off as a check (one that answers with a refusal is not: it would refuse again).
async fn partner_half(
    home: &Path,
    http: &reqwest::Client,
    hub: CountryCode,
    spoke: &Descriptor,
) -> Vec<Check> {
    use crate::remote::PostError;
    let id = format!("{}→{hub}.partner_checks", spoke.code);
    let t0 = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let detail = match crate::remote::ask_verify(home, http, hub, spoke).await {
            Ok(checks) if !checks.is_empty() => return checks,
            Ok(_) => format!("{} reported no checks", spoke.code),
            Err(PostError::Unreachable(_)) if attempts < ATTEMPTS => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                continue;
            }
            Err(e) => e.to_string(),
        };
        let mut c = Check::failed(id, t0, detail);
        c.attempts = attempts;
        return vec![c];
    }
}

/// A remote link's checks that `side` runs on its own side of its link with `partner`: the
/// partner's discovery and JWKS, this side's upstream for the partner and client for its broker,
/// and this side's trust files.
async fn own_side(
    home: &Path,
    http: &reqwest::Client,
    side: &Descriptor,
    partner: &Descriptor,
) -> Vec<Check> {
    let prefix = format!("{}→{}", side.code, partner.code);
    vec![
        retried(format!("{prefix}.discovery"), || {
            discovery(http, &partner.issuer)
        })
        .await,
        retried(format!("{prefix}.upstream"), || {
            own_upstream(home, side.code, partner)
        })
        .await,
        retried(format!("{prefix}.trust"), || async {
            trust(home, side.code, partner)
        })
        .await,
    ]
}

/// What `home`'s instance `mine` can prove of its partner's half of the link by its own users:
/// its test user logs in at the partner through the partner's upstream for it, and a token of
/// its own is accepted by the partner's API.
async fn their_login(
    home: &Path,
    http: &reqwest::Client,
    mine: &Descriptor,
    partner: &Descriptor,
) -> Vec<Check> {
    let prefix = format!("{}→{}", partner.code, mine.code);
    vec![
        retried(format!("{prefix}.brokered_login"), || {
            brokered_login(http, home, partner, mine)
        })
        .await,
        retried(format!("{prefix}.token_accepted"), || {
            token_accepted(http, home, mine, partner)
        })
        .await,
    ]
}

/// The spoke's half of the verification of its link with a remote hub, run when the hub asks:
/// its own side (the hub's discovery through the pinned hub CA, its upstream and client, its
/// trust files, the pinned CA itself), and its test user brokered into the hub and its token
/// accepted by the hub's API.
pub(crate) async fn spoke_half(
    home: &Path,
    spoke: &InstanceConfig,
    link: &crate::spoke::HubLink,
) -> Vec<Check> {
    let me = Descriptor::from(spoke);
    let http = match crate::health::client(home) {
        Ok(h) => h,
        Err(e) => {
            return vec![Check::failed(
                format!("{}→{}.partner_checks", spoke.code, link.hub.code),
                Instant::now(),
                e.to_string(),
            )];
        }
    };
    let mut out = own_side(home, &http, &me, &link.hub).await;
    out.push(
        retried(
            format!("{}→{}.hub_ca", spoke.code, link.hub.code),
            || async { pinned_ca(home, link) },
        )
        .await,
    );
    out.extend(their_login(home, &http, &me, &link.hub).await);
    out
}

async fn retried<F, Fut>(id: String, mut f: F) -> Check
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let t0 = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = f().await;
        if r.is_ok() || attempts >= ATTEMPTS {
            let (ok, detail) = match r {
                Ok(d) => (true, d),
                Err(d) => (false, d),
            };
            return Check {
                id,
                ok,
                detail,
                attempts,
                duration_ms: t0.elapsed().as_millis() as u64,
            };
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}"));
    }
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

async fn discovery(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let doc = get_json(http, &format!("{issuer}/.well-known/openid-configuration")).await?;
    if doc["issuer"] != issuer {
        return Err(format!(
            "the discovery document names issuer {}, not {issuer}",
            doc["issuer"]
        ));
    }
    let jwks_uri = doc["jwks_uri"]
        .as_str()
        .ok_or("the discovery document has no jwks_uri")?;
    let jwks = get_json(http, jwks_uri).await?;
    let n = jwks["keys"].as_array().map_or(0, Vec::len);
    if n == 0 {
        return Err(format!("{jwks_uri} publishes no keys"));
    }
    Ok(format!("{issuer}: discovery and {n} signing key(s)"))
}

async fn upstream(
    home: &Path,
    side: &InstanceConfig,
    partner: &InstanceConfig,
) -> Result<String, String> {
    let open = |c: &InstanceConfig| broker::open(home, c.code);
    let mine = open(side).await.map_err(|e| e.to_string())?;
    let theirs = open(partner).await.map_err(|e| e.to_string())?;
    let alias = broker::upstream_alias(partner.code);
    let client_id = broker::broker_client_id(side.code);
    let up = dive_idp::upstreams::find(&mine, &alias).await;
    let client = dive_idp::clients::find(&theirs, &client_id).await;
    mine.pool.close().await;
    theirs.pool.close().await;
    let up = up
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}'s IdP has no upstream {alias}", side.code))?;
    enabled_for(&up, &alias, &partner.urls.issuer)?;
    let client = client
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}'s IdP has no client {client_id}", partner.code))?;
    if !client.secret_matches(&up.client_secret) {
        return Err(format!(
            "client {client_id} at {} does not hold upstream {alias}'s secret",
            partner.code
        ));
    }
    Ok(format!(
        "upstream {alias} enabled; client {client_id} at {} with the shared secret",
        partner.code
    ))
}

fn trust(home: &Path, side: CountryCode, partner: &Descriptor) -> Result<String, String> {
    let trusted = crate::trust::trusted_partners(home, side).map_err(|e| e.to_string())?;
    if !trusted
        .iter()
        .any(|(i, iss)| i == partner.code.as_str() && iss == &partner.issuer)
    {
        return Err(format!(
            "{side}'s policy data does not trust {} ({})",
            partner.issuer, partner.code
        ));
    }
    let path = InstancePaths::new(home, side)
        .policy_dir()
        .join("federation.json");
    let fed: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| format!("{}: unreadable", path.display()))?;
    let listed = fed[side.as_str()]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == partner.code.as_str()));
    if !listed {
        return Err(format!(
            "{} does not list {} under {side}",
            path.display(),
            partner.code,
        ));
    }
    Ok(format!(
        "{side} trusts {} and lists it in its federation matrix",
        partner.issuer
    ))
}

/// `side`'s own IdP, for a link with a partner of another installation: its upstream for the
/// partner enabled and pointing at the partner's issuer, and the client of the partner's broker
/// registered (whether the two sides hold the same secrets only a login can tell: the brokered
/// logins each way prove it).
async fn own_upstream(
    home: &Path,
    side: CountryCode,
    partner: &Descriptor,
) -> Result<String, String> {
    let db = broker::open(home, side).await.map_err(|e| e.to_string())?;
    let alias = broker::upstream_alias(partner.code);
    let client_id = broker::broker_client_id(partner.code);
    let up = dive_idp::upstreams::find(&db, &alias).await;
    let client = dive_idp::clients::find(&db, &client_id).await;
    db.pool.close().await;
    let up = up
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{side}'s IdP has no upstream {alias}"))?;
    enabled_for(&up, &alias, &partner.issuer)?;
    let client = client.map_err(|e| e.to_string())?.ok_or_else(|| {
        format!(
            "{side}'s IdP has no client {client_id} for {}'s broker",
            partner.code
        )
    })?;
    let callback = crate::remote::callback(partner, side);
    if !client.redirect_uris.contains(&callback) {
        return Err(format!(
            "client {client_id} at {side} does not accept {}'s broker callback {callback}",
            partner.code
        ));
    }
    Ok(format!(
        "upstream {alias} enabled for {}; client {client_id} registered at {side}",
        partner.issuer
    ))
}

/// The upstream `alias` is enabled and points at `issuer`.
fn enabled_for(
    up: &dive_idp::upstreams::Upstream,
    alias: &str,
    issuer: &str,
) -> Result<(), String> {
    if !up.enabled {
        return Err(format!("upstream {alias} is disabled (link suspended?)"));
    }
    if up.issuer != issuer {
        return Err(format!(
            "upstream {alias} points at {}, not {issuer}",
            up.issuer
        ));
    }
    Ok(())
}

/// The hub's CA this spoke trusts (its partner CA file) is the one pinned when it joined.
fn pinned_ca(home: &Path, link: &crate::spoke::HubLink) -> Result<String, String> {
    let path = dive_pki::partners::partners_dir(home).join(format!("{}.pem", link.hub.code));
    let pem = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fp = dive_pki::partners::pem_fingerprint(&pem, &path.display().to_string())
        .map_err(|e| e.to_string())?;
    if fp != link.hub_ca_sha256 {
        return Err(format!(
            "{} has fingerprint {fp}, but the CA pinned when joining was {}",
            path.display(),
            link.hub_ca_sha256
        ));
    }
    Ok(format!(
        "{}'s CA is the one pinned when joining ({fp})",
        link.hub.code
    ))
}

/// The first test user of `code` (no second factor), and its password from the installation at
/// `home` (where that instance is deployed).
fn test_user(home: &Path, code: CountryCode) -> Result<(String, String), String> {
    let user = format!("testuser-{}-1", code.as_str().to_ascii_lowercase());
    let passwords = InstancePaths::new(home, code).test_users();
    let password = std::fs::read_to_string(&passwords)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v[&user].as_str().map(str::to_string))
        .ok_or_else(|| format!("no password for {user} in {}", passwords.display()))?;
    Ok((user, password))
}

fn login_request(issuer: &str, user: String, password: String) -> LoginRequest {
    LoginRequest {
        issuer: issuer.to_string(),
        client_id: "dive-cli".into(),
        client_secret: None,
        redirect_uri: "http://127.0.0.1/dive-cli/callback".into(),
        scope: "openid profile coalition".into(),
        username: user,
        password,
        totp_secret: None,
        extra: vec![],
    }
}

/// A partner test user without a second factor (`testuser-<partner>-1`, its password in the
/// installation at `home`) logs in at `side` through the partner's IdP.
async fn brokered_login(
    http: &reqwest::Client,
    home: &Path,
    side: &Descriptor,
    partner: &Descriptor,
) -> Result<String, String> {
    let (user, password) = test_user(home, partner.code)?;
    let req = BrokerRequest {
        login: login_request(&side.issuer, user.clone(), password),
        alias: broker::upstream_alias(partner.code),
        use_hint: true,
        local_totp_secret: None,
    };
    let (tokens, _) = broker_login(http, &req)
        .await
        .map_err(|e| format!("{user} at {} through {}: {e}", side.code, req.alias))?;
    let claims = jwt_claims(&tokens["access_token"])?;
    let country = claims["countryOfAffiliation"].as_str().unwrap_or_default();
    if claims["iss"] != side.issuer.as_str()
        || country != partner.code.as_str()
        || claims["home_issuer"] != partner.issuer.as_str()
    {
        return Err(format!(
            "unexpected claims: iss {}, countryOfAffiliation {}, home_issuer {}",
            claims["iss"], claims["countryOfAffiliation"], claims["home_issuer"]
        ));
    }
    // The national clearance must survive brokering unchanged and normalise through the
    // partner's table: that is what the PDP on this side will decide with.
    let subject =
        dive_core::SubjectAttributes::from_claims(&claims, dive_core::Equivalency::builtin())
            .map_err(|e| format!("the brokered token's coalition claims do not normalise: {e}"))?;
    Ok(format!(
        "{user} logged in at {} through {}: national clearance {:?} ({}) normalised to {}, country {country}",
        side.code,
        req.alias,
        subject.clearance_original,
        subject.clearance_country,
        subject.clearance
    ))
}

/// A token `mine` issues to its own test user is accepted by `partner`'s resource service: the
/// partner trusts this issuer end to end (its PDP data, its JWKS fetch through the partner CA).
async fn token_accepted(
    http: &reqwest::Client,
    home: &Path,
    mine: &Descriptor,
    partner: &Descriptor,
) -> Result<String, String> {
    let (user, password) = test_user(home, mine.code)?;
    let (tokens, _) =
        dive_idp::login_helper::login(http, &login_request(&mine.issuer, user.clone(), password))
            .await
            .map_err(|e| format!("{user} at {}: {e}", mine.code))?;
    let token = tokens["access_token"]
        .as_str()
        .ok_or("the login returned no access token")?;
    let url = format!("{}/api/resources?limit=1", partner.api_url);
    let r = http
        .get(&url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::health::root_cause(&e)))?;
    let status = r.status();
    if !status.is_success() {
        let body: Value = r.json().await.unwrap_or_default();
        return Err(format!(
            "{}'s API refused a token of {} for {user} ({status}): {}",
            partner.code,
            mine.issuer,
            body["message"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("(no message)")
        ));
    }
    Ok(format!(
        "{}'s API accepted {user}'s token from {}",
        partner.code, mine.issuer
    ))
}

/// The claims of a JWT (unverified: the token was just received over verified TLS from its
/// issuer; the checks read what it says).
fn jwt_claims(token: &Value) -> Result<Value, String> {
    token
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| "the brokered access token is not a readable JWT".to_string())
}
