//! KAS keys: wrapping a DEK share to a KAS public key, unwrapping with a private key, and the
//! [`KeyUnwrapper`] abstraction that lets a local key and the KAS rewrap client stand in for
//! each other when decrypting.

use std::sync::Arc;

use aws_lc_rs::agreement::{
    self, ECDH_P256, EphemeralPrivateKey, ParsedPublicKey, UnparsedPublicKey,
};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::kem::{self, DecapsulationKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use zeroize::Zeroizing;

use crate::crypto::{self, SecretKey, b64};
use crate::error::{Error, Result};
use crate::kao::{KaoError, KaoErrorCode, KeyAccessObject, KeyAlg};
use crate::pem;

/// HKDF salt of `ec-wrapped` KAOs: SHA-256 of the ASCII string "TDF".
pub fn ec_wrap_salt() -> [u8; 32] {
    crypto::sha256(b"TDF")
}

/// A KAS public key that DEK shares are wrapped to.
#[derive(Debug, Clone)]
pub enum KasPublicKey {
    /// RSA (2048 bits or more): `wrapped`, RSA-OAEP with SHA-1.
    Rsa(OaepPublicKey),
    /// EC P-256: `ec-wrapped`, ECDH + HKDF + AES-GCM.
    Ec(ParsedPublicKey),
}

/// An RSA public key parsed once and ready for OAEP (parsing costs more than encrypting).
#[derive(Clone)]
pub struct OaepPublicKey {
    key: Arc<OaepPublicEncryptingKey>,
}

impl std::fmt::Debug for OaepPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OaepPublicKey({} bits)", self.key.key_size_bits())
    }
}

impl KasPublicKey {
    /// Parse a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): RSA ≥ 2048 bits or EC P-256.
    pub fn from_pem(text: &str) -> Result<Self> {
        let block = pem::decode(text).map_err(|e| Error::Key(format!("KAS public key: {e}")))?;
        if block.label != "PUBLIC KEY" {
            return Err(Error::Key(format!(
                "KAS public key: expected a PEM \"PUBLIC KEY\" (SubjectPublicKeyInfo) block, found {:?}",
                block.label
            )));
        }
        Self::from_spki_der(&block.der)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        if let Ok(rsa) = PublicEncryptingKey::from_der(der) {
            if rsa.key_size_bits() < 2048 {
                return Err(Error::Key(format!(
                    "KAS RSA key has {} bits; at least 2048 are required",
                    rsa.key_size_bits()
                )));
            }
            let key = OaepPublicEncryptingKey::new(rsa)
                .map_err(|_| Error::Key("RSA key unusable for OAEP".into()))?;
            return Ok(KasPublicKey::Rsa(OaepPublicKey { key: Arc::new(key) }));
        }
        let parsed: ParsedPublicKey = UnparsedPublicKey::new(&ECDH_P256, der)
            .try_into()
            .map_err(|_| Error::Key("KAS public key is neither RSA nor EC P-256".into()))?;
        Ok(KasPublicKey::Ec(parsed))
    }

    /// The algorithm DIVE uses with this key.
    pub fn alg(&self) -> KeyAlg {
        match self {
            KasPublicKey::Rsa(_) => KeyAlg::RsaOaep,
            KasPublicKey::Ec(_) => KeyAlg::EcdhHkdf,
        }
    }

    /// Wrap a share: returns (base64 protected key, PEM ephemeral public key for EC).
    pub fn wrap(&self, share: &[u8]) -> Result<(String, Option<String>)> {
        match self {
            KasPublicKey::Rsa(k) => {
                let key = &k.key;
                let mut out = vec![0u8; key.ciphertext_size()];
                let ct = key
                    .encrypt(&OAEP_SHA1_MGF1SHA1, share, &mut out, None)
                    .map_err(|_| Error::Crypto("RSA-OAEP encryption failed"))?;
                Ok((b64::encode(ct), None))
            }
            KasPublicKey::Ec(peer) => {
                let rng = SystemRandom::new();
                let eph = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
                    .map_err(|_| Error::Crypto("EC key generation failed"))?;
                let eph_pub = eph
                    .compute_public_key()
                    .map_err(|_| Error::Crypto("EC public key failed"))?;
                let eph_der: PublicKeyX509Der = eph_pub
                    .as_der()
                    .map_err(|_| Error::Crypto("EC public key encoding failed"))?;
                let kek = agreement::agree_ephemeral(
                    eph,
                    peer.clone(),
                    Error::Crypto("ECDH failed"),
                    |secret| crypto::hkdf_sha256(&ec_wrap_salt(), secret, &[]),
                )?;
                let blob = crypto::gcm_seal(&crypto::gcm_key(&kek[..])?, share)?;
                Ok((
                    b64::encode(blob),
                    Some(pem::encode("PUBLIC KEY", eph_der.as_ref())),
                ))
            }
        }
    }
}

