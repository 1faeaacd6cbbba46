//! The OpenTDF KAS wire format in JSON: the public-key response, the rewrap request (the body of
//! the signed request token: `UnsignedRewrapRequest` in protojson form, and the legacy v1 shape),
//! and the rewrap response. Parsing names the exact field at fault, as a dotted path.
//!
//! Field names follow OpenTDF's `kas.proto` and protojson rules: lowerCamelCase `json_name`s
//! (`keyAccessObjects`, `clientPublicKey`, `type`, `url`, `sid`, `wrappedKey`, …), the proto field
//! names are accepted too (`key_access_objects`, `key_type`, …), empty strings mean absent, and
//! unknown fields are ignored.

use dive_ztdf::{KeyAccessObject, Policy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A request the KAS refuses before looking at any key: HTTP 400 with the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RequestError {
    /// Dotted path of the offending field, e.g. `requests[0].keyAccessObjects[1].keyAccessObject.wrappedKey`.
    pub field: String,
    pub reason: String,
}

impl RequestError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> RequestError {
        RequestError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The JSON body of the 400 answer: Connect's error shape plus the field.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "code": "invalid_argument",
            "message": self.to_string(),
            "field": self.field,
        })
    }
}

/// `GET /kas/v2/kas_public_key` and `kas.AccessService/PublicKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyResponse {
    #[serde(rename = "publicKey")]
    pub public_key: String,
    pub kid: String,
}

/// `POST /kas/v2/rewrap` and `kas.AccessService/Rewrap` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapRequest {
    #[serde(rename = "signedRequestToken", alias = "signed_request_token")]
    pub signed_request_token: String,
}

/// One key access object of a rewrap request.
#[derive(Debug, Clone)]
pub struct KaoRequest {
    /// `keyAccessObjectId`, echoed in the result.
    pub id: String,
    pub kao: KeyAccessObject,
}

/// The KAOs that share one policy.
#[derive(Debug, Clone)]
pub struct PolicyRequest {
    /// `policy.id`, echoed in the result (clients use the policy UUID).
    pub policy_id: String,
    /// `policy.body`: the base64 policy exactly as stored in the manifest (the binding covers it).
    pub policy_b64: String,
    /// The decoded policy. Not trusted until a KAO's binding over `policy_b64` verifies.
    pub policy: Policy,
    pub algorithm: Option<String>,
    pub kaos: Vec<KaoRequest>,
}

/// The decoded `requestBody` of a signed request token.
#[derive(Debug, Clone)]
pub struct UnsignedRewrap {
    /// PEM SubjectPublicKeyInfo the shares are rewrapped to.
    pub client_public_key: String,
    pub requests: Vec<PolicyRequest>,
    /// The legacy single-KAO request shape (`keyAccess` + `policy`), answered with
    /// `entityWrappedKey` as OpenTDF does.
    pub legacy_v1: bool,
}

/// At most this many KAOs per request (a bound on work per request).
pub const MAX_KAOS: usize = 256;

fn get<'a>(m: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| m.get(*n))
        .filter(|v| !v.is_null())
}

fn opt_string(
    m: &Map<String, Value>,
    names: &[&str],
    path: &str,
) -> Result<Option<String>, RequestError> {
    match get(m, names) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RequestError::new(
            format!("{path}.{}", names[0]),
            "must be a string",
        )),
    }
}

