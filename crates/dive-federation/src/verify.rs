//! `dive federation verify CODE`: concrete checks of a link, in both directions, each with what it
//! found — the partner's discovery document and JWKS reachable, the upstream configured and
//! enabled, the broker's client present at the partner with the same secret, the partner's issuer
//! trusted and in the federation matrix, and a real scripted brokered login of a partner test user
//! producing this side's tokens with the user's national attributes. Checks that can be caught
//! mid-propagation are retried with exponential backoff; the result is recorded in the registry.

use std::time::{Duration, Instant};

use dive_idp::login_helper::{BrokerRequest, LoginRequest, broker_login};
use dive_instance::{InstanceConfig, InstancePaths};
use dive_orchestrator::state::{BreakerConfig, BreakerState, format_millis, now_millis};
use serde::Serialize;
use serde_json::Value;

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

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// e.g. `USA→FRA.brokered_login`: USA's side of its link with FRA.
    pub id: String,
    pub ok: bool,
    pub detail: String,
    pub attempts: u32,
    pub duration_ms: u64,
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

/// Run every check of the link in both directions and record the result. The link's breaker
/// refuses the run while open, unless `force` (an operator asking for a trial now).
pub async fn verify(pair: &Pair, force: bool) -> Result<Report, FederationError> {
    let reg = pair.registry().await?;
    let result = verify_with(pair, &reg, force).await;
    reg.close().await;
    result
}

async fn verify_with(
    pair: &Pair,
    reg: &crate::Registry,
    force: bool,
) -> Result<Report, FederationError> {
    let code = pair.spoke.code;
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
    let http = crate::health::client(&pair.home)?;
    let mut checks = Vec::new();
    for (side, partner) in [(&pair.hub, &pair.spoke), (&pair.spoke, &pair.hub)] {
        checks.extend(direction(&pair.home, &http, side, partner).await);
    }
    let failed = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut report = Report {
        hub: pair.hub.code.to_string(),
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
    home: &std::path::Path,
    http: &reqwest::Client,
    side: &InstanceConfig,
    partner: &InstanceConfig,
) -> Vec<Check> {
    let prefix = format!("{}→{}", side.code, partner.code);
    let mut out = Vec::new();
    out.push(
        retried(format!("{prefix}.discovery"), || {
            discovery(http, &partner.urls.issuer)
        })
        .await,
    );
    out.push(
        retried(format!("{prefix}.upstream"), || {
            upstream(home, side, partner)
        })
        .await,
    );
    out.push(
        retried(format!("{prefix}.trust"), || async {
            trust(home, side, partner)
        })
        .await,
    );
    out.push(
        retried(format!("{prefix}.brokered_login"), || {
            brokered_login(home, http, side, partner)
        })
        .await,
    );
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
    home: &std::path::Path,
    side: &InstanceConfig,
    partner: &InstanceConfig,
) -> Result<String, String> {
    let open = |c: &InstanceConfig| {
        let p = InstancePaths::new(home, c.code).idp_db();
        async move {
            dive_idp::Db::open(&p.display().to_string())
                .await
                .map_err(|e| e.to_string())
        }
    };
    let (mine, theirs) = (open(side).await?, open(partner).await?);
    let alias = broker::upstream_alias(partner.code);
    let client_id = broker::broker_client_id(side.code);
    let up = dive_idp::upstreams::find(&mine, &alias).await;
    let client = dive_idp::clients::find(&theirs, &client_id).await;
    mine.pool.close().await;
    theirs.pool.close().await;
    let up = up
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}'s IdP has no upstream {alias}", side.code))?;
    if !up.enabled {
        return Err(format!("upstream {alias} is disabled (link suspended?)"));
    }
    if up.issuer != partner.urls.issuer {
        return Err(format!(
            "upstream {alias} points at {}, not {}",
            up.issuer, partner.urls.issuer
        ));
    }
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

fn trust(
    home: &std::path::Path,
    side: &InstanceConfig,
    partner: &InstanceConfig,
) -> Result<String, String> {
    let trusted = crate::trust::trusted_partners(home, side.code).map_err(|e| e.to_string())?;
    if !trusted
        .iter()
        .any(|(i, iss)| i == partner.code.as_str() && iss == &partner.urls.issuer)
    {
        return Err(format!(
            "{}'s policy data does not trust {} ({})",
            side.code, partner.urls.issuer, partner.code
        ));
    }
    let path = InstancePaths::new(home, side.code)
        .policy_dir()
        .join("federation.json");
    let fed: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| format!("{}: unreadable", path.display()))?;
    let listed = fed[side.code.as_str()]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == partner.code.as_str()));
    if !listed {
        return Err(format!(
            "{} does not list {} under {}",
            path.display(),
            partner.code,
            side.code
        ));
    }
    Ok(format!(
        "{} trusts {} and lists it in its federation matrix",
        side.code, partner.urls.issuer
    ))
}

/// A partner test user without a second factor (`testuser-<partner>-1`) logs in at `side`
/// through the partner's IdP.
async fn brokered_login(
    home: &std::path::Path,
    http: &reqwest::Client,
    side: &InstanceConfig,
    partner: &InstanceConfig,
) -> Result<String, String> {
    let user = format!("testuser-{}-1", partner.code.as_str().to_ascii_lowercase());
    let passwords = InstancePaths::new(home, partner.code).test_users();
    let password = std::fs::read_to_string(&passwords)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v[&user].as_str().map(str::to_string))
        .ok_or_else(|| format!("no password for {user} in {}", passwords.display()))?;
    let req = BrokerRequest {
        login: LoginRequest {
            issuer: side.urls.issuer.clone(),
            client_id: "dive-cli".into(),
            client_secret: None,
            redirect_uri: "http://127.0.0.1/dive-cli/callback".into(),
            scope: "openid profile coalition".into(),
            username: user.clone(),
            password,
            totp_secret: None,
            extra: vec![],
        },
        alias: broker::upstream_alias(partner.code),
        use_hint: true,
        local_totp_secret: None,
    };
    let (tokens, _) = broker_login(http, &req)
        .await
        .map_err(|e| format!("{user} at {} through {}: {e}", side.code, req.alias))?;
    let claims = tokens["access_token"]
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or("the brokered access token is not a readable JWT")?;
    let country = claims["countryOfAffiliation"].as_str().unwrap_or_default();
    if claims["iss"] != side.urls.issuer.as_str()
        || country != partner.code.as_str()
        || claims["home_issuer"] != partner.urls.issuer.as_str()
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
