//! Subject and resource attributes as the policy sees them, built from token claims and labels.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clearance::Clearance;
use crate::country::CountryCode;
use crate::equivalency::Equivalency;
use crate::error::CoreError;
use crate::label::SecurityLabel;

/// Authenticator assurance level (NIST SP 800-63B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Aal {
    #[serde(rename = "AAL1")]
    Aal1,
    #[serde(rename = "AAL2")]
    Aal2,
    #[serde(rename = "AAL3")]
    Aal3,
}

impl Aal {
    /// Derive the level from `acr` ("1"–"3") and `amr` (methods used). Multi-factor (two or more
    /// methods, or acr ≥ 2) is AAL2; a hardware key among several methods, or acr 3, is AAL3.
    /// An `acr` that is not a level number adds nothing (it cannot raise the level).
    pub fn derive(acr: Option<&str>, amr: &[String]) -> Aal {
        let from_acr = match acr.map(str::trim) {
            Some("3") => Aal::Aal3,
            Some("2") => Aal::Aal2,
            _ => Aal::Aal1,
        };
        let from_amr = match amr.len() {
            0 | 1 => Aal::Aal1,
            _ if amr.iter().any(|m| m == "hwk") => Aal::Aal3,
            _ => Aal::Aal2,
        };
        from_acr.max(from_amr)
    }

    pub fn level(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for Aal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AAL{}", self.level())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrganizationType {
    Gov,
    Mil,
    Industry,
}

/// How the subject authenticated: the token's `acr`, `amr`, `auth_time` and the derived AAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    pub aal: Aal,
}

/// The subject as the policy sees it. The clearance is normalised through the table of the nation
/// that issued it (`clearanceCountry`, defaulting to the country of affiliation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAttributes {
    #[serde(rename = "uniqueID")]
    pub unique_id: String,
    pub clearance: Clearance,
    pub clearance_original: String,
    pub clearance_country: CountryCode,
    pub country_of_affiliation: CountryCode,
    #[serde(rename = "acpCOI")]
    pub acp_coi: Vec<String>,
    pub organization_type: OrganizationType,
    pub issuer: String,
    pub roles: Vec<String>,
    pub authentication: Authentication,
}

impl SubjectAttributes {
    /// Build from OIDC token claims (`uniqueID`, `clearance`, `countryOfAffiliation`, optional
    /// `clearanceCountry`, `acpCOI`, `organizationType`, `acr`, `amr`, `auth_time`, `iss`,
    /// `roles` or `realm_access.roles`). Every problem names the claim.
    pub fn from_claims(
        claims: &Value,
        equivalency: &Equivalency,
    ) -> Result<SubjectAttributes, CoreError> {
        let unique_id = required_str(claims, "uniqueID")?.to_string();
        let country_of_affiliation = country_claim(claims, "countryOfAffiliation")?;
        let clearance_country = match claims.get("clearanceCountry") {
            None | Some(Value::Null) => country_of_affiliation,
            Some(_) => country_claim(claims, "clearanceCountry")?,
        };
        let clearance_original = required_str(claims, "clearance")?.to_string();
        let clearance = equivalency
            .normalize(clearance_country, &clearance_original)
            .map_err(|e| invalid("clearance", e.to_string()))?;
        let organization_type = serde_json::from_value(
            claims
                .get("organizationType")
                .cloned()
                .ok_or_else(|| CoreError::MissingClaim("organizationType".into()))?,
        )
        .map_err(|_| invalid("organizationType", "expected GOV, MIL or INDUSTRY"))?;
        let roles = match claims.get("roles") {
            Some(_) => string_array(claims, "roles")?,
            None => claims
                .get("realm_access")
                .map(|ra| string_array(ra, "roles"))
                .transpose()?
                .unwrap_or_default(),
        };
        Ok(SubjectAttributes {
            unique_id,
            clearance,
            clearance_original,
            clearance_country,
            country_of_affiliation,
            acp_coi: string_array(claims, "acpCOI")?,
            organization_type,
            issuer: required_str(claims, "iss")?.to_string(),
            roles,
            authentication: authentication(claims)?,
        })
    }
}

fn authentication(claims: &Value) -> Result<Authentication, CoreError> {
    let acr = match claims.get("acr") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(invalid("acr", "expected a string such as \"2\"")),
    };
    let amr = string_array(claims, "amr")?;
    let auth_time = match claims.get("auth_time") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid("auth_time", "expected seconds since the epoch"))?,
        ),
    };
    let aal = Aal::derive(acr.as_deref(), &amr);
    Ok(Authentication {
        acr,
        amr,
        auth_time,
        aal,
    })
}

fn invalid(claim: &str, why: impl Into<String>) -> CoreError {
    CoreError::InvalidClaim {
        claim: claim.to_string(),
        why: why.into(),
    }
}

