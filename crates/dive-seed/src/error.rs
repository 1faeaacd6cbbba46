//! Why seeding failed.

use uuid::Uuid;

/// A boxed error from a caller's batch consumer (e.g. a database insert).
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("creating the ZTDF of seed document {index} ({id}): {source}")]
    Encrypt {
        index: usize,
        id: Uuid,
        #[source]
        source: dive_ztdf::Error,
    },
    #[error("KAS public key: {0}")]
    KasKey(#[source] dive_ztdf::Error),
    #[error("seeding options: {0}")]
    Options(String),
    #[error("a seeding worker thread stopped unexpectedly (it panicked); no further batches")]
    Worker,
    #[error("storing a batch of seed documents failed: {0}")]
    Sink(#[source] SinkError),
}
