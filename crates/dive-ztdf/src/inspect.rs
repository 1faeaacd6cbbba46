//! Key-less inspection: what a file says about itself and which checks pass without the DEK.

use std::io::{Read, Seek};

use serde::Serialize;

use crate::error::Result;
use crate::reader::TdfReader;
use dive_core::SecurityLabel;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KaoSummary {
    pub alg: &'static str,
    pub kas: String,
    pub kid: Option<String>,
    pub sid: Option<String>,
    pub encrypted_metadata: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssertionSummary {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub scope: String,
    pub format: String,
    pub schema: String,
    pub binding_alg: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub schema_version: Option<String>,
    pub mime_type: Option<String>,
    pub plaintext_size: u64,
    pub payload_size: u64,
    pub zip64: bool,
    pub segments: usize,
    pub segment_size_default: u64,
    pub legacy_hex_hashes: bool,
    pub policy_uuid: String,
    pub data_attributes: Vec<String>,
    pub dissem: Vec<String>,
    pub label: Option<SecurityLabel>,
    pub marking: Option<String>,
    pub key_access: Vec<KaoSummary>,
    pub assertions: Vec<AssertionSummary>,
    pub manifest: serde_json::Value,
    pub checks: Vec<Check>,
}

impl Inspection {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Open and inspect a file. Errors that prevent reading it at all are returned; checks that
/// fail on a readable file are reported in [`Inspection::checks`].
pub fn inspect<R: Read + Seek>(src: R) -> Result<Inspection> {
    let mut r = TdfReader::open(src)?;
    let mut checks = vec![
        Check {
            name: "container",
            ok: true,
            detail: "ZIP layout valid; 0.payload and 0.manifest.json present, stored".into(),
        },
        Check {
            name: "manifest",
            ok: true,
            detail: "manifest, policy, key access objects and assertions well-formed".into(),
        },
        Check {
            name: "segment layout",
            ok: true,
            detail: "segment sizes account for the payload exactly".into(),
        },
    ];
    let structure = r.check_payload_structure();
    checks.push(Check {
        name: "segment hashes",
        ok: structure.is_ok(),
        detail: match &structure {
            Ok(()) => "every stored GCM tag matches the manifest; payload CRC matches".into(),
            Err(e) => e.to_string(),
        },
    });
    let label = r.label();
    checks.push(Check {
        name: "label",
        ok: label.is_ok(),
        detail: match &label {
            Ok(Some(l)) => format!("DIVE label in policy: {}", l.marking()),
            Ok(None) => "no DIVE label attributes in the policy".into(),
            Err(e) => e.to_string(),
        },
    });
    // Signatures need the key, but an assertion without one is refused whatever the key.
    let unsigned: Vec<String> = r
        .assertions()
        .iter()
        .filter(|a| {
            a.binding
                .as_ref()
                .is_none_or(|b| b.method != "jws" || crate::jws::header_alg(&b.signature).is_err())
        })
        .map(|a| format!("{:?}", a.id))
        .collect();
    checks.push(Check {
        name: "assertion bindings",
        ok: unsigned.is_empty(),
        detail: if unsigned.is_empty() {
            format!(
                "{} assertion(s), each with a JWS binding (verified on decrypt)",
                r.assertions().len()
            )
        } else {
            format!(
                "assertion(s) {} have no usable JWS binding (unsigned or malformed): decryption will refuse the file",
                unsigned.join(", ")
            )
        },
    });
    checks.push(Check {
        name: "key-dependent checks",
        ok: true,
        detail: "root signature, policy bindings, segment authentication and assertion signatures need the key (decrypt)".into(),
    });
    let label = label.ok().flatten();
    let m = r.manifest();
    let ii = &m.encryption_information.integrity_information;
    Ok(Inspection {
        schema_version: m.version().map(str::to_string),
        mime_type: m.payload.mime_type.clone(),
        plaintext_size: r.plaintext_len(),
        payload_size: r.segments().iter().map(|s| s.encrypted_size).sum(),
        zip64: r.directory().zip64,
        segments: r.segments().len(),
        segment_size_default: ii.segment_size_default,
        legacy_hex_hashes: r.segments().first().is_some_and(|s| s.hash.len() == 32),
        policy_uuid: r.policy().uuid.clone(),
        data_attributes: r.policy().attribute_fqns().map(str::to_string).collect(),
        dissem: r.policy().body.dissem.clone(),
        marking: label.as_ref().map(SecurityLabel::marking),
        label,
        key_access: r
            .key_access_objects()
            .iter()
            .map(|k| KaoSummary {
                alg: k.alg.as_str(),
                kas: k.kas.clone(),
                kid: k.kid.clone(),
                sid: k.sid.clone(),
                encrypted_metadata: k.encrypted_metadata.is_some(),
            })
            .collect(),
        assertions: r
            .assertions()
            .iter()
            .map(|a| AssertionSummary {
                id: a.id.clone(),
                kind: a.kind.clone(),
                scope: a.scope.clone(),
                format: a.statement.format.clone(),
                schema: a.statement.schema.clone(),
                binding_alg: a
                    .binding
                    .as_ref()
                    .and_then(|b| crate::jws::header_alg(&b.signature).ok()),
                value: a.statement.value.clone(),
            })
            .collect(),
        manifest: serde_json::to_value(m).unwrap_or_default(),
        checks,
    })
}
