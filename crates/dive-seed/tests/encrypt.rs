//! Seed documents become real ZTDF: they decrypt with the KAS private key to the generated
//! bytes, carry the label in the policy and the handling assertion, and arrive in corpus order.

use std::io::Cursor;
use std::sync::OnceLock;

use dive_core::CountryCode;
use dive_seed::{
    CorpusSpec, EncryptedDocument, KasRecipient, SeedError, SeedOptions, encrypt_batch,
    encrypt_corpus, encrypt_document, generate, seed_batches, seed_with,
};
use dive_ztdf::{KasPrivateKey, LocalKeyUnwrapper, TdfReader};
use time::macros::datetime;

const KAS_URL: &str = "https://kas.usa.dive.test/kas";

struct Keys {
    rsa: (String, String),
    ec: (String, String),
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        rsa: KasPrivateKey::generate_rsa_pem().unwrap(),
        ec: KasPrivateKey::generate_ec_pem().unwrap(),
    })
}

fn recipient(public_pem: &str, kid: &str) -> KasRecipient {
    KasRecipient::from_pem(KAS_URL, Some(kid.into()), public_pem).unwrap()
}

fn spec(count: usize, seed: u64) -> CorpusSpec {
    CorpusSpec {
        instance: CountryCode::new("USA").unwrap(),
        count,
        seed,
        now: datetime!(2026-06-01 12:00:00 UTC),
    }
}

fn decrypt(e: &EncryptedDocument, private_pem: &str, kid: &str) -> Vec<u8> {
    let reader = TdfReader::open(Cursor::new(&e.ztdf)).unwrap();
    let unwrapper = LocalKeyUnwrapper::new().with_key(
        Some(kid.into()),
        KasPrivateKey::from_pem(private_pem).unwrap(),
    );
    let mut unlocked = reader.unlock(&unwrapper).unwrap();
    let mut out = Vec::new();
    unlocked.decrypt_to(&mut out).unwrap();
    out
}

#[test]
fn corpus_decrypts_to_the_generated_documents_with_rsa_and_ec_keys() {
    let k = keys();
    let plain: Vec<_> = generate(&spec(40, 5)).collect();
    for (private, public, kid) in [(&k.rsa.0, &k.rsa.1, "r1"), (&k.ec.0, &k.ec.1, "e1")] {
        let enc = encrypt_corpus(&spec(40, 5), &recipient(public, kid), 2).unwrap();
        assert_eq!(enc.len(), 40);
        for (e, p) in enc.iter().zip(&plain) {
            assert_eq!(e.meta, p.meta);
            assert_eq!(e.plaintext_len, p.plaintext.len() as u64);
            let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &p.plaintext);
            assert_eq!(&e.plaintext_sha256[..], sha.as_ref());

            let reader = TdfReader::open(Cursor::new(&e.ztdf)).unwrap();
            let m = reader.manifest();
            assert_eq!(m.payload.mime_type.as_deref(), Some(p.meta.mime_type));
            let kao = &reader.key_access_objects()[0];
            assert_eq!((kao.kas.as_str(), kao.kid.as_deref()), (KAS_URL, Some(kid)));
            // The policy carries the label (COI tags come back upper-cased: see docs/ztdf.md).
            let mut expected = p.meta.label.clone();
            expected.coi = expected.coi.iter().map(|t| t.to_uppercase()).collect();
            assert_eq!(reader.label().unwrap(), Some(expected));
            // And so does the handling assertion, with the national original marking.
            let a = reader
                .assertions()
                .iter()
                .find(|a| a.kind == "handling")
                .expect("handling assertion");
            let original = p.meta.label.original_classification.as_deref().unwrap();
            assert!(
                a.statement.value.contains(original),
                "{}",
                a.statement.value
            );

            assert_eq!(decrypt(e, private, kid), p.plaintext);
        }
    }
}

