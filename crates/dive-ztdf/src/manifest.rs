//! The manifest (`0.manifest.json`) and the policy object, as serde types. Reading is lenient
//! where older writers were sloppy (nulls for absent values, version in `payload`); everything
//! that matters for security is checked by the reader, not by deserialisation alone.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::crypto::b64;
use crate::error::{Error, Result};

pub const SCHEMA_VERSION: &str = "4.4.0";
pub const PAYLOAD_ENTRY: &str = "0.payload";
pub const MANIFEST_ENTRY: &str = "0.manifest.json";

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(
        rename = "schemaVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_version: Option<String>,
    pub payload: PayloadReference,
    #[serde(rename = "encryptionInformation")]
    pub encryption_information: EncryptionInformation,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub assertions: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadReference {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub protocol: String,
    #[serde(rename = "mimeType", default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(rename = "isEncrypted", default)]
    pub is_encrypted: bool,
    /// Pre-4.3 writers put the format version here.
    #[serde(
        rename = "schemaVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_schema_version: Option<String>,
    #[serde(rename = "tdf_spec_version", default, skip_serializing)]
    pub legacy_spec_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptionInformation {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "keyAccess")]
    pub key_access: Vec<Value>,
    pub method: Method,
    #[serde(rename = "integrityInformation")]
    pub integrity_information: IntegrityInformation,
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    pub algorithm: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub iv: String,
    #[serde(rename = "isStreamable", default, deserialize_with = "null_as_default")]
    pub is_streamable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrityInformation {
    #[serde(rename = "rootSignature")]
    pub root_signature: RootSignature,
    #[serde(rename = "segmentHashAlg")]
    pub segment_hash_alg: String,
    #[serde(rename = "segmentSizeDefault")]
    pub segment_size_default: u64,
    #[serde(rename = "encryptedSegmentSizeDefault")]
    pub encrypted_segment_size_default: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootSignature {
    pub alg: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub hash: String,
    #[serde(
        rename = "segmentSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub segment_size: Option<u64>,
    #[serde(
        rename = "encryptedSegmentSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub encrypted_segment_size: Option<u64>,
}

impl Manifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Manifest(format!("not a valid BaseTDF manifest: {e}")))
    }

    /// Compact JSON, byte for byte what `serde_json::to_vec` writes for this type (unit-tested),
    /// written directly: every file created pays for it, and serde's generic path costs about
    /// twice as much for the manifest of a small file.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        use crate::assertion::write_json_string as string;
        let ei = &self.encryption_information;
        let ii = &ei.integrity_information;
        let p = &self.payload;
        let mut o = String::with_capacity(
            1024 + ei.policy.len()
                + 1024 * (ei.key_access.len() + self.assertions.len())
                + 96 * ii.segments.len(),
        );
        o.push('{');
        if let Some(v) = &self.schema_version {
            o.push_str("\"schemaVersion\":");
            string(v, &mut o);
            o.push(',');
        }
        o.push_str("\"payload\":{\"type\":");
        string(&p.kind, &mut o);
        o.push_str(",\"url\":");
        string(&p.url, &mut o);
        o.push_str(",\"protocol\":");
        string(&p.protocol, &mut o);
        if let Some(m) = &p.mime_type {
            o.push_str(",\"mimeType\":");
            string(m, &mut o);
        }
        o.push_str(if p.is_encrypted {
            ",\"isEncrypted\":true"
        } else {
            ",\"isEncrypted\":false"
        });
        if let Some(v) = &p.legacy_schema_version {
            o.push_str(",\"schemaVersion\":");
            string(v, &mut o);
        }
        o.push_str("},\"encryptionInformation\":{\"type\":");
        string(&ei.kind, &mut o);
        o.push_str(",\"keyAccess\":");
        write_values(&ei.key_access, &mut o);
        o.push_str(",\"method\":{\"algorithm\":");
        string(&ei.method.algorithm, &mut o);
        o.push_str(",\"iv\":");
        string(&ei.method.iv, &mut o);
        o.push_str(if ei.method.is_streamable {
            ",\"isStreamable\":true"
        } else {
            ",\"isStreamable\":false"
        });
        o.push_str("},\"integrityInformation\":{\"rootSignature\":{\"alg\":");
        string(&ii.root_signature.alg, &mut o);
        o.push_str(",\"sig\":");
        string(&ii.root_signature.sig, &mut o);
        o.push_str("},\"segmentHashAlg\":");
        string(&ii.segment_hash_alg, &mut o);
        let _ = write!(
            o,
            ",\"segmentSizeDefault\":{},\"encryptedSegmentSizeDefault\":{},\"segments\":[",
            ii.segment_size_default, ii.encrypted_segment_size_default
        );
        for (i, seg) in ii.segments.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"hash\":");
            string(&seg.hash, &mut o);
            if let Some(n) = seg.segment_size {
                let _ = write!(o, ",\"segmentSize\":{n}");
            }
            if let Some(n) = seg.encrypted_segment_size {
                let _ = write!(o, ",\"encryptedSegmentSize\":{n}");
            }
            o.push('}');
        }
        o.push_str("]},\"policy\":");
        string(&ei.policy, &mut o);
        o.push('}');
        if !self.assertions.is_empty() {
            o.push_str(",\"assertions\":");
            write_values(&self.assertions, &mut o);
        }
        o.push('}');
        Ok(o.into_bytes())
    }

    /// The format version: `schemaVersion`, or the legacy places older writers used.
    pub fn version(&self) -> Option<&str> {
        self.schema_version
            .as_deref()
            .or(self.payload.legacy_schema_version.as_deref())
            .or(self.payload.legacy_spec_version.as_deref())
    }

    /// Decode the policy object.
    pub fn policy(&self) -> Result<Policy> {
        Policy::from_base64(&self.encryption_information.policy)
    }
}

