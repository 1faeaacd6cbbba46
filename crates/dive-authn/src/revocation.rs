//! The instance IdP's revocation list (`GET <issuer>/revocations?since=`), polled with the
//! service's confidential-client credentials. Until it has been fetched once, and whenever the
//! last successful fetch is older than the staleness limit, tokens of that issuer are refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{AuthnError, Principal};

/// How old the list may be when a token is checked against it (the IdP reachable).
const REFRESH: Duration = Duration::from_secs(2);
/// From this age on, a check starts a refresh in the background and goes on with the list it
/// has: under steady traffic the list is renewed before it reaches [`REFRESH`], so no request
/// waits for the IdP (a stall of every request in flight every two seconds otherwise).
const PREFETCH: Duration = Duration::from_secs(1);
/// How old the list may get (IdP unreachable) before tokens are refused.
const MAX_STALENESS: Duration = Duration::from_secs(60);

/// Where to read revocations, and as whom.
#[derive(Debug, Clone)]
pub struct RevocationSource {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

impl RevocationSource {
    /// From a `{"client_id", "client_secret"}` JSON file (the service's secrets file).
    pub fn from_file(
        issuer: impl Into<String>,
        path: &std::path::Path,
    ) -> Result<RevocationSource, AuthnError> {
        #[derive(Deserialize)]
        struct Creds {
            client_id: String,
            client_secret: String,
        }
        let err = |why: String| AuthnError::Unavailable(format!("{}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let c: Creds = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        Ok(RevocationSource {
            issuer: issuer.into(),
            client_id: c.client_id,
            client_secret: c.client_secret,
        })
    }
}

pub(crate) struct RevocationList {
    source: RevocationSource,
    http: reqwest::Client,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
    prefetching: AtomicBool,
}

#[derive(Default)]
struct State {
    jtis: HashMap<String, i64>,
    /// sub → tokens issued before this time are revoked.
    subjects: HashMap<String, i64>,
    fetched: Option<Instant>,
    /// The IdP's clock at the last fetch: the next `since`.
    generated_at: i64,
}

#[derive(Deserialize)]
struct Listing {
    generated_at: i64,
    jtis: Vec<RevokedJti>,
    subjects: Vec<RevokedSubject>,
}

#[derive(Deserialize)]
struct RevokedJti {
    jti: String,
    exp: i64,
}

#[derive(Deserialize)]
struct RevokedSubject {
    sub: String,
    revoked_before: i64,
}

impl RevocationList {
    pub fn new(source: RevocationSource, http: reqwest::Client) -> RevocationList {
        RevocationList {
            source,
            http,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            prefetching: AtomicBool::new(false),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.source.issuer
    }

    fn age(&self) -> Option<Duration> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.fetched.map(|t| t.elapsed())
    }

    pub async fn check(self: &Arc<Self>, p: &Principal) -> Result<(), AuthnError> {
        match plan(self.age()) {
            Plan::Fresh => {}
            Plan::Prefetch => {
                // One background fetch at a time; a failure leaves the list as it is, and the
                // check at REFRESH age fetches (and reports) in line.
                if !self.prefetching.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.refresh().await {
                            tracing::debug!("background revocation list refresh: {e}");
                        }
                        me.prefetching.store(false, Ordering::Release);
                    });
                }
            }
            Plan::Fetch => {
                if let Err(e) = self.refresh().await {
                    // Keep serving on a recent list; refuse once it is too old to trust.
                    if self.age().is_none_or(|a| a >= MAX_STALENESS) {
                        return Err(e);
                    }
                    tracing::warn!("{e}; using the revocation list fetched earlier");
                }
            }
        }
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if p.jti.as_ref().is_some_and(|j| s.jtis.contains_key(j)) {
            return Err(AuthnError::Revoked);
        }
        if let Some(before) = s.subjects.get(&p.subject)
            && p.issued_at.is_none_or(|iat| iat <= *before)
        {
            return Err(AuthnError::Revoked);
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<(), AuthnError> {
        let _one = self.refresh.lock().await;
        let since = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            // Fetched while this call waited for its turn (a prefetch, or another check).
            if s.fetched.is_some_and(|t| t.elapsed() < PREFETCH) {
                return Ok(());
            }
            // Overlap by a few seconds: rows revoked in the same second are not missed.
            s.fetched.map(|_| s.generated_at - 5).unwrap_or(0)
        };
        let url = format!(
            "{}/revocations?since={since}",
            self.source.issuer.trim_end_matches('/')
        );
        let unavailable =
            |e: String| AuthnError::Unavailable(format!("revocation list {url}: {e}"));
        let listing: Listing = self
            .http
            .get(&url)
            .basic_auth(&self.source.client_id, Some(&self.source.client_secret))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = listing.generated_at;
        s.jtis.retain(|_, exp| *exp > now);
        for j in listing.jtis {
            s.jtis.insert(j.jti, j.exp);
        }
        for r in listing.subjects {
            let e = s.subjects.entry(r.sub).or_insert(r.revoked_before);
            *e = (*e).max(r.revoked_before);
        }
        s.generated_at = now;
        s.fetched = Some(Instant::now());
        Ok(())
    }
}

/// What a check does with a list of this age (`None`: never fetched).
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Use it.
    Fresh,
    /// Use it, and renew it in the background.
    Prefetch,
    /// Renew it first (and fail closed if that fails and it has gone stale).
    Fetch,
}

fn plan(age: Option<Duration>) -> Plan {
    match age {
        Some(a) if a < PREFETCH => Plan::Fresh,
        Some(a) if a < REFRESH => Plan::Prefetch,
        _ => Plan::Fetch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_renewed_in_the_background_before_it_is_too_old_to_use() {
        assert_eq!(plan(None), Plan::Fetch);
        assert_eq!(plan(Some(Duration::ZERO)), Plan::Fresh);
        assert_eq!(plan(Some(PREFETCH - Duration::from_millis(1))), Plan::Fresh);
        assert_eq!(plan(Some(PREFETCH)), Plan::Prefetch);
        assert_eq!(
            plan(Some(REFRESH - Duration::from_millis(1))),
            Plan::Prefetch
        );
        // Never used at REFRESH age or older without a fetch first.
        assert_eq!(plan(Some(REFRESH)), Plan::Fetch);
        assert_eq!(plan(Some(MAX_STALENESS)), Plan::Fetch);
    }
}
