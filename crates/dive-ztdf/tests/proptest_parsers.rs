//! Property tests: the container and manifest parsers never panic on arbitrary input, a mutated
//! file either fails or yields exactly the original plaintext, and the label mappings round-trip.

mod common;

use std::io::Cursor;
use std::sync::OnceLock;

use common::{data, recipient, rsa, unwrapper};
use dive_ztdf::label::{from_attribute_fqns, label_from_marking, to_attribute_fqns};
use dive_ztdf::{
    Clearance, CoiOperator, CountryCode, EncryptOptions, KeyAccessObject, KeyAccessPlan, Manifest,
    SecurityLabel, TdfReader, encrypt,
};
use proptest::prelude::*;

fn sample() -> &'static (Vec<u8>, Vec<u8>) {
    static S: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    S.get_or_init(|| {
        let plain = data(2500, 77);
        let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
            "https://kas/kas",
            "r1",
            rsa(),
        )))
        .label(label_from_marking("SECRET//FVEY//REL TO USA").unwrap())
        .segment_size(1000);
        let mut out = Vec::new();
        encrypt(Cursor::new(&plain), &mut out, &opts).unwrap();
        (plain, out)
    })
}

fn decrypt(tdf: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    TdfReader::open(Cursor::new(tdf))
        .and_then(|r| r.unlock(&unwrapper(&[("r1", rsa())])))
        .and_then(|mut u| u.decrypt_to(&mut out))
        .ok()
        .map(|_| out)
}

fn label_strategy() -> impl Strategy<Value = SecurityLabel> {
    let class = prop_oneof![
        Just(Clearance::Unclassified),
        Just(Clearance::Restricted),
        Just(Clearance::Confidential),
        Just(Clearance::Secret),
        Just(Clearance::TopSecret),
    ];
    (
        class,
        prop::collection::btree_set(
            prop::sample::select(vec!["USA", "GBR", "FRA", "DEU", "CAN", "AUS", "NZL"]),
            1..4,
        ),
        prop::collection::vec("[A-Z][A-Z0-9-]{0,8}", 0..3),
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![Just("NOFORN".to_string()), Just("ORCON".to_string())],
            0..2,
        ),
    )
        .prop_filter(
            "REL prefix would be read as releasability",
            |(_, _, coi, _, _)| {
                coi.iter().all(|c| {
                    !c.starts_with("REL")
                        && c != "INDUSTRY"
                        && !dive_core::label::KNOWN_CAVEATS.contains(&c.as_str())
                })
            },
        )
        .prop_map(|(classification, rel, coi, any, caveats)| SecurityLabel {
            classification,
            releasability_to: rel
                .into_iter()
                .map(|c| CountryCode::new(c).unwrap())
                .collect(),
            coi_operator: if any && !coi.is_empty() {
                CoiOperator::Any
            } else {
                CoiOperator::All
            },
            coi,
            caveats,
            original_classification: None,
            original_country: None,
            originator: None,
            creation_date: None,
            releasable_to_industry: false,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn container_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = dive_ztdf::zip::read_directory(&mut Cursor::new(&bytes));
        let _ = TdfReader::open(Cursor::new(&bytes));
    }

    #[test]
    fn mutated_file_fails_or_yields_the_original(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (plain, tdf) = sample();
        let mut t = tdf.clone();
        for (i, mask) in flips {
            let at = i.index(t.len());
            t[at] ^= mask;
        }
        if let Some(c) = cut {
            t.truncate(c.index(t.len()));
        }
        if let Some(out) = decrypt(&t) {
            prop_assert_eq!(&out, plain, "a modified file produced different plaintext");
        }
    }

    #[test]
    fn manifest_and_kao_parsers_never_panic(json in "\\PC{0,400}") {
        let _ = Manifest::from_json(json.as_bytes());
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) {
            let _ = KeyAccessObject::from_json(&v);
            let _ = dive_ztdf::assertion::Assertion::from_json(&v);
        }
    }

    #[test]
    fn mutated_manifest_json_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (_, tdf) = sample();
        let r = TdfReader::open(Cursor::new(tdf)).unwrap();
        let mut m = serde_json::to_vec(r.manifest()).unwrap();
        let at = pos.index(m.len());
        m[at] = byte;
        if let Ok(man) = Manifest::from_json(&m) {
            let _ = man.policy();
            for k in &man.encryption_information.key_access {
                let _ = KeyAccessObject::from_json(k);
            }
        }
    }

    #[test]
    fn marking_round_trips(label in label_strategy()) {
        prop_assert_eq!(label_from_marking(&label.marking()).unwrap(), label);
    }

    #[test]
    fn fqns_round_trip(label in label_strategy(), industry in any::<bool>()) {
        let created = time::macros::datetime!(2026-05-06 07:08:09 UTC);
        let label = SecurityLabel { releasable_to_industry: industry, creation_date: Some(created), ..label };
        let fqns = to_attribute_fqns(&label, "dive.coalition");
        let back = from_attribute_fqns(fqns.iter().map(String::as_str), "dive.coalition").unwrap().unwrap();
        prop_assert_eq!(back, label);
    }
}
