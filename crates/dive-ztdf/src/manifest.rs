//! The manifest (`0.manifest.json`) and the policy object, as serde types. Reading is lenient
//! where older writers were sloppy (nulls for absent values, version in `payload`); everything
//! that matters for security is checked by the reader, not by deserialisation alone.

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

    pub fn to_json(&self) -> Result<Vec<u8>> {
        // Sized up front: growing from serde's default 128 bytes re-copies a small file's
        // manifest several times.
        let ei = &self.encryption_information;
        let estimate = 1024
            + ei.policy.len()
            + 1024 * (ei.key_access.len() + self.assertions.len())
            + 96 * ei.integrity_information.segments.len();
        let mut out = Vec::with_capacity(estimate);
        serde_json::to_writer(&mut out, self)
            .map_err(|e| Error::Manifest(format!("cannot serialise manifest: {e}")))?;
        Ok(out)
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
