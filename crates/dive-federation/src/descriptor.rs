//! What one side of a link needs to know about the other: its code, role, issuer and resource
//! service. For a partner in this installation it comes from its `instance.json`; for a remote
//! one, from the join exchange (and the hub's registry or the spoke's `hub.json`).

use dive_core::CountryCode;
use dive_instance::{InstanceConfig, Role};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Descriptor {
    pub code: CountryCode,
    pub role: Role,
    /// The IdP's issuer; the IdP (and its federation endpoints) is served at this URL.
    pub issuer: String,
    /// The resource service's base URL (federated search asks it).
    pub api_url: String,
}

impl From<&InstanceConfig> for Descriptor {
    fn from(c: &InstanceConfig) -> Self {
        Descriptor {
            code: c.code,
            role: c.role,
            issuer: c.urls.issuer.clone(),
            api_url: c.urls.api.clone(),
        }
    }
}

impl Descriptor {
    /// Both URLs must be absolute `https` URLs without query or fragment; the error names the
    /// field at fault.
    pub fn validate(&self) -> Result<(), String> {
        https_base("issuer", &self.issuer)?;
        https_base("apiUrl", &self.api_url)
    }
}

/// Check that `value` is an `https` URL fit to be a base (no query, fragment or trailing `/`).
pub fn https_base(field: &str, value: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("{field} {value:?}: {e}"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(format!("{field} {value:?} is not an https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || value.ends_with('/') {
        return Err(format!(
            "{field} {value:?} must not end with '/' or carry a query or fragment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_base_urls_are_accepted() {
        assert!(https_base("issuer", "https://localhost:8443").is_ok());
        for bad in [
            "http://localhost:8443",
            "https://localhost:8443/",
            "https://x?a=b",
            "not a url",
        ] {
            let e = https_base("issuer", bad).unwrap_err();
            assert!(e.starts_with("issuer"), "{e}");
        }
    }
}
