//! Security labels (STANAG 4774 fields): classification with its original national marking,
//! releasability, COIs, caveats, originator and creation date; display markings; coherence.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clearance::Clearance;
use crate::coi::{CoiOperator, CoiRegistry, US_ONLY};
use crate::country::CountryCode;
use crate::equivalency::Equivalency;
use crate::error::CoreError;

/// Handling caveats recognised in display markings.
pub const KNOWN_CAVEATS: &[&str] = &[
    "NOFORN",
    "ORCON",
    "PROPIN",
    "IMCON",
    "RELIDO",
    "NOCONTRACT",
    "EXDIS",
    "NODIS",
    "LIMDIS",
];

/// The marking segment that says a label is releasable to industry.
const INDUSTRY_SEGMENT: &str = "INDUSTRY";

/// A document's security label. Serialises with the resource attribute names of the policy
/// (`classification`, `releasabilityTo`, `COI`, `coiOperator`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityLabel {
    pub classification: Clearance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_classification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_country: Option<CountryCode>,
    pub releasability_to: Vec<CountryCode>,
    #[serde(rename = "COI", default)]
    pub coi: Vec<String>,
    #[serde(default)]
    pub coi_operator: CoiOperator,
    #[serde(default)]
    pub caveats: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_date: Option<OffsetDateTime>,
    #[serde(default)]
    pub releasable_to_industry: bool,
}

impl SecurityLabel {
    /// A label with a classification and releasability; other fields empty (COI operator ALL).
    pub fn new(
        classification: Clearance,
        releasability_to: impl IntoIterator<Item = CountryCode>,
    ) -> Self {
        let mut rel = Vec::new();
        for c in releasability_to {
            if !rel.contains(&c) {
                rel.push(c);
            }
        }
        SecurityLabel {
            classification,
            original_classification: None,
            original_country: None,
            releasability_to: rel,
            coi: Vec::new(),
            coi_operator: CoiOperator::All,
            caveats: Vec::new(),
            originator: None,
            creation_date: None,
            releasable_to_industry: false,
        }
    }

    /// Build from a national marking: the classification is normalised through `country`'s table.
    pub fn from_national(
        equivalency: &Equivalency,
        country: CountryCode,
        marking: &str,
        releasability_to: impl IntoIterator<Item = CountryCode>,
    ) -> Result<Self, CoreError> {
        let level = equivalency.normalize(country, marking)?;
        let mut label = SecurityLabel::new(level, releasability_to);
        label.original_classification = Some(marking.to_string());
        label.original_country = Some(country);
        Ok(label)
    }

    pub fn with_coi(
        mut self,
        operator: CoiOperator,
        cois: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.coi_operator = operator;
        self.coi = dedup(cois.into_iter().map(Into::into));
        self
    }

    pub fn with_caveats(mut self, caveats: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.caveats = dedup(caveats.into_iter().map(Into::into));
        self
    }

    pub fn with_originator(mut self, originator: impl Into<String>) -> Self {
        self.originator = Some(originator.into());
        self
    }

    pub fn with_creation_date(mut self, date: OffsetDateTime) -> Self {
        self.creation_date = Some(date);
        self
    }

    pub fn with_releasable_to_industry(mut self, yes: bool) -> Self {
        self.releasable_to_industry = yes;
        self
    }

    /// The display marking, e.g. `SECRET//FVEY//REL TO USA, GBR, CAN`.
    ///
    /// Segments: classification; COIs joined by `/` (prefixed `ANY ` under the ANY operator);
    /// caveats joined by `/`; `REL TO` list; `INDUSTRY` when releasable to industry.
    pub fn marking(&self) -> String {
        let mut parts = vec![self.classification.marking().to_string()];
        if !self.coi.is_empty() {
            let tags = self.coi.join("/");
            parts.push(match self.coi_operator {
                CoiOperator::All => tags,
                CoiOperator::Any => format!("ANY {tags}"),
            });
        }
        if !self.caveats.is_empty() {
            parts.push(self.caveats.join("/"));
        }
        if !self.releasability_to.is_empty() {
            let rel: Vec<&str> = self
                .releasability_to
                .iter()
                .map(CountryCode::as_str)
                .collect();
            parts.push(format!("REL TO {}", rel.join(", ")));
        }
        if self.releasable_to_industry {
            parts.push(INDUSTRY_SEGMENT.to_string());
        }
        parts.join("//")
    }