fn req_string(m: &Map<String, Value>, names: &[&str], path: &str) -> Result<String, RequestError> {
    opt_string(m, names, path)?.ok_or_else(|| {
        RequestError::new(
            format!("{path}.{}", names[0]),
            "is required and must be a non-empty string",
        )
    })
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, RequestError> {
    v.as_object()
        .ok_or_else(|| RequestError::new(path, "must be a JSON object"))
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

impl UnsignedRewrap {
    /// Parse the `requestBody` claim (a JSON string) of a signed request token.
    pub fn parse(request_body: &str) -> Result<UnsignedRewrap, RequestError> {
        let v: Value = serde_json::from_str(request_body).map_err(|e| {
            RequestError::new("signedRequestToken.requestBody", format!("not JSON: {e}"))
        })?;
        let m = object(&v, "signedRequestToken.requestBody")?;
        let client_public_key =
            req_string(m, &["clientPublicKey", "client_public_key"], "requestBody")?;
        let requests = match get(m, &["requests"]) {
            Some(Value::Array(a)) if !a.is_empty() => Some(a),
            Some(Value::Array(_)) | None => None,
            Some(_) => {
                return Err(RequestError::new(
                    "requestBody.requests",
                    "must be an array",
                ));
            }
        };
        let (requests, legacy_v1) = match requests {
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut total = 0;
                for (i, item) in items.iter().enumerate() {
                    let p = parse_policy_request(item, &format!("requestBody.requests[{i}]"))?;
                    total += p.kaos.len();
                    out.push(p);
                }
                if total > MAX_KAOS {
                    return Err(RequestError::new(
                        "requestBody.requests",
                        format!("{total} key access objects; at most {MAX_KAOS} per request"),
                    ));
                }
                (out, false)
            }
            None => (vec![parse_legacy(m)?], true),
        };
        Ok(UnsignedRewrap {
            client_public_key,
            requests,
            legacy_v1,
        })
    }

    pub fn kao_count(&self) -> usize {
        self.requests.iter().map(|r| r.kaos.len()).sum()
    }
}

fn parse_policy_b64(body: String, path: &str) -> Result<(String, Policy), RequestError> {
    let policy = Policy::from_base64(&body).map_err(|e| RequestError::new(path, e.to_string()))?;
    Ok((body, policy))
}

fn parse_policy_request(v: &Value, path: &str) -> Result<PolicyRequest, RequestError> {
    let m = object(v, path)?;
    let ppath = join(path, "policy");
    let pv = get(m, &["policy"]).ok_or_else(|| RequestError::new(&ppath, "is required"))?;
    let pm = object(pv, &ppath)?;
    let policy_id = req_string(pm, &["id"], &ppath)?;
    let (policy_b64, policy) =
        parse_policy_b64(req_string(pm, &["body"], &ppath)?, &join(&ppath, "body"))?;
    let algorithm = opt_string(m, &["algorithm"], path)?;
    if algorithm.as_deref() == Some("ec:secp256r1") && m.contains_key("header") {
        return Err(RequestError::new(
            join(path, "algorithm"),
            "NanoTDF rewrap is not supported by this KAS",
        ));
    }
    let kpath = join(path, "keyAccessObjects");
    let items = match get(m, &["keyAccessObjects", "key_access_objects"]) {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None => {
            return Err(RequestError::new(
                &kpath,
                "is required and must not be empty",
            ));
        }
        Some(_) => return Err(RequestError::new(&kpath, "must be an array")),
    };
    let mut kaos = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let ipath = format!("{kpath}[{j}]");
        let im = object(item, &ipath)?;
        let id = req_string(im, &["keyAccessObjectId", "key_access_object_id"], &ipath)?;
        if kaos.iter().any(|k: &KaoRequest| k.id == id) {
            return Err(RequestError::new(
                join(&ipath, "keyAccessObjectId"),
                format!("{id:?} is used twice in this policy request"),
            ));
        }
        let opath = join(&ipath, "keyAccessObject");
        let kv = get(im, &["keyAccessObject", "key_access_object"])
            .ok_or_else(|| RequestError::new(&opath, "is required"))?;
        kaos.push(KaoRequest {
            id,
            kao: parse_kao(kv, &opath)?,
        });
    }
    if kaos.len() > MAX_KAOS {
        return Err(RequestError::new(
            kpath,
            format!("at most {MAX_KAOS} key access objects per request"),
        ));
    }
    Ok(PolicyRequest {
        policy_id,
        policy_b64,
        policy,
        algorithm,
        kaos,
    })
}

/// The v1 shape: `{clientPublicKey, keyAccess, policy, algorithm}`.
fn parse_legacy(m: &Map<String, Value>) -> Result<PolicyRequest, RequestError> {
    let Some(kv) = get(m, &["keyAccess", "key_access"]) else {
        return Err(RequestError::new(
            "requestBody.requests",
            "is required and must not be empty",
        ));
    };
    let kao = parse_kao(kv, "requestBody.keyAccess")?;
    let (policy_b64, policy) = parse_policy_b64(
        req_string(m, &["policy"], "requestBody")?,
        "requestBody.policy",
    )?;
    Ok(PolicyRequest {
        policy_id: "policy-1".to_string(),
        policy_b64,
        policy,
        algorithm: opt_string(m, &["algorithm"], "requestBody")?,
        kaos: vec![KaoRequest {
            id: "kao-0".to_string(),
            kao,
        }],
    })
}

