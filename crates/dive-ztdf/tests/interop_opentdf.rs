//! Interoperability with an independent implementation: the `opentdf` crate (arkavo-org
//! opentdf-rs 0.17) and its `opentdf-crypto`, both ways.
//!
//! - `wrapped` (RSA-OAEP SHA-1): full interop both ways (their wrap → our unwrap and reader;
//!   our wrap → their unwrap and reader).
//! - `ec-wrapped`: opentdf-crypto 0.17 derives the key-encryption key with an *empty* HKDF salt,
//!   where BaseTDF and the OpenTDF vectors use SHA-256("TDF"), so EC key wrapping cannot
//!   interoperate; the payload, manifest and integrity layers are still tested both ways with
//!   the data key, and a test pins the incompatibility against the official EC vector.

mod common;

use std::io::Cursor;

use common::{data, ec, recipient, rsa, unwrapper};
use dive_ztdf::{EncryptOptions, KasPrivateKey, KeyAccessPlan, TdfReader, encrypt};
use opentdf::manifest::{IntegrityInformationExt, KeyAccessExt};
use opentdf::{Segment, TdfArchive, TdfArchiveMemoryBuilder, TdfEncryption, TdfManifest};
use opentdf_crypto::{KeyEncapsulation, RsaOaepKem};

fn dive_tdf(r: dive_ztdf::Recipient, plain: &[u8]) -> Vec<u8> {
    let opts = EncryptOptions::new(KeyAccessPlan::single(r))
        .label(dive_ztdf::label::label_from_marking("SECRET//REL TO USA, FRA").unwrap())
        .segment_size(1000);
    let mut out = Vec::new();
    encrypt(Cursor::new(plain), &mut out, &opts).unwrap();
    out
}

/// Their decryption of our file with a given payload key (checks segments and root signature).
fn their_decrypt(tdf: &[u8], dek: &[u8]) -> Vec<u8> {
    let mut archive = TdfArchive::new(Cursor::new(tdf.to_vec())).unwrap();
    let entry = archive.by_index().unwrap();
    entry.decrypt_with_key(dek).unwrap()
}

#[test]
fn dive_rsa_file_opens_with_opentdf() {
    let plain = data(5500, 1);
    let tdf = dive_tdf(recipient("https://kas.usa.dive/kas", "r1", rsa()), &plain);
    let kao = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .key_access_objects()[0]
        .clone();
    // Their RSA-OAEP unwrap of our wrappedKey gives the DEK (single split: share = DEK).
    let dek = RsaOaepKem::with_sha1()
        .unwrap(&kao.protected_key, &rsa().private_pem)
        .unwrap();
    assert_eq!(their_decrypt(&tdf, &dek), plain);
}

#[test]
fn dive_ec_file_payload_opens_with_opentdf() {
    let plain = data(2100, 2);
    let tdf = dive_tdf(recipient("https://kas.usa.dive/kas", "e1", ec()), &plain);
    let kao = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .key_access_objects()[0]
        .clone();
    let dek = KasPrivateKey::from_pem(&ec().private_pem)
        .unwrap()
        .unwrap_kao(&kao)
        .unwrap();
    assert_eq!(their_decrypt(&tdf, &dek), plain);
}

