//! Small helpers: randomness, hashing, time.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    dive_jose::now()
}

/// `bytes` random bytes from the system CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG failing is not recoverable and never happens on a working kernel.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system random number generator");
    buf
}

/// Hex SHA-256: how high-entropy secrets (codes, refresh tokens, client secrets, session ids) are
/// stored. They carry ≥ 256 random bits, so a fast hash is sufficient.
pub fn sha256_hex(value: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    hex_encode(d.as_ref())
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time string comparison.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// PKCE S256 (RFC 7636 §4.2): base64url(SHA-256(verifier)).
pub fn pkce_s256(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}
