//! TOTP (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30-second steps, ±1 step of clock
//! drift, and replay protection (a step once accepted, or any earlier one, is refused).

use aws_lc_rs::hmac;
use data_encoding::BASE32_NOPAD;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const WINDOW: i64 = 1;

/// A new random secret, base32 (as authenticator apps expect).
pub fn generate_secret() -> String {
    BASE32_NOPAD.encode(&crate::util::random_bytes(20))
}

/// HOTP value for a counter.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    bin % 10u32.pow(DIGITS)
}

/// The code for time `t` (Unix seconds).
pub fn code_at(secret_b32: &str, t: i64) -> Option<String> {
    let secret = BASE32_NOPAD.decode(secret_b32.as_bytes()).ok()?;
    Some(format!(
        "{:0width$}",
        hotp(&secret, (t / STEP_SECS) as u64),
        width = DIGITS as usize
    ))
}

/// Check `code` at time `t`. Returns the matched step, which must be stored as the new
/// `last_step`; steps at or before `last_step` are refused (replay).
pub fn verify(secret_b32: &str, code: &str, t: i64, last_step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secret = BASE32_NOPAD.decode(secret_b32.as_bytes()).ok()?;
    let now_step = t / STEP_SECS;
    let mut matched = None;
    // Check every step in the window (no early exit) so timing does not reveal which matched.
    for step in (now_step - WINDOW)..=(now_step + WINDOW) {
        let candidate = format!(
            "{:0width$}",
            hotp(&secret, step as u64),
            width = DIGITS as usize
        );
        if crate::util::ct_eq(&candidate, code) && step > last_step {
            matched = Some(step);
        }
    }
    matched
}

/// The `otpauth://` URI authenticator apps import.
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        secret_b32,
        enc(issuer)
    )
}

/// The URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", 8 digits → last 6 digits.
    #[test]
    fn rfc6238_vectors() {
        let seed = b"12345678901234567890";
        for (t, expected8) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(hotp(seed, t / 30), expected8 % 1_000_000, "t={t}");
        }
    }

    #[test]
    fn window_and_replay() {
        let secret = generate_secret();
        let t = 1_700_000_000;
        let code = code_at(&secret, t).unwrap();
        let step = verify(&secret, &code, t, 0).expect("current code");
        assert_eq!(verify(&secret, &code, t, step), None, "replay refused");
        let prev = code_at(&secret, t - 30).unwrap();
        assert!(verify(&secret, &prev, t, 0).is_some(), "one step of drift");
        let old = code_at(&secret, t - 90).unwrap();
        assert_eq!(verify(&secret, &old, t, 0), None, "outside the window");
        assert_eq!(verify(&secret, "12345", t, 0), None);
        assert_eq!(verify(&secret, "abcdef", t, 0), None);
    }

    #[test]
    fn qr_is_svg() {
        let uri = otpauth_uri("DIVE FRA", "testuser-fra-3", &generate_secret());
        assert!(uri.starts_with("otpauth://totp/DIVE+FRA:testuser-fra-3?secret="));
        assert!(qr_svg(&uri).unwrap().contains("<svg"));
    }
}
