//! The protobuf messages of OpenTDF's `kas.proto` that travel over Connect RPC
//! (`application/proto`), declared by hand with the same field numbers (no protoc step). The
//! signed request token's body is JSON in both encodings, so only the outer messages are here.
//! `metadata` maps (`google.protobuf.Value`) are neither read nor written.

/// `kas.PublicKeyRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PublicKeyRequest {
    #[prost(string, tag = "1")]
    pub algorithm: String,
    #[prost(string, tag = "2")]
    pub fmt: String,
    #[prost(string, tag = "3")]
    pub v: String,
}

/// `kas.PublicKeyResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PublicKeyResponse {
    #[prost(string, tag = "1")]
    pub public_key: String,
    #[prost(string, tag = "2")]
    pub kid: String,
}

/// `kas.RewrapRequest` (field 2, the old `bearer`, is reserved).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RewrapRequest {
    #[prost(string, tag = "1")]
    pub signed_request_token: String,
}

/// `kas.KeyAccessRewrapResult`: `oneof result { bytes kas_wrapped_key = 4; string error = 5; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyAccessRewrapResult {
    #[prost(string, tag = "2")]
    pub key_access_object_id: String,
    #[prost(string, tag = "3")]
    pub status: String,
    #[prost(oneof = "RewrapResultValue", tags = "4, 5")]
    pub result: Option<RewrapResultValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum RewrapResultValue {
    #[prost(bytes, tag = "4")]
    KasWrappedKey(Vec<u8>),
    #[prost(string, tag = "5")]
    Error(String),
}

/// `kas.PolicyRewrapResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PolicyRewrapResult {
    #[prost(string, tag = "1")]
    pub policy_id: String,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<KeyAccessRewrapResult>,
}

/// `kas.RewrapResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RewrapResponse {
    #[prost(bytes, tag = "2")]
    pub entity_wrapped_key: Vec<u8>,
    #[prost(string, tag = "3")]
    pub session_public_key: String,
    #[prost(message, repeated, tag = "5")]
    pub responses: Vec<PolicyRewrapResult>,
}

impl RewrapResponse {
    /// The protobuf form of a JSON-model response (base64 keys become bytes).
    pub fn from_wire(r: &crate::wire::RewrapResponse) -> RewrapResponse {
        let bytes = |s: &str| dive_ztdf::crypto::b64::decode(s).unwrap_or_default();
        RewrapResponse {
            entity_wrapped_key: r
                .entity_wrapped_key
                .as_deref()
                .map(bytes)
                .unwrap_or_default(),
            session_public_key: r.session_public_key.clone().unwrap_or_default(),
            responses: r
                .responses
                .iter()
                .map(|p| PolicyRewrapResult {
                    policy_id: p.policy_id.clone(),
                    results: p
                        .results
                        .iter()
                        .map(|k| KeyAccessRewrapResult {
                            key_access_object_id: k.key_access_object_id.clone(),
                            status: k.status.clone(),
                            result: match (&k.kas_wrapped_key, &k.error) {
                                (Some(w), _) => Some(RewrapResultValue::KasWrappedKey(bytes(w))),
                                (None, Some(e)) => Some(RewrapResultValue::Error(e.clone())),
                                (None, None) => None,
                            },
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The JSON model of a protobuf response (for clients that asked for protobuf).
    pub fn to_wire(&self) -> crate::wire::RewrapResponse {
        let b64 = dive_ztdf::crypto::b64::encode;
        crate::wire::RewrapResponse {
            session_public_key: (!self.session_public_key.is_empty())
                .then(|| self.session_public_key.clone()),
            entity_wrapped_key: (!self.entity_wrapped_key.is_empty())
                .then(|| b64(&self.entity_wrapped_key)),
            responses: self
                .responses
                .iter()
                .map(|p| crate::wire::PolicyResult {
                    policy_id: p.policy_id.clone(),
                    results: p
                        .results
                        .iter()
                        .map(|k| crate::wire::KaoResult {
                            key_access_object_id: k.key_access_object_id.clone(),
                            status: k.status.clone(),
                            kas_wrapped_key: match &k.result {
                                Some(RewrapResultValue::KasWrappedKey(b)) => Some(b64(b)),
                                _ => None,
                            },
                            error: match &k.result {
                                Some(RewrapResultValue::Error(e)) => Some(e.clone()),
                                _ => None,
                            },
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_match_kas_proto() {
        // signed_request_token = 1, string (wire type 2): tag byte 0x0a.
        let b = RewrapRequest {
            signed_request_token: "ab".into(),
        }
        .encode_to_vec();
        assert_eq!(b, vec![0x0a, 2, b'a', b'b']);
        // kas_wrapped_key = 4 (0x22), error = 5 (0x2a); responses = 5 (0x2a), session key = 3 (0x1a).
        let r = RewrapResponse {
            entity_wrapped_key: vec![],
            session_public_key: "k".into(),
            responses: vec![PolicyRewrapResult {
                policy_id: "p".into(),
                results: vec![KeyAccessRewrapResult {
                    key_access_object_id: "i".into(),
                    status: "permit".into(),
                    result: Some(RewrapResultValue::KasWrappedKey(vec![7])),
                }],
            }],
        };
        let bytes = r.encode_to_vec();
        assert_eq!(&bytes[..3], &[0x1a, 1, b'k']);
        assert_eq!(bytes[3], 0x2a);
        let back = RewrapResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, r);
        assert_eq!(RewrapResponse::from_wire(&back.to_wire()), r);
        let pk =
            PublicKeyRequest::decode(&[0x0a, 3, b'r', b's', b'a', 0x12, 3, b'j', b'w', b'k'][..])
                .unwrap();
        assert_eq!((pk.algorithm.as_str(), pk.fmt.as_str()), ("rsa", "jwk"));
    }
}
