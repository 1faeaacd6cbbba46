//! Round trips: every wrap type, split mode and size class; the label and metadata survive.

mod common;

use std::io::Cursor;

use common::{data, ec, recipient, rsa, rsa2, unwrapper};
use dive_ztdf::{EncryptOptions, Error, KeyAccessPlan, SecurityLabel, TdfReader, encrypt};

const SEG: usize = 1024;

fn label() -> SecurityLabel {
    dive_ztdf::label::label_from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap()
}

fn seal(plan: KeyAccessPlan, plain: &[u8], seg: usize) -> Vec<u8> {
    let opts = EncryptOptions::new(plan)
        .label(label())
        .segment_size(seg)
        .metadata(b"{\"origin\":\"test\"}".to_vec());
    let mut out = Vec::new();
    let summary = encrypt(Cursor::new(plain), &mut out, &opts).unwrap();
    assert_eq!(summary.plaintext_len, plain.len() as u64);
    out
}

fn open(tdf: &[u8], keys: &[(&str, &common::KeyPair)]) -> Result<Vec<u8>, Error> {
    let r = TdfReader::open(Cursor::new(tdf))?;
    let mut u = r.unlock(&unwrapper(keys))?;
    let mut out = Vec::new();
    u.decrypt_to(&mut out)?;
    for (_, md) in u.metadata() {
        assert_eq!(md, b"{\"origin\":\"test\"}");
    }
    Ok(out)
}

fn sizes() -> Vec<usize> {
    vec![0, 1, SEG - 1, SEG, SEG + 1, 7 * SEG + 13]
}

#[test]
fn rsa_wrapped_all_sizes() {
    for n in sizes() {
        let plain = data(n, n as u64 + 1);
        let tdf = seal(
            KeyAccessPlan::single(recipient("https://kas.usa.dive/kas", "r1", rsa())),
            &plain,
            SEG,
        );
        assert_eq!(open(&tdf, &[("r1", rsa())]).unwrap(), plain, "size {n}");
    }
}

#[test]
fn ec_wrapped_all_sizes() {
    for n in sizes() {
        let plain = data(n, n as u64 + 7);
        let tdf = seal(
            KeyAccessPlan::single(recipient("https://kas.usa.dive/kas", "e1", ec())),
            &plain,
            SEG,
        );
        assert_eq!(open(&tdf, &[("e1", ec())]).unwrap(), plain, "size {n}");
    }
}

#[test]
fn segment_counts_follow_sizes() {
    for (n, segs) in [
        (0usize, 1usize),
        (1, 1),
        (SEG, 1),
        (SEG + 1, 2),
        (7 * SEG + 13, 8),
    ] {
        let tdf = seal(
            KeyAccessPlan::single(recipient("https://k/kas", "r1", rsa())),
            &data(n, 3),
            SEG,
        );
        let r = TdfReader::open(Cursor::new(&tdf)).unwrap();
        assert_eq!(r.segments().len(), segs, "size {n}");
        assert_eq!(r.plaintext_len(), n as u64);
    }
}

#[test]
fn all_of_split_needs_every_kas() {
    let plain = data(5000, 11);
    let plan = KeyAccessPlan::all_of(vec![
        recipient("https://kas.usa.dive/kas", "r1", rsa()),
        recipient("https://kas.gbr.dive/kas", "e1", ec()),
    ]);
    let tdf = seal(plan, &plain, SEG);
    let r = TdfReader::open(Cursor::new(&tdf)).unwrap();
    let sids: Vec<_> = r
        .key_access_objects()
        .iter()
        .map(|k| k.sid.clone().unwrap())
        .collect();
    assert_eq!(sids, vec!["s-0", "s-1"]);
    assert_eq!(open(&tdf, &[("r1", rsa()), ("e1", ec())]).unwrap(), plain);
    match open(&tdf, &[("r1", rsa())]) {
        Err(Error::SplitUnavailable { sid, .. }) => assert_eq!(sid, "s-1"),
        other => panic!("expected the EC split to be unavailable, got {other:?}"),
    }
    assert!(matches!(
        open(&tdf, &[("e1", ec())]),
        Err(Error::SplitUnavailable { .. })
    ));
}