/// Wire names (json_name and proto name) → the manifest names `KeyAccessObject::from_json` reads.
const KAO_FIELDS: &[(&[&str], &str)] = &[
    (&["type", "keyType", "key_type"], "type"),
    (&["url", "kasUrl", "kas_url"], "url"),
    (&["kas"], "kas"),
    (&["alg"], "alg"),
    (&["kid"], "kid"),
    (&["sid", "splitId", "split_id"], "sid"),
    (&["wrappedKey", "wrapped_key"], "wrappedKey"),
    (&["protectedKey", "protected_key"], "protectedKey"),
    (
        &["ephemeralPublicKey", "ephemeral_public_key"],
        "ephemeralPublicKey",
    ),
    (&["ephemeralKey", "ephemeral_key"], "ephemeralKey"),
    (
        &["encryptedMetadata", "encrypted_metadata"],
        "encryptedMetadata",
    ),
    (&["protocol"], "protocol"),
    (&["schemaVersion", "schema_version"], "schemaVersion"),
];

/// Normalise a wire KAO and parse it with the BaseTDF rules of dive-ztdf.
fn parse_kao(v: &Value, path: &str) -> Result<KeyAccessObject, RequestError> {
    let m = object(v, path)?;
    if let Some(h) = get(m, &["header"])
        && h.as_str().is_some_and(|s| !s.is_empty())
    {
        return Err(RequestError::new(
            join(path, "header"),
            "NanoTDF rewrap is not supported by this KAS",
        ));
    }
    let mut out = Map::new();
    for (names, canonical) in KAO_FIELDS {
        if let Some(s) = opt_string(m, names, path)? {
            // protojson `bytes` may arrive URL-safe; the manifest form is standard base64.
            let s = if matches!(*canonical, "wrappedKey" | "protectedKey") {
                s.replace('-', "+").replace('_', "/")
            } else {
                s
            };
            out.insert((*canonical).to_string(), Value::String(s));
        }
    }
    let bpath = join(path, "policyBinding");
    match get(m, &["policyBinding", "policy_binding"]) {
        None => return Err(RequestError::new(&bpath, "is required")),
        Some(Value::String(s)) => {
            out.insert("policyBinding".into(), Value::String(s.clone()));
        }
        Some(Value::Object(b)) => {
            let hash = req_string(b, &["hash"], &bpath)?;
            let alg = opt_string(b, &["alg", "algorithm"], &bpath)?.unwrap_or("HS256".into());
            out.insert(
                "policyBinding".into(),
                serde_json::json!({"alg": alg, "hash": hash}),
            );
        }
        Some(_) => {
            return Err(RequestError::new(
                &bpath,
                "must be an object {alg, hash} or a string",
            ));
        }
    }
    KeyAccessObject::from_json(&Value::Object(out))
        .map_err(|e| RequestError::new(path, e.to_string()))
}

/// One KAO's outcome as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KaoResult {
    #[serde(rename = "keyAccessObjectId")]
    pub key_access_object_id: String,
    /// `permit` or `fail`.
    pub status: String,
    /// Base64 of the share rewrapped to the client key (on `permit`).
    #[serde(
        rename = "kasWrappedKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kas_wrapped_key: Option<String>,
    /// The same text for every failure (no oracle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyResult {
    #[serde(rename = "policyId")]
    pub policy_id: String,
    pub results: Vec<KaoResult>,
}

/// The rewrap response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapResponse {
    /// PEM of the KAS's per-request ephemeral EC key (EC client keys only).
    #[serde(
        rename = "sessionPublicKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_public_key: Option<String>,
    pub responses: Vec<PolicyResult>,
    /// Legacy v1 answers: the single share, rewrapped.
    #[serde(
        rename = "entityWrappedKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entity_wrapped_key: Option<String>,
}