#[test]
fn batches_arrive_in_corpus_order_with_bounded_size() {
    let k = keys();
    let kas = recipient(&k.ec.1, "e1");
    let opts = SeedOptions {
        threads: 3,
        batch_size: 7,
    };
    let batches = seed_batches(&spec(50, 8), &kas, &opts).unwrap();
    assert_eq!(batches.batch_count(), 8);
    let mut next = 0;
    let expected: Vec<_> = generate(&spec(50, 8)).map(|d| d.meta).collect();
    for batch in batches {
        let batch = batch.unwrap();
        assert!(!batch.is_empty() && batch.len() <= 7);
        for e in batch {
            assert_eq!(e.meta, expected[next]);
            next += 1;
        }
    }
    assert_eq!(next, 50);

    // Dropping the iterator early stops the workers (the test would hang otherwise).
    let mut early = seed_batches(&spec(10_000, 8), &kas, &opts).unwrap();
    assert_eq!(early.next().map(|b| b.map(|b| b.len()).ok()), Some(Some(7)));
    drop(early);
}

#[test]
fn seed_with_reports_and_stops_on_a_sink_error() {
    let kas = recipient(&keys().rsa.1, "r1");
    let opts = SeedOptions {
        threads: 2,
        batch_size: 10,
    };
    let mut seen = Vec::new();
    let report = seed_with(&spec(35, 9), &kas, &opts, |batch| {
        seen.extend(batch.into_iter().map(|e| e.meta.index));
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
    assert_eq!(seen, (0..35).collect::<Vec<_>>());
    assert_eq!((report.documents, report.batches), (35, 4));
    assert!(report.ztdf_bytes > report.plaintext_bytes);

    let mut calls = 0;
    let err = seed_with(&spec(35, 9), &kas, &opts, |_| {
        calls += 1;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert_eq!(calls, 1);
    assert!(matches!(err, SeedError::Sink(_)));
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn encrypt_batch_keeps_order_on_any_thread_count() {
    let kas = recipient(&keys().rsa.1, "r1");
    let docs: Vec<_> = generate(&spec(13, 10)).collect();
    for threads in [0, 1, 4, 64] {
        let enc = encrypt_batch(&docs, &kas, threads).unwrap();
        let ids: Vec<_> = enc.iter().map(|e| e.meta.id).collect();
        assert_eq!(ids, docs.iter().map(|d| d.meta.id).collect::<Vec<_>>());
    }
    assert!(encrypt_batch(&[], &kas, 2).unwrap().is_empty());
    let one = encrypt_document(&docs[0], &kas).unwrap();
    assert_eq!(
        decrypt(&one, &keys().rsa.0, "r1"),
        docs[0].plaintext,
        "single document"
    );
    // Each ZTDF has its own key: the same document encrypts differently every time.
    assert_ne!(one.ztdf, encrypt_document(&docs[0], &kas).unwrap().ztdf);
}

#[test]
fn bad_options_and_keys_are_refused_with_a_reason() {
    let kas = recipient(&keys().ec.1, "e1");
    let err = seed_batches(
        &spec(5, 1),
        &kas,
        &SeedOptions {
            threads: 1,
            batch_size: 0,
        },
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("seeding options: batch size must be at least 1")
    );
    let err = KasRecipient::from_pem(KAS_URL, None, "not a key").unwrap_err();
    assert!(matches!(err, SeedError::KasKey(_)), "{err}");
    for (url, why) in [
        ("kas.example/kas", "is not an absolute URL"),
        ("ftp://kas.example/kas", "must use https"),
    ] {
        let err = KasRecipient::from_pem(url, None, &keys().ec.1).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    let mut bad = kas.clone();
    bad.url = "not a url".into();
    let docs: Vec<_> = generate(&spec(1, 1)).collect();
    assert!(matches!(
        encrypt_batch(&docs, &bad, 1),
        Err(SeedError::Options(_))
    ));
    // An empty corpus yields no batch.
    assert_eq!(
        seed_batches(&spec(0, 1), &kas, &SeedOptions::default())
            .unwrap()
            .count(),
        0
    );
}