/// A JSON array of values as serde_json writes it (maps in their own, sorted, order).
fn write_values(vs: &[Value], o: &mut String) {
    o.push('[');
    for (i, v) in vs.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        write_value(v, o);
    }
    o.push(']');
}

fn write_value(v: &Value, o: &mut String) {
    match v {
        Value::Null => o.push_str("null"),
        Value::Bool(true) => o.push_str("true"),
        Value::Bool(false) => o.push_str("false"),
        Value::Number(n) => {
            let _ = write!(o, "{n}");
        }
        Value::String(s) => crate::assertion::write_json_string(s, o),
        Value::Array(a) => write_values(a, o),
        Value::Object(m) => {
            o.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                crate::assertion::write_json_string(k, o);
                o.push(':');
                write_value(v, o);
            }
            o.push('}');
        }
    }
}

/// A random (v4) UUID from the aws-lc DRBG: no system call per document.
pub fn random_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    crate::crypto::random_bytes(&mut b)?;
    Ok(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

/// One data attribute of the policy (older writers add descriptive fields; they are kept out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataAttribute {
    pub attribute: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyBody {
    #[serde(
        rename = "dataAttributes",
        default,
        deserialize_with = "null_as_default"
    )]
    pub data_attributes: Vec<DataAttribute>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dissem: Vec<String>,
}

/// The policy object bound into every KAO: `{uuid, body: {dataAttributes, dissem}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub uuid: String,
    pub body: PolicyBody,
}

impl Policy {
    pub fn new(attributes: Vec<String>, dissem: Vec<String>) -> Result<Self> {
        Ok(Policy {
            uuid: random_uuid()?,
            body: PolicyBody {
                data_attributes: attributes
                    .into_iter()
                    .map(|attribute| DataAttribute { attribute })
                    .collect(),
                dissem,
            },
        })
    }

    pub fn from_base64(s: &str) -> Result<Self> {
        let raw = b64::decode(s)
            .ok_or_else(|| Error::Policy("the manifest's policy is not valid base64".into()))?;
        serde_json::from_slice(&raw)
            .map_err(|e| Error::Policy(format!("the decoded policy is not a policy object: {e}")))
    }

