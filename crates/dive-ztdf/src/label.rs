//! The DIVE security label as carried by a ZTDF: JSON with the resource attribute names of the
//! authorization model, display markings, the mapping to policy attribute FQNs, and the
//! STANAG 4774 confidentiality label (STANAG 5636 JSON) of the handling assertion.
//!
//! TEMPORARY: this module stands in for `dive-core`'s `SecurityLabel`, which is being built in
//! parallel. At integration, replace [`SecurityLabel`] with dive-core's type (same JSON names)
//! and keep only the FQN and STANAG mappings here.
//!
//! FQN mapping (namespace `dive.coalition` by default), values percent-encoded:
//!
//! | label field | attribute FQN |
//! |---|---|
//! | `classification` | `https://NS/attr/classification/value/secret` (lower case, `top_secret`) |
//! | `releasabilityTo[]` | `https://NS/attr/releasableTo/value/usa` (one per country, lower case) |
//! | `COI[]` | `https://NS/attr/coi/value/fvey` (one per tag, lower case) |
//! | `coiOperator` | `https://NS/attr/coiOperator/value/all` or `any` |
//! | `caveats[]` | `https://NS/attr/caveats/value/noforn` |
//! | `originalClassification` | `https://NS/attr/originalClassification/value/GEHEIM` (case kept) |
//! | `originalCountry` | `https://NS/attr/originalCountry/value/deu` |
//! | `creationDate` | `https://NS/attr/creationDate/value/2026-01-01T00%3A00%3A00Z` |
//! | `releasableToIndustry` | `https://NS/attr/releasableToIndustry/value/true` |
//!
//! Reading back upper-cases classification, countries, COI tags and caveats: COI tags therefore
//! compare case-insensitively (dive-core canonicalises them against its COI registry).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_NAMESPACE: &str = "dive.coalition";

