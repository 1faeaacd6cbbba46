//! Identifiers and timestamps: time-ordered text ids generated in Rust, unix milliseconds.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds, the store's only timestamp representation.
pub type UnixMillis = i64;

/// The current time in unix milliseconds.
pub fn now_millis() -> UnixMillis {
    // Before 1970 only on a broken clock; 0 keeps ordering sane rather than failing.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new id that sorts by creation time: 12 hex digits of milliseconds, 8 of a per-process
/// sequence (so ids made within one millisecond by one process keep their order), then 8 random
/// ones (so ids made by different processes never collide).
pub(crate) fn new_id() -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:012x}-{seq:08x}{:08x}",
        now_millis(),
        rand::random::<u32>()
    )
}

/// Render unix milliseconds as an RFC 3339 UTC timestamp for messages.
pub fn format_millis(ms: UnixMillis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The id of one deployment (time-ordered, so ids of a stack sort by start time).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct DeploymentId(String);

impl DeploymentId {
    pub(crate) fn generate() -> DeploymentId {
        DeploymentId(new_id())
    }

    /// Wrap an id read from the store or given by an operator.
    pub fn new(id: impl Into<String>) -> DeploymentId {
        DeploymentId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_unique() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b, "{a} should sort before {b}");
        assert_ne!(new_id(), new_id());
        let burst: Vec<String> = (0..1000).map(|_| new_id()).collect();
        let mut sorted = burst.clone();
        sorted.sort();
        assert_eq!(burst, sorted, "ids of one process keep creation order");
    }

    #[test]
    fn millis_render_as_rfc3339() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_millis(1_500), "1970-01-01T00:00:01.5Z");
    }
}
