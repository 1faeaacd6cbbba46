//! National classification equivalency: each nation's markings mapped to a DIVE level.
//!
//! The tables are data (`data/equivalency.json`, embedded as the default and replaceable from a
//! file at run time). Lookup order for a nation's label: the nation's own table, then NATO
//! markings, then DIVE's canonical level names. An unknown label is an error, never a guess.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::clearance::Clearance;
use crate::country::CountryCode;
use crate::error::CoreError;
use crate::normalize::{SEPARATORS, fold_char, label_key};

const BUILTIN: &str = include_str!("../data/equivalency.json");

/// The table name for NATO markings, valid for every nation.
pub const NATO_TABLE: &str = "NATO";

/// The equivalency file as written: `{version, tables: {NATION: {LEVEL: [labels…]}}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EquivalencyFile {
    #[serde(default)]
    pub description: Option<String>,
    pub version: String,
    pub tables: BTreeMap<String, BTreeMap<Clearance, Vec<String>>>,
}

/// Validated equivalency tables with folded lookup keys.
#[derive(Debug, Clone)]
pub struct Equivalency {
    file: EquivalencyFile,
    /// Table name → folded label → level.
    index: BTreeMap<String, BTreeMap<String, Clearance>>,
}

impl Equivalency {
    /// The tables shipped with DIVE (all 32 NATO members, AUS, NZL and NATO markings).
    pub fn builtin() -> &'static Equivalency {
        static BUILT: OnceLock<Equivalency> = OnceLock::new();
        // The embedded file is checked by this crate's tests, so failing here is an invariant.
        BUILT.get_or_init(|| {
            Equivalency::from_json(BUILTIN).expect("embedded equivalency.json is valid")
        })
    }

    /// Load replacement tables from a file.
    pub fn load(path: &Path) -> Result<Equivalency, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Equivalency::from_json(&text).map_err(|e| match e {
            CoreError::EquivalencyData(why) => {
                CoreError::EquivalencyData(format!("{}: {why}", path.display()))
            }
            other => other,
        })
    }

    pub fn from_json(text: &str) -> Result<Equivalency, CoreError> {
        let file: EquivalencyFile =
            serde_json::from_str(text).map_err(|e| CoreError::EquivalencyData(e.to_string()))?;
        Equivalency::from_file(file)
    }

    pub fn from_file(file: EquivalencyFile) -> Result<Equivalency, CoreError> {
        let mut index = BTreeMap::new();
        for (table, levels) in &file.tables {
            if table != NATO_TABLE {
                CountryCode::new(table)
                    .map_err(|e| CoreError::EquivalencyData(format!("table {table:?}: {e}")))?;
            }
            index.insert(table.clone(), index_table(table, levels)?);
        }
        if !index.contains_key(NATO_TABLE) {
            return Err(CoreError::EquivalencyData(format!(
                "the {NATO_TABLE} table is missing"
            )));
        }
        Ok(Equivalency { file, index })
    }

    pub fn version(&self) -> &str {
        &self.file.version
    }

    /// The file this was built from (for re-serialising or editing).
    pub fn file(&self) -> &EquivalencyFile {
        &self.file
    }

    /// Nations that have their own table.
    pub fn nations(&self) -> impl Iterator<Item = CountryCode> + '_ {
        self.index.keys().filter_map(|k| CountryCode::new(k).ok())
    }

    pub fn has_nation(&self, country: CountryCode) -> bool {
        self.index.contains_key(country.as_str())
    }

    /// Normalise a national label issued by `country` to a DIVE level.
    pub fn normalize(&self, country: CountryCode, label: &str) -> Result<Clearance, CoreError> {
        let key = label_key(label);
        let unknown = || CoreError::UnknownClearance {
            label: label.to_string(),
            country: Some(country.to_string()),
        };
        if key.is_empty() {
            return Err(unknown());
        }
        [country.as_str(), NATO_TABLE]
            .iter()
            .find_map(|t| self.index.get(*t).and_then(|m| m.get(&key)).copied())
            .or_else(|| canonical(&key))
            .ok_or_else(unknown)
    }

    /// Normalise a marking that names no nation: a NATO marking or a DIVE level name
    /// (`NATO SECRET`, `top secret`). National labels need [`Equivalency::normalize`].
    pub fn normalize_marking(&self, label: &str) -> Result<Clearance, CoreError> {
        let key = label_key(label);
        let unknown = || CoreError::UnknownClearance {
            label: label.to_string(),
            country: None,
        };
        if key.is_empty() {
            return Err(unknown());
        }
        self.index
            .get(NATO_TABLE)
            .and_then(|m| m.get(&key))
            .copied()
            .or_else(|| canonical(&key))
            .ok_or_else(unknown)
    }

    /// The labels a nation uses for a level (for display), falling back to the NATO marking.
    pub fn labels(&self, country: CountryCode, level: Clearance) -> Vec<String> {
        self.file
            .tables
            .get(country.as_str())
            .and_then(|t| t.get(&level))
            .cloned()
            .unwrap_or_else(|| vec![level.nato_marking().to_string()])
    }

    /// The folded index as policy data: `{TABLE: {FOLDED_LABEL: LEVEL}}`, including a `DIVE`
    /// table of canonical level names, so that Rego can look labels up without Rust.
    pub fn policy_index(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (table, map) in &self.index {
            out.insert(
                table.clone(),
                level_map(map.iter().map(|(k, v)| (k.clone(), *v))),
            );
        }
        let dive = Clearance::ALL.iter().map(|c| (label_key(c.as_str()), *c));
        out.insert("DIVE".to_string(), level_map(dive));
        serde_json::Value::Object(out)
    }

    /// The character folding map for Rego's `strings.replace_n`, applied after `upper`: every
    /// separator, and every character occurring in a label whose folded form differs.
    pub fn policy_fold_map(&self) -> serde_json::Value {
        let mut chars: BTreeSet<char> = SEPARATORS.iter().copied().collect();
        for levels in self.file.tables.values() {
            for labels in levels.values() {
                chars.extend(
                    labels
                        .iter()
                        .flat_map(|l| l.to_uppercase().chars().collect::<Vec<_>>()),
                );
            }
        }
        // Decomposed accents (combining marks) as some clients send them.
        chars.extend(('\u{300}'..='\u{30c}').chain(['\u{327}', '\u{328}']));
        let map = chars
            .into_iter()
            .filter_map(|c| {
                let folded = fold_char(c);
                (folded != c.to_string())
                    .then(|| (c.to_string(), serde_json::Value::String(folded)))
            })
            .collect();
        serde_json::Value::Object(map)
    }
}