fn required_str<'a>(claims: &'a Value, name: &str) -> Result<&'a str, CoreError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(CoreError::MissingClaim(name.to_string())),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(invalid(name, "must not be empty")),
        Some(_) => Err(invalid(name, "expected a string")),
    }
}

fn country_claim(claims: &Value, name: &str) -> Result<CountryCode, CoreError> {
    CountryCode::new(required_str(claims, name)?).map_err(|e| invalid(name, e.to_string()))
}

/// An array of strings; absent or null is empty. A comma-joined single string (an old defect)
/// is rejected rather than split, so the token issuer gets fixed.
fn string_array(claims: &Value, name: &str) -> Result<Vec<String>, CoreError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(invalid(name, "every element must be a non-empty string")),
            })
            .collect(),
        Some(_) => Err(invalid(name, "expected an array of strings")),
    }
}

/// The resource as the policy sees it: its label plus identity and ZTDF status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAttributes {
    pub resource_id: String,
    #[serde(flatten)]
    pub label: SecurityLabel,
    /// A ZTDF document: access also needs a KAS key release.
    #[serde(default)]
    pub encrypted: bool,
}

impl ResourceAttributes {
    pub fn from_label(
        resource_id: impl Into<String>,
        label: SecurityLabel,
        encrypted: bool,
    ) -> Self {
        ResourceAttributes {
            resource_id: resource_id.into(),
            label,
            encrypted,
        }
    }

    pub fn classification(&self) -> Clearance {
        self.label.classification
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        json!({
            "sub": "x", "uniqueID": "hans.muller@bund.de", "clearance": "Geheim",
            "countryOfAffiliation": "DEU", "acpCOI": ["NATO"], "organizationType": "MIL",
            "acr": "2", "amr": ["pwd", "otp"], "auth_time": 1_790_000_000, "iss": "https://idp.deu.dive",
            "realm_access": {"roles": ["dive-user"]}
        })
    }

    #[test]
    fn builds_subject_from_claims_through_national_table() {
        let s = SubjectAttributes::from_claims(&claims(), Equivalency::builtin())
            .expect("valid claims");
        assert_eq!(s.clearance, Clearance::Secret);
        assert_eq!(s.clearance_original, "Geheim");
        assert_eq!(s.clearance_country.as_str(), "DEU");
        assert_eq!(s.authentication.aal, Aal::Aal2);
        assert_eq!(s.roles, vec!["dive-user".to_string()]);
        let v = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(v["uniqueID"], "hans.muller@bund.de");
        assert_eq!(v["acpCOI"], json!(["NATO"]));
        assert_eq!(v["organizationType"], "MIL");
    }

    #[test]
    fn bad_claims_name_the_claim() {
        let eq = Equivalency::builtin();
        let err = |patch: Value| {
            let mut c = claims();
            for (k, v) in patch.as_object().into_iter().flatten() {
                c[k] = v.clone();
            }
            SubjectAttributes::from_claims(&c, eq)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(json!({"countryOfAffiliation": "deu"})).contains("countryOfAffiliation"));
        assert!(err(json!({"clearance": "MEGA GEHEIM"})).contains("unknown classification label"));
        assert!(err(json!({"acpCOI": "NATO,FVEY"})).contains("acpCOI: expected an array"));
        assert!(err(json!({"organizationType": "CIV"})).contains("organizationType"));
        assert!(err(json!({"uniqueID": null})).contains("missing claim uniqueID"));
        assert!(err(json!({"amr": [1]})).contains("amr"));
    }

    #[test]
    fn aal_from_acr_and_amr() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Aal::derive(None, &m(&["pwd"])), Aal::Aal1);
        assert_eq!(Aal::derive(Some("1"), &m(&["pwd", "otp"])), Aal::Aal2);
        assert_eq!(Aal::derive(Some("2"), &m(&["pwd"])), Aal::Aal2);
        assert_eq!(Aal::derive(None, &m(&["pwd", "hwk"])), Aal::Aal3);
        assert_eq!(Aal::derive(Some("3"), &[]), Aal::Aal3);
        assert_eq!(Aal::derive(Some("gold"), &m(&["pwd"])), Aal::Aal1);
    }
}

#[cfg(test)]
mod resource_json_tests {
    use super::*;

    #[test]
    fn resource_attributes_read_their_flattened_label() {
        let r: ResourceAttributes = serde_json::from_str(
            r#"{"resourceId":"d1","classification":"SECRET","releasabilityTo":["USA"],"encrypted":true}"#,
        )
        .unwrap();
        assert_eq!(r.label.classification, Clearance::Secret);
        assert!(r.encrypted);
        let back: ResourceAttributes =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
