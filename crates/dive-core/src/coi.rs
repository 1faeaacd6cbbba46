//! Communities of interest: members, mutual exclusions and subset relations, as replaceable data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::error::CoreError;

const BUILTIN: &str = include_str!("../data/coi.json");

/// The COI that restricts a resource to US subjects whose tags are exactly `US-ONLY`.
pub const US_ONLY: &str = "US-ONLY";

/// How a resource's COIs combine: every one (`ALL`, the default) or at least one (`ANY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CoiOperator {
    #[default]
    All,
    Any,
}

impl CoiOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            CoiOperator::All => "ALL",
            CoiOperator::Any => "ANY",
        }
    }
}

impl fmt::Display for CoiOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exact `ALL` or `ANY`; anything else is invalid (a label with another operator is denied).
impl FromStr for CoiOperator {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ALL" => Ok(CoiOperator::All),
            "ANY" => Ok(CoiOperator::Any),
            other => Err(CoreError::InvalidCoiOperator(other.to_string())),
        }
    }
}

/// One COI: its member nations, or `None` for a program COI (membership by tag only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoiDefinition {
    pub members: Option<BTreeSet<CountryCode>>,
    #[serde(default)]
    pub description: String,
}

/// The registry file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoiFile {
    #[serde(default)]
    pub description: Option<String>,
    pub version: String,
    pub cois: BTreeMap<String, CoiDefinition>,
    #[serde(default)]
    pub mutually_exclusive: Vec<[String; 2]>,
    /// `[subset, superset]` pairs.
    #[serde(default)]
    pub subsets: Vec<[String; 2]>,
}

/// A validated COI registry: every relation names registered COIs.
#[derive(Debug, Clone)]
pub struct CoiRegistry {
    file: CoiFile,
}

impl CoiRegistry {
    pub fn builtin() -> &'static CoiRegistry {
        static BUILT: OnceLock<CoiRegistry> = OnceLock::new();
        // The embedded file is checked by this crate's tests, so failing here is an invariant.
        BUILT.get_or_init(|| CoiRegistry::from_json(BUILTIN).expect("embedded coi.json is valid"))
    }

    pub fn load(path: &Path) -> Result<CoiRegistry, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        CoiRegistry::from_json(&text).map_err(|e| match e {
            CoreError::CoiData(why) => CoreError::CoiData(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    pub fn from_json(text: &str) -> Result<CoiRegistry, CoreError> {
        let file: CoiFile =
            serde_json::from_str(text).map_err(|e| CoreError::CoiData(e.to_string()))?;
        CoiRegistry::from_file(file)
    }

    pub fn from_file(file: CoiFile) -> Result<CoiRegistry, CoreError> {
        for tag in file.cois.keys() {
            if tag.is_empty() || tag.contains(['/', ',', ' ']) {
                return Err(CoreError::CoiData(format!(
                    "COI tag {tag:?} must be non-empty without '/', ',' or spaces"
                )));
            }
        }
        for (kind, pairs) in [
            ("mutuallyExclusive", &file.mutually_exclusive),
            ("subsets", &file.subsets),
        ] {
            for pair in pairs {
                for tag in pair {
                    if !file.cois.contains_key(tag) {
                        return Err(CoreError::CoiData(format!(
                            "{kind} names unknown COI {tag:?}"
                        )));
                    }
                }
            }
        }
        Ok(CoiRegistry { file })
    }

    pub fn version(&self) -> &str {
        &self.file.version
    }

    pub fn file(&self) -> &CoiFile {
        &self.file
    }

    pub fn get(&self, tag: &str) -> Option<&CoiDefinition> {
        self.file.cois.get(tag)
    }

    pub fn contains(&self, tag: &str) -> bool {
        self.file.cois.contains_key(tag)
    }

    /// The registry's spelling of `tag`, matched without regard to ASCII case: attribute FQNs
    /// carry values in one case (OpenTDF lower-cases them), while registry tags keep theirs
    /// (`NATO`, program `Alpha`). `None` for an unknown tag.
    pub fn canonical<'a>(&'a self, tag: &str) -> Option<&'a str> {
        if let Some((k, _)) = self.file.cois.get_key_value(tag) {
            return Some(k);
        }
        self.tags().find(|k| k.eq_ignore_ascii_case(tag))
    }

    /// `tag` in the registry's spelling when registered, unchanged otherwise.
    pub fn canonicalize(&self, tag: String) -> String {
        match self.canonical(&tag) {
            Some(k) if k != tag => k.to_string(),
            _ => tag,
        }
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.file.cois.keys().map(String::as_str)
    }

    /// Whether `country` is a member of `tag` (false for program COIs and unknown tags).
    pub fn is_member(&self, tag: &str, country: CountryCode) -> bool {
        self.get(tag)
            .and_then(|d| d.members.as_ref())
            .is_some_and(|m| m.contains(&country))
    }

    pub fn are_exclusive(&self, a: &str, b: &str) -> bool {
        self.file
            .mutually_exclusive
            .iter()
            .any(|[x, y]| (x == a && y == b) || (x == b && y == a))
    }

    /// Whether `sub` is declared a subset of `sup`.
    pub fn is_subset(&self, sub: &str, sup: &str) -> bool {
        self.file.subsets.iter().any(|[x, y]| x == sub && y == sup)
    }

    /// The registry as policy data: `{cois: {TAG: {members}}, mutuallyExclusive, subsets}`.
    pub fn policy_data(&self) -> serde_json::Value {
        serde_json::to_value(&self.file).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        CountryCode::new(s).expect("valid test country")
    }

    #[test]
    fn tags_are_matched_to_the_registry_spelling_whatever_their_case() {
        let r = CoiRegistry::builtin();
        assert_eq!(r.canonical("ALPHA"), Some("Alpha"));
        assert_eq!(r.canonical("fvey"), Some("FVEY"));
        assert_eq!(r.canonical("NATO"), Some("NATO"));
        assert_eq!(r.canonical("NOT-A-COI"), None);
        assert_eq!(r.canonicalize("alpha".into()), "Alpha");
        assert_eq!(r.canonicalize("UNKNOWN".into()), "UNKNOWN");
    }

    #[test]
    fn builtin_registry_has_reference_memberships_and_relations() {
        let r = CoiRegistry::builtin();
        assert!(r.is_member("FVEY", cc("NZL")));
        assert!(!r.is_member("FVEY", cc("FRA")));
        assert_eq!(
            r.get("NATO")
                .and_then(|d| d.members.as_ref())
                .map(|m| m.len()),
            Some(32)
        );
        assert_eq!(
            r.get("EU-RESTRICTED")
                .and_then(|d| d.members.as_ref())
                .map(|m| m.len()),
            Some(27)
        );
        assert_eq!(r.get("Alpha").map(|d| d.members.is_none()), Some(true));
        assert!(r.are_exclusive("NATO", "US-ONLY"));
        assert!(r.is_subset("AUKUS", "FVEY"));
        assert!(!r.is_subset("FVEY", "AUKUS"));
    }

    #[test]
    fn rejects_relations_to_unknown_cois_and_bad_operators() {
        let bad = r#"{"version":"1","cois":{"A":{"members":null}},"subsets":[["A","B"]]}"#;
        let err = CoiRegistry::from_json(bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown COI \"B\""), "{err}");
        assert!("any".parse::<CoiOperator>().is_err());
        assert_eq!("ANY".parse::<CoiOperator>().ok(), Some(CoiOperator::Any));
    }
}