#[test]
fn any_of_split_needs_one_kas() {
    let plain = data(3000, 12);
    let plan = KeyAccessPlan::any_of(vec![
        recipient("https://kas.usa.dive/kas", "r1", rsa()),
        recipient("https://kas.fra.dive/kas", "e1", ec()),
        recipient("https://kas.deu.dive/kas", "r2", rsa2()),
    ]);
    let tdf = seal(plan, &plain, SEG);
    let r = TdfReader::open(Cursor::new(&tdf)).unwrap();
    assert!(
        r.key_access_objects()
            .iter()
            .all(|k| k.sid.as_deref() == Some("s-0"))
    );
    assert_eq!(open(&tdf, &[("r1", rsa())]).unwrap(), plain);
    assert_eq!(open(&tdf, &[("e1", ec())]).unwrap(), plain);
    assert_eq!(open(&tdf, &[("r2", rsa2())]).unwrap(), plain);
}

#[test]
fn mixed_splits_all_of_any_of() {
    let plain = data(2500, 13);
    let plan = KeyAccessPlan::splits(vec![
        vec![
            recipient("https://a/kas", "r1", rsa()),
            recipient("https://b/kas", "e1", ec()),
        ],
        vec![recipient("https://c/kas", "r2", rsa2())],
    ]);
    let tdf = seal(plan, &plain, SEG);
    assert_eq!(open(&tdf, &[("e1", ec()), ("r2", rsa2())]).unwrap(), plain);
    assert!(matches!(
        open(&tdf, &[("r1", rsa()), ("e1", ec())]),
        Err(Error::SplitUnavailable { .. })
    ));
}

#[test]
fn wrong_key_is_reported_per_split() {
    let tdf = seal(
        KeyAccessPlan::single(recipient("https://k/kas", "r1", rsa())),
        b"secret",
        SEG,
    );
    let err = open(&tdf, &[("r1", rsa2())]).unwrap_err();
    assert!(
        err.to_string().contains("RSA-OAEP decryption failed"),
        "{err}"
    );
}

#[test]
fn label_is_in_policy_and_assertion() {
    let tdf = seal(
        KeyAccessPlan::single(recipient("https://k/kas", "r1", rsa())),
        b"x",
        SEG,
    );
    let r = TdfReader::open(Cursor::new(&tdf)).unwrap();
    assert_eq!(r.label().unwrap().unwrap(), label());
    assert!(
        r.policy()
            .attribute_fqns()
            .any(|f| f == "https://dive.coalition/attr/classification/value/secret")
    );
    let a = &r.assertions()[0];
    assert_eq!(a.kind, "handling");
    let stanag: serde_json::Value = serde_json::from_str(&a.statement.value).unwrap();
    assert_eq!(stanag["ocl"]["cls"], "SECRET");
    assert_eq!(
        stanag["ocl"]["catl"][0]["vals"],
        serde_json::json!(["USA", "GBR"])
    );
    assert_eq!(r.manifest().schema_version.as_deref(), Some("4.4.0"));
}

#[test]
fn streaming_decrypt_matches_two_pass() {
    let plain = data(10 * SEG + 5, 21);
    let tdf = seal(
        KeyAccessPlan::single(recipient("https://k/kas", "e1", ec())),
        &plain,
        SEG,
    );
    let mut u = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .unlock(&unwrapper(&[("e1", ec())]))
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        u.decrypt_streaming_to(&mut out).unwrap(),
        plain.len() as u64
    );
    assert_eq!(out, plain);
}

