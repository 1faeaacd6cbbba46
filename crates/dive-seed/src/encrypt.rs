//! ZTDF creation for seed documents, across threads.
//!
//! Each document becomes a real ZTDF (dive-ztdf): segmented AES-256-GCM payload, policy carrying
//! the label as attribute FQNs, one KAO wrapped to the instance's KAS key, and a handling
//! assertion with the STANAG 4774 label bound by a JWS.
//!
//! [`seed_batches`] pipelines generation and encryption: worker `w` of `T` produces batches
//! `w, w+T, w+2T, …` into its own one-slot channel and the consumer reads them round-robin, so
//! batches arrive in corpus order and at most `2·T + 1` batches exist at any time, whatever the
//! corpus size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dive_ztdf::{EncryptOptions, KasPublicKey, KeyAccessPlan, Recipient};

use crate::error::{SeedError, SinkError};
use crate::{CorpusSpec, DocumentMeta, Generator, SeedDocument};

/// The KAS the documents' keys are wrapped to.
#[derive(Debug, Clone)]
pub struct KasRecipient {
    /// The KAS URL written into each KAO (e.g. `https://localhost:8443/kas`).
    pub url: String,
    /// The key id written into each KAO, so the KAS picks the right key after rotation.
    pub kid: Option<String>,
    /// RSA (≥ 2048 bits) or EC P-256.
    pub public_key: KasPublicKey,
}

impl KasRecipient {
    pub fn new(url: impl Into<String>, kid: Option<String>, public_key: KasPublicKey) -> Self {
        KasRecipient {
            url: url.into(),
            kid,
            public_key,
        }
    }

    /// With the key given as a PEM `PUBLIC KEY`.
    pub fn from_pem(
        url: impl Into<String>,
        kid: Option<String>,
        pem: &str,
    ) -> Result<Self, SeedError> {
        let key = KasPublicKey::from_pem(pem).map_err(SeedError::KasKey)?;
        let kas = KasRecipient::new(url, kid, key);
        kas.check()?;
        Ok(kas)
    }

    /// The URL must be an absolute `https` (or `http`) URL: it is what clients will call to
    /// rewrap, and a ZTDF reader refuses a KAO whose URL is not a URI.
    fn check(&self) -> Result<(), SeedError> {
        let bad = |why: &str| Err(SeedError::Options(format!("KAS URL {:?} {why}", self.url)));
        match url::Url::parse(&self.url) {
            Ok(u) if !matches!(u.scheme(), "https" | "http") => bad("must use https (or http)"),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => bad("has no host"),
            Ok(_) => Ok(()),
            Err(e) => bad(&format!("is not an absolute URL: {e}")),
        }
    }

    fn options(&self) -> EncryptOptions {
        EncryptOptions::new(KeyAccessPlan::single(Recipient::new(
            self.url.clone(),
            self.kid.clone(),
            self.public_key.clone(),
        )))
    }
}

/// A seed document as stored: metadata and its ZTDF.
#[derive(Debug, Clone)]
pub struct EncryptedDocument {
    pub meta: DocumentMeta,
    pub plaintext_len: u64,
    /// SHA-256 of the plaintext (lets a verifier check a decrypt round trip).
    pub plaintext_sha256: [u8; 32],
    /// The ZTDF policy's uuid (what KAS audit entries name).
    pub policy_uuid: String,
    pub ztdf: Vec<u8>,
}

/// Encrypt one document with `base` (the KAS plan), reusing it across documents.
fn seal(
    meta: DocumentMeta,
    plaintext: &[u8],
    base: &mut EncryptOptions,
) -> Result<EncryptedDocument, SeedError> {
    base.label = Some(meta.label.clone());
    base.mime_type.clear();
    base.mime_type.push_str(meta.mime_type);
    base.plaintext_len = Some(plaintext.len() as u64);
    // The manifest of a seed document is 2–5 KiB (the policy repeats the label as FQNs).
    let mut ztdf = Vec::with_capacity(plaintext.len() + 6 * 1024);
    let result = dive_ztdf::encrypt(plaintext, &mut ztdf, base);
    base.label = None;
    let policy = result.and_then(|summary| summary.manifest.policy());
    let policy_uuid = match policy {
        Ok(p) => p.uuid,
        Err(source) => {
            return Err(SeedError::Encrypt {
                index: meta.index,
                id: meta.id,
                source,
            });
        }
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, plaintext);
    let mut plaintext_sha256 = [0u8; 32];
    plaintext_sha256.copy_from_slice(digest.as_ref());
    Ok(EncryptedDocument {
        meta,
        plaintext_len: plaintext.len() as u64,
        plaintext_sha256,
        policy_uuid,
        ztdf,
    })
}

/// Encrypt one document into a ZTDF.
pub fn encrypt_document(
    doc: &SeedDocument,
    kas: &KasRecipient,
) -> Result<EncryptedDocument, SeedError> {
    kas.check()?;
    seal(doc.meta.clone(), &doc.plaintext, &mut kas.options())
}

fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// Encrypt `docs` on `threads` threads (0 = one per core); results in the order of `docs`.
pub fn encrypt_batch(
    docs: &[SeedDocument],
    kas: &KasRecipient,
    threads: usize,
) -> Result<Vec<EncryptedDocument>, SeedError> {
    kas.check()?;
    let threads = resolve_threads(threads).clamp(1, docs.len().max(1));
    let part = |part: &[SeedDocument]| {
        let mut base = kas.options();
        part.iter()
            .map(|d| seal(d.meta.clone(), &d.plaintext, &mut base))
            .collect::<Result<Vec<_>, _>>()
    };
    if threads == 1 {
        return part(docs);
    }
    let chunk = docs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .chunks(chunk)
            .map(|p| s.spawn(move || part(p)))
            .collect();
        let mut out = Vec::with_capacity(docs.len());
        for h in handles {
            out.extend(h.join().map_err(|_| SeedError::Worker)??);
        }
        Ok(out)
    })
}

