//! The KAS's own key pairs: one current RSA-2048 and one current EC P-256 key per instance, plus
//! the keys they replaced, which stay usable for unwrapping so that rotation never strands a file.
//!
//! On disk (`$DIVE_HOME/instances/<code>/kas/`, directory 0700):
//!
//! ```text
//! keys.json          index: [{kid, algorithm, created_at, current}]   (0600)
//! <kid>.key.pem      PKCS#8 private key                              (0600)
//! <kid>.pub.pem      SubjectPublicKeyInfo public key                  (0644)
//! .lock              advisory lock held while keys are generated or rotated
//! ```
//!
//! New key files are written before the index names them, and the index is replaced by an atomic
//! rename, so a reader (a running KAS polling the index) never sees a key it cannot load.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use dive_ztdf::KasPrivateKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The key algorithms the KAS serves, named as the OpenTDF protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlgorithm {
    /// `rsa:2048`: KAOs of type `wrapped` (RSA-OAEP).
    Rsa2048,
    /// `ec:secp256r1`: KAOs of type `ec-wrapped` (ECDH + HKDF + AES-GCM).
    EcP256,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 2] = [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcP256];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa:2048",
            KeyAlgorithm::EcP256 => "ec:secp256r1",
        }
    }

    pub fn parse(s: &str) -> Option<KeyAlgorithm> {
        match s {
            "rsa:2048" => Some(KeyAlgorithm::Rsa2048),
            "ec:secp256r1" => Some(KeyAlgorithm::EcP256),
            _ => None,
        }
    }

    /// The KAS key algorithm that unwraps KAOs of `alg`, if any.
    pub fn for_kao(alg: dive_ztdf::KeyAlg) -> Option<KeyAlgorithm> {
        match alg {
            dive_ztdf::KeyAlg::RsaOaep | dive_ztdf::KeyAlg::RsaOaep256 => {
                Some(KeyAlgorithm::Rsa2048)
            }
            dive_ztdf::KeyAlg::EcdhHkdf => Some(KeyAlgorithm::EcP256),
            _ => None,
        }
    }

    fn kid_prefix(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "r",
            KeyAlgorithm::EcP256 => "e",
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors loading, generating or rotating keys; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("no KAS keys in {0}: start the KAS once (keys are generated on first start)")]
    Missing(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error(transparent)]
    Pki(#[from] dive_pki::PkiError),
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// One KAS key pair.
pub struct KasKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// Unix seconds.
    pub created_at: i64,
    /// SubjectPublicKeyInfo PEM, as served by the public-key endpoint.
    pub public_pem: String,
    private: KasPrivateKey,
    public_jwk: Value,
}

impl std::fmt::Debug for KasKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KasKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl KasKey {
    fn from_pems(
        kid: String,
        algorithm: KeyAlgorithm,
        created_at: i64,
        private_pem: &str,
        public_pem: String,
        path: &Path,
    ) -> Result<KasKey, KeyError> {
        let corrupt = |reason: String| KeyError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let private = KasPrivateKey::from_pem(private_pem).map_err(|e| corrupt(e.to_string()))?;
        let matches = matches!(
            (&private, algorithm),
            (KasPrivateKey::Rsa(_), KeyAlgorithm::Rsa2048)
                | (KasPrivateKey::Ec(_), KeyAlgorithm::EcP256)
        );
        if !matches {
            return Err(corrupt(format!(
                "the private key is not an {algorithm} key"
            )));
        }
        let public_der = dive_ztdf::pem::decode(&public_pem)
            .map_err(|e| corrupt(format!("public key: {e}")))?
            .der;
        let public_jwk = jwk_of(algorithm, &kid, &public_der).map_err(corrupt)?;
        Ok(KasKey {
            kid,
            algorithm,
            created_at,
            public_pem,
            private,
            public_jwk,
        })
    }

    pub fn private(&self) -> &KasPrivateKey {
        &self.private
    }

