//! Reading a ZTDF: open (container and manifest checks that need no key), unlock (shares,
//! policy bindings, root signature, assertions), then decrypt with segment-by-segment
//! authentication. Plaintext is only ever produced by an [`UnlockedTdf`], which exists only
//! after every key-dependent check passed.

use std::io::{Read, Seek, SeekFrom, Write};

use zeroize::Zeroizing;

use crate::assertion::{self, Assertion};
use crate::crypto::{self, SecretKey, b64};
use crate::error::{Error, Result};
use crate::gcm_stream::GcmStream;
use crate::kao::{KaoErrorCode, KeyAccessObject};
use crate::keys::{KeyUnwrapper, UnwrapError, share_from};
use crate::label::{self, DEFAULT_NAMESPACE};
use crate::manifest::{MANIFEST_ENTRY, Manifest, PAYLOAD_ENTRY, Policy};
use crate::writer::{MAX_SEGMENT_SIZE, SEGMENT_OVERHEAD};
use crate::zip::{self, Directory, Entry};
use dive_core::SecurityLabel;

/// Manifest name used by the opentdf-rs writer, accepted when `0.manifest.json` is absent.
pub const ALT_MANIFEST_ENTRY: &str = "manifest.json";

/// Ciphertext read and decrypted per step within a segment.
const DECRYPT_CHUNK: usize = 64 * 1024;

/// Manifests above this size are refused before parsing (memory bound for hostile input).
pub const MAX_MANIFEST_SIZE: u64 = 16 * 1024 * 1024;

/// A segment as described by the manifest and located in the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub index: usize,
    /// Offset of the segment in the archive.
    pub offset: u64,
    pub plaintext_size: u64,
    pub encrypted_size: u64,
    /// The manifest's hash, decoded: the raw 16-byte GCM tag, or its 32 hex characters (legacy).
    pub hash: Vec<u8>,
}

impl SegmentInfo {
    fn tag_matches(&self, tag: &[u8]) -> bool {
        match self.hash.len() {
            16 => self.hash == tag,
            32 => self.hash.eq_ignore_ascii_case(hex::encode(tag).as_bytes()),
            _ => false,
        }
    }
}

/// An opened ZTDF whose structure has been checked; no key material involved yet.
#[derive(Debug)]
pub struct TdfReader<R: Read + Seek> {
    src: R,
    directory: Directory,
    payload: Entry,
    manifest: Manifest,
    policy: Policy,
    kaos: Vec<KeyAccessObject>,
    assertions: Vec<Assertion>,
    segments: Vec<SegmentInfo>,
    require_label_assertion: bool,
}

fn integrity(msg: impl Into<String>) -> Error {
    Error::Integrity(msg.into())
}

