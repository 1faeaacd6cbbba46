//! Where policies and data come from: a directory on disk, or the copies embedded in the binary.
//! Both are read into memory as one snapshot with a content version, so that a reload is atomic.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use dive_core::{CoiRegistry, CountryCode, Equivalency};
use dive_watch::Stamp;
use serde_json::{Map, Value};

use crate::error::{PolicyError, io};

/// DIVE's own policies, embedded so that the binary works without the repository.
const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    ("authz.rego", include_str!("../../../policies/authz.rego")),
    ("admin.rego", include_str!("../../../policies/admin.rego")),
    (
        "guardrails.rego",
        include_str!("../../../policies/guardrails.rego"),
    ),
];

/// The default data documents, embedded likewise.
const EMBEDDED_DATA: &[(&str, &str)] = &[
    (
        "settings.json",
        include_str!("../../../policies/data/settings.json"),
    ),
    (
        "trusted_issuers.json",
        include_str!("../../../policies/data/trusted_issuers.json"),
    ),
    (
        "federation.json",
        include_str!("../../../policies/data/federation.json"),
    ),
    (
        "industry_caps.json",
        include_str!("../../../policies/data/industry_caps.json"),
    ),
];

/// The embedded default data documents as (file name, JSON text): what an instance's own data
/// directory is generated from.
pub fn default_data_documents() -> &'static [(&'static str, &'static str)] {
    EMBEDDED_DATA
}

/// Where to read policies and data from; `None` means the embedded defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub policy_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

/// One Rego module.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub path: String,
    pub text: String,
}

impl PolicyFile {
    pub fn is_test(&self) -> bool {
        self.path.ends_with("_test.rego")
    }
}

/// Policies and data read at one moment, with a version that changes when any content does.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub policies: Vec<PolicyFile>,
    /// The `data` document: everything lives under `data.dive`.
    pub data: Value,
    pub version: String,
    /// The national equivalency tables in force (`equivalency.json` or dive-core's built-in).
    pub equivalency: Equivalency,
    /// The COI registry in force (`coi.json` or dive-core's built-in).
    pub coi: CoiRegistry,
}

impl Sources {
    pub fn embedded() -> Sources {
        Sources::default()
    }

    /// Read everything now.
    pub fn load(&self) -> Result<Snapshot, PolicyError> {
        let policies = match &self.policy_dir {
            Some(dir) => read_policies(dir)?,
            None => EMBEDDED_POLICIES
                .iter()
                .map(|(p, t)| PolicyFile {
                    path: format!("embedded:{p}"),
                    text: t.to_string(),
                })
                .collect(),
        };
        let (data, equivalency, coi) = load_data(self.data_dir.as_deref())?;
        let mut h = DefaultHasher::new();
        for p in &policies {
            (&p.path, &p.text).hash(&mut h);
        }
        data.to_string().hash(&mut h);
        // The tables feed the normaliser rather than the data document, so they version too.
        serde_json::to_string(equivalency.file())
            .unwrap_or_default()
            .hash(&mut h);
        coi.policy_data().to_string().hash(&mut h);
        Ok(Snapshot {
            policies,
            data,
            version: format!("{:016x}", h.finish()),
            equivalency,
            coi,
        })
    }

    /// A cheap fingerprint of the files' names, sizes, modification times and inodes
    /// (`dive_watch::Stamp`): when it changes, a reload is due. Embedded sources never change.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for dir in [&self.policy_dir, &self.data_dir].into_iter().flatten() {
            Stamp::of_dir(dir).hash(&mut h);
        }
        h.finish()
    }
}

fn read_policies(dir: &Path) -> Result<Vec<PolicyFile>, PolicyError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rego"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(PolicyError::NoPolicies(dir.display().to_string()));
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            Ok(PolicyFile {
                path: p.display().to_string(),
                text,
            })
        })
        .collect()
}

