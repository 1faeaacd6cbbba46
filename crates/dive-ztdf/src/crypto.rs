//! Thin wrappers over `aws-lc-rs` for the primitives the format uses, so the rest of the crate
//! speaks in TDF terms (IV-prefixed GCM blobs, base64 HMACs) and never touches raw key material
//! handling twice.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hkdf, hmac};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub const KEY_LEN: usize = 32;
pub const IV_LEN: usize = NONCE_LEN;
pub const TAG_LEN: usize = 16;

/// A 256-bit secret (DEK or DEK share), wiped on drop.
pub type SecretKey = Zeroizing<[u8; KEY_LEN]>;

pub fn random_bytes(out: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::Crypto("system random generator failed"))
}

pub fn random_key() -> Result<SecretKey> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    random_bytes(&mut k[..])?;
    Ok(k)
}

pub fn key_from_slice(bytes: &[u8]) -> Option<SecretKey> {
    let arr: [u8; KEY_LEN] = bytes.try_into().ok()?;
    Some(Zeroizing::new(arr))
}

pub fn gcm_key(key: &[u8]) -> Result<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, key)
        .map_err(|_| Error::Crypto("AES-256-GCM key must be 32 bytes"))?;
    Ok(LessSafeKey::new(unbound))
}

/// `IV(12) ‖ ciphertext ‖ tag(16)` under a fresh random IV.
pub fn gcm_seal(key: &LessSafeKey, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut iv = [0u8; IV_LEN];
    random_bytes(&mut iv)?;
    let mut out = Vec::with_capacity(IV_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&iv);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::empty(),
            &mut out[IV_LEN..],
        )
        .map_err(|_| Error::Crypto("AES-256-GCM seal failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Open an `IV ‖ ciphertext ‖ tag` blob; `None` when it does not authenticate.
pub fn gcm_open(key: &LessSafeKey, blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if blob.len() < IV_LEN + TAG_LEN {
        return None;
    }
    let iv: [u8; IV_LEN] = blob[..IV_LEN].try_into().ok()?;
    let mut buf = Zeroizing::new(blob[IV_LEN..].to_vec());
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut buf)
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&k, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Constant-time check of an HMAC-SHA256 tag.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&k, data, tag).is_ok()
}

/// Constant-time equality for secrets-derived values of equal public length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 to a 32-byte key.
pub fn hkdf_sha256(salt: &[u8], secret: &[u8], info: &[u8]) -> Result<SecretKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let info = [info];
    let okm = prk
        .expand(&info, Len(KEY_LEN))
        .map_err(|_| Error::Crypto("HKDF expand failed"))?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(&mut out[..])
        .map_err(|_| Error::Crypto("HKDF fill failed"))?;
    Ok(out)
}

pub mod b64 {
    //! Standard base64 (the manifest's encoding), tolerant of missing padding on input.
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    pub fn encode(data: impl AsRef<[u8]>) -> String {
        STANDARD.encode(data)
    }
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        STANDARD
            .decode(s)
            .ok()
            .or_else(|| STANDARD_NO_PAD.decode(s).ok())
    }
    pub fn url_encode(data: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }
    pub fn url_decode(s: &str) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_and_tamper() {
        let key = random_key().unwrap();
        let k = gcm_key(&key[..]).unwrap();
        let blob = gcm_seal(&k, b"hello").unwrap();
        assert_eq!(blob.len(), 5 + 28);
        assert_eq!(&gcm_open(&k, &blob).unwrap()[..], b"hello");
        let mut bad = blob.clone();
        bad[14] ^= 1;
        assert!(gcm_open(&k, &bad).is_none());
    }

    #[test]
    fn hkdf_matches_rfc5869_case1() {
        // RFC 5869 test case 1, first 32 bytes of OKM.
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm = hkdf_sha256(&salt, &ikm, &info).unwrap();
        assert_eq!(
            hex::encode(&okm[..]),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }
}