impl<R: Read + Seek> TdfReader<R> {
    /// Open and check the container and manifest: ZIP layout, required entries, manifest schema,
    /// algorithms, policy, every KAO's structure, every assertion's structure, and that the
    /// segment list accounts for the payload exactly.
    pub fn open(mut src: R) -> Result<Self> {
        let directory = zip::read_directory(&mut src)?;
        let payload = directory
            .entry(PAYLOAD_ENTRY)
            .cloned()
            .ok_or(Error::MissingEntry(PAYLOAD_ENTRY))?;
        // opentdf-rs names the manifest `manifest.json`; every other SDK uses `0.manifest.json`.
        let m_entry = directory
            .entry(MANIFEST_ENTRY)
            .or_else(|| directory.entry(ALT_MANIFEST_ENTRY))
            .cloned()
            .ok_or(Error::MissingEntry(MANIFEST_ENTRY))?;
        if m_entry.size > MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size: m_entry.size,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        src.seek(SeekFrom::Start(m_entry.data_offset))?;
        let mut raw = vec![0u8; m_entry.size as usize];
        src.read_exact(&mut raw)?;
        if crc32fast::hash(&raw) != m_entry.crc32 {
            return Err(Error::CrcMismatch {
                entry: MANIFEST_ENTRY,
            });
        }
        let manifest = Manifest::from_json(&raw)?;
        check_manifest_fields(&manifest)?;
        let policy = manifest.policy()?;
        let kaos = manifest
            .encryption_information
            .key_access
            .iter()
            .enumerate()
            .map(|(i, v)| KeyAccessObject::from_json(v).map_err(|e| e.at(i)))
            .collect::<Result<Vec<_>>>()?;
        if kaos.is_empty() {
            return Err(Error::Manifest(
                "encryptionInformation.keyAccess is empty: nobody can open this file".into(),
            ));
        }
        let assertions = manifest
            .assertions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Assertion::from_json(v).map_err(|detail| Error::Assertion {
                    id: format!("#{i}"),
                    detail,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let segments = layout_segments(&manifest, &payload)?;
        Ok(TdfReader {
            src,
            directory,
            payload,
            manifest,
            policy,
            kaos,
            assertions,
            segments,
            require_label_assertion: false,
        })
    }

    /// Make [`unlock`](Self::unlock) also require a signed handling assertion carrying the
    /// STANAG 4774 label (every file DIVE writes with a label has one). Off by default because
    /// other OpenTDF writers do not add it; assertions that are present are always verified.
    pub fn require_label_assertion(mut self) -> Self {
        self.require_label_assertion = true;
        self
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    pub fn key_access_objects(&self) -> &[KeyAccessObject] {
        &self.kaos
    }
    pub fn assertions(&self) -> &[Assertion] {
        &self.assertions
    }
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }
    pub fn directory(&self) -> &Directory {
        &self.directory
    }
    pub fn plaintext_len(&self) -> u64 {
        self.segments.iter().map(|s| s.plaintext_size).sum()
    }

    /// The DIVE security label carried by the policy's attributes (DIVE namespace), if any.
    pub fn label(&self) -> Result<Option<SecurityLabel>> {
        label::from_attribute_fqns(self.policy.attribute_fqns(), DEFAULT_NAMESPACE)
    }

    /// Key-less integrity checks over the payload: the stored tag of every segment equals the
    /// manifest's hash (catches reordered, swapped or truncated segments) and the payload's CRC
    /// matches the ZIP directory. Does not authenticate ciphertext (that needs the key).
    pub fn check_payload_structure(&mut self) -> Result<()> {
        let mut tag = [0u8; crypto::TAG_LEN];
        for s in &self.segments {
            self.src.seek(SeekFrom::Start(
                s.offset + s.encrypted_size - crypto::TAG_LEN as u64,
            ))?;
            self.src.read_exact(&mut tag)?;
            if !s.tag_matches(&tag) {
                return Err(Error::Segment {
                    index: s.index,
                    detail: "stored GCM tag differs from the manifest's segment hash (segment replaced, reordered or manifest altered)".into(),
                });
            }
        }
        self.src.seek(SeekFrom::Start(self.payload.data_offset))?;
        let mut crc = crc32fast::Hasher::new();
        let mut left = self.payload.size;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.src.read_exact(&mut buf[..n])?;
            crc.update(&buf[..n]);
            left -= n as u64;
        }
        if crc.finalize() != self.payload.crc32 {
            return Err(Error::CrcMismatch {
                entry: PAYLOAD_ENTRY,
            });
        }
        Ok(())
    }

    /// Obtain the DEK through `unwrapper` and verify everything that needs it: each share's
    /// policy binding, the root signature over the segment hashes, and every assertion binding.
    pub fn unlock(self, unwrapper: &dyn KeyUnwrapper) -> Result<UnlockedTdf<R>> {
        let policy_b64 = self.manifest.encryption_information.policy.clone();
        let mut dek = SecretKey::new([0u8; crypto::KEY_LEN]);
        let mut metadata = Vec::new();
        for sid in split_ids(&self.kaos) {
            let (share, md) = self.unwrap_split(&sid, &policy_b64, unwrapper)?;
            for (d, s) in dek.iter_mut().zip(share.iter()) {
                *d ^= s;
            }
            if let Some(md) = md {
                metadata.push((sid, md));
            }
        }
        self.unlock_inner(dek, metadata)
    }

    /// Unlock with an already-known DEK (e.g. a KAS-side or test path); all DEK checks still run.
    pub fn unlock_with_dek(self, dek: &[u8]) -> Result<UnlockedTdf<R>> {
        let dek = crypto::key_from_slice(dek)
            .ok_or_else(|| Error::Key("a data key must be 32 bytes".into()))?;
        self.unlock_inner(dek, Vec::new())
    }

    fn unlock_inner(
        self,
        dek: SecretKey,
        metadata: Vec<(String, Vec<u8>)>,
    ) -> Result<UnlockedTdf<R>> {
        let aggregate: Vec<u8> = self
            .segments
            .iter()
            .flat_map(|s| s.hash.iter().copied())
            .collect();
        verify_root_signature(&self.manifest, &dek[..], &aggregate)?;
        let root_b64 = &self
            .manifest
            .encryption_information
            .integrity_information
            .root_signature
            .sig;
        for a in &self.assertions {
            if a.binding.is_none() {
                return Err(Error::AssertionUnsigned { id: a.id.clone() });
            }
            a.verify(&dek[..], &aggregate, root_b64)
                .map_err(|detail| Error::Assertion {
                    id: a.id.clone(),
                    detail,
                })?;
        }
        if self.require_label_assertion
            && !self.assertions.iter().any(|a| {
                a.kind == assertion::HANDLING && a.statement.format == assertion::STANAG_FORMAT
            })
        {
            return Err(Error::AssertionMissing {
                format: assertion::STANAG_FORMAT,
            });
        }
        Ok(UnlockedTdf {
            reader: self,
            dek,
            metadata,
        })
    }

    /// Recover one split's share: any KAO of the split may provide it (any-of).
    fn unwrap_split(
        &self,
        sid: &str,
        policy_b64: &str,
        unwrapper: &dyn KeyUnwrapper,
    ) -> Result<(SecretKey, Option<Vec<u8>>)> {
        let mut reasons = Vec::new();
        for (index, kao) in self
            .kaos
            .iter()
            .enumerate()
            .filter(|(_, k)| k.split_id() == sid)
        {
            let share = match unwrapper.unwrap_share(kao, policy_b64) {
                Ok(s) => s,
                Err(UnwrapError::Kao(e)) if e.code == KaoErrorCode::PolicyBindingMismatch => {
                    return Err(Error::PolicyBinding {
                        index,
                        sid: sid.to_string(),
                    });
                }
                Err(e) => {
                    reasons.push(format!("KAO {index} ({}): {e}", kao.kas));
                    continue;
                }
            };
            let share = share_from(&share).ok_or_else(|| Error::Kao {
                index,
                code: KaoErrorCode::UnwrapFailed,
                detail: format!("unwrapped share is {} bytes, not 32", share.len()),
            })?;
            // Checked here too, whatever the unwrapper did: a share never counts unless bound.
            if !kao.verify_policy_binding(&share[..], policy_b64) {
                return Err(Error::PolicyBinding {
                    index,
                    sid: sid.to_string(),
                });
            }
            let md = kao.decrypt_metadata(&share[..]).map_err(|e| e.at(index))?;
            return Ok((share, md));
        }
        Err(Error::SplitUnavailable {
            sid: sid.to_string(),
            reasons: reasons.join("; "),
        })
    }
}

/// Split ids in order of first appearance.
fn split_ids(kaos: &[KeyAccessObject]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for k in kaos {
        if !ids.iter().any(|s| s == k.split_id()) {
            ids.push(k.split_id().to_string());
        }
    }
    ids
}

fn check_manifest_fields(m: &Manifest) -> Result<()> {
    let ei = &m.encryption_information;
    let bad = |what: String| Err(Error::Manifest(what));
    if let Some(v) = m.version()
        && !(v.starts_with("4.") || v.starts_with("3.") || v.starts_with("2."))
    {
        return Err(Error::Unsupported(format!("manifest schema version {v:?}")));
    }
    if ei.kind != "split" {
        return bad(format!(
            "encryptionInformation.type is {:?}, expected \"split\"",
            ei.kind
        ));
    }
    if ei.method.algorithm != "AES-256-GCM" {
        return Err(Error::Unsupported(format!(
            "payload algorithm {:?} (only AES-256-GCM)",
            ei.method.algorithm
        )));
    }
    if m.payload.url != PAYLOAD_ENTRY
        || m.payload.protocol != "zip"
        || m.payload.kind != "reference"
    {
        return bad(format!(
            "payload must reference \"{PAYLOAD_ENTRY}\" by protocol \"zip\" (found url {:?}, protocol {:?})",
            m.payload.url, m.payload.protocol
        ));
    }
    if !m.payload.is_encrypted {
        return bad(
            "payload.isEncrypted is false; unencrypted TDF payloads are not accepted".into(),
        );
    }
    let ii = &ei.integrity_information;
    if ii.root_signature.alg != "HS256" {
        return Err(Error::Unsupported(format!(
            "root signature alg {:?} (only HS256)",
            ii.root_signature.alg
        )));
    }
    if !ii.segment_hash_alg.eq_ignore_ascii_case("GMAC") {
        return Err(Error::Unsupported(format!(
            "segment hash alg {:?} (only GMAC)",
            ii.segment_hash_alg
        )));
    }
    Ok(())
}

/// Check the segment list against the payload entry and compute each segment's position.
fn layout_segments(m: &Manifest, payload: &Entry) -> Result<Vec<SegmentInfo>> {
    let ii = &m.encryption_information.integrity_information;
    let mut offset = payload.data_offset;
    let end = payload.data_offset + payload.size;
    let mut out = Vec::with_capacity(ii.segments.len().min(1 << 20));
    for (index, s) in ii.segments.iter().enumerate() {
        let seg_err = |detail: String| Error::Segment { index, detail };
        let enc = s
            .encrypted_segment_size
            .unwrap_or(ii.encrypted_segment_size_default);
        let plain = s.segment_size.unwrap_or(ii.segment_size_default);
        if plain.checked_add(SEGMENT_OVERHEAD) != Some(enc) {
            return Err(seg_err(format!(
                "encrypted size {enc} is not plaintext size {plain} + {SEGMENT_OVERHEAD}"
            )));
        }
        if enc > MAX_SEGMENT_SIZE as u64 + SEGMENT_OVERHEAD {
            return Err(seg_err(format!(
                "segment of {enc} bytes exceeds the {MAX_SEGMENT_SIZE}-byte limit"
            )));
        }
        if offset.checked_add(enc).is_none_or(|e| e > end) {
            return Err(seg_err(format!(
                "segment runs past the end of the payload ({} bytes): payload truncated or manifest altered",
                payload.size
            )));
        }
        let hash = b64::decode(&s.hash).ok_or_else(|| seg_err("hash is not base64".into()))?;
        if hash.len() != 16 && !(hash.len() == 32 && hash.iter().all(u8::is_ascii_hexdigit)) {
            return Err(seg_err(format!(
                "hash is {} bytes; expected a 16-byte GMAC tag (or 32 hex digits)",
                hash.len()
            )));
        }
        out.push(SegmentInfo {
            index,
            offset,
            plaintext_size: plain,
            encrypted_size: enc,
            hash,
        });
        offset += enc;
    }
    if offset != end {
        return Err(integrity(format!(
            "the manifest's segments cover {} bytes but the payload has {} (extra or missing segments)",
            offset - payload.data_offset,
            payload.size
        )));
    }
    Ok(out)
}

fn verify_root_signature(m: &Manifest, dek: &[u8], aggregate: &[u8]) -> Result<()> {
    let sig = &m
        .encryption_information
        .integrity_information
        .root_signature
        .sig;
    let decoded = b64::decode(sig).ok_or_else(|| integrity("root signature is not base64"))?;
    let ok = match decoded.len() {
        32 => crypto::hmac_sha256_verify(dek, aggregate, &decoded),
        64 => crypto::ct_eq(
            hex::encode(crypto::hmac_sha256(dek, aggregate)).as_bytes(),
            &decoded.to_ascii_lowercase(),
        ),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::RootSignature)
    }
}