/// Normalised classification level (authorization model ranks 0–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Classification {
    Unclassified,
    Restricted,
    Confidential,
    Secret,
    TopSecret,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Unclassified => "UNCLASSIFIED",
            Classification::Restricted => "RESTRICTED",
            Classification::Confidential => "CONFIDENTIAL",
            Classification::Secret => "SECRET",
            Classification::TopSecret => "TOP_SECRET",
        }
    }

    /// As written in a display marking.
    pub fn marking(self) -> &'static str {
        match self {
            Classification::TopSecret => "TOP SECRET",
            other => other.as_str(),
        }
    }

    /// Accepts the DIVE level names (any case, space/underscore/hyphen) and US abbreviations.
    pub fn parse(s: &str) -> Option<Self> {
        let n: String = s
            .trim()
            .to_ascii_uppercase()
            .chars()
            .map(|c| if c == ' ' || c == '-' { '_' } else { c })
            .collect();
        Some(match n.as_str() {
            "UNCLASSIFIED" | "U" => Classification::Unclassified,
            "RESTRICTED" | "R" => Classification::Restricted,
            "CONFIDENTIAL" | "C" => Classification::Confidential,
            "SECRET" | "S" => Classification::Secret,
            "TOP_SECRET" | "TS" => Classification::TopSecret,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CoiOperator {
    #[default]
    All,
    Any,
}

/// A document's security label, JSON field names as in the authorization model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityLabel {
    pub classification: Classification,
    #[serde(rename = "releasabilityTo")]
    pub releasability_to: Vec<String>,
    #[serde(rename = "COI", default, skip_serializing_if = "Vec::is_empty")]
    pub coi: Vec<String>,
    #[serde(rename = "coiOperator", default)]
    pub coi_operator: CoiOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    #[serde(
        rename = "originalClassification",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub original_classification: Option<String>,
    #[serde(
        rename = "originalCountry",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub original_country: Option<String>,
    #[serde(
        rename = "creationDate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_date: Option<String>,
    #[serde(rename = "releasableToIndustry", default)]
    pub releasable_to_industry: bool,
}

fn label_err(msg: impl Into<String>) -> Error {
    Error::Label(msg.into())
}

fn is_country(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SecurityLabel {
    /// Parse the JSON label (`--label-file`) and validate it.
    pub fn from_json(text: &str) -> Result<Self> {
        let l: SecurityLabel = serde_json::from_str(text)
            .map_err(|e| label_err(format!("invalid label JSON: {e}")))?;
        l.validate()?;
        Ok(l)
    }

    /// Check the fields' domains: ISO alpha-3 upper-case countries, tag-shaped COIs and caveats,
    /// an RFC 3339 creation date.
    pub fn validate(&self) -> Result<()> {
        if self.releasability_to.is_empty() {
            return Err(label_err(
                "releasabilityTo is empty: the document would be releasable to no one",
            ));
        }
        if let Some(c) = self.releasability_to.iter().find(|c| !is_country(c)) {
            return Err(label_err(format!(
                "releasabilityTo: {c:?} is not an upper-case ISO 3166-1 alpha-3 code"
            )));
        }
        if let Some(c) = self.original_country.as_ref().filter(|c| !is_country(c)) {
            return Err(label_err(format!(
                "originalCountry: {c:?} is not an upper-case ISO 3166-1 alpha-3 code"
            )));
        }
        if let Some(t) = self.coi.iter().find(|t| !is_tag(t)) {
            return Err(label_err(format!(
                "COI: {t:?} is not a valid tag (letters, digits, '-', '_')"
            )));
        }
        if let Some(t) = self.caveats.iter().find(|t| !is_tag(t)) {
            return Err(label_err(format!(
                "caveats: {t:?} is not a valid caveat (letters, digits, '-', '_')"
            )));
        }
        if let Some(d) = &self.creation_date {
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    label_err(format!("creationDate: {d:?} is not an RFC 3339 timestamp"))
                })?;
        }
        if let Some(o) = self
            .original_classification
            .as_ref()
            .filter(|o| o.trim().is_empty() || o.len() > 128)
        {
            return Err(label_err(format!(
                "originalClassification: {o:?} must be 1 to 128 characters"
            )));
        }
        Ok(())
    }

    /// Parse a display marking such as `SECRET//FVEY//REL TO USA, GBR`.
    ///
    /// Grammar: `CLASSIFICATION ( "//" segment )*` where a segment is `REL TO C1, C2…` (also
    /// `REL C1, C2`), a caveat (`NOFORN`, `ORCON`, `PROPIN`, `IMCON`, `RELIDO`), or COI tags
    /// separated by `/` or `,`, optionally followed by ` (ANY)` to select the ANY operator.
    pub fn from_marking(marking: &str) -> Result<Self> {
        let mut parts = marking.split("//").map(str::trim);
        let class_s = parts.next().unwrap_or_default();
        let classification = Classification::parse(class_s)
            .ok_or_else(|| label_err(format!("marking: unknown classification {class_s:?}")))?;
        let mut label = SecurityLabel {
            classification,
            releasability_to: Vec::new(),
            coi: Vec::new(),
            coi_operator: CoiOperator::All,
            caveats: Vec::new(),
            original_classification: None,
            original_country: None,
            creation_date: None,
            releasable_to_industry: false,
        };
        for seg in parts {
            let upper = seg.to_ascii_uppercase();
            if seg.is_empty() {
                return Err(label_err(format!(
                    "marking {marking:?} has an empty segment"
                )));
            } else if let Some(rest) = upper
                .strip_prefix("REL TO ")
                .or_else(|| upper.strip_prefix("REL "))
            {
                if !label.releasability_to.is_empty() {
                    return Err(label_err("marking has more than one REL TO segment"));
                }
                label.releasability_to = rest.split(',').map(|c| c.trim().to_string()).collect();
            } else if CAVEATS.contains(&upper.as_str()) {
                label.caveats.push(upper);
            } else {
                let (tags, op) = match upper.strip_suffix("(ANY)") {
                    Some(t) => (t.trim().to_string(), CoiOperator::Any),
                    None => (upper.clone(), CoiOperator::All),
                };
                if !label.coi.is_empty() {
                    return Err(label_err("marking has more than one COI segment"));
                }
                label.coi = tags
                    .split(['/', ','])
                    .map(|t| t.trim().to_string())
                    .collect();
                label.coi_operator = op;
            }
        }
        if label.releasability_to.is_empty() {
            return Err(label_err(format!(
                "marking {marking:?} has no 'REL TO' segment; releasability is required"
            )));
        }
        label.validate()?;
        Ok(label)
    }

    /// The display marking, e.g. `SECRET//FVEY//REL TO USA, GBR`.
    pub fn marking(&self) -> String {
        let mut out = self.classification.marking().to_string();
        if !self.coi.is_empty() {
            out.push_str("//");
            out.push_str(&self.coi.join("/"));
            if self.coi_operator == CoiOperator::Any {
                out.push_str(" (ANY)");
            }
        }
        for c in &self.caveats {
            out.push_str("//");
            out.push_str(c);
        }
        out.push_str("//REL TO ");
        out.push_str(&self.releasability_to.join(", "));
        out
    }

    /// Policy `dataAttributes` FQNs for this label (see the module table).
    pub fn to_attribute_fqns(&self, namespace: &str) -> Vec<String> {
        let fqn = |attr: &str, value: &str| {
            format!(
                "https://{namespace}/attr/{attr}/value/{}",
                pct_encode(value)
            )
        };
        let mut out = vec![fqn(
            "classification",
            &self.classification.as_str().to_ascii_lowercase(),
        )];
        out.extend(
            self.releasability_to
                .iter()
                .map(|c| fqn("releasableTo", &c.to_ascii_lowercase())),
        );
        out.extend(self.coi.iter().map(|c| fqn("coi", &c.to_ascii_lowercase())));
        let op = match self.coi_operator {
            CoiOperator::All => "all",
            CoiOperator::Any => "any",
        };
        out.push(fqn("coiOperator", op));
        out.extend(
            self.caveats
                .iter()
                .map(|c| fqn("caveats", &c.to_ascii_lowercase())),
        );
        if let Some(o) = &self.original_classification {
            out.push(fqn("originalClassification", o));
        }
        if let Some(c) = &self.original_country {
            out.push(fqn("originalCountry", &c.to_ascii_lowercase()));
        }
        if let Some(d) = &self.creation_date {
            out.push(fqn("creationDate", d));
        }
        out.push(fqn(
            "releasableToIndustry",
            if self.releasable_to_industry {
                "true"
            } else {
                "false"
            },
        ));
        out
    }

    /// Rebuild a label from policy FQNs of `namespace`; FQNs of other namespaces are ignored.
    /// Fails when the FQNs under the namespace do not form a valid label.
    pub fn from_attribute_fqns<'a>(
        fqns: impl IntoIterator<Item = &'a str>,
        namespace: &str,
    ) -> Result<Option<Self>> {
        let prefix = format!("https://{namespace}/attr/");
        let mut classification = None;
        let mut label = SecurityLabel {
            classification: Classification::Unclassified,
            releasability_to: Vec::new(),
            coi: Vec::new(),
            coi_operator: CoiOperator::All,
            caveats: Vec::new(),
            original_classification: None,
            original_country: None,
            creation_date: None,
            releasable_to_industry: false,
        };
        let mut any = false;
        for f in fqns {
            let Some(rest) = f.strip_prefix(&prefix) else {
                continue;
            };
            any = true;
            let (attr, value) = rest
                .split_once("/value/")
                .ok_or_else(|| label_err(format!("attribute FQN {f:?} has no '/value/' part")))?;
            let value = pct_decode(value).ok_or_else(|| {
                label_err(format!("attribute FQN {f:?} has a bad percent-encoding"))
            })?;
            match attr {
                "classification" => {
                    if classification.is_some() {
                        return Err(label_err("policy carries more than one classification"));
                    }
                    classification = Some(Classification::parse(&value).ok_or_else(|| {
                        label_err(format!("unknown classification value {value:?}"))
                    })?);
                }
                "releasableTo" => label.releasability_to.push(value.to_ascii_uppercase()),
                "coi" => label.coi.push(value.to_ascii_uppercase()),
                "coiOperator" => {
                    label.coi_operator = match value.as_str() {
                        "all" => CoiOperator::All,
                        "any" => CoiOperator::Any,
                        other => {
                            return Err(label_err(format!("unknown coiOperator value {other:?}")));
                        }
                    }
                }
                "caveats" => label.caveats.push(value.to_ascii_uppercase()),
                "originalClassification" => label.original_classification = Some(value),
                "originalCountry" => label.original_country = Some(value.to_ascii_uppercase()),
                "creationDate" => label.creation_date = Some(value),
                "releasableToIndustry" => {
                    label.releasable_to_industry = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(label_err(format!(
                                "releasableToIndustry value {other:?} is not true/false"
                            )));
                        }
                    }
                }
                other => {
                    return Err(label_err(format!(
                        "unknown DIVE attribute {other:?} in {f:?}"
                    )));
                }
            }
        }
        if !any {
            return Ok(None);
        }
        label.classification = classification
            .ok_or_else(|| label_err("policy has DIVE attributes but no classification"))?;
        label.validate()?;
        Ok(Some(label))
    }

    /// The STANAG 4774 confidentiality label in its STANAG 5636 JSON form (`ocl`), as carried by
    /// the handling assertion. `policy_id` identifies the label policy.
    pub fn to_stanag_json(&self, policy_id: &str) -> String {
        fn cat<'a>(
            kind: &'static str,
            name: &'static str,
            vals: Vec<&'a str>,
        ) -> StanagCategory<'a> {
            StanagCategory { kind, name, vals }
        }
        let mut catl = vec![cat(
            "P",
            "Releasable To",
            self.releasability_to.iter().map(String::as_str).collect(),
        )];
        if !self.coi.is_empty() {
            // ALL: holder needs every COI (restrictive); ANY: one suffices (permissive).
            let kind = if self.coi_operator == CoiOperator::All {
                "R"
            } else {
                "P"
            };
            catl.push(cat(
                kind,
                "COI",
                self.coi.iter().map(String::as_str).collect(),
            ));
        }
        if !self.caveats.is_empty() {
            catl.push(cat(
                "R",
                "Caveats",
                self.caveats.iter().map(String::as_str).collect(),
            ));
        }
        if let Some(o) = &self.original_classification {
            catl.push(cat("I", "Original Classification", vec![o]));
        }
        if let Some(c) = &self.original_country {
            catl.push(cat("I", "Original Country", vec![c]));
        }
        let industry = if self.releasable_to_industry {
            "true"
        } else {
            "false"
        };
        catl.push(cat("I", "Releasable To Industry", vec![industry]));
        let doc = StanagLabel {
            ocl: StanagOcl {
                pol: policy_id,
                cls: self.classification.marking(),
                catl,
                dcr: self.creation_date.as_deref(),
            },
            context: StanagContext {
                base: STANAG_5636_SCHEMA,
            },
        };
        // Serialising plain structs of strings cannot fail.
        serde_json::to_string(&doc).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct StanagLabel<'a> {
    ocl: StanagOcl<'a>,
    context: StanagContext,
}

