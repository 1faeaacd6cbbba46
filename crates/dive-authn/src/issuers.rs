//! The trusted issuers: the keys of the PDP data's `trusted_issuers.json`, re-read when the file
//! changes so that federation changes apply without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dive_watch::{Followed, Stamp};
use serde_json::Value;

use crate::AuthnError;

/// Least time between two looks at the file: how long a federation change may take to apply
/// here (a look is one `stat`, cheap beside a request).
const RECHECK: Duration = Duration::from_millis(200);

pub struct TrustedIssuers {
    path: PathBuf,
    issuers: Followed<IssuerMap>,
}

/// Trusted issuer URL → the instance it belongs to (when the file says).
pub type IssuerMap = BTreeMap<String, Option<String>>;

impl TrustedIssuers {
    pub fn open(path: &Path) -> Result<TrustedIssuers, AuthnError> {
        let stamp = Stamp::of_file(path);
        let issuers = read(path)?;
        Ok(TrustedIssuers {
            path: path.to_path_buf(),
            issuers: Followed::new(issuers, stamp, RECHECK),
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
        self.issuers.current(
            || Stamp::of_file(&self.path),
            |_| {
                Some(match read(&self.path) {
                    Ok(issuers) => {
                        tracing::info!(file = %self.path.display(), issuers = issuers.len(), "trusted issuers reloaded");
                        issuers
                    }
                    Err(e) => {
                        tracing::error!("{e}; trusting no issuer until it is fixed");
                        IssuerMap::new()
                    }
                })
            },
        )
    }
}

fn read(path: &Path) -> Result<IssuerMap, AuthnError> {
    let err = |why: String| AuthnError::TrustedIssuersFile {
        path: path.display().to_string(),
        why,
    };
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
    Ok(out)
}
