//! The decision: `{allow, reason, obligations, evaluation_details}`, cheap to clone and share.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The fields of a decision, as the policy produces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionData {
    pub allow: bool,
    pub reason: String,
    #[serde(default)]
    pub obligations: Vec<Value>,
    #[serde(default)]
    pub evaluation_details: Details,
    /// The policy and data version that decided (for audit); absent on evaluation failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// The policy's `evaluation_details`, kept as the engine produced them and converted to JSON on
/// first use: most decisions are only asked for `allow` and `reason` (the KAS, cache hits of
/// callers that show no details), and the conversion was a sixth of an uncached decision. Reads
/// like a `serde_json::Value` (it dereferences to one).
#[derive(Clone, Default)]
pub struct Details {
    engine: Option<regorus::Value>,
    json: OnceLock<Value>,
}

impl Details {
    fn from_engine(v: regorus::Value) -> Details {
        Details {
            engine: Some(v),
            json: OnceLock::new(),
        }
    }

    /// The string at `path` (object keys), read without converting the whole document.
    pub(crate) fn str_at(&self, path: &[&str]) -> Option<String> {
        match (self.json.get(), &self.engine) {
            (None, Some(v)) => {
                let mut at = v;
                for k in path {
                    at = at.as_object().ok()?.get(&regorus::Value::from(*k))?;
                }
                at.as_string().ok().map(|s| s.to_string())
            }
            _ => {
                let mut at: &Value = self;
                for k in path {
                    at = at.get(*k)?;
                }
                at.as_str().map(str::to_string)
            }
        }
    }
}

impl From<Value> for Details {
    fn from(v: Value) -> Details {
        Details {
            engine: None,
            json: OnceLock::from(v),
        }
    }
}

impl Deref for Details {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.json
            .get_or_init(|| self.engine.as_ref().map_or(Value::Null, to_json))
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Details) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Details {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for Details {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Details {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Details, D::Error> {
        Value::deserialize(d).map(Details::from)
    }
}

/// A decision; clones share one allocation (the cache hands out the same decision many times),
/// including its JSON text, serialised once on first use.
#[derive(Debug, Clone)]
pub struct Decision(Arc<DecisionData>, Arc<OnceLock<String>>);

impl PartialEq for Decision {
    fn eq(&self, other: &Decision) -> bool {
        self.0 == other.0
    }
}

impl Decision {
    pub(crate) fn new(data: DecisionData) -> Decision {
        Decision(Arc::new(data), Arc::new(OnceLock::new()))
    }

    /// The decision as compact JSON text (computed once per decision, shared by cache hits).
    pub fn json_text(&self) -> &str {
        self.1
            .get_or_init(|| serde_json::to_string(&*self.0).unwrap_or_else(|_| "null".into()))
    }

    /// Fail closed: a deny carrying the reason the policy could not decide.
    pub fn fail_closed(why: impl std::fmt::Display) -> Decision {
        Decision::new(DecisionData {
            allow: false,
            reason: format!("Policy evaluation failed, access denied: {why}"),
            obligations: Vec::new(),
            evaluation_details: Details::default(),
            policy_version: None,
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&*self.0).unwrap_or(Value::Null)
    }
}

impl Deref for Decision {
    type Target = DecisionData;
    fn deref(&self) -> &DecisionData {
        &self.0
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// The decision document a policy produced (`{allow, reason, obligations, evaluation_details}`),
/// read straight from the engine's value. Anything else is an error, so the PDP fails closed.
pub(crate) fn from_policy_value(value: &regorus::Value) -> Result<DecisionData, String> {
    use regorus::Value as R;
    let obj = match value {
        R::Undefined => return Err("the policy produced no decision".into()),
        R::Object(o) => o,
        other => {
            return Err(format!(
                "malformed decision: expected an object, got {other}"
            ));
        }
    };
    // The field names as engine strings, built once (a lookup by a fresh string allocates).
    static KEYS: OnceLock<[R; 4]> = OnceLock::new();
    let [k_allow, k_reason, k_obligations, k_details] =
        KEYS.get_or_init(|| ["allow", "reason", "obligations", "evaluation_details"].map(R::from));
    let field = |key: &R| obj.get(key);
    let allow = match field(k_allow) {
        Some(R::Bool(b)) => *b,
        other => {
            return Err(format!(
                "malformed decision: allow must be true or false, got {}",
                other.map_or("nothing".into(), |v| v.to_string())
            ));
        }
    };
    let reason = match field(k_reason) {
        Some(R::String(s)) => s.to_string(),
        other => {
            return Err(format!(
                "malformed decision: reason must be a string, got {}",
                other.map_or("nothing".into(), |v| v.to_string())
            ));
        }
    };
    let obligations = match field(k_obligations).map(to_json) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "malformed decision: obligations must be an array, got {other}"
            ));
        }
    };
    Ok(DecisionData {
        allow,
        reason,
        obligations,
        evaluation_details: field(k_details)
            .cloned()
            .map_or_else(Details::default, Details::from_engine),
        policy_version: None,
    })
}

/// An engine value as JSON (sets become arrays; non-string object keys their JSON text).
pub(crate) fn to_json(v: &regorus::Value) -> Value {
    use regorus::Value as R;
    match v {
        R::Null | R::Undefined => Value::Null,
        R::Bool(b) => Value::Bool(*b),
        R::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .or_else(|| {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or(Value::Null),
        R::String(s) => Value::String(s.to_string()),
        R::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        R::Set(s) => Value::Array(s.iter().map(to_json).collect()),
        R::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        R::String(s) => s.to_string(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_the_same_before_and_after_conversion() {
        let doc = serde_json::json!({"resource": {"classification": "SECRET", "rank": 3}, "checks": {"coi": true}});
        let details = Details::from_engine(regorus::Value::from(doc.clone()));
        // Read from the engine's value: nothing converted yet.
        assert_eq!(
            details.str_at(&["resource", "classification"]).as_deref(),
            Some("SECRET")
        );
        assert!(details.json.get().is_none());
        assert_eq!(details.str_at(&["resource", "rank"]), None);
        assert_eq!(details.str_at(&["nothing", "here"]), None);
        // Converted on first use, then read from the JSON.
        assert_eq!(*details, doc);
        assert_eq!(details["checks"]["coi"], true);
        assert_eq!(
            details.str_at(&["resource", "classification"]).as_deref(),
            Some("SECRET")
        );
        assert_eq!(serde_json::to_value(&details).unwrap(), doc);
        assert_eq!(Details::default(), Details::from(Value::Null));
    }
}
