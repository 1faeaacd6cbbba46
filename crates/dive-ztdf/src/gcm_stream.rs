//! Incremental AES-256-GCM over aws-lc's `EVP_CIPHER` interface.
//!
//! `aws-lc-rs` offers GCM only one-shot, so a 2 MiB segment had to be copied in whole, then
//! encrypted, then CRC'd, then written: four passes over a buffer larger than the L2 cache. With
//! the incremental interface the payload is processed in chunks that stay in L1/L2 (read, encrypt
//! or decrypt, CRC, write), which is what brings the payload rate close to OpenSSL's. It is the
//! same aws-lc library and the same AES-GCM assembly (`CRYPTO_gcm128_*`) as `aws-lc-rs`'s AEAD.
//!
//! Decryption through this type releases unauthenticated plaintext chunk by chunk: callers must
//! keep a segment's plaintext until [`GcmStream::finish_decrypt`] accepted the tag (the reader
//! does).

use std::os::raw::c_int;
use std::ptr;

use aws_lc_sys::{
    EVP_CIPHER_CTX, EVP_CIPHER_CTX_ctrl, EVP_CIPHER_CTX_free, EVP_CIPHER_CTX_new,
    EVP_CTRL_GCM_GET_TAG, EVP_CTRL_GCM_SET_TAG, EVP_CipherFinal_ex, EVP_CipherInit_ex,
    EVP_CipherUpdate, EVP_aes_256_gcm,
};

use crate::crypto::{IV_LEN, KEY_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// Largest chunk handed to aws-lc in one call (its lengths are `int`).
const MAX_CALL: usize = 1 << 30;

/// One AES-256-GCM key schedule, reused for every segment (one IV each).
pub struct GcmStream {
    ctx: *mut EVP_CIPHER_CTX,
    encrypt: bool,
}

// SAFETY: the context is owned exclusively by this value and only used through `&mut self`;
// aws-lc contexts have no thread affinity.
unsafe impl Send for GcmStream {}

impl Drop for GcmStream {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from EVP_CIPHER_CTX_new and is freed once, here. Freeing
        // cleanses the key schedule.
        unsafe { EVP_CIPHER_CTX_free(self.ctx) }
    }
}

impl GcmStream {
    /// A context for encrypting (`encrypt`) or decrypting under `key`.
    pub fn new(key: &[u8; KEY_LEN], encrypt: bool) -> Result<Self> {
        // SAFETY: allocation only; a null result is handled below.
        let ctx = unsafe { EVP_CIPHER_CTX_new() };
        if ctx.is_null() {
            return Err(Error::Crypto("cannot allocate an AES-GCM context"));
        }
        let s = GcmStream { ctx, encrypt };
        // SAFETY: `ctx` is a live context owned by `s` (freed on drop, also on error); the key
        // is 32 readable bytes, as AES-256 needs; a null IV defers the IV to `start`.
        let ok = unsafe {
            EVP_CipherInit_ex(
                ctx,
                EVP_aes_256_gcm(),
                ptr::null_mut(),
                key.as_ptr(),
                ptr::null(),
                c_int::from(encrypt),
            )
        };
        if ok != 1 {
            return Err(Error::Crypto("AES-256-GCM key setup failed"));
        }
        Ok(s)
    }

    /// Start a message under `iv` (the key schedule is kept).
    pub fn start(&mut self, iv: &[u8; IV_LEN]) -> Result<()> {
        // SAFETY: live context with cipher and key set; the IV is 12 readable bytes (the GCM
        // default IV length); null cipher/key keep the existing ones.
        let ok = unsafe {
            EVP_CipherInit_ex(
                self.ctx,
                ptr::null(),
                ptr::null_mut(),
                ptr::null(),
                iv.as_ptr(),
                -1,
            )
        };
        if ok == 1 {
            Ok(())
        } else {
            Err(Error::Crypto("AES-256-GCM IV setup failed"))
        }
    }

    /// Encrypt or decrypt `buf` in place, continuing the current message.
    pub fn update(&mut self, buf: &mut [u8]) -> Result<()> {
        for chunk in buf.chunks_mut(MAX_CALL) {
            let mut out_len: c_int = 0;
            // SAFETY: input and output are the same valid chunk of at most 2^30 bytes (fits
            // `c_int`); in place is supported: GCM is a custom cipher in aws-lc and writes
            // exactly `len` bytes, with no block buffering.
            let ok = unsafe {
                EVP_CipherUpdate(
                    self.ctx,
                    chunk.as_mut_ptr(),
                    &mut out_len,
                    chunk.as_ptr(),
                    chunk.len() as c_int,
                )
            };
            if ok != 1 || out_len as usize != chunk.len() {
                return Err(Error::Crypto("AES-256-GCM update failed"));
            }
        }
        Ok(())
    }

