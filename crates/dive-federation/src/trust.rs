//! What a link's state means on one instance's side, written to its files: the partner's issuer
//! in the PDP data's `trusted_issuers.json` and the partner in `federation.json` while the link is
//! active (the services re-read both, so a change takes effect without restarts), and the
//! partner's entry in `federation/partners.json` for federated search.

use dive_core::CountryCode;
use dive_core::federation::{LinkStatus, Partner, PartnersFile};
use dive_instance::InstancePaths;
use dive_instance::config::write_if_changed;
use serde_json::{Map, Value, json};

use crate::FederationError;
use crate::descriptor::Descriptor;

/// Bring `side`'s files in line with its link to `partner` being `status` (`None`: no link).
/// Returns the files that changed.
pub fn apply(
    home: &std::path::Path,
    side: CountryCode,
    partner: &Descriptor,
    status: Option<LinkStatus>,
) -> Result<Vec<String>, FederationError> {
    let paths = InstancePaths::new(home, side);
    let trusted = status.is_some_and(LinkStatus::is_active);
    let mut changed = Vec::new();

    let issuers_path = paths.policy_dir().join("trusted_issuers.json");
    let mut issuers = read_object(&issuers_path)?;
    // Any issuer of the partner (a stale one after a port change too) goes; the current one
    // comes back only while the link is active.
    issuers.retain(|_, def| {
        def.get("instance").and_then(Value::as_str) != Some(partner.code.as_str())
    });
    if trusted {
        issuers.insert(
            partner.issuer.clone(),
            json!({"instance": partner.code.as_str(), "name": format!("DIVE {} ({}) identity provider, federation partner", partner.role.as_str(), partner.code)}),
        );
    }
    write_json(&issuers_path, &Value::Object(issuers), &mut changed)?;

    let federation_path = paths.policy_dir().join("federation.json");
    let mut federation = read_object(&federation_path)?;
    let mut mine: Vec<String> = federation
        .get(side.as_str())
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    mine.retain(|c| c != partner.code.as_str());
    if trusted {
        mine.push(partner.code.as_str().to_string());
        mine.sort();
    }
    federation.insert(side.as_str().to_string(), json!(mine));
    write_json(&federation_path, &Value::Object(federation), &mut changed)?;

    let partners_path = paths.partners_file();
    let mut partners = match std::fs::read_to_string(&partners_path) {
        Ok(t) => PartnersFile::from_json(&t)
            .map_err(|e| FederationError::Corrupt(format!("{}: {e}", partners_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PartnersFile::default(),
        Err(e) => return Err(FederationError::io("read", &partners_path, e)),
    };
    match status {
        Some(s) => partners.upsert(Partner {
            code: partner.code,
            api_url: partner.api_url.clone(),
            status: s,
        }),
        None => partners.remove(partner.code),
    }
    let value = serde_json::to_value(&partners)
        .map_err(|e| FederationError::Corrupt(format!("{}: {e}", partners_path.display())))?;
    write_json(&partners_path, &value, &mut changed)?;
    Ok(changed)
}

/// The partners `side` trusts now, by its own files (for verification and status).
pub fn trusted_partners(
    home: &std::path::Path,
    side: CountryCode,
) -> Result<Vec<(String, String)>, FederationError> {
    let paths = InstancePaths::new(home, side);
    let issuers = read_object(&paths.policy_dir().join("trusted_issuers.json"))?;
    Ok(issuers
        .into_iter()
        .filter_map(|(iss, def)| {
            let inst = def.get("instance")?.as_str()?.to_string();
            (inst != side.as_str()).then_some((inst, iss))
        })
        .collect())
}

fn read_object(path: &std::path::Path) -> Result<Map<String, Value>, FederationError> {
    let text = std::fs::read_to_string(path).map_err(|e| FederationError::io("read", path, e))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(FederationError::Corrupt(format!(
            "{}: expected a JSON object",
            path.display()
        ))),
        Err(e) => Err(FederationError::Corrupt(format!("{}: {e}", path.display()))),
    }
}

fn write_json(
    path: &std::path::Path,
    v: &Value,
    changed: &mut Vec<String>,
) -> Result<(), FederationError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| FederationError::Corrupt(format!("{}: {e}", path.display())))?
        + "\n";
    if write_if_changed(path, text.as_bytes(), 0o644)? {
        changed.push(path.display().to_string());
    }
    Ok(())
}
