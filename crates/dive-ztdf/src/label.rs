//! How a DIVE security label (`dive_core::SecurityLabel`) is carried by a ZTDF: as policy
//! `dataAttributes` FQNs, and as the STANAG 4774 confidentiality label (STANAG 5636 JSON) of the
//! handling assertion. The label type, its JSON form, display markings and coherence rules are
//! dive-core's; this module only maps them.
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
//! | `originator` | `https://NS/attr/originator/value/...` (case kept) |
//! | `creationDate` | `https://NS/attr/creationDate/value/2026-01-01T00%3A00%3A00Z` |
//! | `releasableToIndustry` | `https://NS/attr/releasableToIndustry/value/true` |
//!
//! Reading back upper-cases countries, COI tags and caveats: COI tags therefore compare
//! case-insensitively (dive-core canonicalises them against its COI registry).

use dive_core::{Clearance, CoiOperator, CountryCode, SecurityLabel};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};

pub const DEFAULT_NAMESPACE: &str = "dive.coalition";

fn label_err(msg: impl Into<String>) -> Error {
    Error::Label(msg.into())
}

fn is_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parse a JSON label (`--label-file`, the resource attribute names of the authorization model)
/// and check what a ZTDF needs of it.
pub fn label_from_json(text: &str) -> Result<SecurityLabel> {
    let label: SecurityLabel =
        serde_json::from_str(text).map_err(|e| label_err(format!("invalid label JSON: {e}")))?;
    validate(&label)?;
    Ok(label)
}

/// Parse a display marking (dive-core's grammar, e.g. `SECRET//FVEY//REL TO USA, GBR`).
pub fn label_from_marking(marking: &str) -> Result<SecurityLabel> {
    let label = SecurityLabel::parse_marking(marking).map_err(|e| label_err(e.to_string()))?;
    validate(&label)?;
    Ok(label)
}