#[test]
fn announced_length_is_enforced() {
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://k/kas",
        "r1",
        rsa(),
    )))
    .plaintext_len(10);
    let err = encrypt(Cursor::new(vec![0u8; 11]), Vec::new(), &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputLength {
                announced: 10,
                actual: 11
            }
        ),
        "{err}"
    );
    let plain = data(3 * SEG, 5);
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://k/kas",
        "r1",
        rsa(),
    )))
    .plaintext_len(plain.len() as u64)
    .segment_size(SEG);
    let mut out = Vec::new();
    encrypt(Cursor::new(&plain), &mut out, &opts).unwrap();
    assert_eq!(open(&out, &[("r1", rsa())]).unwrap(), plain);
}

#[test]
fn bad_options_are_rejected() {
    let err = encrypt(
        Cursor::new(b"x"),
        Vec::new(),
        &EncryptOptions::new(KeyAccessPlan::all_of(vec![])),
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least one KAS"), "{err}");
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://k/kas",
        "r1",
        rsa(),
    )))
    .segment_size(0);
    assert!(encrypt(Cursor::new(b"x"), Vec::new(), &opts).is_err());
}

#[test]
fn unzip_tools_can_list_the_container() {
    // Layout check independent of our reader: entries in order, stored, payload first.
    let tdf = seal(
        KeyAccessPlan::single(recipient("https://k/kas", "r1", rsa())),
        &data(3000, 1),
        SEG,
    );
    let dir = dive_ztdf::zip::read_directory(&mut Cursor::new(&tdf)).unwrap();
    let names: Vec<_> = dir.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["0.payload", "0.manifest.json"]);
    assert_eq!(&tdf[..4], b"PK\x03\x04");
}

#[test]
fn input_beyond_an_announced_zero_length_is_an_error() {
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://k/kas",
        "r1",
        rsa(),
    )))
    .plaintext_len(0);
    let err = encrypt(Cursor::new(b"abc"), Vec::new(), &opts).unwrap_err();
    assert!(
        matches!(err, Error::InputLength { announced: 0, .. }),
        "{err}"
    );
}

/// A reader that hands out at most `step` bytes per call (pipes, sockets).
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Segments larger than the 64 KiB processing chunk, lengths on and around chunk and segment
/// boundaries, input arriving in odd-sized reads, with and without an announced length; a bit
/// flipped in a middle chunk of a segment is caught and no byte of that segment is released.
#[test]
fn segments_spanning_several_chunks() {
    const CHUNK: usize = 64 * 1024;
    let seg = 3 * CHUNK + 100;
    for n in [
        0,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        seg - 1,
        seg,
        seg + 1,
        2 * seg + CHUNK,
        3 * seg,
    ] {
        let plain = data(n, n as u64 + 5);
        for announced in [false, true] {
            let mut opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
                "https://kas.usa.dive/kas",
                "r1",
                rsa(),
            )))
            .segment_size(seg);
            if announced {
                opts = opts.plaintext_len(n as u64);
            }
            let mut tdf = Vec::new();
            let input = Trickle {
                data: &plain,
                step: 10_007,
            };
            let summary = encrypt(input, &mut tdf, &opts).unwrap();
            assert_eq!(summary.segments, n.div_ceil(seg).max(1), "size {n}");
            assert_eq!(open(&tdf, &[("r1", rsa())]).unwrap(), plain, "size {n}");
        }
    }
    // Tamper with the second chunk of the second segment.
    let plain = data(2 * seg, 77);
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://kas.usa.dive/kas",
        "r1",
        rsa(),
    )))
    .segment_size(seg);
    let mut tdf = Vec::new();
    encrypt(Cursor::new(&plain), &mut tdf, &opts).unwrap();
    let at = 30 + 9 + (seg + 28) + 12 + CHUNK + 5;
    tdf[at] ^= 0x40;
    let mut u = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .unlock(&unwrapper(&[("r1", rsa())]))
        .unwrap();
    let mut out = Vec::new();
    let err = u.decrypt_streaming_to(&mut out).unwrap_err();
    assert!(matches!(err, Error::Segment { index: 1, .. }), "{err}");
    assert_eq!(out, plain[..seg], "only the authentic first segment");
}
