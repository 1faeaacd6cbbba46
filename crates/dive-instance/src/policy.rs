//! The instance's PDP data directory (`instances/<code>/policy/`), generated from the embedded
//! defaults: `settings.instance` is the instance, `trusted_issuers` holds exactly this instance's
//! issuer, `federation` has this instance's entry (partners are added by federation), and the
//! industry caps are the defaults. KAS and API read it with `--policy-data`.
//!
//! Existing files are kept and only brought in line: partners added by federation stay, a stale
//! issuer of this instance (after a port change) is replaced.

use serde_json::{Map, Value, json};

use crate::config::{InstanceConfig, InstancePaths, write_if_changed};
use crate::error::{InstanceError, corrupt, io};

/// The data documents an instance's directory holds.
pub const DOCUMENTS: [&str; 4] = [
    "settings.json",
    "trusted_issuers.json",
    "federation.json",
    "industry_caps.json",
];

fn default_document(name: &str) -> Result<Value, InstanceError> {
    let text = dive_policy::default_data_documents()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| InstanceError::invalid(format!("no embedded default for {name}")))?;
    serde_json::from_str(text)
        .map_err(|e| InstanceError::invalid(format!("embedded {name} is not JSON: {e}")))
}

/// The display name of this instance's issuer in `trusted_issuers.json`.
fn issuer_name(cfg: &InstanceConfig) -> String {
    format!(
        "DIVE {} ({}) identity provider",
        cfg.role.as_str(),
        cfg.code
    )
}

/// Create or update the data directory. Returns the files written.
pub fn ensure(paths: &InstancePaths, cfg: &InstanceConfig) -> Result<Vec<String>, InstanceError> {
    let dir = paths.policy_dir();
    std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
    let mut written = Vec::new();
    for name in DOCUMENTS {
        let path = dir.join(name);
        let existing: Option<Value> = match std::fs::read_to_string(&path) {
            Ok(t) => Some(serde_json::from_str(&t).map_err(|e| corrupt(&path, e))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &path)(e)),
        };
        let doc = desired(name, existing, cfg).map_err(|why| corrupt(&path, why))?;
        let text = serde_json::to_string_pretty(&doc).map_err(|e| corrupt(&path, e))? + "\n";
        if write_if_changed(&path, text.as_bytes(), 0o644)? {
            written.push(path.display().to_string());
        }
    }
    Ok(written)
}

/// `name` as it should be, given what is there.
fn desired(name: &str, existing: Option<Value>, cfg: &InstanceConfig) -> Result<Value, String> {
    let code = cfg.code.as_str();
    let object = |v: Value| -> Result<Map<String, Value>, String> {
        match v {
            Value::Object(m) => Ok(m),
            _ => Err("expected a JSON object".into()),
        }
    };
    match name {
        "settings.json" => {
            let mut m = object(match existing {
                Some(v) => v,
                None => default_document(name).map_err(|e| e.to_string())?,
            })?;
            m.insert("instance".into(), json!(code));
            Ok(Value::Object(m))
        }
        "trusted_issuers.json" => {
            let mut m = match existing {
                Some(v) => object(v)?,
                None => Map::new(),
            };
            // This instance's issuer, and no stale one of the same instance.
            m.retain(|iss, def| {
                iss == &cfg.urls.issuer || def.get("instance").and_then(Value::as_str) != Some(code)
            });
            m.insert(
                cfg.urls.issuer.clone(),
                json!({"instance": code, "name": issuer_name(cfg)}),
            );
            Ok(Value::Object(m))
        }
        "federation.json" => {
            let mut m = match existing {
                Some(v) => object(v)?,
                None => Map::new(),
            };
            if !m.contains_key(code) {
                m.insert(code.to_string(), json!([]));
            }
            Ok(Value::Object(m))
        }
        _ => match existing {
            Some(v) => Ok(v),
            None => default_document(name).map_err(|e| e.to_string()),
        },
    }
}

/// Load the directory as the services will (every document validated), and check that it
/// names this instance and trusts its issuer.
pub fn check(paths: &InstancePaths, cfg: &InstanceConfig) -> Result<(), InstanceError> {
    let dir = paths.policy_dir();
    for name in DOCUMENTS {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(corrupt(&p, "missing"));
        }
    }
    let snap = dive_policy::Sources {
        policy_dir: None,
        data_dir: Some(dir.clone()),
    }
    .load()?;
    let dive = &snap.data["dive"];
    let instance = dive["settings"]["instance"].as_str().unwrap_or_default();
    if instance != cfg.code.as_str() {
        return Err(corrupt(
            &dir.join("settings.json"),
            format!("instance is {instance:?}, expected {}", cfg.code),
        ));
    }
    let trusted = &dive["trusted_issuers"][&cfg.urls.issuer];
    if trusted["instance"].as_str() != Some(cfg.code.as_str()) {
        return Err(corrupt(
            &dir.join("trusted_issuers.json"),
            format!(
                "this instance's issuer {} is not trusted for {}",
                cfg.urls.issuer, cfg.code
            ),
        ));
    }
    if !dive["federation"][cfg.code.as_str()].is_array() {
        return Err(corrupt(
            &dir.join("federation.json"),
            format!("no entry for {}", cfg.code),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::ports::{PortOverrides, Service};
    use dive_core::CountryCode;

    #[test]
    fn generated_for_the_instance_and_kept_in_line_after_a_port_change() {
        let home = tempfile::tempdir().unwrap();
        let fra = CountryCode::new("FRA").unwrap();
        let paths = InstancePaths::new(home.path(), fra);
        let cfg = InstanceConfig::new(fra, Role::Spoke);
        let written = ensure(&paths, &cfg).unwrap();
        assert_eq!(written.len(), 4);
        check(&paths, &cfg).unwrap();
        assert!(ensure(&paths, &cfg).unwrap().is_empty(), "idempotent");
        let read = |n: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(paths.policy_dir().join(n)).unwrap())
                .unwrap()
        };
        let issuers = read("trusted_issuers.json");
        assert_eq!(issuers.as_object().unwrap().len(), 1, "{issuers}");
        assert_eq!(issuers["https://localhost:8453"]["instance"], "FRA");
        assert_eq!(read("settings.json")["instance"], "FRA");
        assert_eq!(read("federation.json")["FRA"], json!([]));

        // A partner added by federation survives; the old own issuer is replaced.
        let mut ti = issuers.as_object().unwrap().clone();
        ti.insert(
            "https://localhost:8443".into(),
            json!({"instance": "USA", "name": "hub"}),
        );
        std::fs::write(
            paths.policy_dir().join("trusted_issuers.json"),
            Value::Object(ti).to_string(),
        )
        .unwrap();
        let moved = InstanceConfig::new(fra, Role::Spoke)
            .with_ports(&PortOverrides(
                [(Service::Idp, 12000)].into_iter().collect(),
            ))
            .unwrap();
        ensure(&paths, &moved).unwrap();
        let issuers = read("trusted_issuers.json");
        let keys: Vec<&String> = issuers.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["https://localhost:12000", "https://localhost:8443"]);
        check(&paths, &moved).unwrap();
        assert!(
            check(&paths, &cfg).is_err(),
            "the old issuer is no longer trusted"
        );
    }
}