#[derive(Serialize)]
struct StanagOcl<'a> {
    pol: &'a str,
    cls: &'static str,
    catl: Vec<StanagCategory<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dcr: Option<&'a str>,
}

#[derive(Serialize)]
struct StanagCategory<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'static str,
    vals: Vec<&'a str>,
}

#[derive(Serialize)]
struct StanagContext {
    #[serde(rename = "@base")]
    base: &'static str,
}

impl fmt::Display for SecurityLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.marking())
    }
}

/// Schema URI of the STANAG 5636 JSON binding used by OpenTDF handling assertions.
pub const STANAG_5636_SCHEMA: &str = "urn:nato:stanag:5636:A:1:elements:json";

const CAVEATS: &[&str] = &["NOFORN", "ORCON", "PROPIN", "IMCON", "RELIDO"];

fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marking_parses_and_renders() {
        let l = SecurityLabel::from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap();
        assert_eq!(l.classification, Classification::Secret);
        assert_eq!(l.coi, vec!["FVEY"]);
        assert_eq!(l.releasability_to, vec!["USA", "GBR"]);
        assert_eq!(l.marking(), "SECRET//FVEY//REL TO USA, GBR");
        let l = SecurityLabel::from_marking("top secret//NATO/EUCOM (ANY)//NOFORN//REL TO USA")
            .unwrap();
        assert_eq!(l.coi_operator, CoiOperator::Any);
        assert_eq!(l.caveats, vec!["NOFORN"]);
        assert_eq!(SecurityLabel::from_marking(&l.marking()).unwrap(), l);
    }

    #[test]
    fn marking_errors_name_the_problem() {
        let e = SecurityLabel::from_marking("SEKRIT//REL TO USA")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown classification \"SEKRIT\""), "{e}");
        let e = SecurityLabel::from_marking("SECRET//FVEY")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no 'REL TO'"), "{e}");
        let e = SecurityLabel::from_marking("SECRET//REL TO USA, UK")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"UK\""), "{e}");
    }

    #[test]
    fn json_uses_authorization_names() {
        let text = r#"{"classification":"TOP_SECRET","releasabilityTo":["USA","GBR"],"COI":["FVEY"],
            "coiOperator":"ANY","caveats":["NOFORN"],"originalClassification":"STRENG GEHEIM",
            "originalCountry":"DEU","creationDate":"2026-01-02T03:04:05Z","releasableToIndustry":true}"#;
        let l = SecurityLabel::from_json(text).unwrap();
        assert_eq!(l.coi_operator, CoiOperator::Any);
        let back: serde_json::Value = serde_json::to_value(&l).unwrap();
        assert_eq!(back["releasabilityTo"][1], "GBR");
        assert_eq!(back["COI"][0], "FVEY");
        assert!(
            SecurityLabel::from_json(
                r#"{"classification":"SECRET","releasabilityTo":["USA"],"extra":1}"#
            )
            .is_err()
        );
        assert!(SecurityLabel::from_json(r#"{"classification":"SECRET","releasabilityTo":["USA"],"creationDate":"yesterday"}"#).is_err());
    }

    #[test]
    fn fqn_round_trip() {
        let l = SecurityLabel::from_json(
            r#"{"classification":"TOP_SECRET","releasabilityTo":["USA","GBR"],"COI":["FVEY","CAN-US"],
            "coiOperator":"ANY","caveats":["NOFORN"],"originalClassification":"TRÈS SECRET DÉFENSE",
            "originalCountry":"FRA","creationDate":"2026-01-02T03:04:05Z","releasableToIndustry":true}"#,
        )
        .unwrap();
        let fqns = l.to_attribute_fqns(DEFAULT_NAMESPACE);
        assert_eq!(
            fqns[0],
            "https://dive.coalition/attr/classification/value/top_secret"
        );
        assert!(fqns.contains(&"https://dive.coalition/attr/releasableTo/value/usa".to_string()));
        assert!(fqns.contains(&"https://dive.coalition/attr/coi/value/can-us".to_string()));
        assert!(fqns.contains(
            &"https://dive.coalition/attr/creationDate/value/2026-01-02T03%3A04%3A05Z".to_string()
        ));
        let mut with_foreign: Vec<&str> = fqns.iter().map(String::as_str).collect();
        with_foreign.push("https://example.com/attr/x/value/y");
        let back = SecurityLabel::from_attribute_fqns(with_foreign, DEFAULT_NAMESPACE)
            .unwrap()
            .unwrap();
        assert_eq!(back, l);
        assert!(
            SecurityLabel::from_attribute_fqns(
                ["https://example.com/attr/x/value/y"],
                DEFAULT_NAMESPACE
            )
            .unwrap()
            .is_none()
        );
    }
}
