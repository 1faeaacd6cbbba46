//! The input document of a decision: `{subject, action, resource, context}`.

use std::hash::{DefaultHasher, Hash, Hasher};

use dive_core::{ResourceAttributes, SubjectAttributes};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A decision input, with its cache key computed once. Any JSON is accepted: malformed input is
/// for the policy to deny with a reason, not for the caller to crash on.
#[derive(Debug, Clone)]
pub struct Input {
    json: Value,
    key: u64,
}

/// Request facts that are not attributes of the subject or the resource.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The caller verified the ZTDF payload and policy binding (`None`: not reported).
    pub integrity_verified: Option<bool>,
    /// Decide as of this time instead of now (replays, tests).
    pub current_time: Option<OffsetDateTime>,
}

impl Input {
    /// From an input document, or the same wrapped as `{"input": …}` (the OPA request body).
    pub fn from_json(value: Value) -> Input {
        let json = match value {
            Value::Object(mut m) if m.len() == 1 && m.contains_key("input") => {
                m.remove("input").unwrap_or(Value::Null)
            }
            other => other,
        };
        let key = hash_value(&json);
        Input { json, key }
    }

    /// From normalised attributes: the subject is taken as authenticated (it came from a
    /// validated token), its `acr`/`amr`/`auth_time` go to the context.
    pub fn new(
        subject: &SubjectAttributes,
        action: &str,
        resource: &ResourceAttributes,
        context: &RequestContext,
    ) -> Input {
        let mut s = serde_json::to_value(subject).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut s {
            m.remove("authentication");
            m.insert("authenticated".into(), Value::Bool(true));
        }
        let authn = &subject.authentication;
        let mut ctx = Map::new();
        if let Some(acr) = &authn.acr {
            ctx.insert("acr".into(), Value::String(acr.clone()));
        }
        ctx.insert("amr".into(), json!(authn.amr));
        if let Some(t) = authn.auth_time {
            ctx.insert("auth_time".into(), json!(t));
        }
        if let Some(v) = context.integrity_verified {
            ctx.insert("integrityVerified".into(), Value::Bool(v));
        }
        if let Some(t) = context.current_time.and_then(|t| t.format(&Rfc3339).ok()) {
            ctx.insert("currentTime".into(), Value::String(t));
        }
        Input::from_json(json!({
            "subject": s,
            "action": {"operation": action},
            "resource": resource,
            "context": Value::Object(ctx),
        }))
    }

    pub fn as_json(&self) -> &Value {
        &self.json
    }

    pub fn into_json(self) -> Value {
        self.json
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// The resource's creation date, when it is a valid RFC 3339 timestamp.
    pub(crate) fn creation_date(&self) -> Option<OffsetDateTime> {
        let s = self.json.pointer("/resource/creationDate")?.as_str()?;
        OffsetDateTime::parse(s, &Rfc3339).ok()
    }

    /// Whether the caller fixed the decision time (then the decision does not depend on now).
    pub(crate) fn has_current_time(&self) -> bool {
        self.json.pointer("/context/currentTime").is_some()
    }
}

/// A structural hash of a JSON value (serde_json objects iterate in key order, so equal
/// documents hash equally). Cache hits also compare the whole document, so a collision can never
/// return another input's decision.
fn hash_value(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    walk(v, &mut h);
    h.finish()
}

fn walk(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.as_f64().map(f64::to_bits), n.as_i64()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| walk(x, h));
        }
        Value::Object(m) => {
            (5u8, m.len()).hash(h);
            for (k, x) in m {
                k.hash(h);
                walk(x, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_opa_request_bodies_and_keys_on_every_field() {
        let doc = json!({"subject": {"acpCOI": ["NATO"]}, "action": "read"});
        let a = Input::from_json(json!({ "input": doc.clone() }));
        let b = Input::from_json(doc);
        assert_eq!(a.as_json(), b.as_json());
        assert_eq!(a.key(), b.key());
        let c =
            Input::from_json(json!({"subject": {"acpCOI": ["NATO", "FVEY"]}, "action": "read"}));
        let d = Input::from_json(json!({"subject": {"acpCOI": ["NATO"]}, "action": "upload"}));
        assert_ne!(a.key(), c.key());
        assert_ne!(a.key(), d.key());
    }
}
