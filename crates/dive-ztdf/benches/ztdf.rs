//! ZTDF benchmarks: payload throughput at 2 MiB segments, small-file creation rate per KAO type,
//! and offline RSA unwrap. Run with `cargo bench -p dive-ztdf` or `scripts/bench-ztdf.sh`, which
//! also runs the OpenSSL reference figures on the same machine.

use std::io::{Cursor, sink};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dive_ztdf::{
    EncryptOptions, KasPrivateKey, KasPublicKey, KeyAccessPlan, LocalKeyUnwrapper, Recipient,
    SecurityLabel, TdfReader, encrypt,
};

const BIG: usize = 64 << 20;

fn label() -> SecurityLabel {
    dive_ztdf::label::label_from_marking("SECRET//FVEY//REL TO USA, GBR").unwrap()
}

struct Keys {
    rsa_priv: String,
    rsa_pub: KasPublicKey,
    ec_priv: String,
    ec_pub: KasPublicKey,
}

fn keys() -> Keys {
    let (rsa_priv, rsa_pub) = KasPrivateKey::generate_rsa_pem().unwrap();
    let (ec_priv, ec_pub) = KasPrivateKey::generate_ec_pem().unwrap();
    Keys {
        rsa_priv,
        rsa_pub: KasPublicKey::from_pem(&rsa_pub).unwrap(),
        ec_priv,
        ec_pub: KasPublicKey::from_pem(&ec_pub).unwrap(),
    }
}

fn opts(key: &KasPublicKey) -> EncryptOptions {
    EncryptOptions::new(KeyAccessPlan::single(Recipient::new(
        "https://kas.usa.dive/kas",
        Some("k1".into()),
        key.clone(),
    )))
    .label(label())
}

fn throughput(c: &mut Criterion) {
    let k = keys();
    let plain: Vec<u8> = (0..BIG).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("payload_2MiB_segments");
    g.throughput(Throughput::Bytes(BIG as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    // The same AES-256-GCM in aws-lc-rs on one 2 MiB buffer: the ceiling for the format's work.
    let key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[7u8; 32]).unwrap(),
    );
    let mut seg = vec![1u8; 2 << 20];
    g.bench_function("aws_lc_seal_2MiB_x32", |b| {
        b.iter(|| {
            for i in 0..32u8 {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([i; 12]);
                let tag =
                    key.seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), &mut seg);
                let _ = std::hint::black_box(tag.unwrap());
            }
        })
    });
    let o = opts(&k.ec_pub).plaintext_len(BIG as u64);
    g.bench_function("encrypt_64MiB", |b| {
        b.iter(|| encrypt(Cursor::new(&plain), sink(), &o).unwrap())
    });
    let mut tdf = Vec::with_capacity(BIG + (1 << 20));
    encrypt(Cursor::new(&plain), &mut tdf, &o).unwrap();
    let unwrapper =
        LocalKeyUnwrapper::new().with_key(None, KasPrivateKey::from_pem(&k.ec_priv).unwrap());
    g.bench_function("decrypt_64MiB_streaming", |b| {
        b.iter(|| {
            let mut u = TdfReader::open(Cursor::new(&tdf))
                .unwrap()
                .unlock(&unwrapper)
                .unwrap();
            u.decrypt_streaming_to(sink()).unwrap()
        })
    });
    g.bench_function("decrypt_64MiB_verify_first", |b| {
        b.iter(|| {
            let mut u = TdfReader::open(Cursor::new(&tdf))
                .unwrap()
                .unlock(&unwrapper)
                .unwrap();
            u.decrypt_to(sink()).unwrap()
        })
    });
    g.finish();
}

fn small_files(c: &mut Criterion) {
    let k = keys();
    let plain = vec![7u8; 4096];
    let mut g = c.benchmark_group("create_4KiB_ztdf");
    g.throughput(Throughput::Elements(1));
    for (name, key) in [("rsa_wrapped", &k.rsa_pub), ("ec_wrapped", &k.ec_pub)] {
        let o = opts(key).plaintext_len(4096);
        let mut out = Vec::with_capacity(16 << 10);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encrypt(Cursor::new(&plain), &mut out, &o).unwrap()
            })
        });
    }
    g.finish();
}

fn unwrap(c: &mut Criterion) {
    let k = keys();
    let mut tdf = Vec::new();
    encrypt(Cursor::new(b"x"), &mut tdf, &opts(&k.rsa_pub)).unwrap();
    let kao = TdfReader::open(Cursor::new(&tdf))
        .unwrap()
        .key_access_objects()[0]
        .clone();
    let key = KasPrivateKey::from_pem(&k.rsa_priv).unwrap();
    let mut g = c.benchmark_group("offline_unwrap");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rsa2048_oaep", |b| b.iter(|| key.unwrap_kao(&kao).unwrap()));
    g.finish();
}

criterion_group!(benches, throughput, small_files, unwrap);
criterion_main!(benches);
