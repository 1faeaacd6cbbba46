//! `dive ztdf` driven through the real binary with a temporary home.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dive_ztdf::KasPrivateKey;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    fn dive(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dive"))
            .arg("--home")
            .arg(self.path("home"))
            .args(args)
            .output()
            .unwrap()
    }
    /// Write a fresh key pair; returns (private, public) paths.
    fn keys(&self, ec: bool) -> (PathBuf, PathBuf) {
        let (private, public) = if ec {
            KasPrivateKey::generate_ec_pem()
        } else {
            KasPrivateKey::generate_rsa_pem()
        }
        .unwrap();
        let tag = if ec { "ec" } else { "rsa" };
        (
            self.write(&format!("{tag}.key"), private),
            self.write(&format!("{tag}.pub"), public),
        )
    }
}

/// Local header (30 bytes) plus the name "0.payload": where the first segment starts.
const PAYLOAD_DATA: usize = 30 + 9;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn encrypt_inspect_decrypt_with_marking_and_rsa() {
    let env = Env::new();
    let (private, public) = env.keys(false);
    let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let input = env.write("doc.bin", &plain);
    let tdf = env.path("doc.ztdf");
    let o = env.dive(&[
        "ztdf",
        "encrypt",
        "--kas-url",
        "https://kas.usa.dive/kas",
        "--kas-public-key",
        s(&public),
        "--kid",
        "r1",
        "--label",
        "SECRET//FVEY//REL TO USA, GBR",
        "--segment-size",
        "65536",
        s(&input),
        s(&tdf),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("5 segment(s)"), "{}", stdout(&o));

    let o = env.dive(&["ztdf", "inspect", s(&tdf)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("SECRET//FVEY//REL TO USA, GBR"), "{text}");
    assert!(
        text.contains("RSA-OAEP https://kas.usa.dive/kas kid=r1"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");

    let o = env.dive(&["ztdf", "inspect", "--json", s(&tdf)]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["label"]["classification"], "SECRET");
    assert_eq!(
        report["label"]["releasabilityTo"],
        serde_json::json!(["USA", "GBR"])
    );
    assert_eq!(report["manifest"]["schemaVersion"], "4.4.0");

    let out = env.path("doc.out");
    let o = env.dive(&[
        "ztdf",
        "decrypt",
        "--private-key",
        s(&private),
        s(&tdf),
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), plain);
}

#[test]
fn label_file_and_ec_key() {
    let env = Env::new();
    let (private, public) = env.keys(true);
    let label = env.write("label.json", r#"{"classification":"CONFIDENTIAL","releasabilityTo":["FRA","DEU"],"COI":["NATO"],
        "originalClassification":"VS-VERTRAULICH","originalCountry":"DEU","creationDate":"2026-01-01T00:00:00Z"}"#);
    let input = env.write("a.txt", "bonjour");
    let tdf = env.path("a.ztdf");
    let o = env.dive(&[
        "ztdf",
        "encrypt",
        "--kas-url",
        "https://kas.fra.dive/kas",
        "--kas-public-key",
        s(&public),
        "--label-file",
        s(&label),
        s(&input),
        s(&tdf),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.dive(&["ztdf", "inspect", s(&tdf)]);
    assert!(
        stdout(&o).contains("CONFIDENTIAL//NATO//REL TO FRA, DEU"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("ECDH-HKDF"), "{}", stdout(&o));
    let out = env.path("a.out");
    let o = env.dive(&[
        "ztdf",
        "decrypt",
        "--private-key",
        s(&private),
        s(&tdf),
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "bonjour");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let env = Env::new();
    let (private, public) = env.keys(false);
    let input = env.write("in.txt", "x");
    let out = env.path("out.ztdf");
    let base = [
        "ztdf",
        "encrypt",
        "--kas-url",
        "https://kas/kas",
        "--kas-public-key",
    ];

    let o = env.dive(
        &[
            &base[..],
            &[
                s(&public),
                "--label",
                "SEKRIT//REL TO USA",
                s(&input),
                s(&out),
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"SEKRIT\" is not a classification level"),
        "{}",
        stderr(&o)
    );

    let o = env.dive(
        &[
            &base[..],
            &[
                s(&public),
                "--label",
                "SECRET//REL TO USA, UK",
                s(&input),
                s(&out),
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"UK\""), "{}", stderr(&o));

    let o = env.dive(
        &[
            &base[..],
            &[
                s(&private),
                "--label",
                "SECRET//REL TO USA",
                s(&input),
                s(&out),
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("PUBLIC KEY"), "{}", stderr(&o));

    let o = env.dive(
        &[
            &base[..],
            &[
                "/nonexistent.pem",
                "--label",
                "SECRET//REL TO USA",
                s(&input),
                s(&out),
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent.pem"), "{}", stderr(&o));

    let o = env.dive(&[&base[..], &[s(&public), s(&input), s(&out)]].concat());
    assert_eq!(o.status.code(), Some(2), "label is required");

    let o = env.dive(&["ztdf", "inspect", s(&input)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a ZIP archive"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn tampered_or_wrong_key_leaves_no_plaintext() {
    let env = Env::new();
    let (private, public) = env.keys(false);
    let (other_private, _) = env.keys(true);
    let input = env.write("in.bin", vec![42u8; 10_000]);
    let tdf = env.path("in.ztdf");
    let o = env.dive(&[
        "ztdf",
        "encrypt",
        "--kas-url",
        "https://kas/kas",
        "--kas-public-key",
        s(&public),
        "--label",
        "UNCLASSIFIED//REL TO USA",
        "--segment-size",
        "1000",
        s(&input),
        s(&tdf),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let out = env.path("out.bin");
    let o = env.dive(&[
        "ztdf",
        "decrypt",
        "--private-key",
        s(&other_private),
        s(&tdf),
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no key access object of split"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // Flip one ciphertext byte in the last segment: inspect flags nothing key-less (tag intact),
    // decrypt with the right key fails and writes nothing.
    let mut bytes = std::fs::read(&tdf).unwrap();
    bytes[PAYLOAD_DATA + 9 * 1028 + 100] ^= 1;
    let bad = env.write("bad.ztdf", &bytes);
    let o = env.dive(&[
        "ztdf",
        "decrypt",
        "--private-key",
        s(&private),
        s(&bad),
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("segment 9"), "{}", stderr(&o));
    assert!(!out.exists(), "no partial plaintext at OUT");
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary plaintext removed");

    // Flip a byte of a stored tag: detected without a key.
    let mut bytes = std::fs::read(&tdf).unwrap();
    bytes[PAYLOAD_DATA + 1028 - 1] ^= 1;
    let bad = env.write("badtag.ztdf", &bytes);
    let o = env.dive(&["ztdf", "inspect", s(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("FAIL"), "{}", stdout(&o));
}

/// Two KASes (one RSA, one EC key) from the command line: all-of needs both private keys,
/// any-of opens with either; mismatched pairs are refused.
#[test]
fn multi_kas_all_of_and_any_of() {
    let env = Env::new();
    let (rsa_private, rsa_public) = env.keys(false);
    let (ec_private, ec_public) = env.keys(true);
    let plain: Vec<u8> = (0..5_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let input = env.write("m.bin", &plain);
    let encrypt = |mode: &str, out: &Path| {
        env.dive(&[
            "ztdf",
            "encrypt",
            "--kas-url",
            "https://kas.usa.dive/kas",
            "--kas-public-key",
            s(&rsa_public),
            "--kid",
            "usa-1",
            "--kas-url",
            "https://kas.gbr.dive/kas",
            "--kas-public-key",
            s(&ec_public),
            "--kid",
            "gbr-1",
            "--split",
            mode,
            "--label",
            "SECRET//REL TO USA, GBR",
            s(&input),
            s(out),
        ])
    };
    let decrypt = |keys: &[&Path], tdf: &Path, out: &Path| {
        let mut args = vec!["ztdf", "decrypt"];
        for k in keys {
            args.extend(["--private-key", s(k)]);
        }
        args.extend([s(tdf), s(out)]);
        env.dive(&args)
    };

    let all = env.path("all.ztdf");
    let o = encrypt("all-of", &all);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.dive(&["ztdf", "inspect", s(&all)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("https://kas.usa.dive/kas kid=usa-1 split=s-0")
            && text.contains("https://kas.gbr.dive/kas kid=gbr-1 split=s-1"),
        "{text}"
    );
    let out = env.path("all.out");
    for one in [&rsa_private, &ec_private] {
        let o = decrypt(&[one], &all, &out);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("no key access object of split"),
            "{}",
            stderr(&o)
        );
        assert!(!out.exists());
    }
    let o = decrypt(&[&ec_private, &rsa_private], &all, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), plain);

    let any = env.path("any.ztdf");
    let o = encrypt("any-of", &any);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.dive(&["ztdf", "inspect", s(&any)]);
    let text = stdout(&o);
    assert!(
        text.contains("kid=usa-1 split=s-0") && text.contains("kid=gbr-1 split=s-0"),
        "{text}"
    );
    for one in [&rsa_private, &ec_private] {
        let out = env.path("any.out");
        let _ = std::fs::remove_file(&out);
        let o = decrypt(&[one], &any, &out);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), plain);
    }

    // One URL, two keys: refused before anything is written.
    let bad = env.path("bad.ztdf");
    let o = env.dive(&[
        "ztdf",
        "encrypt",
        "--kas-url",
        "https://kas/kas",
        "--kas-public-key",
        s(&rsa_public),
        "--kas-public-key",
        s(&ec_public),
        "--label",
        "UNCLASSIFIED",
        s(&input),
        s(&bad),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("one public key per KAS"),
        "{}",
        stderr(&o)
    );
    assert!(!bad.exists());
}
