//! Writing a ZTDF (BaseTDF 4.4): stream the plaintext through segmented AES-256-GCM into the
//! `0.payload` entry, then write the manifest. Memory: one segment buffer.

use std::io::{Read, Write};

use crate::assertion::{self, Assertion, Statement};
use crate::crypto::{self, SecretKey, b64};
use crate::error::{Error, Result};
use crate::gcm_stream::GcmStream;
use crate::kao::{self, KeyAccessObject};
use crate::keys::KasPublicKey;
use crate::label::{self, DEFAULT_NAMESPACE, STANAG_5636_SCHEMA};
use crate::manifest::{
    EncryptionInformation, IntegrityInformation, MANIFEST_ENTRY, Manifest, Method, PAYLOAD_ENTRY,
    PayloadReference, Policy, RootSignature, SCHEMA_VERSION, Segment,
};
use crate::zip::StoredZipWriter;
use dive_core::SecurityLabel;

pub const DEFAULT_SEGMENT_SIZE: usize = 2 * 1024 * 1024;
/// Largest segment the writer accepts (the reader's limit is the same).
pub const MAX_SEGMENT_SIZE: usize = 256 * 1024 * 1024;
/// Plaintext processed per step within a segment (fits the L2 cache with room to spare).
const CHUNK: usize = 64 * 1024;
pub const SEGMENT_OVERHEAD: u64 = (crypto::IV_LEN + crypto::TAG_LEN) as u64;
/// Identifier of DIVE's label policy in the STANAG 4774 `pol` field.
pub const LABEL_POLICY_ID: &str = "urn:dive:coalition:label-policy:1";

/// One KAS a share is wrapped to.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub kas_url: String,
    pub kid: Option<String>,
    pub key: KasPublicKey,
}

impl Recipient {
    pub fn new(kas_url: impl Into<String>, kid: Option<String>, key: KasPublicKey) -> Self {
        Recipient {
            kas_url: kas_url.into(),
            kid,
            key,
        }
    }
}

/// How the DEK is split across KASes: every split must be released (all-of, XOR of shares);
/// within a split, any one of its recipients suffices (any-of, same share).
#[derive(Debug, Clone)]
pub struct KeyAccessPlan {
    splits: Vec<Vec<Recipient>>,
}

