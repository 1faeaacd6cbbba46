//! Tampering: every modification is detected with a specific error, and no plaintext is written —
//! not even a prefix — by `decrypt_to`.

mod common;

use std::io::{Cursor, Write};

use common::{data, recipient, rsa, unwrapper};
use dive_ztdf::crypto::b64;
use dive_ztdf::zip::{StoredZipWriter, read_directory};
use dive_ztdf::{EncryptOptions, Error, KeyAccessPlan, TdfReader, encrypt};
use serde_json::Value;

const SEG: usize = 1000;
const ENC: usize = SEG + 28;

fn original() -> (Vec<u8>, Vec<u8>) {
    let plain = data(4 * SEG, 99); // exactly four segments
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://kas.usa.dive/kas",
        "r1",
        rsa(),
    )))
    .label(dive_ztdf::label::label_from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap())
    .segment_size(SEG);
    let mut out = Vec::new();
    encrypt(Cursor::new(&plain), &mut out, &opts).unwrap();
    (plain, out)
}

fn parts(tdf: &[u8]) -> (Vec<u8>, Value) {
    let dir = read_directory(&mut Cursor::new(tdf)).unwrap();
    let p = dir.entry("0.payload").unwrap();
    let m = dir.entry("0.manifest.json").unwrap();
    let payload = tdf[p.data_offset as usize..(p.data_offset + p.size) as usize].to_vec();
    let manifest =
        serde_json::from_slice(&tdf[m.data_offset as usize..(m.data_offset + m.size) as usize])
            .unwrap();
    (payload, manifest)
}

fn rebuild(payload: &[u8], manifest: &Value) -> Vec<u8> {
    let mut w = StoredZipWriter::new(Vec::new());
    let mut e = w.begin_streamed("0.payload", false).unwrap();
    w.data_writer().write_all(payload).unwrap();
    e.update(payload);
    w.end_streamed(e).unwrap();
    w.add_entry("0.manifest.json", &serde_json::to_vec(manifest).unwrap())
        .unwrap();
    w.finish().unwrap()
}

/// Open, unlock and decrypt with the two-pass API; returns the error and what was written.
fn attempt(tdf: &[u8]) -> (Error, Vec<u8>) {
    let mut written = Vec::new();
    let result = TdfReader::open(Cursor::new(tdf))
        .and_then(|r| r.unlock(&unwrapper(&[("r1", rsa())])))
        .and_then(|mut u| u.decrypt_to(&mut written));
    match result {
        Ok(n) => panic!("tampered file decrypted ({n} bytes)"),
        Err(e) => (e, written),
    }
}

#[test]
fn untampered_file_decrypts() {
    let (plain, tdf) = original();
    let mut out = Vec::new();
    TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(out, plain);
    // Rebuilding from the same parts must also work: the helpers themselves do not tamper.
    let (p, m) = parts(&tdf);
    let mut out = Vec::new();
    TdfReader::open(Cursor::new(rebuild(&p, &m)))
        .unwrap()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(out, plain);
}

#[test]
fn bit_flip_in_each_segment_is_caught_before_any_output() {
    let (_, tdf) = original();
    let (payload, manifest) = parts(&tdf);
    for seg in 0..4 {
        // IV, ciphertext and tag positions of the segment.
        for at in [0usize, 5, 12, 500, ENC - 17, ENC - 1] {
            let mut p = payload.clone();
            p[seg * ENC + at] ^= 0x10;
            let (err, written) = attempt(&rebuild(&p, &manifest));
            assert!(
                written.is_empty(),
                "segment {seg} byte {at}: {} bytes released",
                written.len()
            );
            match err {
                Error::Segment { index, .. } => assert_eq!(index, seg, "byte {at}"),
                other => panic!("segment {seg} byte {at}: unexpected {other}"),
            }
        }
    }
}

#[test]
fn streaming_decrypt_never_releases_an_unauthenticated_segment() {
    let (plain, tdf) = original();
    let (mut payload, manifest) = parts(&tdf);
    payload[2 * ENC + 100] ^= 1;
    let mut u = TdfReader::open(Cursor::new(rebuild(&payload, &manifest)))
        .unwrap()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap();
    let mut out = Vec::new();
    let err = u.decrypt_streaming_to(&mut out).unwrap_err();
    assert!(matches!(err, Error::Segment { index: 2, .. }), "{err}");
    // Only the authenticated segments before the damaged one were released.
    assert_eq!(out, plain[..2 * SEG]);
}

#[test]
fn reordered_segments_are_detected() {
    let (_, tdf) = original();
    let (payload, manifest) = parts(&tdf);
    let mut p = payload.clone();
    p[ENC..2 * ENC].copy_from_slice(&payload[2 * ENC..3 * ENC]);
    p[2 * ENC..3 * ENC].copy_from_slice(&payload[ENC..2 * ENC]);
    let tampered = rebuild(&p, &manifest);
    let (err, written) = attempt(&tampered);
    assert!(written.is_empty());
    assert!(matches!(err, Error::Segment { index: 1, .. }), "{err}");
    // Also visible without the key.
    let mut r = TdfReader::open(Cursor::new(&tampered)).unwrap();
    assert!(matches!(
        r.check_payload_structure(),
        Err(Error::Segment { index: 1, .. })
    ));
}