    /// `base64(json)` of a new policy, written directly: the same bytes serde writes for
    /// [`Policy::new`] + [`Policy::to_base64`] (unit-tested), without building the struct.
    pub(crate) fn new_base64(attributes: &[String], dissem: &[String]) -> Result<String> {
        let uuid = random_uuid()?;
        let len: usize = attributes.iter().map(|a| a.len() + 18).sum::<usize>()
            + dissem.iter().map(|d| d.len() + 3).sum::<usize>();
        let mut json = String::with_capacity(80 + len);
        json.push_str("{\"uuid\":");
        crate::assertion::write_json_string(&uuid, &mut json);
        json.push_str(",\"body\":{\"dataAttributes\":[");
        for (i, a) in attributes.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str("{\"attribute\":");
            crate::assertion::write_json_string(a, &mut json);
            json.push('}');
        }
        json.push_str("],\"dissem\":[");
        for (i, d) in dissem.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            crate::assertion::write_json_string(d, &mut json);
        }
        json.push_str("]}}");
        Ok(b64::encode(json))
    }

    pub fn to_base64(&self) -> Result<String> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::Policy(format!("cannot serialise policy: {e}")))?;
        Ok(b64::encode(json))
    }

    pub fn attribute_fqns(&self) -> impl Iterator<Item = &str> {
        self.body
            .data_attributes
            .iter()
            .map(|a| a.attribute.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_nulls_and_legacy_version() {
        let m = br#"{"payload":{"type":"reference","url":"0.payload","protocol":"zip","isEncrypted":true,"tdf_spec_version":null,"schemaVersion":"3.0.0"},
          "encryptionInformation":{"type":"split","keyAccess":[],"method":{"algorithm":"AES-256-GCM","iv":null,"isStreamable":true},
          "integrityInformation":{"rootSignature":{"alg":"HS256","sig":"x"},"segmentHashAlg":"GMAC","segmentSizeDefault":1,"encryptedSegmentSizeDefault":29,"segments":null},
          "policy":"eyJ1dWlkIjoiYSIsImJvZHkiOnsiZGF0YUF0dHJpYnV0ZXMiOm51bGwsImRpc3NlbSI6bnVsbH19"},"assertions":null}"#;
        let man = Manifest::from_json(m).unwrap();
        assert_eq!(man.version(), Some("3.0.0"));
        let p = man.policy().unwrap();
        assert!(p.body.data_attributes.is_empty());
    }

    #[test]
    fn direct_manifest_json_is_what_serde_writes() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schemaVersion": "4.4.0",
            "payload": {"type": "reference", "url": "0.payload", "protocol": "zip",
                "mimeType": "text/plain; charset=\"utf-8\"", "isEncrypted": true,
                "tdf_spec_version": "x"},
            "encryptionInformation": {"type": "split",
                "keyAccess": [{"url": "https://k/\u{1}é", "alg": "RSA-OAEP", "n": -1.5,
                    "nested": {"z": [1, null, false, {"b": "\u{2028}<&>"}], "a": true}}],
                "method": {"algorithm": "AES-256-GCM", "iv": "", "isStreamable": false},
                "integrityInformation": {"rootSignature": {"alg": "HS256", "sig": "c2ln"},
                    "segmentHashAlg": "GMAC", "segmentSizeDefault": 2097152,
                    "encryptedSegmentSizeDefault": 2097180,
                    "segments": [{"hash": "aA==", "segmentSize": 5, "encryptedSegmentSize": 33},
                                 {"hash": "bB=="}]},
                "policy": "eyJ9"},
            "assertions": [{"id": "1", "statement": {"value": "{\"a\":\"\\n\t\"}"}, "k": 12345678901234567890u64}]
        }))
        .unwrap();
        assert_eq!(m.to_json().unwrap(), serde_json::to_vec(&m).unwrap());
        m.schema_version = None;
        m.payload.mime_type = None;
        m.payload.is_encrypted = false;
        m.payload.legacy_schema_version = Some("3.0.0".into());
        m.encryption_information.method.is_streamable = true;
        m.encryption_information
            .integrity_information
            .segments
            .clear();
        m.assertions.clear();
        assert_eq!(m.to_json().unwrap(), serde_json::to_vec(&m).unwrap());
    }

    #[test]
    fn direct_policy_json_is_what_serde_writes() {
        let attrs = vec![
            "https://x/attr/a/value/b".to_string(),
            "quote \" backslash \\ ctl \u{1} \u{8} é".to_string(),
        ];
        let dissem = vec!["a@b".to_string(), "c\nd".to_string()];
        let direct = Policy::from_base64(&Policy::new_base64(&attrs, &dissem).unwrap()).unwrap();
        let raw = b64::decode(&Policy::new_base64(&attrs, &dissem).unwrap()).unwrap();
        let same = Policy {
            uuid: direct.uuid.clone(),
            body: PolicyBody {
                data_attributes: attrs
                    .iter()
                    .map(|a| DataAttribute {
                        attribute: a.clone(),
                    })
                    .collect(),
                dissem: dissem.clone(),
            },
        };
        assert_eq!(direct, same);
        // Byte-identical except the (random) uuid.
        let serde = b64::decode(&same.to_base64().unwrap()).unwrap();
        let uuid_at = 9;
        assert_eq!(raw.len(), serde.len());
        assert_eq!(raw[..uuid_at], serde[..uuid_at]);
        assert_eq!(raw[uuid_at + 36..], serde[uuid_at + 36..]);
        assert!(Policy::new_base64(&[], &[]).is_ok());
    }

    #[test]
    fn policy_round_trip() {
        let p = Policy::new(vec!["https://x/attr/a/value/b".into()], vec!["a@b".into()]).unwrap();
        assert_eq!(Policy::from_base64(&p.to_base64().unwrap()).unwrap(), p);
        assert!(Policy::from_base64("!!").is_err());
    }
}
