//! Key access objects (KAOs): parsing with the BaseTDF 4.4 rules (canonical fields, legacy
//! aliases, conflicts), serialisation, policy binding and encrypted metadata.

use std::fmt;

use serde_json::{Map, Value};

use crate::crypto::{self, b64};
use crate::error::{Error, Result};

/// Key protection algorithm (`alg`, or derived from the legacy `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1 (legacy `wrapped`).
    RsaOaep,
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256.
    RsaOaep256,
    /// Ephemeral ECDH, HKDF-SHA256 (salt SHA-256("TDF")), AES-256-GCM (legacy `ec-wrapped`).
    EcdhHkdf,
    MlKem768,
    MlKem1024,
    XEcdhMlKem768,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::RsaOaep => "RSA-OAEP",
            KeyAlg::RsaOaep256 => "RSA-OAEP-256",
            KeyAlg::EcdhHkdf => "ECDH-HKDF",
            KeyAlg::MlKem768 => "ML-KEM-768",
            KeyAlg::MlKem1024 => "ML-KEM-1024",
            KeyAlg::XEcdhMlKem768 => "X-ECDH-ML-KEM-768",
        }
    }

    pub fn parse(s: &str) -> Option<KeyAlg> {
        Some(match s {
            "RSA-OAEP" => KeyAlg::RsaOaep,
            "RSA-OAEP-256" => KeyAlg::RsaOaep256,
            "ECDH-HKDF" => KeyAlg::EcdhHkdf,
            "ML-KEM-768" => KeyAlg::MlKem768,
            "ML-KEM-1024" => KeyAlg::MlKem1024,
            "X-ECDH-ML-KEM-768" => KeyAlg::XEcdhMlKem768,
            _ => return None,
        })
    }

    /// The legacy `type` value this algorithm is written as, for 4.3 readers.
    pub fn legacy_type(self) -> Option<&'static str> {
        match self {
            KeyAlg::RsaOaep | KeyAlg::RsaOaep256 => Some("wrapped"),
            KeyAlg::EcdhHkdf => Some("ec-wrapped"),
            _ => None,
        }
    }

    fn needs_ephemeral_key(self) -> bool {
        !matches!(self, KeyAlg::RsaOaep | KeyAlg::RsaOaep256)
    }
}

/// The conformance error codes of the BaseTDF KAO test vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KaoErrorCode {
    MissingRequiredField,
    PolicyBindingMissing,
    UnknownAlg,
    UnknownType,
    SchemaViolation,
    AliasConflict,
    AlgTypeConflict,
    EphemeralKeyRequired,
    PolicyBindingAlgUnsupported,
    PolicyBindingMismatch,
    UnsupportedAlg,
    InvalidEncoding,
    UnwrapFailed,
    MetadataDecryptFailed,
}

impl KaoErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            KaoErrorCode::MissingRequiredField => "kao.missing_required_field",
            KaoErrorCode::PolicyBindingMissing => "kao.policy_binding_missing",
            KaoErrorCode::UnknownAlg => "kao.unknown_alg",
            KaoErrorCode::UnknownType => "kao.unknown_type",
            KaoErrorCode::SchemaViolation => "kao.schema_violation",
            KaoErrorCode::AliasConflict => "kao.alias_conflict",
            KaoErrorCode::AlgTypeConflict => "kao.alg_type_conflict",
            KaoErrorCode::EphemeralKeyRequired => "kao.ephemeral_key_required",
            KaoErrorCode::PolicyBindingAlgUnsupported => "kao.policy_binding_alg_unsupported",
            KaoErrorCode::PolicyBindingMismatch => "kao.policy_binding_mismatch",
            KaoErrorCode::UnsupportedAlg => "kao.unsupported_alg",
            KaoErrorCode::InvalidEncoding => "kao.invalid_encoding",
            KaoErrorCode::UnwrapFailed => "kao.unwrap_failed",
            KaoErrorCode::MetadataDecryptFailed => "kao.metadata_decrypt_failed",
        }
    }
}

impl fmt::Display for KaoErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A KAO-level failure: its conformance code and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KaoError {
    pub code: KaoErrorCode,
    pub detail: String,
}

impl KaoError {
    pub fn new(code: KaoErrorCode, detail: impl Into<String>) -> Self {
        KaoError {
            code,
            detail: detail.into(),
        }
    }
    pub fn at(self, index: usize) -> Error {
        Error::Kao {
            index,
            code: self.code,
            detail: self.detail,
        }
    }
}

impl fmt::Display for KaoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "alg",
    "type",
    "kas",
    "url",
    "kid",
    "sid",
    "protectedKey",
    "wrappedKey",
    "ephemeralKey",
    "ephemeralPublicKey",
    "policyBinding",
    "encryptedMetadata",
    "protocol",
    "schemaVersion",
];