#[test]
fn changed_policy_breaks_the_binding() {
    let (_, tdf) = original();
    let (payload, mut manifest) = parts(&tdf);
    let policy = String::from_utf8(
        b64::decode(
            manifest["encryptionInformation"]["policy"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let lowered = policy.replace(
        "classification/value/secret",
        "classification/value/unclassified",
    );
    assert_ne!(policy, lowered);
    manifest["encryptionInformation"]["policy"] = b64::encode(lowered).into();
    let (err, written) = attempt(&rebuild(&payload, &manifest));
    assert!(written.is_empty());
    assert!(
        matches!(err, Error::PolicyBinding { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn changed_segment_hash_or_root_signature_is_detected() {
    let (_, tdf) = original();
    let (payload, manifest) = parts(&tdf);
    for i in 0..4 {
        let mut m = manifest.clone();
        let h = &mut m["encryptionInformation"]["integrityInformation"]["segments"][i]["hash"];
        let mut raw = b64::decode(h.as_str().unwrap()).unwrap();
        raw[0] ^= 1;
        *h = b64::encode(raw).into();
        let (err, written) = attempt(&rebuild(&payload, &m));
        assert!(written.is_empty());
        assert!(matches!(err, Error::RootSignature), "hash {i}: {err}");
    }
    let mut m = manifest.clone();
    m["encryptionInformation"]["integrityInformation"]["rootSignature"]["sig"] =
        b64::encode([0u8; 32]).into();
    assert!(matches!(
        attempt(&rebuild(&payload, &m)).0,
        Error::RootSignature
    ));
    let mut m = manifest.clone();
    m["encryptionInformation"]["integrityInformation"]["segments"][1]["segmentSize"] =
        (SEG as u64 - 1).into();
    assert!(matches!(
        attempt(&rebuild(&payload, &m)).0,
        Error::Segment { index: 1, .. }
    ));
}

#[test]
fn changed_assertion_is_detected() {
    let (_, tdf) = original();
    let (payload, manifest) = parts(&tdf);
    let mut m = manifest.clone();
    let v = m["assertions"][0]["statement"]["value"]
        .as_str()
        .unwrap()
        .replace("SECRET", "UNCLASSIFIED");
    m["assertions"][0]["statement"]["value"] = v.into();
    let (err, _) = attempt(&rebuild(&payload, &m));
    assert!(
        matches!(&err, Error::Assertion { detail, .. } if detail.contains("assertion modified")),
        "{err}"
    );
    let mut m = manifest.clone();
    m["assertions"][0]["binding"]["signature"] = "e30.e30.AAAA".into();
    assert!(matches!(
        attempt(&rebuild(&payload, &m)).0,
        Error::Assertion { .. }
    ));
    let mut m = manifest.clone();
    m["assertions"][0]
        .as_object_mut()
        .unwrap()
        .remove("binding");
    let unsigned = rebuild(&payload, &m);
    let (err, written) = attempt(&unsigned);
    assert!(written.is_empty());
    assert!(
        matches!(&err, Error::AssertionUnsigned { id } if !id.is_empty()),
        "{err}"
    );
    // inspect flags it without a key.
    let report = dive_ztdf::inspect(Cursor::new(&unsigned)).unwrap();
    assert!(!report.ok());
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "assertion bindings" && !c.ok),
        "{:?}",
        report.checks
    );
    assert!(dive_ztdf::inspect(Cursor::new(&tdf)).unwrap().ok());
}

/// A JWS re-signed over the modified assertion with another key, one signed with the DEK over
/// other segment hashes, and a binding method other than JWS: each is a specific error.
#[test]
fn resigned_or_unbound_assertion_is_detected() {
    let (_, tdf) = original();
    let (payload, manifest) = parts(&tdf);
    let dek = {
        let r = TdfReader::open(Cursor::new(&tdf)).unwrap();
        let kao = r.key_access_objects()[0].clone();
        // One split: the share is the DEK.
        let key = dive_ztdf::KasPrivateKey::from_pem(&rsa().private_pem).unwrap();
        key.unwrap_kao(&kao).unwrap().to_vec()
    };
    let aggregate: Vec<u8> = manifest["encryptionInformation"]["integrityInformation"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| b64::decode(s["hash"].as_str().unwrap()).unwrap())
        .collect();
    let a0 = dive_ztdf::assertion::Assertion::from_json(&manifest["assertions"][0]).unwrap();
    let with = |a: &dive_ztdf::assertion::Assertion| {
        let mut m = manifest.clone();
        m["assertions"][0] = a.to_json(true);
        rebuild(&payload, &m)
    };
    // Sanity: re-signing the untouched assertion with the real DEK and aggregate is accepted.
    let mut ok = a0.clone();
    ok.sign(&dek, &aggregate);
    let mut out = Vec::new();
    TdfReader::open(Cursor::new(with(&ok)))
        .unwrap()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    // Downgraded label, re-signed with a key that is not the DEK.
    let mut forged = a0.clone();
    forged.statement.value = forged.statement.value.replace("SECRET", "UNCLASSIFIED");
    forged.sign(&[9u8; 32], &aggregate);
    let (err, written) = attempt(&with(&forged));
    assert!(written.is_empty());
    assert!(
        matches!(&err, Error::Assertion { detail, .. } if detail.contains("signature does not verify")),
        "{err}"
    );
    // Signed with the DEK but over other segment hashes: not bound to this payload.
    let mut unbound = a0.clone();
    unbound.sign(&dek, b"some other payload's segment hashes");
    let (err, _) = attempt(&with(&unbound));
    assert!(
        matches!(&err, Error::Assertion { detail, .. } if detail.contains("does not bind")),
        "{err}"
    );
    // A binding method DIVE does not know is not a signature.
    let mut other = ok.clone();
    other.binding.as_mut().unwrap().method = "none".into();
    let (err, _) = attempt(&with(&other));
    assert!(
        matches!(&err, Error::Assertion { detail, .. } if detail.contains("unsupported binding method")),
        "{err}"
    );
}

/// The root signature does not cover the assertions, so a stripped handling assertion is only
/// caught when the reader requires it; it is then a specific error.
#[test]
fn stripped_label_assertion_is_refused_when_required() {
    let (plain, tdf) = original();
    let (payload, manifest) = parts(&tdf);
    let mut m = manifest.clone();
    m["assertions"] = Value::Array(vec![]);
    let stripped = rebuild(&payload, &m);
    let err = TdfReader::open(Cursor::new(&stripped))
        .unwrap()
        .require_label_assertion()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap_err();
    assert!(matches!(err, Error::AssertionMissing { .. }), "{err}");
    // Without the requirement (OpenTDF files have no such assertion) the file opens.
    let mut out = Vec::new();
    TdfReader::open(Cursor::new(&stripped))
        .unwrap()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(out, plain);
    // The untouched file satisfies the requirement.
    let mut out = Vec::new();
    TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .require_label_assertion()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(out, plain);
}

#[test]
fn zip_directory_tampering_is_detected() {
    let (_, tdf) = original();
    let dir = read_directory(&mut Cursor::new(&tdf)).unwrap();
    let cd = dir.central_directory_offset as usize;
    let flip = |at: usize, mask: u8| {
        let mut t = tdf.clone();
        t[at] ^= mask;
        t
    };
    // Payload entry in the central directory: CRC, sizes, name, local header offset.
    assert!(matches!(
        attempt(&flip(cd + 16, 1)).0,
        Error::CrcMismatch { entry: "0.payload" }
    ));
    assert!(matches!(attempt(&flip(cd + 20, 1)).0, Error::Container(_)));
    assert!(matches!(
        attempt(&flip(cd + 46, 1)).0,
        Error::Container(_) | Error::MissingEntry(_)
    ));
    assert!(matches!(attempt(&flip(cd + 42, 4)).0, Error::Container(_)));
    // Compression method.
    assert!(matches!(attempt(&flip(cd + 10, 8)).0, Error::Container(_)));
    // End of central directory: directory offset.
    let eocd = tdf.len() - 22;
    assert!(matches!(
        attempt(&flip(eocd + 16, 1)).0,
        Error::Container(_)
    ));
    // Manifest bytes (CRC-protected).
    let m = dir.entry("0.manifest.json").unwrap();
    assert!(matches!(
        attempt(&flip(m.data_offset as usize + 10, 1)).0,
        Error::CrcMismatch {
            entry: "0.manifest.json"
        }
    ));
}

#[test]
fn truncation_is_detected() {
    let (_, tdf) = original();
    for cut in [1, 21, 22, 100, tdf.len() / 2, tdf.len() - 10] {
        let (err, written) = attempt(&tdf[..tdf.len() - cut]);
        assert!(written.is_empty());
        assert!(matches!(err, Error::Container(_)), "cut {cut}: {err}");
    }
    // A consistent container whose payload lost its last segment.
    let (payload, manifest) = parts(&tdf);
    let (err, _) = attempt(&rebuild(&payload[..3 * ENC], &manifest));
    assert!(matches!(err, Error::Segment { index: 3, .. }), "{err}");
    // ... and whose manifest lost it too: the root signature no longer matches.
    let mut m = manifest.clone();
    m["encryptionInformation"]["integrityInformation"]["segments"]
        .as_array_mut()
        .unwrap()
        .pop();
    assert!(matches!(
        attempt(&rebuild(&payload[..3 * ENC], &m)).0,
        Error::RootSignature
    ));
}
