//! Streaming a large generated input through encrypt and decrypt in bounded memory.
//!
//! The always-run variant streams 256 MiB. The multi-GB variant (5 GiB, which also exercises
//! ZIP64) is ignored by default; run it with
//! `cargo test -p dive-ztdf --release --test large_stream -- --ignored --nocapture`
//! (needs ~5 GiB free in the temporary directory).

mod common;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use aws_lc_rs::digest::{Context, SHA256};
use common::{recipient, rsa, unwrapper};
use dive_ztdf::{EncryptOptions, KeyAccessPlan, TdfReader, encrypt};

/// Pseudo-random bytes, `len` of them, hashed as they are produced.
struct Generator {
    left: u64,
    state: u64,
    hash: Context,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Discards what it is given, keeping a hash and a count.
struct HashSink {
    hash: Context,
    len: u64,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reset the peak-RSS counter (Linux `clear_refs` 5) and read it back later.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn stream(total: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ztdf");
    reset_peak_rss();
    let baseline = peak_rss_bytes();
    let mut generator = Generator {
        left: total,
        state: 0x9E37_79B9_7F4A_7C15,
        hash: Context::new(&SHA256),
    };
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient(
        "https://kas.usa.dive/kas",
        "r1",
        rsa(),
    )));
    let summary = encrypt(
        &mut generator,
        BufWriter::new(File::create(&path).unwrap()),
        &opts,
    )
    .unwrap();
    assert_eq!(summary.plaintext_len, total);
    let reader = TdfReader::open(File::open(&path).unwrap()).unwrap();
    assert_eq!(
        reader.directory().zip64,
        total + 28 * summary.segments as u64 >= u64::from(u32::MAX)
    );
    let mut unlocked = reader.unlock(&unwrapper(&[("r1", rsa())])).unwrap();
    let mut sink = HashSink {
        hash: Context::new(&SHA256),
        len: 0,
    };
    unlocked.decrypt_to(&mut sink).unwrap();
    assert_eq!(sink.len, total);
    assert_eq!(
        sink.hash.finish().as_ref(),
        generator.hash.finish().as_ref()
    );
    if let (Some(before), Some(peak)) = (baseline, peak_rss_bytes()) {
        let growth = peak.saturating_sub(before);
        println!(
            "{total} bytes streamed; peak RSS growth {} KiB",
            growth / 1024
        );
        // Two 2 MiB segment buffers plus I/O buffers and key material: far below 64 MiB.
        assert!(
            growth < 64 << 20,
            "peak RSS grew by {growth} bytes while streaming {total} bytes"
        );
    }
}

#[test]
fn stream_256_mib_in_bounded_memory() {
    stream(256 << 20);
}

#[test]
#[ignore = "multi-GB; run with --release -- --ignored (see module docs)"]
fn stream_5_gib_in_bounded_memory_with_zip64() {
    stream(5 << 30);
}