/// A normalised key access object (v4.4 names, aliases resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccessObject {
    pub alg: KeyAlg,
    pub kas: String,
    pub kid: Option<String>,
    pub sid: Option<String>,
    /// Base64 of the protected (wrapped) DEK share.
    pub protected_key: String,
    /// PEM or base64 ephemeral public key / KEM ciphertext.
    pub ephemeral_key: Option<String>,
    /// Base64 HMAC of the policy (raw, or legacy hex-then-base64).
    pub policy_binding: String,
    pub encrypted_metadata: Option<String>,
    pub schema_version: Option<String>,
}

/// Optional string field; legacy writers put `null` where they mean absent.
fn opt_str(m: &Map<String, Value>, key: &str) -> std::result::Result<Option<String>, KaoError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(KaoError::new(
            KaoErrorCode::SchemaViolation,
            format!("field {key:?} must be a string"),
        )),
    }
}

/// Resolve a canonical field and its legacy alias; both present must agree.
fn aliased(
    m: &Map<String, Value>,
    canonical: &str,
    legacy: &str,
) -> std::result::Result<Option<String>, KaoError> {
    let a = opt_str(m, canonical)?;
    let b = opt_str(m, legacy)?;
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(KaoError::new(
            KaoErrorCode::AliasConflict,
            format!("{canonical:?} and its legacy alias {legacy:?} differ"),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

impl KeyAccessObject {
    /// Parse and validate one KAO from the manifest (v4.4 rules, accepting 4.3 aliases).
    pub fn from_json(v: &Value) -> std::result::Result<Self, KaoError> {
        let m = v.as_object().ok_or_else(|| {
            KaoError::new(KaoErrorCode::SchemaViolation, "a KAO must be an object")
        })?;
        if let Some(unknown) = m.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err(KaoError::new(
                KaoErrorCode::SchemaViolation,
                format!("unknown field {unknown:?}"),
            ));
        }
        let alg_s = opt_str(m, "alg")?;
        let type_s = opt_str(m, "type")?;
        let kas = aliased(m, "kas", "url")?;
        let protected_key = aliased(m, "protectedKey", "wrappedKey")?;
        let ephemeral_key = aliased(m, "ephemeralKey", "ephemeralPublicKey")?;
        if alg_s.is_none() && type_s.is_none() {
            return Err(KaoError::new(
                KaoErrorCode::MissingRequiredField,
                "neither \"alg\" nor \"type\" is present",
            ));
        }
        let kas = kas.ok_or_else(|| {
            KaoError::new(
                KaoErrorCode::MissingRequiredField,
                "neither \"kas\" nor \"url\" is present",
            )
        })?;
        let protected_key = protected_key.ok_or_else(|| {
            KaoError::new(
                KaoErrorCode::MissingRequiredField,
                "neither \"protectedKey\" nor \"wrappedKey\" is present",
            )
        })?;
        let policy_binding = parse_binding(m.get("policyBinding"))?;
        let alg = resolve_alg(alg_s.as_deref(), type_s.as_deref())?;
        if alg.needs_ephemeral_key() && ephemeral_key.is_none() {
            return Err(KaoError::new(
                KaoErrorCode::EphemeralKeyRequired,
                format!("{} needs \"ephemeralKey\"", alg.as_str()),
            ));
        }
        if !kas.contains(':') {
            return Err(KaoError::new(
                KaoErrorCode::SchemaViolation,
                format!("KAS URL {kas:?} is not a URI"),
            ));
        }
        if let Some(p) = m.get("protocol").filter(|p| !p.is_null())
            && p != "kas"
        {
            return Err(KaoError::new(
                KaoErrorCode::SchemaViolation,
                "\"protocol\" must be \"kas\"",
            ));
        }
        Ok(KeyAccessObject {
            alg,
            kas,
            kid: opt_str(m, "kid")?,
            sid: opt_str(m, "sid")?.filter(|s| !s.is_empty()),
            protected_key,
            ephemeral_key,
            policy_binding,
            encrypted_metadata: opt_str(m, "encryptedMetadata")?.filter(|s| !s.is_empty()),
            schema_version: opt_str(m, "schemaVersion")?,
        })
    }

    /// Serialise with the v4.4 `alg` plus the legacy field names every 4.3 reader knows.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("alg".into(), self.alg.as_str().into());
        if let Some(t) = self.alg.legacy_type() {
            m.insert("type".into(), t.into());
        }
        m.insert("url".into(), self.kas.clone().into());
        m.insert("protocol".into(), "kas".into());
        m.insert("wrappedKey".into(), self.protected_key.clone().into());
        let mut b = Map::new();
        b.insert("alg".into(), "HS256".into());
        b.insert("hash".into(), self.policy_binding.clone().into());
        m.insert("policyBinding".into(), Value::Object(b));
        if let Some(md) = &self.encrypted_metadata {
            m.insert("encryptedMetadata".into(), md.clone().into());
        }
        if let Some(kid) = &self.kid {
            m.insert("kid".into(), kid.clone().into());
        }
        if let Some(sid) = &self.sid {
            m.insert("sid".into(), sid.clone().into());
        }
        m.insert(
            "schemaVersion".into(),
            self.schema_version
                .clone()
                .unwrap_or_else(|| "1.0".into())
                .into(),
        );
        if let Some(e) = &self.ephemeral_key {
            m.insert("ephemeralPublicKey".into(), e.clone().into());
        }
        Value::Object(m)
    }

    /// The split this KAO belongs to (`""` for unsplit legacy files).
    pub fn split_id(&self) -> &str {
        self.sid.as_deref().unwrap_or("")
    }

    pub fn protected_key_bytes(&self) -> std::result::Result<Vec<u8>, KaoError> {
        b64::decode(&self.protected_key).ok_or_else(|| {
            KaoError::new(
                KaoErrorCode::InvalidEncoding,
                "protected key is not valid base64",
            )
        })
    }

    /// Check the binding of `policy_b64` (exactly as stored in the manifest) to `share`.
    pub fn verify_policy_binding(&self, share: &[u8], policy_b64: &str) -> bool {
        verify_binding(&self.policy_binding, share, policy_b64)
    }

    /// Decrypt `encryptedMetadata` with the share; `Ok(None)` when there is none.
    pub fn decrypt_metadata(&self, share: &[u8]) -> std::result::Result<Option<Vec<u8>>, KaoError> {
        let Some(md) = &self.encrypted_metadata else {
            return Ok(None);
        };
        let fail = |d: &str| KaoError::new(KaoErrorCode::MetadataDecryptFailed, d.to_string());
        let json = b64::decode(md).ok_or_else(|| fail("encryptedMetadata is not base64"))?;
        let v: Value =
            serde_json::from_slice(&json).map_err(|_| fail("encryptedMetadata is not JSON"))?;
        let ct = v
            .get("ciphertext")
            .and_then(Value::as_str)
            .and_then(b64::decode)
            .ok_or_else(|| fail("encryptedMetadata has no base64 \"ciphertext\""))?;
        let key = crypto::gcm_key(share).map_err(|_| fail("share is not an AES-256 key"))?;
        let pt = crypto::gcm_open(&key, &ct)
            .ok_or_else(|| fail("metadata does not authenticate under the share"))?;
        Ok(Some(pt.to_vec()))
    }
}

fn resolve_alg(alg: Option<&str>, ty: Option<&str>) -> std::result::Result<KeyAlg, KaoError> {
    let from_type = match ty {
        None => None,
        Some("wrapped") => Some("wrapped"),
        Some("ec-wrapped") => Some("ec-wrapped"),
        Some("remote") => {
            return Err(KaoError::new(
                KaoErrorCode::UnsupportedAlg,
                "KAO type \"remote\" carries no wrapped key",
            ));
        }
        Some(other) => {
            return Err(KaoError::new(
                KaoErrorCode::UnknownType,
                format!("unknown KAO type {other:?}"),
            ));
        }
    };
    match alg {
        Some(a) => {
            let alg = KeyAlg::parse(a).ok_or_else(|| {
                KaoError::new(KaoErrorCode::UnknownAlg, format!("unknown alg {a:?}"))
            })?;
            if let Some(t) = from_type
                && alg.legacy_type() != Some(t)
            {
                return Err(KaoError::new(
                    KaoErrorCode::AlgTypeConflict,
                    format!("alg {:?} contradicts legacy type {t:?}", alg.as_str()),
                ));
            }
            Ok(alg)
        }
        None => Ok(match from_type {
            Some("ec-wrapped") => KeyAlg::EcdhHkdf,
            _ => KeyAlg::RsaOaep,
        }),
    }
}

fn parse_binding(v: Option<&Value>) -> std::result::Result<String, KaoError> {
    match v {
        None | Some(Value::Null) => Err(KaoError::new(
            KaoErrorCode::PolicyBindingMissing,
            "no \"policyBinding\"",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| *k != "alg" && *k != "hash") {
                return Err(KaoError::new(
                    KaoErrorCode::SchemaViolation,
                    format!("policyBinding has unknown field {k:?}"),
                ));
            }
            let alg = o.get("alg").and_then(Value::as_str);
            let hash = o.get("hash").and_then(Value::as_str);
            match (alg, hash) {
                (Some("HS256"), Some(h)) => Ok(h.to_string()),
                (Some(a), Some(_)) => Err(KaoError::new(
                    KaoErrorCode::PolicyBindingAlgUnsupported,
                    format!("policy binding alg {a:?} is not HS256"),
                )),
                _ => Err(KaoError::new(
                    KaoErrorCode::SchemaViolation,
                    "policyBinding needs string \"alg\" and \"hash\"",
                )),
            }
        }
        Some(_) => Err(KaoError::new(
            KaoErrorCode::SchemaViolation,
            "policyBinding must be an object or a string",
        )),
    }
}

/// `base64(HMAC-SHA256(share, policy_b64))`, the 4.4 policy binding.
pub fn policy_binding(share: &[u8], policy_b64: &str) -> String {
    b64::encode(crypto::hmac_sha256(share, policy_b64.as_bytes()))
}

/// Verify a binding in the raw (4.4) or legacy hex-then-base64 form, in constant time.
pub fn verify_binding(binding_b64: &str, share: &[u8], policy_b64: &str) -> bool {
    let Some(decoded) = b64::decode(binding_b64) else {
        return false;
    };
    match decoded.len() {
        32 => crypto::hmac_sha256_verify(share, policy_b64.as_bytes(), &decoded),
        64 => {
            let expect = hex::encode(crypto::hmac_sha256(share, policy_b64.as_bytes()));
            let got = decoded.to_ascii_lowercase();
            crypto::ct_eq(expect.as_bytes(), &got)
        }
        _ => false,
    }
}

/// `base64(JSON{ciphertext: base64(IV‖ct‖tag), iv: base64(IV)})` under the share.
pub fn encrypt_metadata(share: &[u8], metadata: &[u8]) -> Result<String> {
    let key = crypto::gcm_key(share)?;
    let blob = crypto::gcm_seal(&key, metadata)?;
    let json = serde_json::json!({
        "ciphertext": b64::encode(&blob),
        "iv": b64::encode(&blob[..crypto::IV_LEN]),
    });
    Ok(b64::encode(json.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"alg":"RSA-OAEP","kas":"https://kas.example","protectedKey":"AAAA",
               "policyBinding":{"alg":"HS256","hash":"AAAA"}})
    }

    #[test]
    fn legacy_type_only_maps_to_alg() {
        let v = json!({"type":"ec-wrapped","url":"http://k","wrappedKey":"AA==","ephemeralPublicKey":"x",
                       "policyBinding":"abc","sid":null,"encryptedMetadata":null});
        let k = KeyAccessObject::from_json(&v).unwrap();
        assert_eq!(k.alg, KeyAlg::EcdhHkdf);
        assert_eq!(k.policy_binding, "abc");
        assert_eq!(k.split_id(), "");
    }

    #[test]
    fn round_trips_through_json() {
        let k = KeyAccessObject::from_json(&base()).unwrap();
        assert_eq!(
            KeyAccessObject::from_json(&k.to_json()).unwrap(),
            KeyAccessObject {
                schema_version: Some("1.0".into()),
                ..k
            }
        );
    }

    #[test]
    fn codes() {
        let mut v = base();
        v["alg"] = "ECDH-HKDF".into();
        assert_eq!(
            KeyAccessObject::from_json(&v).unwrap_err().code,
            KaoErrorCode::EphemeralKeyRequired
        );
        let mut v = base();
        v["type"] = "weird".into();
        assert_eq!(
            KeyAccessObject::from_json(&v).unwrap_err().code,
            KaoErrorCode::UnknownType
        );
        let mut v = base();
        v["policyBinding"] = json!({"alg":"HS256"});
        assert_eq!(
            KeyAccessObject::from_json(&v).unwrap_err().code,
            KaoErrorCode::SchemaViolation
        );
    }

    #[test]
    fn binding_raw_and_legacy_hex() {
        let share = [7u8; 32];
        let raw = policy_binding(&share, "cG9saWN5");
        assert!(verify_binding(&raw, &share, "cG9saWN5"));
        assert!(!verify_binding(&raw, &share, "cG9saWN6"));
        let hexed = b64::encode(hex::encode(crypto::hmac_sha256(&share, b"cG9saWN5")));
        assert!(verify_binding(&hexed, &share, "cG9saWN5"));
        assert!(!verify_binding(&hexed, &[8u8; 32], "cG9saWN5"));
    }

    #[test]
    fn metadata_round_trip() {
        let share = [9u8; 32];
        let md = encrypt_metadata(&share, b"{\"note\":1}").unwrap();
        let k = KeyAccessObject {
            encrypted_metadata: Some(md),
            ..KeyAccessObject::from_json(&base()).unwrap()
        };
        assert_eq!(
            k.decrypt_metadata(&share).unwrap().unwrap(),
            b"{\"note\":1}"
        );
        assert_eq!(
            k.decrypt_metadata(&[1u8; 32]).unwrap_err().code,
            KaoErrorCode::MetadataDecryptFailed
        );
    }
}
