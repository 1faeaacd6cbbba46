//! ZTDF benchmarks: payload throughput at 2 MiB segments, small-file creation rate per KAO type,
//! and offline RSA unwrap. Run with `cargo bench -p dive-ztdf` or `scripts/bench-ztdf.sh`, which
//! also runs the OpenSSL reference figures on the same machine.
//!
//! Times are the benchmark thread's CPU time (user + system, `CLOCK_THREAD_CPUTIME_ID`), not
//! wall time: `openssl speed` reports operations per second of *user CPU* time, so on a shared
//! machine a wall-clock figure would be compared with a CPU-time one (the earlier figures in
//! docs/PERFORMANCE.md were, which made every ratio look about twice as bad under load).

use std::io::{Cursor, sink};
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dive_ztdf::{
    EncryptOptions, KasPrivateKey, KasPublicKey, KeyAccessPlan, LocalKeyUnwrapper, Recipient,
    SecurityLabel, TdfReader, encrypt,
};

const BIG: usize = 64 << 20;

/// CPU time of the calling thread, in nanoseconds.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; this clock exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns (CPU)")
        } else if ns < 1e6 {
            (1e-3, "µs (CPU)")
        } else if ns < 1e9 {
            (1e-6, "ms (CPU)")
        } else {
            (1e-9, "s (CPU)")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (per, unit) = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => (b as f64 / 1e6, "MB/s (CPU)"),
            Throughput::Bits(b) => (b as f64 / 1e6, "Mbit/s (CPU)"),
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => {
                (e as f64, "elem/s (CPU)")
            }
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

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

fn throughput(c: &mut Criterion<CpuTime>) {
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
    // The format's other passes over the data, for the breakdown in docs/PERFORMANCE.md.
    g.bench_function("crc32_2MiB_x32", |b| {
        b.iter(|| {
            for _ in 0..32 {
                std::hint::black_box(crc32fast::hash(&seg));
            }
        })
    });
    let src = vec![3u8; 2 << 20];
    g.bench_function("memcpy_2MiB_x32", |b| {
        b.iter(|| {
            for _ in 0..32 {
                seg.copy_from_slice(std::hint::black_box(&src));
            }
            std::hint::black_box(&seg);
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

fn small_files(c: &mut Criterion<CpuTime>) {
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

fn unwrap(c: &mut Criterion<CpuTime>) {
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

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = throughput, small_files, unwrap
}
criterion_main!(benches);