    /// End an encrypted message; returns its tag.
    pub fn finish_encrypt(&mut self) -> Result<[u8; TAG_LEN]> {
        debug_assert!(self.encrypt);
        let mut out_len: c_int = 0;
        let mut tag = [0u8; TAG_LEN];
        // SAFETY: live context; GCM's final writes no output bytes (null is accepted); the tag
        // buffer has the 16 bytes requested.
        let ok = unsafe {
            EVP_CipherFinal_ex(self.ctx, ptr::null_mut(), &mut out_len) == 1
                && EVP_CIPHER_CTX_ctrl(
                    self.ctx,
                    EVP_CTRL_GCM_GET_TAG,
                    TAG_LEN as c_int,
                    tag.as_mut_ptr().cast(),
                ) == 1
        };
        if ok {
            Ok(tag)
        } else {
            Err(Error::Crypto("AES-256-GCM tag computation failed"))
        }
    }

    /// End a decrypted message: true only when `tag` authenticates everything passed to
    /// [`update`](Self::update) since [`start`](Self::start) (constant-time check in aws-lc).
    pub fn finish_decrypt(&mut self, tag: &[u8; TAG_LEN]) -> bool {
        debug_assert!(!self.encrypt);
        let mut tag = *tag;
        let mut out_len: c_int = 0;
        // SAFETY: as in `finish_encrypt`; SET_TAG copies the 16 bytes given.
        unsafe {
            EVP_CIPHER_CTX_ctrl(
                self.ctx,
                EVP_CTRL_GCM_SET_TAG,
                TAG_LEN as c_int,
                tag.as_mut_ptr().cast(),
            ) == 1
                && EVP_CipherFinal_ex(self.ctx, ptr::null_mut(), &mut out_len) == 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto;

    /// Chunked encryption equals aws-lc-rs's one-shot AEAD, and decryption authenticates.
    #[test]
    fn matches_one_shot_aead_and_detects_tampering() {
        let key = [5u8; KEY_LEN];
        let iv = [9u8; IV_LEN];
        let plain: Vec<u8> = (0..100_003u32).map(|i| (i % 253) as u8).collect();
        let aead = crypto::gcm_key(&key).unwrap();
        let mut expect = plain.clone();
        let expect_tag = aead
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
                aws_lc_rs::aead::Aad::empty(),
                &mut expect,
            )
            .unwrap();
        let mut enc = GcmStream::new(&key, true).unwrap();
        for round in 0..2 {
            let mut buf = plain.clone();
            enc.start(&iv).unwrap();
            // Odd chunk sizes exercise the partial-block carry between calls.
            for c in buf.chunks_mut(7 + round * 4096) {
                enc.update(c).unwrap();
            }
            assert_eq!(buf, expect);
            assert_eq!(&enc.finish_encrypt().unwrap()[..], expect_tag.as_ref());
        }
        let mut dec = GcmStream::new(&key, false).unwrap();
        let tag: [u8; TAG_LEN] = expect_tag.as_ref().try_into().unwrap();
        let mut buf = expect.clone();
        dec.start(&iv).unwrap();
        for c in buf.chunks_mut(65536) {
            dec.update(c).unwrap();
        }
        assert!(dec.finish_decrypt(&tag));
        assert_eq!(buf, plain);
        let mut bad = expect.clone();
        bad[50_000] ^= 1;
        dec.start(&iv).unwrap();
        dec.update(&mut bad).unwrap();
        assert!(!dec.finish_decrypt(&tag));
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        let mut buf = expect.clone();
        dec.start(&iv).unwrap();
        dec.update(&mut buf).unwrap();
        assert!(!dec.finish_decrypt(&bad_tag));
        // An empty message still has a tag, and it is checked.
        enc.start(&iv).unwrap();
        let t = enc.finish_encrypt().unwrap();
        dec.start(&iv).unwrap();
        assert!(dec.finish_decrypt(&t));
        dec.start(&iv).unwrap();
        assert!(!dec.finish_decrypt(&tag));
    }
}