    /// The public key as a JWK (RFC 7517) with `kid` and `use: enc`.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Build the JWK of a SubjectPublicKeyInfo.
fn jwk_of(algorithm: KeyAlgorithm, kid: &str, spki: &[u8]) -> Result<Value, String> {
    match algorithm {
        KeyAlgorithm::Rsa2048 => {
            let key = aws_lc_rs::rsa::PublicEncryptingKey::from_der(spki)
                .map_err(|_| "public key is not an RSA SubjectPublicKeyInfo".to_string())?;
            let (n, e) = rsa_components(spki).ok_or("cannot read the RSA modulus")?;
            debug_assert_eq!(n.len() * 8, key.key_size_bits());
            Ok(
                json!({"kty": "RSA", "kid": kid, "use": "enc", "alg": "RSA-OAEP",
                      "n": b64url(n), "e": b64url(e)}),
            )
        }
        KeyAlgorithm::EcP256 => {
            // The SPKI of a P-256 key ends with the 65-byte uncompressed point 04 || x || y.
            if spki.len() < 65 || spki[spki.len() - 65] != 4 {
                return Err("public key is not an uncompressed P-256 point".into());
            }
            let point = &spki[spki.len() - 65..];
            Ok(
                json!({"kty": "EC", "kid": kid, "use": "enc", "crv": "P-256",
                      "x": b64url(&point[1..33]), "y": b64url(&point[33..65])}),
            )
        }
    }
}

/// Read one DER TLV at `der`, returning (tag, contents, rest).
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *der.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let body = der.get(head..head + len)?;
    Some((tag, body, &der[head + len..]))
}

fn strip_zeros(mut v: &[u8]) -> &[u8] {
    while v.len() > 1 && v[0] == 0 {
        v = &v[1..];
    }
    v
}

/// The modulus and exponent of an RSA SubjectPublicKeyInfo (leading zero bytes stripped).
fn rsa_components(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, spki_body, _) = tlv(spki)?; // SEQUENCE
    let (_, _, rest) = tlv(spki_body)?; // AlgorithmIdentifier
    let (tag, bits, _) = tlv(rest)?; // BIT STRING
    if tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    let (_, rsa_key, _) = tlv(&bits[1..])?; // RSAPublicKey SEQUENCE
    let (_, n, rest) = tlv(rsa_key)?;
    let (_, e, _) = tlv(rest)?;
    Some((strip_zeros(n), strip_zeros(e)))
}

/// The keys in force: per algorithm the current key first, then older keys, newest first.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Arc<KasKey>>,
    by_kid: HashMap<String, Arc<KasKey>>,
}

impl KeyRing {
    fn new(mut keys: Vec<(bool, KasKey)>) -> KeyRing {
        // Current first, then by creation time, newest first.
        keys.sort_by(|(ca, a), (cb, b)| {
            a.algorithm
                .cmp(&b.algorithm)
                .then(cb.cmp(ca))
                .then(b.created_at.cmp(&a.created_at))
        });
        let keys: Vec<Arc<KasKey>> = keys.into_iter().map(|(_, k)| Arc::new(k)).collect();
        let by_kid = keys.iter().map(|k| (k.kid.clone(), k.clone())).collect();
        KeyRing { keys, by_kid }
    }

    /// The key that new files should be wrapped to.
    pub fn current(&self, algorithm: KeyAlgorithm) -> Option<&Arc<KasKey>> {
        self.keys.iter().find(|k| k.algorithm == algorithm)
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<KasKey>> {
        self.by_kid.get(kid)
    }

    /// Keys to try for a KAO that names no `kid`: the current key, then older ones.
    pub fn candidates(&self, algorithm: KeyAlgorithm) -> impl Iterator<Item = &Arc<KasKey>> {
        self.keys.iter().filter(move |k| k.algorithm == algorithm)
    }

    pub fn all(&self) -> &[Arc<KasKey>] {
        &self.keys
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    kid: String,
    algorithm: String,
    created_at: i64,
    current: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    keys: Vec<IndexEntry>,
}

/// The index file's identity for change detection (size, modification time, inode).
pub type Fingerprint = dive_watch::Stamp;

/// The key directory of one instance.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore { dir: dir.into() }
    }

