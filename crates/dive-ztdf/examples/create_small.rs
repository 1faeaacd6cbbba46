//! Create N small (4 KiB) ZTDFs in a loop, for instruction-count profiling of the per-file
//! overhead, which wall-clock benchmarks on a shared machine cannot resolve:
//!
//! ```sh
//! cargo build --release -p dive-ztdf --example create_small
//! valgrind --tool=callgrind --toggle-collect='dive_ztdf::writer::encrypt*' \
//!     target/release/examples/create_small rsa 2000
//! ```

use std::io::Cursor;

use dive_ztdf::{EncryptOptions, KasPrivateKey, KasPublicKey, KeyAccessPlan, Recipient, encrypt};

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "rsa".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let (_, public) = match kind.as_str() {
        "rsa" => KasPrivateKey::generate_rsa_pem(),
        "ec" => KasPrivateKey::generate_ec_pem(),
        other => {
            eprintln!("usage: create_small rsa|ec [COUNT] (not {other:?})");
            std::process::exit(2);
        }
    }
    .expect("key generation");
    let key = KasPublicKey::from_pem(&public).expect("public key");
    let label = dive_ztdf::label::label_from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap();
    let opts = EncryptOptions::new(KeyAccessPlan::single(Recipient::new(
        "https://kas.usa.dive/kas",
        Some("k1".into()),
        key,
    )))
    .label(label)
    .plaintext_len(4096);
    let plain = vec![7u8; 4096];
    let mut out = Vec::with_capacity(16 << 10);
    let mut total = 0usize;
    for _ in 0..n {
        out.clear();
        encrypt(Cursor::new(&plain), &mut out, &opts).expect("encrypt");
        total += out.len();
    }
    println!("{n} files, {} bytes each on average", total / n.max(1));
}
