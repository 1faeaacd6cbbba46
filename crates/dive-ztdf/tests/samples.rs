//! The OpenTDF sample archives (no keys available): structure, legacy encodings, and our
//! assertion hash against the Go SDK's signed claim.

mod common;

use std::fs::File;

use dive_ztdf::crypto::b64;
use dive_ztdf::{KeyAlg, TdfReader, inspect};
use serde_json::Value;

fn open(rel: &str) -> TdfReader<File> {
    TdfReader::open(File::open(common::testdata().join(rel)).unwrap()).unwrap()
}

#[test]
fn sample_tdf_v4_3_ec_wrapped() {
    let mut r = open("sample.tdf");
    assert_eq!(r.manifest().version(), Some("4.3.0"));
    let k = &r.key_access_objects()[0];
    assert_eq!(
        (k.alg, k.kid.as_deref(), k.kas.as_str()),
        (KeyAlg::EcdhHkdf, Some("e1"), "http://localhost:8080")
    );
    assert!(
        k.ephemeral_key
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(r.segments().len(), 1);
    assert_eq!(r.segments()[0].hash.len(), 16, "4.3 raw GMAC tag");
    assert_eq!(r.plaintext_len(), 16);
    assert!(r.policy().body.data_attributes.is_empty());
    r.check_payload_structure().unwrap();
}

#[test]
fn tdf_valid_legacy_split() {
    let mut r = open("examples/cmd/testdata/tdf-valid.tdf");
    assert_eq!(r.manifest().version(), Some("3.0.0"));
    let sids: Vec<_> = r
        .key_access_objects()
        .iter()
        .map(|k| k.split_id().to_string())
        .collect();
    assert_eq!(sids, ["a", "b"]);
    assert!(
        r.key_access_objects()
            .iter()
            .all(|k| k.alg == KeyAlg::RsaOaep && k.encrypted_metadata.is_some())
    );
    assert_eq!(r.segments()[0].hash.len(), 32, "legacy hex hash");
    r.check_payload_structure().unwrap();
}

#[test]
fn multikas_any_of_and_go_assertion_hash() {
    let mut r = open("examples/cmd/testdata/tdf-multikas.tdf");
    let sids: Vec<_> = r
        .key_access_objects()
        .iter()
        .map(|k| k.split_id().to_string())
        .collect();
    assert_eq!(sids.len(), 3);
    assert_eq!(
        sids[0], sids[2],
        "KAOs 0 and 2 are alternatives for one share"
    );
    assert_ne!(sids[0], sids[1]);
    let attrs: Vec<_> = r.policy().attribute_fqns().collect();
    assert_eq!(
        attrs,
        [
            "https://demo.com/attr/classification/value/topsecret",
            "https://demo.com/attr/relto/value/gbr",
            "https://demo.com/attr/relto/value/usa"
        ]
    );
    assert!(r.label().unwrap().is_none(), "no DIVE-namespace attributes");
    r.check_payload_structure().unwrap();

    // The Go SDK signed assertionHash over its canonical form; ours must be identical.
    let a = &r.assertions()[0];
    assert_eq!(a.statement.format, "json+stanag5636");
    let jws = &a.binding.as_ref().unwrap().signature;
    let claims: Value =
        serde_json::from_slice(&b64::url_decode(jws.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["assertionHash"], hex::encode(a.hash()));
    // Legacy assertionSig = base64(hex segment hashes ‖ hex assertion hash).
    let mut expect = r.segments()[0].hash.clone();
    expect.extend_from_slice(hex::encode(a.hash()).as_bytes());
    assert_eq!(claims["assertionSig"], b64::encode(expect));
}

#[test]
fn filewatcher_old_nulls_and_object_statements() {
    let mut r = open("examples/cmd/testdata/tdf-filewatcher-old.tdf");
    assert_eq!(r.key_access_objects().len(), 3);
    assert!(
        r.key_access_objects()
            .iter()
            .all(|k| k.sid.is_none() && k.encrypted_metadata.is_none())
    );
    assert_eq!(r.assertions().len(), 2);
    assert!(
        r.assertions()[0]
            .statement
            .value
            .starts_with("{\"context\":"),
        "object value re-encoded with sorted keys"
    );
    assert_eq!(
        r.manifest()
            .encryption_information
            .integrity_information
            .segment_size_default,
        104_857_600
    );
    r.check_payload_structure().unwrap();
    // Manifest entry precedes the payload in this archive; readers must not depend on order.
    let d = r.directory();
    assert!(
        d.entry("0.manifest.json").unwrap().header_offset
            < d.entry("0.payload").unwrap().header_offset
    );
}

#[test]
fn inspect_reports_all_checks_on_samples() {
    for rel in [
        "sample.tdf",
        "examples/cmd/testdata/tdf-valid.tdf",
        "examples/cmd/testdata/tdf-multikas.tdf",
        "examples/cmd/testdata/tdf-filewatcher-old.tdf",
    ] {
        let i = inspect(File::open(common::testdata().join(rel)).unwrap()).unwrap();
        assert!(i.ok(), "{rel}: {:?}", i.checks);
        assert_eq!(i.segments, 1);
    }
}
