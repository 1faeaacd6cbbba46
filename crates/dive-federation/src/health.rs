//! A live look at one side of a link for `federation status`: does its IdP serve discovery and
//! does its resource service answer `/ready`, right now. Probes are short so a partner that is
//! down costs `status` at most [`TIMEOUT`] per service.

use std::path::Path;
use std::time::Duration;

use dive_core::CountryCode;
use serde::Serialize;

use crate::FederationError;
use crate::descriptor::Descriptor;

pub const TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub ok: bool,
    /// What answered or failed, e.g. `idp up, api up` or `idp: connection refused`.
    pub detail: String,
}

impl Health {
    /// A partner with no `instance.json` in this installation: nothing to probe.
    pub fn unknown(code: CountryCode) -> Health {
        Health {
            ok: false,
            detail: format!("{code} is not deployed in this installation"),
        }
    }
}

/// An HTTPS client trusting the installation CA and every registered partner CA.
pub fn client(home: &Path) -> Result<reqwest::Client, FederationError> {
    dive_http::trust::partner_client(home).map_err(|e| FederationError::Invalid(e.to_string()))
}

/// Probe with `http`, or report why there is no client (e.g. no installation CA yet).
pub async fn probe_with(http: &Result<reqwest::Client, String>, cfg: &Descriptor) -> Health {
    match http {
        Ok(http) => probe(http, cfg).await,
        Err(e) => Health {
            ok: false,
            detail: format!("not probed: {e}"),
        },
    }
}

/// Probe the IdP's discovery document and the resource service's readiness, concurrently.
pub async fn probe(http: &reqwest::Client, cfg: &Descriptor) -> Health {
    let idp = format!("{}/.well-known/openid-configuration", cfg.issuer);
    let api = format!("{}/ready", cfg.api_url);
    let (idp, api) = tokio::join!(answers(http, &idp), answers(http, &api));
    let mut problems = Vec::new();
    if let Err(e) = idp {
        problems.push(format!("idp: {e}"));
    }
    if let Err(e) = api {
        problems.push(format!("api: {e}"));
    }
    Health {
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            "idp up, api up".into()
        } else {
            problems.join("; ")
        },
    }
}

async fn answers(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let r = http
        .get(url)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| root_cause(&e))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", r.status()))
    }
}

/// reqwest's top-level message only says "error sending request"; the cause says why.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