/// Build `data.dive`: each `NAME.json` becomes `data.dive.NAME`, except `equivalency.json` and
/// `coi.json`, which replace dive-core's built-in tables, are validated by dive-core and feed the
/// normaliser (the registry is also published as `data.dive.coi`). `data.dive.levels` maps level
/// names to ranks; `settings` gets its documented defaults filled in, so the policy reads every
/// setting directly.
fn load_data(dir: Option<&Path>) -> Result<(Value, Equivalency, CoiRegistry), PolicyError> {
    let mut files: BTreeMap<String, (String, String)> = EMBEDDED_DATA
        .iter()
        .map(|(n, t)| (stem(n), (format!("embedded:{n}"), t.to_string())))
        .collect();
    if let Some(dir) = dir {
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
                files.insert(
                    stem(&p.display().to_string()),
                    (p.display().to_string(), text),
                );
            }
        }
    }
    let mut dive = Map::new();
    let equivalency = match files.remove("equivalency") {
        Some((path, text)) => Equivalency::from_json(&text).map_err(|e| data_err(&path, e))?,
        None => Equivalency::builtin().clone(),
    };
    let coi = match files.remove("coi") {
        Some((path, text)) => CoiRegistry::from_json(&text).map_err(|e| data_err(&path, e))?,
        None => CoiRegistry::builtin().clone(),
    };
    for (name, (path, text)) in files {
        let mut v: Value = serde_json::from_str(&text).map_err(|e| PolicyError::Data {
            path: path.clone(),
            why: e.to_string(),
        })?;
        validate_document(&name, &v).map_err(|why| PolicyError::Data { path, why })?;
        if name == "settings" {
            fill_setting_defaults(&mut v);
        }
        if name == "industry_caps"
            && let Some(obj) = v.as_object_mut()
        {
            obj.entry("caps")
                .or_insert_with(|| Value::Object(Map::new()));
        }
        dive.insert(name, v);
    }
    dive.insert("coi".into(), coi.policy_data());
    let levels: Map<String, Value> = dive_core::Clearance::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), Value::from(c.rank())))
        .collect();
    dive.insert("levels".into(), Value::Object(levels));
    let mut root = Map::new();
    root.insert("dive".into(), Value::Object(dive));
    Ok((Value::Object(root), equivalency, coi))
}

