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
    pub evaluation_details: Value,
    /// The policy and data version that decided (for audit); absent on evaluation failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
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
            evaluation_details: Value::Null,
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