    /// Parse a display marking produced by [`SecurityLabel::marking`] (or written by hand in the
    /// same form). Original marking, originator and creation date are not part of a marking.
    pub fn parse_marking(marking: &str) -> Result<SecurityLabel, CoreError> {
        let err = |why: String| CoreError::InvalidMarking {
            marking: marking.to_string(),
            why,
        };
        let mut segments = marking.split("//").map(str::trim);
        let first = segments.next().unwrap_or_default();
        let classification = Clearance::from_str(first)
            .map_err(|_| err(format!("{first:?} is not a classification level")))?;
        let mut label = SecurityLabel::new(classification, []);
        let mut seen_coi = false;
        for seg in segments {
            if seg.is_empty() {
                return Err(err("empty segment between '//'".to_string()));
            }
            if let Some(list) = seg.strip_prefix("REL TO ") {
                for code in list.split(',').map(str::trim) {
                    let c = CountryCode::new(code).map_err(|e| err(e.to_string()))?;
                    if !label.releasability_to.contains(&c) {
                        label.releasability_to.push(c);
                    }
                }
            } else if seg == INDUSTRY_SEGMENT {
                label.releasable_to_industry = true;
            } else if seg.split('/').all(|t| KNOWN_CAVEATS.contains(&t)) {
                label.caveats.extend(seg.split('/').map(str::to_string));
            } else if seen_coi {
                return Err(err(format!("second COI segment {seg:?}")));
            } else {
                seen_coi = true;
                let (op, tags) = match seg.strip_prefix("ANY ") {
                    Some(rest) => (CoiOperator::Any, rest),
                    None => (CoiOperator::All, seg),
                };
                label.coi_operator = op;
                label.coi = tags.split('/').map(|t| t.trim().to_string()).collect();
                if label.coi.iter().any(|t| t.is_empty() || t.contains(' ')) {
                    return Err(err(format!("bad COI segment {seg:?}")));
                }
            }
        }
        Ok(label)
    }

    /// Every coherence problem of this label (empty when coherent). `strict` also requires every
    /// releasable country to belong to a listed COI.
    pub fn coherence(
        &self,
        registry: &CoiRegistry,
        equivalency: &Equivalency,
        strict: bool,
    ) -> Vec<CoherenceViolation> {
        let mut out = Vec::new();
        if self.releasability_to.is_empty() {
            out.push(CoherenceViolation::EmptyReleasability);
        }
        for tag in &self.coi {
            if !registry.contains(tag) {
                out.push(CoherenceViolation::UnknownCoi(tag.clone()));
            }
        }
        self.check_coi_relations(registry, &mut out);
        self.check_noforn(&mut out);
        self.check_original(equivalency, &mut out);
        if strict {
            for c in &self.releasability_to {
                if !self.coi.iter().any(|t| registry.is_member(t, *c)) {
                    out.push(CoherenceViolation::NotCoveredByCoi(*c));
                }
            }
        }
        out
    }

