//! The trusted issuers: the keys of the PDP data's `trusted_issuers.json`, re-read when the file
//! changes so that federation changes apply without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::AuthnError;

/// Least time between two looks at the file's modification time: how long a federation change
/// may take to apply here (a look is one `stat`, cheap beside a request).
const RECHECK: Duration = Duration::from_millis(200);

pub struct TrustedIssuers {
    path: PathBuf,
    state: RwLock<State>,
}

/// Trusted issuer URL → the instance it belongs to (when the file says).
pub type IssuerMap = BTreeMap<String, Option<String>>;

struct State {
    issuers: Arc<IssuerMap>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl TrustedIssuers {
    pub fn open(path: &Path) -> Result<TrustedIssuers, AuthnError> {
        let (issuers, modified) = read(path)?;
        Ok(TrustedIssuers {
            path: path.to_path_buf(),
            state: RwLock::new(State {
                issuers: Arc::new(issuers),
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn contains(&self, issuer: &str) -> bool {
        self.current().contains_key(issuer)
    }

    /// The instance a trusted issuer belongs to (its `instance` member), if it names one.
    pub fn instance_of(&self, issuer: &str) -> Option<String> {
        self.current().get(issuer).cloned().flatten()
    }

    /// The set now, re-reading the file if it changed. A file that became unreadable or
    /// malformed empties the set: fail closed until it is fixed.
    pub fn current(&self) -> Arc<IssuerMap> {
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if s.checked.elapsed() < RECHECK {
                return s.issuers.clone();
            }
        }
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() < RECHECK {
            return s.issuers.clone();
        }
        s.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified == s.modified {
            return s.issuers.clone();
        }
        match read(&self.path) {
            Ok((issuers, modified)) => {
                tracing::info!(file = %self.path.display(), issuers = issuers.len(), "trusted issuers reloaded");
                s.issuers = Arc::new(issuers);
                s.modified = modified;
            }
            Err(e) => {
                tracing::error!("{e}; trusting no issuer until it is fixed");
                s.issuers = Arc::new(IssuerMap::new());
                s.modified = None;
            }
        }
        s.issuers.clone()
    }
}

fn read(path: &Path) -> Result<(IssuerMap, Option<SystemTime>), AuthnError> {
    let err = |why: String| AuthnError::TrustedIssuersFile {
        path: path.display().to_string(),
        why,
    };
    // The time before the contents: a file replaced in between is then seen as changed at the
    // next look (the other order could pair old contents with the new time, never re-read).
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let map = doc
        .as_object()
        .ok_or_else(|| err("expected an object keyed by issuer URL".to_string()))?;
    let mut out = IssuerMap::new();
    for (issuer, def) in map {
        if !issuer.starts_with("https://") {
            return Err(err(format!("issuer {issuer:?} is not an https:// URL")));
        }
        let instance = def
            .get("instance")
            .and_then(Value::as_str)
            .map(str::to_string);
        out.insert(issuer.clone(), instance);
    }
    Ok((out, modified))
}