/// The documented defaults of `settings.json`, for every setting the file leaves out.
fn fill_setting_defaults(settings: &mut Value) {
    let Some(obj) = settings.as_object_mut() else {
        return;
    };
    let defaults = serde_json::json!({
        "embargoSkewSeconds": 300,
        "requireAal3ForTopSecret": false,
        "strictCoherence": false,
        "adminRole": dive_core::ADMIN_ROLE,
        "guardrails": {},
    });
    for (k, v) in defaults.as_object().into_iter().flatten() {
        obj.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(g) = obj.get_mut("guardrails").and_then(Value::as_object_mut) {
        for (k, v) in [
            ("accessTokenMaxSeconds", 900),
            ("ssoIdleMaxSeconds", 900),
            ("ssoSessionMaxSeconds", 28_800),
        ] {
            g.entry(k).or_insert(Value::from(v));
        }
    }
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn data_err(path: &str, e: dive_core::CoreError) -> PolicyError {
    PolicyError::Data {
        path: path.to_string(),
        why: e.to_string(),
    }
}

/// Structural checks of the documents the policy reads, so that a typo in a data file is reported
/// at load time rather than silently denying (or allowing) everything.
fn validate_document(name: &str, v: &Value) -> Result<(), String> {
    let country = |c: &str, what: &str| {
        CountryCode::new(c)
            .map(|_| ())
            .map_err(|e| format!("{what}: {e}"))
    };
    let level = |l: &Value, what: &str| {
        l.as_str()
            .and_then(|s| s.parse::<dive_core::Clearance>().ok())
            .filter(|c| l.as_str() == Some(c.as_str()))
            .map(|_| ())
            .ok_or_else(|| format!("{what}: {l} is not a level name (UNCLASSIFIED … TOP_SECRET)"))
    };
    let obj = v.as_object().ok_or("expected a JSON object")?;
    match name {
        "settings" => {
            let inst = obj
                .get("instance")
                .and_then(Value::as_str)
                .ok_or("instance: expected a country code")?;
            country(inst, "instance")?;
            let typed = |k: &str, ok: fn(&Value) -> bool, what: &str| match obj.get(k) {
                Some(v) if !ok(v) => Err(format!("{k}: expected {what}, found {v}")),
                _ => Ok(()),
            };
            typed("embargoSkewSeconds", |v| v.as_u64().is_some(), "seconds")?;
            typed(
                "requireAal3ForTopSecret",
                Value::is_boolean,
                "true or false",
            )?;
            typed("strictCoherence", Value::is_boolean, "true or false")?;
            typed("adminRole", Value::is_string, "a role name")?;
            typed("guardrails", Value::is_object, "an object")?;
            if let Some(g) = obj.get("guardrails").and_then(Value::as_object) {
                for (k, v) in g {
                    v.as_u64()
                        .ok_or(format!("guardrails.{k}: expected seconds, found {v}"))?;
                }
            }
            if let Some(ttl) = obj.get("cacheTtlSeconds") {
                for (k, secs) in ttl
                    .as_object()
                    .ok_or("cacheTtlSeconds: expected an object")?
                {
                    level(&Value::String(k.clone()), "cacheTtlSeconds")?;
                    secs.as_u64()
                        .ok_or(format!("cacheTtlSeconds.{k}: expected seconds"))?;
                }
            }
        }
        "trusted_issuers" => {
            for (iss, def) in obj {
                let inst = def
                    .get("instance")
                    .and_then(Value::as_str)
                    .ok_or(format!("{iss}: instance missing"))?;
                country(inst, iss)?;
            }
        }
        "federation" => {
            for (inst, partners) in obj {
                country(inst, "federation")?;
                for p in partners
                    .as_array()
                    .ok_or(format!("{inst}: expected an array"))?
                {
                    country(p.as_str().unwrap_or_default(), inst)?;
                }
            }
        }
        "industry_caps" => {
            level(obj.get("default").unwrap_or(&Value::Null), "default")?;
            for (c, l) in obj
                .get("caps")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                country(c, "caps")?;
                level(l, c)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_snapshot_has_every_document() {
        let snap = Sources::embedded().load().expect("embedded sources load");
        let dive = &snap.data["dive"];
        for key in [
            "settings",
            "trusted_issuers",
            "federation",
            "industry_caps",
            "coi",
            "levels",
        ] {
            assert!(dive.get(key).is_some(), "{key}");
        }
        assert_eq!(dive["levels"]["TOP_SECRET"], 4);
        assert_eq!(dive["settings"]["embargoSkewSeconds"], 300);
        assert_eq!(
            dive["settings"]["guardrails"]["ssoSessionMaxSeconds"],
            28_800
        );
        assert!(
            snap.equivalency
                .has_nation(CountryCode::new("FRA").expect("FRA"))
        );
        assert_eq!(snap.policies.len(), 3);
    }

    #[test]
    fn bad_data_files_are_reported_with_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("industry_caps.json"),
            r#"{"default":"SEKRIT"}"#,
        )
        .expect("write");
        let err = Sources {
            policy_dir: None,
            data_dir: Some(dir.path().into()),
        }
        .load()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("industry_caps.json") && err.contains("SEKRIT"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("industry_caps.json"),
            r#"{"default":"SECRET"}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("coi.json"),
            r#"{"version":"1","cois":{},"subsets":[["A","B"]]}"#,
        )
        .expect("write");
        let err = Sources {
            policy_dir: None,
            data_dir: Some(dir.path().into()),
        }
        .load()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("coi.json") && err.contains("unknown COI"),
            "{err}"
        );
    }
}