    /// `$DIVE_HOME/instances/<code lower-case>/kas`.
    pub fn for_instance(home: &Path, instance: dive_core::CountryCode) -> KeyStore {
        KeyStore::new(
            home.join("instances")
                .join(instance.as_str().to_lowercase())
                .join("kas"),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    /// Changes whenever the index is replaced (rotation by another process).
    pub fn fingerprint(&self) -> Fingerprint {
        dive_watch::Stamp::of_file(&self.index_path())
    }

    fn ensure_dir(&self) -> Result<(), KeyError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("create directory", &self.dir))
    }

    /// Hold the directory's advisory lock for the life of the returned file.
    fn lock(&self) -> Result<File, KeyError> {
        let path = self.dir.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        f.lock().map_err(io_err("lock", &path))?;
        Ok(f)
    }

    fn read_index(&self) -> Result<Option<Index>, KeyError> {
        let path = self.index_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| KeyError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    fn write_index(&self, index: &Index) -> Result<(), KeyError> {
        let path = self.index_path();
        let tmp = self.dir.join("keys.json.tmp");
        let text = serde_json::to_string_pretty(index).map_err(|e| KeyError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        dive_pki::write_file(&tmp, text.as_bytes(), 0o600)?;
        std::fs::rename(&tmp, &path).map_err(io_err("replace", &path))
    }

    /// Load the keys; `Err(Missing)` when none were generated yet.
    pub fn load(&self) -> Result<KeyRing, KeyError> {
        let index = self
            .read_index()?
            .ok_or_else(|| KeyError::Missing(self.dir.display().to_string()))?;
        self.load_index(&index)
    }

    fn load_index(&self, index: &Index) -> Result<KeyRing, KeyError> {
        let ipath = self.index_path();
        let mut keys = Vec::new();
        for e in &index.keys {
            let algorithm = KeyAlgorithm::parse(&e.algorithm).ok_or_else(|| KeyError::Corrupt {
                path: ipath.display().to_string(),
                reason: format!("key {:?} has unknown algorithm {:?}", e.kid, e.algorithm),
            })?;
            if !valid_kid(&e.kid) {
                return Err(KeyError::Corrupt {
                    path: ipath.display().to_string(),
                    reason: format!("invalid kid {:?}", e.kid),
                });
            }
            let kpath = self.dir.join(format!("{}.key.pem", e.kid));
            let ppath = self.dir.join(format!("{}.pub.pem", e.kid));
            let private = std::fs::read_to_string(&kpath).map_err(io_err("read", &kpath))?;
            let public = std::fs::read_to_string(&ppath).map_err(io_err("read", &ppath))?;
            let key = KasKey::from_pems(
                e.kid.clone(),
                algorithm,
                e.created_at,
                &private,
                public,
                &kpath,
            )?;
            keys.push((e.current, key));
        }
        for alg in KeyAlgorithm::ALL {
            let current = index
                .keys
                .iter()
                .filter(|e| e.current && e.algorithm == alg.as_str())
                .count();
            if current != 1 {
                return Err(KeyError::Corrupt {
                    path: ipath.display().to_string(),
                    reason: format!("{current} current {alg} keys; exactly one is required"),
                });
            }
        }
        Ok(KeyRing::new(keys))
    }

    /// Load the keys, generating a current key for every algorithm that has none (first start).
    pub fn load_or_create(&self) -> Result<KeyRing, KeyError> {
        self.ensure_dir()?;
        if let Some(index) = self.read_index()? {
            return self.load_index(&index);
        }
        let _lock = self.lock()?;
        // Another process may have created them while we waited for the lock.
        let mut index = self.read_index()?.unwrap_or_default();
        for alg in KeyAlgorithm::ALL {
            if !index
                .keys
                .iter()
                .any(|e| e.current && e.algorithm == alg.as_str())
            {
                index.keys.push(self.generate(alg, true)?);
            }
        }
        self.write_index(&index)?;
        self.load_index(&index)
    }

    /// Make a new current key for every algorithm; the previous ones stay for unwrapping.
    /// Returns the new keys' (algorithm, kid).
    pub fn rotate(&self) -> Result<Vec<(KeyAlgorithm, String)>, KeyError> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?.unwrap_or_default();
        let mut made = Vec::new();
        for alg in KeyAlgorithm::ALL {
            let entry = self.generate(alg, true)?;
            for e in index.keys.iter_mut() {
                if e.algorithm == alg.as_str() {
                    e.current = false;
                }
            }
            made.push((alg, entry.kid.clone()));
            index.keys.push(entry);
        }
        self.write_index(&index)?;
        // Prove the result loads before reporting success.
        self.load_index(&index)?;
        Ok(made)
    }

    /// Generate one key pair and write its files (not yet in the index).
    fn generate(&self, algorithm: KeyAlgorithm, current: bool) -> Result<IndexEntry, KeyError> {
        let (private, public) = match algorithm {
            KeyAlgorithm::Rsa2048 => KasPrivateKey::generate_rsa_pem(),
            KeyAlgorithm::EcP256 => KasPrivateKey::generate_ec_pem(),
        }
        .map_err(|e| KeyError::Generate(e.to_string()))?;
        let kid = new_kid(algorithm)?;
        dive_pki::write_file(
            &self.dir.join(format!("{kid}.key.pem")),
            private.as_bytes(),
            0o600,
        )?;
        dive_pki::write_file(
            &self.dir.join(format!("{kid}.pub.pem")),
            public.as_bytes(),
            0o644,
        )?;
        tracing::info!(%kid, algorithm = algorithm.as_str(), "generated a KAS key");
        Ok(IndexEntry {
            kid,
            algorithm: algorithm.as_str().to_string(),
            created_at: dive_jose::now(),
            current,
        })
    }
}

/// Kids are file names: a letter, a dash and hex.
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn new_kid(algorithm: KeyAlgorithm) -> Result<String, KeyError> {
    let mut b = [0u8; 6];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyError::Generate("system random generator failed".into()))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{hex}", algorithm.kid_prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_private_files_0600_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("kas"));
        assert!(matches!(store.load(), Err(KeyError::Missing(_))));
        let ring = store.load_or_create().unwrap();
        let rsa = ring.current(KeyAlgorithm::Rsa2048).unwrap().clone();
        let ec = ring.current(KeyAlgorithm::EcP256).unwrap().clone();
        assert!(rsa.kid.starts_with("r-") && ec.kid.starts_with("e-"));
        for k in [&rsa, &ec] {
            let mode = std::fs::metadata(store.dir().join(format!("{}.key.pem", k.kid)))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", k.kid);
        }
        let dir_mode = std::fs::metadata(store.dir()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // A second start reuses the same keys.
        let again = store.load_or_create().unwrap();
        assert_eq!(again.current(KeyAlgorithm::Rsa2048).unwrap().kid, rsa.kid);
        assert_eq!(again.current(KeyAlgorithm::EcP256).unwrap().kid, ec.kid);
        assert_eq!(rsa.public_jwk()["kty"], "RSA");
        assert_eq!(ec.public_jwk()["crv"], "P-256");
        // The JWK modulus is the 2048-bit key's.
        let n = rsa.public_jwk()["n"].as_str().unwrap();
        assert_eq!(n.len(), 342);
    }

    #[test]
    fn rotation_keeps_old_keys_behind_the_new_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("kas"));
        let first = store.load_or_create().unwrap();
        let old = first.current(KeyAlgorithm::Rsa2048).unwrap().kid.clone();
        let before = store.fingerprint();
        let made = store.rotate().unwrap();
        assert_eq!(made.len(), 2);
        assert_ne!(store.fingerprint(), before);
        let ring = store.load().unwrap();
        let new = ring.current(KeyAlgorithm::Rsa2048).unwrap().kid.clone();
        assert_ne!(new, old);
        let order: Vec<_> = ring
            .candidates(KeyAlgorithm::Rsa2048)
            .map(|k| k.kid.clone())
            .collect();
        assert_eq!(order, vec![new, old.clone()]);
        assert!(ring.by_kid(&old).is_some());
    }

    #[test]
    fn a_corrupt_index_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("kas"));
        store.load_or_create().unwrap();
        std::fs::write(store.dir().join("keys.json"), "{\"keys\": 3}").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("keys.json"), "{err}");
    }
}
