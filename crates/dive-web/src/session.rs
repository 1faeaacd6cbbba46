//! Server-side sessions: the user's tokens live here, in memory, keyed by the SHA-256 of a random
//! session id that only the browser's cookie holds. Pending sign-ins (state, nonce, PKCE
//! verifier) are kept the same way until their callback. A restart signs everyone out, which is
//! the safe failure for a store that holds bearer tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

/// A session ends 8 h after sign-in (the IdP's refresh tokens live as long) …
pub const ABSOLUTE_TTL_SECS: i64 = 8 * 3600;
/// … or after an hour without requests.
pub const IDLE_TTL_SECS: i64 = 3600;
/// A sign-in must come back from the IdP within 10 minutes.
pub const PENDING_TTL_SECS: i64 = 600;
/// Tokens are refreshed this long before the access token expires (`Settings::refresh_margin_secs`).
pub const REFRESH_MARGIN_SECS: i64 = 60;
/// Bounds on memory: a flood of sign-in starts evicts the oldest pending ones; sessions beyond
/// the bound are refused.
const MAX_SESSIONS: usize = 10_000;
const MAX_PENDING: usize = 10_000;

/// The tokens of a signed-in user (never sent to the browser).
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
}

/// One signed-in browser.
#[derive(Debug)]
pub struct Session {
    /// The per-session CSRF token every form carries.
    pub csrf: String,
    pub tokens: Tokens,
    /// The IdP's subject identifier.
    pub sub: String,
    /// The validated ID token's claims (coalition attributes, `acr`, `amr`).
    pub claims: Map<String, Value>,
    pub created_at: i64,
    pub last_seen: i64,
}

impl Session {
    /// Whether the access token has less than `margin` seconds left.
    pub fn needs_refresh(&self, now: i64, margin: i64) -> bool {
        self.tokens.access_expires_at - margin <= now
    }

    fn expired(&self, now: i64) -> bool {
        now - self.created_at > ABSOLUTE_TTL_SECS || now - self.last_seen > IDLE_TTL_SECS
    }
}

/// A session shared by concurrent requests: the lock serialises refreshes, since the IdP's
/// refresh tokens are single use and presenting one twice revokes the whole login.
pub type SharedSession = Arc<tokio::sync::Mutex<Session>>;

/// A sign-in on its way to the IdP.
#[derive(Debug, Clone)]
pub struct Pending {
    pub nonce: String,
    pub code_verifier: String,
    /// Must equal the login cookie of the browser that comes back (login CSRF).
    pub browser: String,
    /// Where to go after signing in (a local path).
    pub return_to: String,
    pub created_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("too many active sessions ({0}); try again later")]
pub struct Full(pub usize);

#[derive(Default)]
pub struct SessionStore {
    sessions: Mutex<HashMap<String, (SharedSession, i64)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn key(id: &str) -> String {
    dive_idp::util::sha256_hex(id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SessionStore {
    /// Store a new session; returns its id (for the cookie).
    pub fn create(&self, session: Session, now: i64) -> Result<String, Full> {
        let id = dive_idp::util::random_token(32);
        let mut map = lock(&self.sessions);
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, (_, created)| now - *created <= ABSOLUTE_TTL_SECS);
            if map.len() >= MAX_SESSIONS {
                return Err(Full(map.len()));
            }
        }
        let created = session.created_at;
        map.insert(
            key(&id),
            (Arc::new(tokio::sync::Mutex::new(session)), created),
        );
        Ok(id)
    }

    /// The session of `id`, if it exists.
    pub fn get(&self, id: &str) -> Option<SharedSession> {
        lock(&self.sessions).get(&key(id)).map(|(s, _)| s.clone())
    }

    pub fn remove(&self, id: &str) {
        lock(&self.sessions).remove(&key(id));
    }

    /// Remember a sign-in under its `state`.
    pub fn add_pending(&self, state: &str, p: Pending) {
        let mut map = lock(&self.pending);
        if map.len() >= MAX_PENDING {
            let now = p.created_at;
            map.retain(|_, v| now - v.created_at <= PENDING_TTL_SECS);
            if map.len() >= MAX_PENDING
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, v)| v.created_at)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key(state), p);
    }

    /// Take (and so use up) the sign-in of `state` if it is still valid.
    pub fn take_pending(&self, state: &str, now: i64) -> Option<Pending> {
        let p = lock(&self.pending).remove(&key(state))?;
        (now - p.created_at <= PENDING_TTL_SECS).then_some(p)
    }

    /// Drop expired sessions and sign-ins.
    pub async fn sweep(&self, now: i64) {
        lock(&self.pending).retain(|_, p| now - p.created_at <= PENDING_TTL_SECS);
        let all: Vec<(String, SharedSession)> = lock(&self.sessions)
            .iter()
            .map(|(k, (s, _))| (k.clone(), s.clone()))
            .collect();
        let mut dead = Vec::new();
        for (k, s) in all {
            // A session busy with a request is not idle.
            if let Ok(g) = s.try_lock()
                && g.expired(now)
            {
                dead.push(k);
            }
        }
        let mut map = lock(&self.sessions);
        for k in dead {
            map.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a session is still usable at `now` (absolute and idle limits).
pub fn is_live(s: &Session, now: i64) -> bool {
    !s.expired(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: i64) -> Session {
        Session {
            csrf: "c".into(),
            tokens: Tokens {
                access_token: "a".into(),
                refresh_token: Some("r".into()),
                id_token: "i".into(),
                access_expires_at: now + 900,
            },
            sub: "s".into(),
            claims: Map::new(),
            created_at: now,
            last_seen: now,
        }
    }

    #[tokio::test]
    async fn sessions_are_found_by_id_and_expire() {
        let store = SessionStore::default();
        let id = store.create(session(1000), 1000).unwrap();
        assert!(store.get(&id).is_some());
        assert!(store.get("other").is_none());
        store.sweep(1000 + IDLE_TTL_SECS - 1).await;
        assert_eq!(store.len(), 1);
        store.sweep(1000 + IDLE_TTL_SECS + 1).await;
        assert!(store.is_empty(), "idle sessions are dropped");
        let s = session(1000);
        assert!(!s.needs_refresh(1000, REFRESH_MARGIN_SECS));
        assert!(s.needs_refresh(1000 + 900 - REFRESH_MARGIN_SECS, REFRESH_MARGIN_SECS));
    }

    #[test]
    fn pending_sign_ins_are_single_use_and_expire() {
        let store = SessionStore::default();
        let p = Pending {
            nonce: "n".into(),
            code_verifier: "v".into(),
            browser: "b".into(),
            return_to: "/".into(),
            created_at: 1000,
        };
        store.add_pending("st", p.clone());
        assert!(store.take_pending("st", 1001).is_some());
        assert!(store.take_pending("st", 1001).is_none(), "single use");
        store.add_pending("st2", p);
        assert!(
            store
                .take_pending("st2", 1000 + PENDING_TTL_SECS + 1)
                .is_none()
        );
    }
}
