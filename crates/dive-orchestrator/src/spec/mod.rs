//! Compose-format stack files: parsing, interpolation and validation.

mod types;

pub use types::*;

// TEMPORARY until the spec parser lands (branch orch-spec provides the real one).
impl ServiceSpec {
    pub fn definition_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("pos");
        }
        format!("{:x}", md5_like(v.to_string().as_bytes()))
    }
}
fn md5_like(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse()
            .map(std::time::Duration::from_millis)
            .map_err(|e| e.to_string());
    }
    if let Some(x) = s.strip_suffix('s') {
        return x
            .parse()
            .map(std::time::Duration::from_secs_f64)
            .map_err(|e: std::num::ParseFloatError| e.to_string());
    }
    Err(format!("bad duration {s}"))
}