/// Build a TDF with opentdf's own encryption, manifest, binding, root signature and archive.
fn opentdf_file(
    plain: &[u8],
    wrap: impl FnOnce(&[u8]) -> (String, Option<String>, &'static str),
) -> (Vec<u8>, Vec<u8>) {
    let enc = TdfEncryption::new().unwrap();
    let segmented = enc.encrypt_with_segments(plain, 1024).unwrap();
    let mut manifest = TdfManifest::new("0.payload".into(), "https://kas.example.com".into());
    let policy = r#"{"uuid":"3f6c8a52-0d7e-4a5c-9a57-1c2d3e4f5a6b","body":{"dataAttributes":[{"attribute":"https://dive.coalition/attr/classification/value/secret"},{"attribute":"https://dive.coalition/attr/releasableTo/value/usa"}],"dissem":[]}}"#;
    manifest.set_policy_raw(policy);
    let (wrapped, eph, kind) = wrap(enc.payload_key());
    let ka = &mut manifest.encryption_information.key_access[0];
    ka.wrapped_key = wrapped;
    ka.ephemeral_public_key = eph;
    ka.access_type = kind.into();
    ka.generate_policy_binding_raw(policy, enc.payload_key())
        .unwrap();
    for s in &segmented.segment_info {
        manifest
            .encryption_information
            .integrity_information
            .segments
            .push(Segment {
                hash: s.hash.clone(),
                segment_size: Some(s.plaintext_size),
                encrypted_segment_size: Some(s.encrypted_size),
            });
    }
    let ii = &mut manifest.encryption_information.integrity_information;
    ii.segment_size_default = 1024;
    ii.encrypted_segment_size_default = 1024 + 28;
    ii.generate_root_signature(&segmented.gmac_tags, enc.payload_key())
        .unwrap();
    let mut builder = TdfArchiveMemoryBuilder::new();
    builder
        .add_entry_with_segments(&manifest, &segmented.segments, 0)
        .unwrap();
    (builder.finish().unwrap(), enc.payload_key().to_vec())
}

#[test]
fn opentdf_rsa_file_opens_with_dive() {
    let plain = data(4000, 3);
    let (tdf, _) = opentdf_file(&plain, |dek| {
        (
            RsaOaepKem::with_sha1()
                .wrap(dek, &rsa().public_pem)
                .unwrap(),
            None,
            "wrapped",
        )
    });
    let reader = TdfReader::open(Cursor::new(&tdf)).unwrap();
    assert_eq!(reader.segments().len(), 4);
    assert_eq!(
        reader.label().unwrap().unwrap().classification,
        dive_ztdf::Clearance::Secret
    );
    let mut unlocked = reader.unlock(&unwrapper(&[("r1", rsa())])).unwrap();
    let mut out = Vec::new();
    unlocked.decrypt_to(&mut out).unwrap();
    assert_eq!(out, plain);
}

#[test]
fn opentdf_ec_file_payload_opens_with_dive() {
    let plain = data(3000, 4);
    let (tdf, dek) = opentdf_file(&plain, |dek| {
        let r = opentdf_crypto::wrap_key_with_ec(&ec().public_pem, dek).unwrap();
        (r.wrapped_key, Some(r.ephemeral_public_key), "ec-wrapped")
    });
    // Their EC wrap uses an empty HKDF salt: our conformant unwrap must refuse it...
    let err = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .unlock(&unwrapper(&[("e1", ec())]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("AES-GCM tag check of the wrapped key failed"),
        "{err}"
    );
    // ...while the payload, manifest and root signature they wrote verify with the key.
    let mut unlocked = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .unlock_with_dek(&dek)
        .unwrap();
    let mut out = Vec::new();
    unlocked.decrypt_to(&mut out).unwrap();
    assert_eq!(out, plain);
}

/// Pins the reason EC key wrapping does not interoperate: opentdf-crypto 0.17 cannot unwrap the
/// official BaseTDF ECDH-HKDF vector, which dive-ztdf does (see kao_vectors.rs). If this starts
/// failing, opentdf-crypto became conformant: add EC key-wrap interop tests.
#[test]
fn opentdf_crypto_ec_unwrap_is_not_basetdf_conformant() {
    let dir = common::testdata().join("spec/testvectors/kao");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("vectors/pos-ecdh-hkdf-aesgcm-001.json")).unwrap(),
    )
    .unwrap();
    let key = std::fs::read_to_string(dir.join("keys/ec-p256-test.priv.pem")).unwrap();
    let kao = &v["inputs"]["kao"];
    let theirs = opentdf_crypto::unwrap_key_with_ec(
        &key,
        kao["protectedKey"].as_str().unwrap(),
        kao["ephemeralKey"].as_str().unwrap(),
    );
    assert!(
        theirs.is_err(),
        "opentdf-crypto now unwraps the BaseTDF EC vector"
    );
    let ours = KasPrivateKey::from_pem(&key)
        .unwrap()
        .unwrap_kao(&dive_ztdf::KeyAccessObject::from_json(kao).unwrap())
        .unwrap();
    assert_eq!(hex::encode(&ours[..]), v["expected"]["recoveredDek"]);
}