fn canonical(key: &str) -> Option<Clearance> {
    // The level names' keys, folded once (this runs for every marking outside the tables).
    static KEYS: OnceLock<Vec<(String, Clearance)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        Clearance::ALL
            .into_iter()
            .map(|c| (label_key(c.as_str()), c))
            .collect()
    })
    .iter()
    .find(|(k, _)| k == key)
    .map(|(_, c)| *c)
}

fn level_map(entries: impl Iterator<Item = (String, Clearance)>) -> serde_json::Value {
    serde_json::Value::Object(
        entries
            .map(|(k, v)| (k, serde_json::Value::String(v.as_str().to_string())))
            .collect(),
    )
}

fn index_table(
    table: &str,
    levels: &BTreeMap<Clearance, Vec<String>>,
) -> Result<BTreeMap<String, Clearance>, CoreError> {
    let mut map = BTreeMap::new();
    for (level, labels) in levels {
        for label in labels {
            let key = label_key(label);
            if key.is_empty() {
                return Err(CoreError::EquivalencyData(format!(
                    "table {table}: empty label for {level}"
                )));
            }
            if let Some(prev) = map.insert(key, *level)
                && prev != *level
            {
                return Err(CoreError::EquivalencyData(format!(
                    "table {table}: label {label:?} maps to both {prev} and {level}"
                )));
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country::NATO_MEMBERS;

    fn cc(s: &str) -> CountryCode {
        CountryCode::new(s).expect("valid test country")
    }

    #[test]
    fn covers_every_nato_member_and_aus_nzl_at_every_level() {
        let eq = Equivalency::builtin();
        for nation in NATO_MEMBERS.iter().chain(&["AUS", "NZL"]) {
            for level in Clearance::ALL {
                let labels = eq.file().tables.get(*nation).and_then(|t| t.get(&level));
                let labels = labels.unwrap_or_else(|| panic!("{nation} has no {level} label"));
                for l in labels {
                    assert_eq!(
                        eq.normalize(cc(nation), l).ok(),
                        Some(level),
                        "{nation} {l}"
                    );
                }
            }
        }
    }

    #[test]
    fn tolerates_case_accents_and_separators() {
        let eq = Equivalency::builtin();
        let fra = cc("FRA");
        assert_eq!(
            eq.normalize(fra, "tres secret defense").ok(),
            Some(Clearance::TopSecret)
        );
        assert_eq!(
            eq.normalize(fra, "Très-Secret_Défense").ok(),
            Some(Clearance::TopSecret)
        );
        assert_eq!(
            eq.normalize(cc("DEU"), "VS-NfD").ok(),
            Some(Clearance::Restricted)
        );
        assert_eq!(
            eq.normalize(cc("POL"), "uzytek sluzbowy").ok(),
            Some(Clearance::Restricted)
        );
        assert_eq!(
            eq.normalize(cc("AUS"), "OFFICIAL:SENSITIVE").ok(),
            Some(Clearance::Restricted)
        );
    }

    #[test]
    fn national_tables_win_over_english_names() {
        let eq = Equivalency::builtin();
        // Romania's "SECRET" is CONFIDENTIAL; GBR's OFFICIAL is RESTRICTED, AUS's is UNCLASSIFIED.
        assert_eq!(
            eq.normalize(cc("ROU"), "SECRET").ok(),
            Some(Clearance::Confidential)
        );
        assert_eq!(
            eq.normalize(cc("GBR"), "OFFICIAL").ok(),
            Some(Clearance::Restricted)
        );
        assert_eq!(
            eq.normalize(cc("AUS"), "OFFICIAL").ok(),
            Some(Clearance::Unclassified)
        );
        // A marking without a nation: NATO markings and canonical names only.
        assert_eq!(
            eq.normalize_marking("cosmic top secret").ok(),
            Some(Clearance::TopSecret)
        );
        assert_eq!(eq.normalize_marking("SECRET").ok(), Some(Clearance::Secret));
        assert!(eq.normalize_marking("GEHEIM").is_err());
        // NATO markings and canonical names are valid for any nation.
        assert_eq!(
            eq.normalize(cc("DEU"), "NATO SECRET").ok(),
            Some(Clearance::Secret)
        );
        assert_eq!(
            eq.normalize(cc("JPN"), "TOP_SECRET").ok(),
            Some(Clearance::TopSecret)
        );
    }

    #[test]
    fn unknown_labels_are_errors_naming_label_and_nation() {
        let eq = Equivalency::builtin();
        let err = eq
            .normalize(cc("DEU"), "SUPER GEHEIM")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown classification label \"SUPER GEHEIM\" for DEU")
        );
        assert!(eq.normalize(cc("USA"), "  ").is_err());
    }

    #[test]
    fn replacement_data_is_validated() {
        let bad_country = r#"{"version":"x","tables":{"NATO":{},"usa":{}}}"#;
        assert!(Equivalency::from_json(bad_country).is_err());
        let ambiguous =
            r#"{"version":"x","tables":{"NATO":{},"USA":{"SECRET":["S"],"TOP_SECRET":["s"]}}}"#;
        let err = Equivalency::from_json(ambiguous)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("maps to both"), "{err}");
        let ok = r#"{"version":"v2","tables":{"NATO":{},"USA":{"SECRET":["SEEKRIT"]}}}"#;
        let eq = Equivalency::from_json(ok).expect("valid replacement");
        assert_eq!(eq.version(), "v2");
        assert_eq!(
            eq.normalize(cc("USA"), "seekrit").ok(),
            Some(Clearance::Secret)
        );
    }

    #[test]
    fn policy_fold_map_folds_accents_like_rust() {
        let eq = Equivalency::builtin();
        let map = eq.policy_fold_map();
        assert_eq!(map.get("É").and_then(|v| v.as_str()), Some("E"));
        assert_eq!(map.get(" ").and_then(|v| v.as_str()), Some(""));
        assert_eq!(map.get("Ł").and_then(|v| v.as_str()), Some("L"));
        let index = eq.policy_index();
        assert_eq!(index["FRA"]["TRESSECRETDEFENSE"], "TOP_SECRET");
        assert_eq!(index["DIVE"]["TOPSECRET"], "TOP_SECRET");
    }
}