/// HKDF info of `ML-KEM-768` / `ML-KEM-1024` KAOs (salt empty), pinned by the BaseTDF
/// conformance vector `kat-mlkem-hkdf-info-001`.
pub const ML_KEM_HKDF_INFO: &[u8] = b"BaseTDF-KEM";

/// A KAS private key for offline unwrapping (tests, operators, the KAS itself).
pub enum KasPrivateKey {
    Rsa(OaepPrivateDecryptingKey),
    Ec(agreement::PrivateKey),
    /// ML-KEM-768 or ML-KEM-1024 (unwrap only: DIVE does not write ML-KEM KAOs yet).
    MlKem(KeyAlg, DecapsulationKey<kem::AlgorithmId>),
}

impl std::fmt::Debug for KasPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KasPrivateKey::Rsa(k) => write!(f, "KasPrivateKey::Rsa({} bits)", k.key_size_bits()),
            KasPrivateKey::Ec(_) => f.write_str("KasPrivateKey::Ec(P-256)"),
            KasPrivateKey::MlKem(alg, _) => write!(f, "KasPrivateKey::MlKem({})", alg.as_str()),
        }
    }
}

impl KasPrivateKey {
    /// Parse a PEM `PRIVATE KEY` (PKCS#8, RSA or EC P-256) or `EC PRIVATE KEY` (SEC1).
    pub fn from_pem(text: &str) -> Result<Self> {
        let block = pem::decode(text).map_err(|e| Error::Key(format!("private key: {e}")))?;
        match block.label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(k) = PrivateDecryptingKey::from_pkcs8(&block.der) {
                    let k = OaepPrivateDecryptingKey::new(k).map_err(|_| Error::Key("RSA key unusable for OAEP".into()))?;
                    return Ok(KasPrivateKey::Rsa(k));
                }
                agreement::PrivateKey::from_private_key_der(&ECDH_P256, &block.der)
                    .map(KasPrivateKey::Ec)
                    .map_err(|_| Error::Key("private key is neither an RSA nor an EC P-256 PKCS#8 key".into()))
            }
            "EC PRIVATE KEY" => agreement::PrivateKey::from_private_key_der(&ECDH_P256, &block.der)
                .map(KasPrivateKey::Ec)
                .map_err(|_| Error::Key("EC private key is not a valid P-256 key".into())),
            "RSA PRIVATE KEY" => Err(Error::Key(
                "PKCS#1 \"RSA PRIVATE KEY\" is not supported; convert with `openssl pkcs8 -topk8 -nocrypt`".into(),
            )),
            other => Err(Error::Key(format!("expected a PEM \"PRIVATE KEY\" block, found {other:?}"))),
        }
    }

    /// An ML-KEM decapsulation key in its raw FIPS 203 encoding (2400 bytes for ML-KEM-768,
    /// 3168 for ML-KEM-1024), for `alg` `ML-KEM-768` or `ML-KEM-1024`.
    pub fn from_ml_kem_decapsulation_key(alg: KeyAlg, raw: &[u8]) -> Result<Self> {
        let kem_alg = match alg {
            KeyAlg::MlKem768 => &kem::ML_KEM_768,
            KeyAlg::MlKem1024 => &kem::ML_KEM_1024,
            other => {
                return Err(Error::Key(format!(
                    "{} is not an ML-KEM algorithm",
                    other.as_str()
                )));
            }
        };
        DecapsulationKey::new(kem_alg, raw)
            .map(|k| KasPrivateKey::MlKem(alg, k))
            .map_err(|_| {
                Error::Key(format!(
                    "not a valid {} decapsulation key ({} bytes)",
                    alg.as_str(),
                    raw.len()
                ))
            })
    }

    /// Generate an RSA-2048 key pair (tests, tooling). Returns (private PKCS#8 PEM, public SPKI PEM).
    pub fn generate_rsa_pem() -> Result<(String, String)> {
        let k = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| Error::Crypto("RSA key generation failed"))?;
        let der: Pkcs8V1Der = k
            .as_der()
            .map_err(|_| Error::Crypto("RSA key encoding failed"))?;
        let pubder: PublicKeyX509Der = k
            .public_key()
            .as_der()
            .map_err(|_| Error::Crypto("RSA key encoding failed"))?;
        Ok((
            pem::encode("PRIVATE KEY", der.as_ref()),
            pem::encode("PUBLIC KEY", pubder.as_ref()),
        ))
    }

    /// Generate an EC P-256 key pair. Returns (private PKCS#8 PEM, public SPKI PEM).
    pub fn generate_ec_pem() -> Result<(String, String)> {
        let k = agreement::PrivateKey::generate(&ECDH_P256)
            .map_err(|_| Error::Crypto("EC key generation failed"))?;
        let der: Pkcs8V1Der = k
            .as_der()
            .map_err(|_| Error::Crypto("EC key encoding failed"))?;
        let pubk = k
            .compute_public_key()
            .map_err(|_| Error::Crypto("EC key failed"))?;
        let pubder: PublicKeyX509Der = pubk
            .as_der()
            .map_err(|_| Error::Crypto("EC key encoding failed"))?;
        Ok((
            pem::encode("PRIVATE KEY", der.as_ref()),
            pem::encode("PUBLIC KEY", pubder.as_ref()),
        ))
    }

    /// Whether this key can unwrap KAOs of `alg`.
    pub fn supports(&self, alg: KeyAlg) -> bool {
        matches!(
            (self, alg),
            (KasPrivateKey::Rsa(_), KeyAlg::RsaOaep | KeyAlg::RsaOaep256)
                | (KasPrivateKey::Ec(_), KeyAlg::EcdhHkdf)
        ) || matches!(self, KasPrivateKey::MlKem(a, _) if *a == alg)
    }

    /// Recover the share protected in `kao` (no policy check: see [`KeyUnwrapper`]).
    pub fn unwrap_kao(
        &self,
        kao: &KeyAccessObject,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KaoError> {
        let fail = |d: &str| KaoError::new(KaoErrorCode::UnwrapFailed, d.to_string());
        let ct = kao.protected_key_bytes()?;
        match (self, kao.alg) {
            (KasPrivateKey::Rsa(k), KeyAlg::RsaOaep | KeyAlg::RsaOaep256) => {
                let alg = if kao.alg == KeyAlg::RsaOaep {
                    &OAEP_SHA1_MGF1SHA1
                } else {
                    &OAEP_SHA256_MGF1SHA256
                };
                let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
                let len = k
                    .decrypt(alg, &ct, &mut out, None)
                    .map_err(|_| {
                        fail("RSA-OAEP decryption failed (wrong key or corrupted wrappedKey)")
                    })?
                    .len();
                out.truncate(len);
                Ok(out)
            }
            (KasPrivateKey::Ec(k), KeyAlg::EcdhHkdf) => {
                let eph = kao.ephemeral_key.as_deref().ok_or_else(|| {
                    KaoError::new(
                        KaoErrorCode::EphemeralKeyRequired,
                        "ECDH-HKDF needs an ephemeral key",
                    )
                })?;
                let eph_bytes = if eph.contains("-----BEGIN") {
                    pem::decode(eph)
                        .map_err(|e| {
                            KaoError::new(
                                KaoErrorCode::InvalidEncoding,
                                format!("ephemeral key: {e}"),
                            )
                        })?
                        .der
                } else {
                    b64::decode(eph).ok_or_else(|| {
                        KaoError::new(
                            KaoErrorCode::InvalidEncoding,
                            "ephemeral key is neither PEM nor base64",
                        )
                    })?
                };
                let kek = agreement::agree(
                    k,
                    UnparsedPublicKey::new(&ECDH_P256, &eph_bytes),
                    fail("ECDH with the ephemeral key failed (not a P-256 point?)"),
                    |secret| {
                        crypto::hkdf_sha256(&ec_wrap_salt(), secret, &[])
                            .map_err(|_| fail("HKDF failed"))
                    },
                )?;
                let key = crypto::gcm_key(&kek[..]).map_err(|_| fail("bad derived key"))?;
                crypto::gcm_open(&key, &ct).ok_or_else(|| {
                    fail("AES-GCM tag check of the wrapped key failed (wrong key or tampered KAO)")
                })
            }
            (KasPrivateKey::MlKem(own, k), alg) if *own == alg => {
                // ephemeralKey = the KEM ciphertext; KEK = HKDF-SHA256(salt empty, shared
                // secret, "BaseTDF-KEM"); protectedKey = IV ‖ AES-GCM(KEK, share) ‖ tag.
                let eph = kao.ephemeral_key.as_deref().ok_or_else(|| {
                    KaoError::new(
                        KaoErrorCode::EphemeralKeyRequired,
                        format!("{} needs the KEM ciphertext in ephemeralKey", alg.as_str()),
                    )
                })?;
                let kem_ct = b64::decode(eph).ok_or_else(|| {
                    KaoError::new(
                        KaoErrorCode::InvalidEncoding,
                        "ephemeralKey (KEM ciphertext) is not base64",
                    )
                })?;
                let secret = k
                    .decapsulate(kem::Ciphertext::from(&kem_ct[..]))
                    .map_err(|_| {
                        fail(&format!(
                            "{} decapsulation failed (ciphertext of {} bytes)",
                            alg.as_str(),
                            kem_ct.len()
                        ))
                    })?;
                let kek = crypto::hkdf_sha256(&[], secret.as_ref(), ML_KEM_HKDF_INFO)
                    .map_err(|_| fail("HKDF failed"))?;
                let key = crypto::gcm_key(&kek[..]).map_err(|_| fail("bad derived key"))?;
                crypto::gcm_open(&key, &ct).ok_or_else(|| {
                    fail("AES-GCM tag check of the wrapped key failed (wrong key or tampered KAO)")
                })
            }
            (_, KeyAlg::XEcdhMlKem768) => Err(KaoError::new(
                KaoErrorCode::UnsupportedAlg,
                "X-ECDH-ML-KEM-768 (hybrid) is not supported yet",
            )),
            (_, alg) => Err(fail(&format!(
                "this {} private key cannot unwrap a {} KAO",
                self.kind(),
                alg.as_str()
            ))),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            KasPrivateKey::Rsa(_) => "RSA",
            KasPrivateKey::Ec(_) => "EC",
            KasPrivateKey::MlKem(alg, _) => alg.as_str(),
        }
    }
}