impl KeyAccessPlan {
    /// One KAS holds the whole key.
    pub fn single(r: Recipient) -> Self {
        KeyAccessPlan {
            splits: vec![vec![r]],
        }
    }
    /// Every recipient must release its share.
    pub fn all_of(rs: Vec<Recipient>) -> Self {
        KeyAccessPlan {
            splits: rs.into_iter().map(|r| vec![r]).collect(),
        }
    }
    /// Any one recipient can release the whole key.
    pub fn any_of(rs: Vec<Recipient>) -> Self {
        KeyAccessPlan { splits: vec![rs] }
    }
    /// General form: all of the splits, any of the recipients within each split.
    pub fn splits(splits: Vec<Vec<Recipient>>) -> Self {
        KeyAccessPlan { splits }
    }
    fn validate(&self) -> Result<()> {
        if self.splits.is_empty() || self.splits.iter().any(Vec::is_empty) {
            return Err(Error::Options(
                "every split needs at least one KAS recipient".into(),
            ));
        }
        Ok(())
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    pub plan: KeyAccessPlan,
    /// The label goes into the policy (as attribute FQNs) and into a handling assertion.
    pub label: Option<SecurityLabel>,
    pub namespace: String,
    /// Further attribute-value FQNs for the policy.
    pub extra_attributes: Vec<String>,
    pub dissem: Vec<String>,
    pub segment_size: usize,
    pub mime_type: String,
    /// Metadata encrypted under each share into `encryptedMetadata`.
    pub metadata: Option<Vec<u8>>,
    /// The exact plaintext length, when known: selects ZIP64 only when needed and is checked.
    pub plaintext_len: Option<u64>,
}

impl EncryptOptions {
    pub fn new(plan: KeyAccessPlan) -> Self {
        EncryptOptions {
            plan,
            label: None,
            namespace: DEFAULT_NAMESPACE.into(),
            extra_attributes: Vec::new(),
            dissem: Vec::new(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            mime_type: "application/octet-stream".into(),
            metadata: None,
            plaintext_len: None,
        }
    }
    pub fn label(mut self, label: SecurityLabel) -> Self {
        self.label = Some(label);
        self
    }
    pub fn segment_size(mut self, size: usize) -> Self {
        self.segment_size = size;
        self
    }
    pub fn mime_type(mut self, m: impl Into<String>) -> Self {
        self.mime_type = m.into();
        self
    }
    pub fn metadata(mut self, m: Vec<u8>) -> Self {
        self.metadata = Some(m);
        self
    }
    pub fn plaintext_len(mut self, n: u64) -> Self {
        self.plaintext_len = Some(n);
        self
    }
    pub fn dissem(mut self, d: Vec<String>) -> Self {
        self.dissem = d;
        self
    }
}

/// Result of a write.
#[derive(Debug, Clone)]
pub struct EncryptSummary {
    pub manifest: Manifest,
    pub plaintext_len: u64,
    pub segments: usize,
}

/// Keys and manifest pieces prepared before any payload byte is written.
struct Prepared {
    dek: SecretKey,
    policy_b64: String,
    kaos: Vec<KeyAccessObject>,
}

fn prepare(opts: &EncryptOptions) -> Result<Prepared> {
    opts.plan.validate()?;
    let mut attributes = match &opts.label {
        Some(l) => {
            label::validate(l)?;
            label::to_attribute_fqns(l, &opts.namespace)
        }
        None => Vec::new(),
    };
    attributes.extend(opts.extra_attributes.iter().cloned());
    let policy_b64 = Policy::new_base64(&attributes, &opts.dissem)?;
    let mut dek = SecretKey::new([0u8; crypto::KEY_LEN]);
    let mut kaos = Vec::new();
    let multi = opts.plan.splits.len() > 1;
    for (i, split) in opts.plan.splits.iter().enumerate() {
        let share = crypto::random_key()?;
        for (d, s) in dek.iter_mut().zip(share.iter()) {
            *d ^= s;
        }
        let sid = if multi || split.len() > 1 {
            Some(format!("s-{i}"))
        } else {
            None
        };
        let binding = kao::policy_binding(&share[..], &policy_b64);
        let encrypted_metadata = opts
            .metadata
            .as_deref()
            .map(|m| kao::encrypt_metadata(&share[..], m))
            .transpose()?;
        for r in split {
            let (protected_key, ephemeral_key) = r.key.wrap(&share[..])?;
            kaos.push(KeyAccessObject {
                alg: r.key.alg(),
                kas: r.kas_url.clone(),
                kid: r.kid.clone(),
                sid: sid.clone(),
                protected_key,
                ephemeral_key,
                policy_binding: binding.clone(),
                encrypted_metadata: encrypted_metadata.clone(),
                schema_version: Some("1.0".into()),
            });
        }
    }
    Ok(Prepared {
        dek,
        policy_b64,
        kaos,
    })
}

/// Fill `buf` from `r` until full or end of input; returns the count.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Encrypt `input` into a ZTDF written to `output`.
pub fn encrypt<R: Read, W: Write>(
    mut input: R,
    output: W,
    opts: &EncryptOptions,
) -> Result<EncryptSummary> {
    if opts.segment_size == 0 || opts.segment_size > MAX_SEGMENT_SIZE {
        return Err(Error::Options(format!(
            "segment size must be between 1 and {MAX_SEGMENT_SIZE} bytes"
        )));
    }
    let prepared = prepare(opts)?;
    let seg = opts.segment_size;
    let maybe_large = match opts.plaintext_len {
        Some(n) => {
            let segments = n.div_ceil(seg as u64).max(1);
            n + segments * SEGMENT_OVERHEAD >= u64::from(u32::MAX)
        }
        None => true,
    };
    let mut gcm = GcmStream::new(&prepared.dek, true)?;
    let mut zip = StoredZipWriter::new(output);
    let mut entry = zip.begin_streamed(PAYLOAD_ENTRY, maybe_large)?;
    // Segments are processed in chunks that stay in L1/L2 (read, encrypt in place, CRC, write)
    // instead of whole 2 MiB segments; a small file of known length gets a buffer of its size.
    let cap = opts
        .plaintext_len
        .map_or(seg, |n| n.min(seg as u64) as usize)
        .min(CHUNK);
    let mut buf = vec![0u8; cap];
    let mut segments = Vec::new();
    let mut aggregate = Vec::new();
    let mut total: u64 = 0;
    loop {
        // The segment's first chunk is read before its IV is written: an empty read after a
        // full segment ends the payload (but an empty input still gets one empty segment, so
        // every file authenticates its key).
        let mut want = cap.min(seg);
        let mut n = read_full(&mut input, &mut buf[..want])?;
        if n == 0 && !segments.is_empty() {
            break;
        }
        let mut iv = [0u8; crypto::IV_LEN];
        crypto::random_bytes(&mut iv)?;
        gcm.start(&iv)?;
        zip.data_writer().write_all(&iv)?;
        entry.update(&iv);
        let mut in_segment = 0usize;
        let mut eof = false;
        loop {
            gcm.update(&mut buf[..n])?;
            zip.data_writer().write_all(&buf[..n])?;
            entry.update(&buf[..n]);
            in_segment += n;
            if n < want {
                eof = true;
                break;
            }
            if in_segment == seg {
                break;
            }
            want = cap.min(seg - in_segment);
            n = read_full(&mut input, &mut buf[..want])?;
            if n == 0 {
                eof = true;
                break;
            }
        }
        let tag = gcm.finish_encrypt()?;
        zip.data_writer().write_all(&tag)?;
        entry.update(&tag);
        aggregate.extend_from_slice(&tag);
        segments.push(Segment {
            hash: b64::encode(tag),
            segment_size: Some(in_segment as u64),
            encrypted_segment_size: Some(in_segment as u64 + SEGMENT_OVERHEAD),
        });
        total += in_segment as u64;
        if eof {
            break;
        }
    }
    if let Some(announced) = opts.plaintext_len {
        // Input beyond the announced length must not be dropped silently.
        let extra = read_full(&mut input, &mut [0u8; 1])? as u64;
        if announced != total || extra > 0 {
            return Err(Error::InputLength {
                announced,
                actual: total + extra,
            });
        }
    }
    zip.end_streamed(entry)?;
    let manifest = build_manifest(opts, &prepared, segments, &aggregate)?;
    zip.add_entry(MANIFEST_ENTRY, &manifest.to_json()?)?;
    zip.finish()?;
    let count = manifest
        .encryption_information
        .integrity_information
        .segments
        .len();
    Ok(EncryptSummary {
        manifest,
        plaintext_len: total,
        segments: count,
    })
}

fn build_manifest(
    opts: &EncryptOptions,
    p: &Prepared,
    segments: Vec<Segment>,
    aggregate: &[u8],
) -> Result<Manifest> {
    let root = crypto::hmac_sha256(&p.dek[..], aggregate);
    let root_b64 = b64::encode(root);
    let mut assertions = Vec::new();
    if let Some(l) = &opts.label {
        let mut a = Assertion {
            id: crate::manifest::random_uuid()?,
            kind: assertion::HANDLING.into(),
            scope: "tdo".into(),
            applies_to_state: Some("encrypted".into()),
            statement: Statement {
                format: assertion::STANAG_FORMAT.into(),
                schema: STANAG_5636_SCHEMA.into(),
                value: label::to_stanag_json(l, LABEL_POLICY_ID),
            },
            binding: None,
        };
        a.sign(&p.dek[..], aggregate);
        assertions.push(a.to_json(true));
    }
    Ok(Manifest {
        schema_version: Some(SCHEMA_VERSION.into()),
        payload: PayloadReference {
            kind: "reference".into(),
            url: PAYLOAD_ENTRY.into(),
            protocol: "zip".into(),
            mime_type: Some(opts.mime_type.clone()),
            is_encrypted: true,
            legacy_schema_version: None,
            legacy_spec_version: None,
        },
        encryption_information: EncryptionInformation {
            kind: "split".into(),
            key_access: p.kaos.iter().map(KeyAccessObject::to_json).collect(),
            method: Method {
                algorithm: "AES-256-GCM".into(),
                iv: String::new(),
                is_streamable: true,
            },
            integrity_information: IntegrityInformation {
                root_signature: RootSignature {
                    alg: "HS256".into(),
                    sig: root_b64,
                },
                segment_hash_alg: "GMAC".into(),
                segment_size_default: opts.segment_size as u64,
                encrypted_segment_size_default: opts.segment_size as u64 + SEGMENT_OVERHEAD,
                segments,
            },
            policy: p.policy_b64.clone(),
        },
        assertions,
    })
}
