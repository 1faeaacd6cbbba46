//! Shared test helpers: the OpenTDF test data directory and freshly generated KAS keys.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use dive_ztdf::{KasPrivateKey, KasPublicKey, LocalKeyUnwrapper, Recipient};

/// `shared/testdata/opentdf`: `$DIVE_SHARED_DIR/testdata/opentdf` if set, else
/// `<repo>/../shared/testdata/opentdf` (CI clones the repository with `shared/` beside it).
pub fn testdata() -> PathBuf {
    let base = match std::env::var_os("DIVE_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        // `cargo test` sets CARGO_MANIFEST_DIR when it runs the test, which stays right when a
        // test binary built in another checkout of the same workspace is reused.
        None => PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../../shared"),
    };
    let dir = base.join("testdata/opentdf");
    assert!(
        dir.join("spec/testvectors/kao/index.json").is_file(),
        "OpenTDF test data not found at {}: the repository's parent directory must contain shared/ \
         (as in CI), or set DIVE_SHARED_DIR to the shared/ directory",
        dir.display()
    );
    dir
}

pub struct KeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

pub fn rsa() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| {
        let (private_pem, public_pem) = KasPrivateKey::generate_rsa_pem().unwrap();
        KeyPair {
            private_pem,
            public_pem,
        }
    })
}

pub fn rsa2() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| {
        let (private_pem, public_pem) = KasPrivateKey::generate_rsa_pem().unwrap();
        KeyPair {
            private_pem,
            public_pem,
        }
    })
}

pub fn ec() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| {
        let (private_pem, public_pem) = KasPrivateKey::generate_ec_pem().unwrap();
        KeyPair {
            private_pem,
            public_pem,
        }
    })
}

pub fn recipient(url: &str, kid: &str, k: &KeyPair) -> Recipient {
    Recipient::new(
        url,
        Some(kid.to_string()),
        KasPublicKey::from_pem(&k.public_pem).unwrap(),
    )
}

pub fn unwrapper(keys: &[(&str, &KeyPair)]) -> LocalKeyUnwrapper {
    keys.iter().fold(LocalKeyUnwrapper::new(), |u, (kid, k)| {
        u.with_key(
            Some(kid.to_string()),
            KasPrivateKey::from_pem(&k.private_pem).unwrap(),
        )
    })
}

/// Deterministic pseudo-random bytes (xorshift) for test inputs.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