/// Why a share could not be obtained for one KAO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// No key for this KAS / kid / algorithm is available to this unwrapper.
    #[error("no key for this KAO: {0}")]
    NoKey(String),
    /// The KAS refused (authorization, binding, dissemination: indistinguishable on purpose).
    #[error("key release denied: {0}")]
    Denied(String),
    /// The KAO could not be processed.
    #[error("{0}")]
    Kao(KaoError),
}

/// Obtains the DEK share protected by a KAO. A local private key implements it directly; the KAS
/// rewrap client implements it by sending the KAO and the policy (exactly as stored, base64) to
/// the KAS, which verifies the binding and decides. The reader verifies the binding again after
/// unwrapping, so an unwrapper cannot weaken the check.
pub trait KeyUnwrapper {
    fn unwrap_share(
        &self,
        kao: &KeyAccessObject,
        policy_b64: &str,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, UnwrapError>;
}

/// Offline unwrapping with local private keys (operators, tests). Keys are tried in order; a
/// key whose `kid` is given must match the KAO's `kid` when the KAO names one.
#[derive(Debug, Default)]
pub struct LocalKeyUnwrapper {
    keys: Vec<(Option<String>, KasPrivateKey)>,
}

impl LocalKeyUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_key(mut self, kid: Option<String>, key: KasPrivateKey) -> Self {
        self.keys.push((kid, key));
        self
    }
}

impl KeyUnwrapper for LocalKeyUnwrapper {
    fn unwrap_share(
        &self,
        kao: &KeyAccessObject,
        policy_b64: &str,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let candidates = self.keys.iter().filter(|(kid, key)| {
            key.supports(kao.alg)
                && match (kid, &kao.kid) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        });
        let mut last = None;
        for (_, key) in candidates {
            match key.unwrap_kao(kao) {
                Ok(share) => {
                    // Same rule as a KAS: never release a share whose binding does not verify.
                    if !kao.verify_policy_binding(&share, policy_b64) {
                        return Err(UnwrapError::Kao(KaoError::new(
                            KaoErrorCode::PolicyBindingMismatch,
                            "policy binding does not verify with the unwrapped share",
                        )));
                    }
                    return Ok(share);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => UnwrapError::Kao(e),
            None => UnwrapError::NoKey(format!(
                "no local {} key (kid {:?})",
                kao.alg.as_str(),
                kao.kid
            )),
        })
    }
}

/// Take exactly 32 bytes as a share.
pub(crate) fn share_from(bytes: &[u8]) -> Option<SecretKey> {
    crypto::key_from_slice(bytes)
}