/// How to run [`seed_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedOptions {
    /// Worker threads generating and encrypting; 0 = one per core.
    pub threads: usize,
    /// Documents per batch handed to the caller.
    pub batch_size: usize,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            threads: 0,
            batch_size: 500,
        }
    }
}

type BatchResult = Result<Vec<EncryptedDocument>, SeedError>;

/// The batches of a corpus, generated and encrypted in the background, in corpus order.
/// Dropping it stops the workers.
pub struct SeedBatches {
    receivers: Vec<Receiver<BatchResult>>,
    workers: Vec<JoinHandle<()>>,
    cancel: Arc<AtomicBool>,
    next: usize,
    total: usize,
    done: bool,
}

/// Generate and encrypt `spec`'s documents in batches of `opts.batch_size` on `opts.threads`
/// worker threads. The first error ends the iteration (after being yielded).
pub fn seed_batches(
    spec: &CorpusSpec,
    kas: &KasRecipient,
    opts: &SeedOptions,
) -> Result<SeedBatches, SeedError> {
    if opts.batch_size == 0 {
        return Err(SeedError::Options("batch size must be at least 1".into()));
    }
    kas.check()?;
    let total = spec.count.div_ceil(opts.batch_size);
    let threads = resolve_threads(opts.threads).clamp(1, total.max(1));
    let generator = Arc::new(Generator::new(spec));
    let cancel = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    for w in 0..threads {
        let (tx, rx) = sync_channel::<BatchResult>(1);
        receivers.push(rx);
        let generator = Arc::clone(&generator);
        let cancel = Arc::clone(&cancel);
        let kas = kas.clone();
        let (batch_size, count) = (opts.batch_size, spec.count);
        let handle = std::thread::Builder::new()
            .name(format!("dive-seed-{w}"))
            .spawn(move || {
                let mut base = kas.options();
                for b in (w..total).step_by(threads) {
                    let range = b * batch_size..((b + 1) * batch_size).min(count);
                    let mut batch = Vec::with_capacity(range.len());
                    let mut failed = None;
                    for i in range {
                        if cancel.load(Ordering::Relaxed) {
                            return;
                        }
                        let doc = generator.document(i);
                        match seal(doc.meta, &doc.plaintext, &mut base) {
                            Ok(e) => batch.push(e),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let stop = failed.is_some();
                    let item = failed.map_or(Ok(batch), Err);
                    if tx.send(item).is_err() || stop {
                        return;
                    }
                }
            })
            .map_err(|e| SeedError::Options(format!("cannot start a worker thread: {e}")))?;
        workers.push(handle);
    }
    Ok(SeedBatches {
        receivers,
        workers,
        cancel,
        next: 0,
        total,
        done: false,
    })
}

impl SeedBatches {
    /// Number of batches in the corpus.
    pub fn batch_count(&self) -> usize {
        self.total
    }

    fn stop(&mut self) {
        self.done = true;
        self.cancel.store(true, Ordering::Relaxed);
        // Dropping the receivers wakes workers blocked on a full channel.
        self.receivers.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Iterator for SeedBatches {
    type Item = BatchResult;

    fn next(&mut self) -> Option<BatchResult> {
        if self.done || self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        match rx.recv() {
            Ok(item) => {
                self.next += 1;
                if item.is_err() || self.next == self.total {
                    self.stop();
                }
                Some(item)
            }
            Err(_) => {
                self.stop();
                Some(Err(SeedError::Worker))
            }
        }
    }
}

impl Drop for SeedBatches {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.stop();
        }
    }
}

/// What [`seed_with`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub documents: usize,
    pub batches: usize,
    pub plaintext_bytes: u64,
    pub ztdf_bytes: u64,
    pub elapsed: Duration,
}

/// Generate, encrypt and hand every batch to `sink` (e.g. a database insert), in corpus order.
/// Stops at the first error, from encryption or from `sink`.
pub fn seed_with<F, E>(
    spec: &CorpusSpec,
    kas: &KasRecipient,
    opts: &SeedOptions,
    mut sink: F,
) -> Result<SeedReport, SeedError>
where
    F: FnMut(Vec<EncryptedDocument>) -> Result<(), E>,
    E: Into<SinkError>,
{
    let start = Instant::now();
    let mut report = SeedReport {
        documents: 0,
        batches: 0,
        plaintext_bytes: 0,
        ztdf_bytes: 0,
        elapsed: Duration::ZERO,
    };
    for batch in seed_batches(spec, kas, opts)? {
        let batch = batch?;
        report.documents += batch.len();
        report.batches += 1;
        for d in &batch {
            report.plaintext_bytes += d.plaintext_len;
            report.ztdf_bytes += d.ztdf.len() as u64;
        }
        sink(batch).map_err(|e| SeedError::Sink(e.into()))?;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// The whole corpus encrypted, in memory (convenient for tests and small corpora).
pub fn encrypt_corpus(
    spec: &CorpusSpec,
    kas: &KasRecipient,
    threads: usize,
) -> Result<Vec<EncryptedDocument>, SeedError> {
    let opts = SeedOptions {
        threads,
        batch_size: 256,
    };
    let mut out = Vec::with_capacity(spec.count);
    for batch in seed_batches(spec, kas, &opts)? {
        out.extend(batch?);
    }
    Ok(out)
}