    fn check_coi_relations(&self, registry: &CoiRegistry, out: &mut Vec<CoherenceViolation>) {
        if self.coi.iter().any(|t| t == US_ONLY) {
            for other in self.coi.iter().filter(|t| *t != US_ONLY) {
                out.push(CoherenceViolation::UsOnlyWithOther(other.clone()));
            }
        }
        for (i, a) in self.coi.iter().enumerate() {
            for b in &self.coi[i + 1..] {
                // US-ONLY pairs are already reported above.
                if registry.are_exclusive(a, b) && a != US_ONLY && b != US_ONLY {
                    out.push(CoherenceViolation::MutuallyExclusive(a.clone(), b.clone()));
                }
                if self.coi_operator == CoiOperator::Any {
                    for (sub, sup) in [(a, b), (b, a)] {
                        if registry.is_subset(sub, sup) {
                            out.push(CoherenceViolation::SubsetWidensAny {
                                subset: sub.clone(),
                                superset: sup.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    fn check_noforn(&self, out: &mut Vec<CoherenceViolation>) {
        if !self.caveats.iter().any(|c| c == "NOFORN") {
            return;
        }
        let coi_ok = self.coi.len() == 1 && self.coi[0] == US_ONLY;
        let rel_ok = self.releasability_to.len() == 1 && self.releasability_to[0].as_str() == "USA";
        if !coi_ok || !rel_ok {
            out.push(CoherenceViolation::NofornNotUsOnly);
        }
    }

    fn check_original(&self, equivalency: &Equivalency, out: &mut Vec<CoherenceViolation>) {
        match (&self.original_classification, self.original_country) {
            (Some(_), None) => out.push(CoherenceViolation::OriginalWithoutCountry),
            (Some(orig), Some(country)) => match equivalency.normalize(country, orig) {
                Ok(level) if level == self.classification => {}
                Ok(level) => out.push(CoherenceViolation::OriginalMismatch {
                    original: orig.clone(),
                    country,
                    means: level,
                    classification: self.classification,
                }),
                Err(e) => out.push(CoherenceViolation::UnknownOriginal(e.to_string())),
            },
            _ => {}
        }
    }
}

impl fmt::Display for SecurityLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.marking())
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// One reason a label is incoherent; `Display` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoherenceViolation {
    EmptyReleasability,
    UnknownCoi(String),
    UsOnlyWithOther(String),
    MutuallyExclusive(String, String),
    NofornNotUsOnly,
    SubsetWidensAny {
        subset: String,
        superset: String,
    },
    NotCoveredByCoi(CountryCode),
    OriginalWithoutCountry,
    OriginalMismatch {
        original: String,
        country: CountryCode,
        means: Clearance,
        classification: Clearance,
    },
    UnknownOriginal(String),
}

impl fmt::Display for CoherenceViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CoherenceViolation as V;
        match self {
            V::EmptyReleasability => write!(
                f,
                "releasabilityTo is empty: the document is releasable to no one"
            ),
            V::UnknownCoi(t) => write!(f, "COI {t:?} is not in the COI registry"),
            V::UsOnlyWithOther(t) => write!(f, "US-ONLY cannot be combined with another COI ({t})"),
            V::MutuallyExclusive(a, b) => write!(f, "COIs {a} and {b} are mutually exclusive"),
            V::NofornNotUsOnly => write!(
                f,
                "NOFORN requires COI exactly US-ONLY and releasability exactly USA"
            ),
            V::SubsetWidensAny { subset, superset } => write!(
                f,
                "under ANY, {subset} is a subset of {superset}: listing both widens access to all of {superset}"
            ),
            V::NotCoveredByCoi(c) => write!(
                f,
                "strict mode: releasable country {c} belongs to none of the label's COIs"
            ),
            V::OriginalWithoutCountry => {
                write!(f, "originalClassification is set without originalCountry")
            }
            V::OriginalMismatch {
                original,
                country,
                means,
                classification,
            } => write!(
                f,
                "original marking {original:?} of {country} means {means}, but classification is {classification}"
            ),
            V::UnknownOriginal(e) => write!(f, "original marking: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        CountryCode::new(s).expect("valid test country")
    }

    fn fvey_secret() -> SecurityLabel {
        SecurityLabel::new(Clearance::Secret, [cc("USA"), cc("GBR"), cc("CAN")])
            .with_coi(CoiOperator::All, ["FVEY"])
    }

    #[test]
    fn renders_and_parses_display_markings() {
        let label = fvey_secret();
        assert_eq!(label.marking(), "SECRET//FVEY//REL TO USA, GBR, CAN");
        assert_eq!(
            SecurityLabel::parse_marking(&label.marking()).ok(),
            Some(label)
        );
        let ts = SecurityLabel::new(Clearance::TopSecret, [cc("USA")])
            .with_coi(CoiOperator::Any, ["NATO", "FVEY"])
            .with_caveats(["NOFORN"])
            .with_releasable_to_industry(true);
        assert_eq!(
            ts.marking(),
            "TOP SECRET//ANY NATO/FVEY//NOFORN//REL TO USA//INDUSTRY"
        );
        assert_eq!(SecurityLabel::parse_marking(&ts.marking()).ok(), Some(ts));
    }

    #[test]
    fn bad_markings_name_the_problem() {
        let e = |m: &str| {
            SecurityLabel::parse_marking(m)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(e("SEKRIT//FVEY").contains("not a classification level"));
        assert!(e("SECRET//REL TO USA, uk").contains("\"uk\""));
        assert!(e("SECRET//FVEY//NATO").contains("second COI segment"));
        assert!(e("SECRET////REL TO USA").contains("empty segment"));
    }

    #[test]
    fn serialises_with_policy_attribute_names() {
        let label =
            SecurityLabel::from_national(Equivalency::builtin(), cc("DEU"), "GEHEIM", [cc("DEU")])
                .map(|l| l.with_creation_date(time::macros::datetime!(2026-01-02 03:04:05 UTC)));
        let v = serde_json::to_value(label.ok()).unwrap_or_default();
        assert_eq!(v["classification"], "SECRET");
        assert_eq!(v["originalClassification"], "GEHEIM");
        assert_eq!(v["originalCountry"], "DEU");
        assert_eq!(v["releasabilityTo"], serde_json::json!(["DEU"]));
        assert_eq!(v["COI"], serde_json::json!([]));
        assert_eq!(v["coiOperator"], "ALL");
        assert_eq!(v["creationDate"], "2026-01-02T03:04:05Z");
        assert_eq!(v["releasableToIndustry"], false);
        let bad = serde_json::json!({"classification":"SECRET","releasabilityTo":["USA"],"coiOperator":"SOME"});
        assert!(serde_json::from_value::<SecurityLabel>(bad).is_err());
    }

    #[test]
    fn coherence_rules() {
        let (r, eq) = (CoiRegistry::builtin(), Equivalency::builtin());
        assert!(fvey_secret().coherence(r, eq, false).is_empty());
        let v = |l: SecurityLabel, strict| l.coherence(r, eq, strict);
        let us = || SecurityLabel::new(Clearance::Secret, [cc("USA")]);
        assert_eq!(
            v(us().with_coi(CoiOperator::All, ["US-ONLY", "FVEY"]), false),
            vec![CoherenceViolation::UsOnlyWithOther("FVEY".into())]
        );
        assert_eq!(
            v(
                us().with_coi(CoiOperator::All, ["EU-RESTRICTED", "NATO-COSMIC"]),
                false
            ),
            vec![CoherenceViolation::MutuallyExclusive(
                "EU-RESTRICTED".into(),
                "NATO-COSMIC".into()
            )]
        );
        assert_eq!(
            v(us().with_caveats(["NOFORN"]), false),
            vec![CoherenceViolation::NofornNotUsOnly]
        );
        assert!(
            v(
                us().with_coi(CoiOperator::All, ["US-ONLY"])
                    .with_caveats(["NOFORN"]),
                false
            )
            .is_empty()
        );
        assert_eq!(
            v(us().with_coi(CoiOperator::Any, ["FVEY", "AUKUS"]), false),
            vec![CoherenceViolation::SubsetWidensAny {
                subset: "AUKUS".into(),
                superset: "FVEY".into()
            }]
        );
        assert!(v(us().with_coi(CoiOperator::All, ["FVEY", "AUKUS"]), false).is_empty());
        let fra = SecurityLabel::new(Clearance::Secret, [cc("USA"), cc("FRA")])
            .with_coi(CoiOperator::All, ["FVEY"]);
        assert!(v(fra.clone(), false).is_empty());
        assert_eq!(
            v(fra, true),
            vec![CoherenceViolation::NotCoveredByCoi(cc("FRA"))]
        );
        assert_eq!(
            v(SecurityLabel::new(Clearance::Secret, []), false),
            vec![CoherenceViolation::EmptyReleasability]
        );
        let mut mismatch = us();
        mismatch.original_classification = Some("STRENG GEHEIM".into());
        mismatch.original_country = Some(cc("DEU"));
        let got = v(mismatch, false);
        assert!(matches!(
            got.as_slice(),
            [CoherenceViolation::OriginalMismatch {
                means: Clearance::TopSecret,
                ..
            }]
        ));
        assert_eq!(
            v(us().with_coi(CoiOperator::All, ["Zeta"]), false),
            vec![CoherenceViolation::UnknownCoi("Zeta".into())]
        );
    }
}