/// A ZTDF whose key-dependent checks have all passed; only this type produces plaintext.
pub struct UnlockedTdf<R: Read + Seek> {
    reader: TdfReader<R>,
    dek: SecretKey,
    metadata: Vec<(String, Vec<u8>)>,
}

impl<R: Read + Seek> std::fmt::Debug for UnlockedTdf<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnlockedTdf")
            .field("segments", &self.reader.segments.len())
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek> UnlockedTdf<R> {
    pub fn reader(&self) -> &TdfReader<R> {
        &self.reader
    }

    /// Decrypted `encryptedMetadata` per split id.
    pub fn metadata(&self) -> &[(String, Vec<u8>)] {
        &self.metadata
    }

    /// Decrypt to `out`, writing nothing unless the whole payload authenticates: a first pass
    /// authenticates every segment (and the payload CRC), a second decrypts and writes, checking
    /// again. Costs two AES-GCM passes; memory is one segment.
    pub fn decrypt_to<W: Write>(&mut self, out: W) -> Result<u64> {
        self.pass(None::<&mut std::io::Sink>)?;
        self.pass(Some(out))
    }

    /// Decrypt to `out` in one pass. Each segment is released only after its GCM tag verified and
    /// matched the (root-signed) manifest hash at its position, so every byte written is
    /// authentic; but when a later segment fails, the earlier ones have already been written and
    /// the caller must discard the output (e.g. write to a temporary file and rename on success,
    /// or abort the HTTP response). Use [`decrypt_to`](Self::decrypt_to) when that is not possible.
    pub fn decrypt_streaming_to<W: Write>(&mut self, out: W) -> Result<u64> {
        self.pass(Some(out))
    }

    fn pass<W: Write>(&mut self, mut out: Option<W>) -> Result<u64> {
        let r = &mut self.reader;
        r.src.seek(SeekFrom::Start(r.payload.data_offset))?;
        let max = r
            .segments
            .iter()
            .map(|s| s.plaintext_size)
            .max()
            .unwrap_or(0) as usize;
        // A segment's plaintext is held until its tag verified; it is read, CRC'd and decrypted
        // in cache-sized chunks (see gcm_stream).
        let mut buf = Zeroizing::new(vec![0u8; max]);
        let mut gcm = GcmStream::new(&self.dek, false)?;
        let mut crc = crc32fast::Hasher::new();
        let mut written = 0u64;
        for s in &r.segments {
            let mut read = |dst: &mut [u8]| {
                r.src.read_exact(dst).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Error::Segment {
                            index: s.index,
                            detail: "payload ends inside this segment (truncated)".into(),
                        }
                    } else {
                        Error::Io(e)
                    }
                })
            };
            let mut iv = [0u8; crypto::IV_LEN];
            read(&mut iv)?;
            crc.update(&iv);
            gcm.start(&iv)?;
            let body = &mut buf[..s.plaintext_size as usize];
            for chunk in body.chunks_mut(DECRYPT_CHUNK) {
                read(chunk)?;
                crc.update(chunk);
                gcm.update(chunk)?;
            }
            let mut tag = [0u8; crypto::TAG_LEN];
            read(&mut tag)?;
            crc.update(&tag);
            if !s.tag_matches(&tag) {
                return Err(Error::Segment {
                    index: s.index,
                    detail: "GCM tag differs from the manifest's segment hash (segment replaced or reordered)".into(),
                });
            }
            if !gcm.finish_decrypt(&tag) {
                return Err(Error::Segment {
                    index: s.index,
                    detail: "AES-GCM authentication failed (ciphertext modified)".into(),
                });
            }
            if let Some(w) = out.as_mut() {
                w.write_all(body)?;
            }
            written += body.len() as u64;
        }
        if crc.finalize() != r.payload.crc32 {
            return Err(Error::CrcMismatch {
                entry: PAYLOAD_ENTRY,
            });
        }
        if let Some(w) = out.as_mut() {
            w.flush()?;
        }
        Ok(written)
    }
}