/// What a label must satisfy to be written into a ZTDF: someone it is releasable to, and
/// COIs and caveats that can be carried as attribute values. (Coherence against the COI
/// registry is the policy's business: `SecurityLabel::coherence`.)
pub fn validate(label: &SecurityLabel) -> Result<()> {
    if label.releasability_to.is_empty() {
        return Err(label_err(
            "releasabilityTo is empty: the document would be releasable to no one",
        ));
    }
    if let Some(t) = label.coi.iter().find(|t| !is_tag(t)) {
        return Err(label_err(format!(
            "COI: {t:?} is not a valid tag (letters, digits, '-', '_')"
        )));
    }
    if let Some(t) = label.caveats.iter().find(|t| !is_tag(t)) {
        return Err(label_err(format!(
            "caveats: {t:?} is not a valid caveat (letters, digits, '-', '_')"
        )));
    }
    for (name, value) in [
        ("originalClassification", &label.original_classification),
        ("originator", &label.originator),
    ] {
        if let Some(v) = value
            .as_ref()
            .filter(|v| v.trim().is_empty() || v.len() > 128)
        {
            return Err(label_err(format!(
                "{name}: {v:?} must be 1 to 128 characters"
            )));
        }
    }
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting a valid OffsetDateTime as RFC 3339 fails only for years outside 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

/// Policy `dataAttributes` FQNs for `label` (see the module table).
pub fn to_attribute_fqns(label: &SecurityLabel, namespace: &str) -> Vec<String> {
    // Written with pushes rather than `format!`: this runs for every file created, and a
    // label easily has 40 FQNs (NATO releasability).
    let fqn = |attr: &str, value: &str, lower: bool| {
        let mut s = String::with_capacity(22 + namespace.len() + attr.len() + value.len());
        s.push_str("https://");
        s.push_str(namespace);
        s.push_str("/attr/");
        s.push_str(attr);
        s.push_str("/value/");
        pct_encode_into(value, lower, &mut s);
        s
    };
    let mut out = Vec::with_capacity(
        7 + label.releasability_to.len() + label.coi.len() + label.caveats.len(),
    );
    out.push(fqn("classification", label.classification.as_str(), true));
    out.extend(
        label
            .releasability_to
            .iter()
            .map(|c| fqn("releasableTo", c.as_str(), true)),
    );
    out.extend(label.coi.iter().map(|c| fqn("coi", c, true)));
    let op = match label.coi_operator {
        CoiOperator::All => "all",
        CoiOperator::Any => "any",
    };
    out.push(fqn("coiOperator", op, false));
    out.extend(label.caveats.iter().map(|c| fqn("caveats", c, true)));
    if let Some(o) = &label.original_classification {
        out.push(fqn("originalClassification", o, false));
    }
    if let Some(c) = &label.original_country {
        out.push(fqn("originalCountry", c.as_str(), true));
    }
    if let Some(o) = &label.originator {
        out.push(fqn("originator", o, false));
    }
    if let Some(d) = label.creation_date {
        out.push(fqn("creationDate", &rfc3339(d), false));
    }
    out.push(fqn(
        "releasableToIndustry",
        if label.releasable_to_industry {
            "true"
        } else {
            "false"
        },
        false,
    ));
    out
}

fn country(attr: &str, value: &str) -> Result<CountryCode> {
    CountryCode::new(&value.to_ascii_uppercase()).map_err(|e| label_err(format!("{attr}: {e}")))
}

/// Rebuild a label from policy FQNs of `namespace`; FQNs of other namespaces are ignored.
/// `Ok(None)` when none belongs to the namespace; an error when those that do do not form a
/// valid label.
pub fn from_attribute_fqns<'a>(
    fqns: impl IntoIterator<Item = &'a str>,
    namespace: &str,
) -> Result<Option<SecurityLabel>> {
    let prefix = format!("https://{namespace}/attr/");
    let mut classification = None;
    let mut label = SecurityLabel::new(Clearance::Unclassified, []);
    let mut any = false;
    for f in fqns {
        let Some(rest) = f.strip_prefix(&prefix) else {
            continue;
        };
        any = true;
        let (attr, value) = rest
            .split_once("/value/")
            .ok_or_else(|| label_err(format!("attribute FQN {f:?} has no '/value/' part")))?;
        let value = pct_decode(value)
            .ok_or_else(|| label_err(format!("attribute FQN {f:?} has a bad percent-encoding")))?;
        match attr {
            "classification" => {
                if classification.is_some() {
                    return Err(label_err("policy carries more than one classification"));
                }
                classification =
                    Some(value.parse::<Clearance>().map_err(|_| {
                        label_err(format!("unknown classification value {value:?}"))
                    })?);
            }
            "releasableTo" => {
                let c = country(attr, &value)?;
                if !label.releasability_to.contains(&c) {
                    label.releasability_to.push(c);
                }
            }
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
            "originalCountry" => label.original_country = Some(country(attr, &value)?),
            "originator" => label.originator = Some(value),
            "creationDate" => {
                label.creation_date =
                    Some(OffsetDateTime::parse(&value, &Rfc3339).map_err(|_| {
                        label_err(format!(
                            "creationDate: {value:?} is not an RFC 3339 timestamp"
                        ))
                    })?)
            }
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
    validate(&label)?;
    Ok(Some(label))
}

/// The STANAG 4774 confidentiality label in its STANAG 5636 JSON form (`ocl`), as carried by
/// the handling assertion. `policy_id` identifies the label policy.
pub fn to_stanag_json(label: &SecurityLabel, policy_id: &str) -> String {
    fn cat<'a>(kind: &'static str, name: &'static str, vals: Vec<&'a str>) -> StanagCategory<'a> {
        StanagCategory { kind, name, vals }
    }
    let mut catl = vec![cat(
        "P",
        "Releasable To",
        label
            .releasability_to
            .iter()
            .map(CountryCode::as_str)
            .collect(),
    )];
    if !label.coi.is_empty() {
        // ALL: holder needs every COI (restrictive); ANY: one suffices (permissive).
        let kind = if label.coi_operator == CoiOperator::All {
            "R"
        } else {
            "P"
        };
        catl.push(cat(
            kind,
            "COI",
            label.coi.iter().map(String::as_str).collect(),
        ));
    }
    if !label.caveats.is_empty() {
        catl.push(cat(
            "R",
            "Caveats",
            label.caveats.iter().map(String::as_str).collect(),
        ));
    }
    if let Some(o) = &label.original_classification {
        catl.push(cat("I", "Original Classification", vec![o]));
    }
    if let Some(c) = &label.original_country {
        catl.push(cat("I", "Original Country", vec![c.as_str()]));
    }
    if let Some(o) = &label.originator {
        catl.push(cat("I", "Originator", vec![o]));
    }
    let industry = if label.releasable_to_industry {
        "true"
    } else {
        "false"
    };
    catl.push(cat("I", "Releasable To Industry", vec![industry]));
    let dcr = label.creation_date.map(rfc3339);
    let doc = StanagLabel {
        ocl: StanagOcl {
            pol: policy_id,
            cls: label.classification.marking(),
            catl,
            dcr: dcr.as_deref(),
        },
        context: StanagContext {
            base: STANAG_5636_SCHEMA,
        },
    };
    // Serialising plain structs of strings cannot fail.
    serde_json::to_string(&doc).unwrap_or_default()
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

/// Schema URI of the STANAG 5636 JSON binding used by OpenTDF handling assertions.
pub const STANAG_5636_SCHEMA: &str = "urn:nato:stanag:5636:A:1:elements:json";

/// Percent-encode `s` (RFC 3986 unreserved characters kept), ASCII-lower-cased first if `lower`.
fn pct_encode_into(s: &str, lower: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        let b = if lower { b.to_ascii_lowercase() } else { b };
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
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
    fn markings_use_dive_core_grammar() {
        let l = label_from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap();
        assert_eq!(l.classification, Clearance::Secret);
        assert_eq!(l.coi, vec!["FVEY"]);
        assert_eq!(l.marking(), "SECRET//FVEY//REL TO USA, GBR");
        let e = label_from_marking("SEKRIT//REL TO USA")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SEKRIT"), "{e}");
        let e = label_from_marking("SECRET//FVEY").unwrap_err().to_string();
        assert!(e.contains("releasable to no one"), "{e}");
        let e = label_from_marking("SECRET//REL TO USA, UK")
            .unwrap_err()
            .to_string();
        assert!(e.contains("UK"), "{e}");
    }

    #[test]
    fn json_uses_authorization_names_and_refuses_unknown_fields() {
        let text = r#"{"classification":"TOP_SECRET","releasabilityTo":["USA","GBR"],"COI":["FVEY"],
            "coiOperator":"ANY","caveats":["NOFORN"],"originalClassification":"STRENG GEHEIM",
            "originalCountry":"DEU","creationDate":"2026-01-02T03:04:05Z","releasableToIndustry":true}"#;
        let l = label_from_json(text).unwrap();
        assert_eq!(l.coi_operator, CoiOperator::Any);
        let back = serde_json::to_value(&l).unwrap();
        assert_eq!(back["releasabilityTo"][1], "GBR");
        assert_eq!(back["COI"][0], "FVEY");
        for bad in [
            r#"{"classification":"SECRET","releasabilityTo":["USA"],"extra":1}"#,
            r#"{"classification":"SECRET","releasabilityTo":["USA"],"creationDate":"yesterday"}"#,
            r#"{"classification":"SECRET","releasabilityTo":[]}"#,
            r#"{"classification":"SECRET","releasabilityTo":["USA"],"COI":["has space"]}"#,
        ] {
            assert!(label_from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fqn_round_trip() {
        let l = label_from_json(
            r#"{"classification":"TOP_SECRET","releasabilityTo":["USA","GBR"],"COI":["FVEY","CAN-US"],
            "coiOperator":"ANY","caveats":["NOFORN"],"originalClassification":"TRÈS SECRET DÉFENSE",
            "originalCountry":"FRA","originator":"FRA/DGSE","creationDate":"2026-01-02T03:04:05Z",
            "releasableToIndustry":true}"#,
        )
        .unwrap();
        let fqns = to_attribute_fqns(&l, DEFAULT_NAMESPACE);
        assert_eq!(
            fqns[0],
            "https://dive.coalition/attr/classification/value/top_secret"
        );
        assert!(fqns.contains(&"https://dive.coalition/attr/releasableTo/value/usa".to_string()));
        assert!(fqns.contains(&"https://dive.coalition/attr/coi/value/can-us".to_string()));
        assert!(fqns.contains(
            &"https://dive.coalition/attr/creationDate/value/2026-01-02T03%3A04%3A05Z".to_string()
        ));
        assert!(fqns.contains(
            &"https://dive.coalition/attr/originalClassification/value/TR%C3%88S%20SECRET%20D%C3%89FENSE"
                .to_string()
        ));
        assert!(
            fqns.contains(&"https://dive.coalition/attr/originator/value/FRA%2FDGSE".to_string())
        );
        let mut with_foreign: Vec<&str> = fqns.iter().map(String::as_str).collect();
        with_foreign.push("https://example.com/attr/x/value/y");
        let back = from_attribute_fqns(with_foreign, DEFAULT_NAMESPACE)
            .unwrap()
            .unwrap();
        assert_eq!(back, l);
        assert!(
            from_attribute_fqns(["https://example.com/attr/x/value/y"], DEFAULT_NAMESPACE)
                .unwrap()
                .is_none()
        );
        let bad = ["https://dive.coalition/attr/releasableTo/value/zz"];
        assert!(from_attribute_fqns(bad, DEFAULT_NAMESPACE).is_err());
    }

    #[test]
    fn stanag_label_carries_the_fields() {
        let l = label_from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap();
        let v: serde_json::Value = serde_json::from_str(&to_stanag_json(&l, "DIVE")).unwrap();
        assert_eq!(v["ocl"]["cls"], "SECRET");
        assert_eq!(v["ocl"]["catl"][0]["vals"][1], "GBR");
        assert_eq!(v["ocl"]["catl"][1]["type"], "R");
    }
}
