//! Federation links as the services see them: a link's lifecycle state, and the partners file
//! (`instances/<code>/federation/partners.json`) through which federation linking tells an
//! instance's resource service whom to ask in a federated search.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;

/// A link's lifecycle: `pending` → `active` ⇄ `suspended`, and `revoked` from any of them
/// (a revoked partner may be linked again later, which starts a new link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    Pending,
    Active,
    Suspended,
    Revoked,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Pending => "pending",
            LinkStatus::Active => "active",
            LinkStatus::Suspended => "suspended",
            LinkStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<LinkStatus> {
        Some(match s {
            "pending" => LinkStatus::Pending,
            "active" => LinkStatus::Active,
            "suspended" => LinkStatus::Suspended,
            "revoked" => LinkStatus::Revoked,
            _ => return None,
        })
    }

    /// Whether a link in this state may move to `to` (staying put is always allowed: the
    /// operations are idempotent).
    pub fn can_become(self, to: LinkStatus) -> bool {
        use LinkStatus::*;
        self == to
            || matches!(
                (self, to),
                (Pending, Active)
                    | (Active, Suspended)
                    | (Suspended, Active)
                    | (Pending | Active | Suspended, Revoked)
                    | (Revoked, Pending)
            )
    }

    /// Whether partners in this state are trusted and asked.
    pub fn is_active(self) -> bool {
        self == LinkStatus::Active
    }
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One partner instance in the partners file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Partner {
    pub code: CountryCode,
    /// Base URL of its resource service, e.g. `https://localhost:8551`.
    pub api_url: String,
    pub status: LinkStatus,
}

/// `partners.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnersFile {
    pub partners: Vec<Partner>,
}

impl PartnersFile {
    /// Parse and validate: each partner once, `https://` URLs. Errors say which partner.
    pub fn from_json(text: &str) -> Result<PartnersFile, String> {
        let file: PartnersFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::HashSet::new();
        for p in &file.partners {
            if !seen.insert(p.code) {
                return Err(format!("partner {} is listed twice", p.code));
            }
            if !p.api_url.starts_with("https://") {
                return Err(format!(
                    "partner {}: apiUrl {:?} must be an https:// URL",
                    p.code, p.api_url
                ));
            }
        }
        Ok(file)
    }

    /// Add or replace `partner`'s entry (kept sorted by code, so the file reads the same).
    pub fn upsert(&mut self, partner: Partner) {
        self.partners.retain(|p| p.code != partner.code);
        self.partners.push(partner);
        self.partners
            .sort_by(|a, b| a.code.as_str().cmp(b.code.as_str()));
    }

    pub fn remove(&mut self, code: CountryCode) {
        self.partners.retain(|p| p.code != code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_allows_only_its_transitions() {
        use LinkStatus::*;
        assert!(Pending.can_become(Active));
        assert!(Active.can_become(Suspended) && Suspended.can_become(Active));
        assert!(Active.can_become(Revoked) && Suspended.can_become(Revoked));
        assert!(
            Revoked.can_become(Pending),
            "a revoked partner may be linked again"
        );
        assert!(!Revoked.can_become(Active), "not without a new link");
        assert!(!Pending.can_become(Suspended));
        assert!(Active.can_become(Active));
        for s in [Pending, Active, Suspended, Revoked] {
            assert_eq!(LinkStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(LinkStatus::parse("on"), None);
    }

    #[test]
    fn partners_files_are_validated_and_kept_sorted() {
        let mut f = PartnersFile::from_json(
            r#"{"partners":[{"code":"FRA","apiUrl":"https://a","status":"active"}]}"#,
        )
        .unwrap();
        f.upsert(Partner {
            code: CountryCode::new("DEU").unwrap(),
            api_url: "https://b".into(),
            status: LinkStatus::Suspended,
        });
        assert_eq!(f.partners[0].code.as_str(), "DEU");
        f.remove(CountryCode::new("DEU").unwrap());
        assert_eq!(f.partners.len(), 1);
        for (bad, why) in [
            (
                r#"{"partners":[{"code":"FRA","apiUrl":"http://x","status":"active"}]}"#,
                "https://",
            ),
            (
                r#"{"partners":[{"code":"FRA","apiUrl":"https://x","status":"on"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"partners":[{"code":"FRA","apiUrl":"https://x","status":"active"},{"code":"FRA","apiUrl":"https://y","status":"active"}]}"#,
                "twice",
            ),
            (r#"{"partners":[],"extra":1}"#, "unknown field"),
        ] {
            let err = PartnersFile::from_json(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
