//! The decision/audit log: every decision the service takes (who, what, which action, allow or
//! deny, the reason, how long it took, the policy version), written in batches by one background
//! task so that a request only pays for a channel send.
//!
//! Nothing is dropped: when the database falls behind, the bounded channel fills and requests wait
//! (back-pressure) rather than go unaudited; a failed write is retried.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::store::ResourceStore;

/// One recorded decision. `subject` is the caller's uniqueID (`-` when the caller could not be
/// authenticated); no token or other personal data is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    #[serde(rename = "at", serialize_with = "ser_ms")]
    pub at_ms: i64,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub allow: bool,
    pub reason: String,
    pub latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// e.g. the search filters and result count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn ser_ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    match crate::store::from_ms(*ms).ok().and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_i64(*ms),
    }
}

impl AuditEntry {
    /// A new entry stamped now.
    pub fn new(
        subject: impl Into<String>,
        action: impl Into<String>,
        resource_id: Option<String>,
        allow: bool,
        reason: impl Into<String>,
    ) -> AuditEntry {
        let at_ms = crate::store::now_ms();
        AuditEntry {
            // A version-7 UUID (the time, then 74 random bits from the thread's CSPRNG): the
            // primary-key index then grows at its end, where random version-4 ids sent each
            // insert to another page of it (SQLite's writer spent ≈ 30 µs per entry), and no
            // getrandom system call per audited request.
            id: uuid::Builder::from_unix_timestamp_millis(
                u64::try_from(at_ms).unwrap_or(0),
                &rand::random(),
            )
            .into_uuid()
            .simple()
            .to_string(),
            at_ms,
            subject: subject.into(),
            issuer: None,
            action: action.into(),
            resource_id,
            allow,
            reason: reason.into(),
            latency_us: 0,
            policy_version: None,
            detail: None,
        }
    }
}

/// A filter over the audit log (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    pub allow: Option<bool>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Entries strictly older than this (at, id) position: the cursor of the previous page.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

enum Msg {
    Entry(Box<AuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the background writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

/// Entries waiting in memory before requests have to wait for the writer.
const QUEUE: usize = 16_384;
/// Entries written per transaction at most.
const BATCH: usize = 2_000;

impl AuditLog {
    /// Start the writer on `store`. It ends when every handle is dropped, after writing what it
    /// holds.
    pub fn start(store: ResourceStore) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(writer(store, rx));
        (AuditLog { tx }, task)
    }

    /// Record one decision (waits only when the queue is full).
    pub async fn record(&self, entry: AuditEntry) {
        if self.tx.send(Msg::Entry(Box::new(entry))).await.is_err() {
            tracing::error!("audit writer has stopped; a decision could not be recorded");
        }
    }

    /// Wait until everything recorded so far is in the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(store: ResourceStore, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<AuditEntry> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Entry(e) => batch.push(*e),
                Msg::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let mut delay = Duration::from_millis(50);
        while !batch.is_empty() {
            match store.append_audit(&batch).await {
                Ok(()) => batch.clear(),
                Err(e) => {
                    tracing::error!(error = %e, entries = batch.len(), "writing the audit log failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}