pub const PERMIT: &str = "permit";
pub const FAIL: &str = "fail";
/// What every failed KAO says, whatever the reason (the reason is in the audit log).
pub const FAIL_MESSAGE: &str = "forbidden";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy_b64() -> String {
        Policy::new(vec!["https://x/attr/a/value/b".into()], vec![])
            .unwrap()
            .to_base64()
            .unwrap()
    }

    fn body(kao: Value) -> String {
        json!({"clientPublicKey": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
               "requests": [{"policy": {"id": "p1", "body": policy_b64()},
                             "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": kao}]}]})
        .to_string()
    }

    #[test]
    fn accepts_opentdf_rust_and_go_shapes() {
        // opentdf-rs: policyBinding {hash, algorithm}.
        let rs = json!({"type": "wrapped", "url": "https://kas/kas", "protocol": "kas",
                        "wrappedKey": "AAAA", "policyBinding": {"hash": "aGFzaA==", "algorithm": "HS256"},
                        "kid": "r-1"});
        let r = UnsignedRewrap::parse(&body(rs)).unwrap();
        assert_eq!(r.requests[0].kaos[0].kao.kid.as_deref(), Some("r-1"));
        assert_eq!(r.requests[0].kaos[0].kao.policy_binding, "aGFzaA==");
        // protojson from the Go SDK: binding json_name "alg", empty strings omitted, proto names.
        let go = json!({"key_type": "ec-wrapped", "kas_url": "https://kas/kas", "protocol": "kas",
                        "wrapped_key": "AA-_", "policy_binding": {"alg": "HS256", "hash": "aA=="},
                        "ephemeral_public_key": "PEM", "split_id": "s-0", "kid": "",
                        "unknownFutureField": 1});
        let r = UnsignedRewrap::parse(&body(go)).unwrap();
        let kao = &r.requests[0].kaos[0].kao;
        assert_eq!(kao.alg, dive_ztdf::KeyAlg::EcdhHkdf);
        assert_eq!(kao.protected_key, "AA+/");
        assert_eq!(kao.kid, None);
        assert_eq!(kao.sid.as_deref(), Some("s-0"));
        assert!(!r.legacy_v1);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |b: String| UnsignedRewrap::parse(&b).unwrap_err().field;
        assert_eq!(
            err(body(
                json!({"type": "wrapped", "url": "https://k", "wrappedKey": "AA=="})
            )),
            "requestBody.requests[0].keyAccessObjects[0].keyAccessObject.policyBinding"
        );
        assert_eq!(err("{}".into()), "requestBody.clientPublicKey");
        assert_eq!(err("[1]".into()), "signedRequestToken.requestBody");
        let mut v: Value = serde_json::from_str(&body(json!({}))).unwrap();
        v["requests"][0]["policy"]["body"] = json!("!!!");
        assert_eq!(err(v.to_string()), "requestBody.requests[0].policy.body");
        v["requests"][0]["policy"]["body"] = json!(policy_b64());
        v["requests"][0]["keyAccessObjects"] = json!([]);
        assert_eq!(
            err(v.to_string()),
            "requestBody.requests[0].keyAccessObjects"
        );
        let kao_err = UnsignedRewrap::parse(&body(json!({"type": "weird", "url": "https://k",
            "wrappedKey": "AA==", "policyBinding": {"alg": "HS256", "hash": "AA=="}})))
        .unwrap_err();
        assert_eq!(
            kao_err.field,
            "requestBody.requests[0].keyAccessObjects[0].keyAccessObject"
        );
        assert!(kao_err.reason.contains("kao.unknown_type"), "{kao_err}");
    }

    #[test]
    fn legacy_v1_body() {
        let v = json!({"clientPublicKey": "PEM", "policy": policy_b64(), "algorithm": "rsa:2048",
                       "keyAccess": {"type": "wrapped", "url": "https://k", "protocol": "kas",
                                     "wrappedKey": "AA==", "policyBinding": "aGFzaA=="}});
        let r = UnsignedRewrap::parse(&v.to_string()).unwrap();
        assert!(r.legacy_v1);
        assert_eq!(r.requests[0].kaos[0].id, "kao-0");
    }
}
