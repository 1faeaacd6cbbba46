//! The installation's private PKI: one CA under `$DIVE_HOME/pki/ca/` and one certificate per
//! service under `$DIVE_HOME/pki/services/<name>/`, each valid for `localhost`, `127.0.0.1`, `::1`
//! and the service name, plus the public host names (or addresses) the installation's instances
//! are reached at ([`Pki::service_for`]). Private keys are written 0600. Everything is idempotent: what exists is
//! reused, and concurrent creators agree on one result (each set of files appears by one atomic
//! directory rename).
//!
//! From these files it builds rustls server configurations (TLS 1.2/1.3, aws-lc-rs) and client
//! configurations that trust only the installation CA.

pub mod partners;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// Errors of the PKI, each naming the file or name at fault.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} is not a valid PEM {what}: {reason}")]
    Pem {
        path: String,
        what: &'static str,
        reason: String,
    },
    #[error("invalid service name {0:?}: use 1-63 lowercase letters, digits and '-'")]
    ServiceName(String),
    #[error("invalid host name {0:?}: use a DNS name or an IP address")]
    Host(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a service certificate is valid.
const SERVICE_VALIDITY: Duration = Duration::days(825);

/// A service certificate that expires within this margin is re-issued by
/// [`Pki::service_for`] (and reported by `verify`).
pub const RENEW_MARGIN: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// The installation PKI rooted at `$DIVE_HOME/pki`.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

/// The files of one service certificate.
#[derive(Debug, Clone)]
pub struct ServiceCert {
    pub name: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
}

impl Pki {
    /// Open the PKI under `home/pki`, creating the CA if it does not exist yet.
    pub fn open(home: &Path) -> Result<Pki, PkiError> {
        let pki = Pki {
            dir: home.join("pki"),
        };
        mkdir(&pki.dir)?;
        mkdir(&pki.dir.join("services"))?;
        if !pki.ca_dir().join(KEY_FILE).exists() {
            pki.create_ca()?;
        }
        Ok(pki)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// The CA certificate (PEM) that clients of the installation trust.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.ca_dir().join(CERT_FILE)
    }

    /// The CA's parameters. The issuer of service certificates is rebuilt from these and the
    /// stored key (the subject and key identifier are all that a signature needs from the CA).
    fn ca_params() -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "DIVE installation");
        dn.push(DnType::CommonName, "DIVE installation CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    }

    fn create_ca(&self) -> Result<(), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = Self::ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        publish_dir(&self.dir, &self.ca_dir(), &cert.pem(), &key.serialize_pem())
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key_path = self.ca_dir().join(KEY_FILE);
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| PkiError::Pem {
            path: key_path.display().to_string(),
            what: "private key",
            reason: e.to_string(),
        })?;
        Ok(Issuer::new(Self::ca_params(), key))
    }

    /// Hold the installation's certificate lock (an OS file lock on `pki/certificates.lock`,
    /// released when the returned file is dropped, also if the process dies). Instances
    /// initialised at once each re-issue the shared service certificates for every instance's
    /// host names: reading the names and issuing must take turns, or a certificate issued from
    /// an older list of names could replace one naming them all. Blocks until it is free.
    pub fn lock_certificates(&self) -> Result<std::fs::File, PkiError> {
        let path = self.dir.join("certificates.lock");
        let io = |action, source| PkiError::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        file.lock().map_err(|e| io("lock", e))?;
        Ok(file)
    }

    /// The certificate of service `name`, issued now if it does not exist yet.
    pub fn service(&self, name: &str) -> Result<ServiceCert, PkiError> {
        validate_service_name(name)?;
        let dir = self.dir.join("services").join(name);
        let sc = ServiceCert {
            name: name.to_string(),
            cert_path: dir.join(CERT_FILE),
            key_path: dir.join(KEY_FILE),
            ca_path: self.ca_cert_path(),
        };
        if sc.key_path.exists() && sc.cert_path.exists() {
            return Ok(sc);
        }
        let key = KeyPair::generate()?;
        let cert = self.issue(name, &key, &[])?;
        publish_dir(&self.dir, &dir, &cert, &key.serialize_pem())?;
        Ok(sc)
    }

    /// The certificate of service `name`, valid also for `hosts` (the DNS names or IP addresses
    /// clients reach the installation's services at). A certificate that does not name one of
    /// them (or no longer chains to the CA, or expires within [`RENEW_MARGIN`]) is re-issued
    /// for all of them with the same key, replacing only `cert.pem` (atomically): a service
    /// starting meanwhile reads the old or the new certificate, either matching its key.
    /// Returns whether it was re-issued.
    pub fn service_for(
        &self,
        name: &str,
        hosts: &[String],
    ) -> Result<(ServiceCert, bool), PkiError> {
        let sc = self.service(name)?;
        if self.check_names(&sc, hosts).is_ok() {
            return Ok((sc, false));
        }
        let key_pem = read(&sc.key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Pem {
            path: sc.key_path.display().to_string(),
            what: "private key",
            reason: e.to_string(),
        })?;
        let cert = self.issue(name, &key, hosts)?;
        let dir = sc.cert_path.parent().unwrap_or(&self.dir);
        let tmp = dir.join(format!(".{CERT_FILE}.{}", unique_suffix()));
        write_file(&tmp, cert.as_bytes(), 0o644)?;
        std::fs::rename(&tmp, &sc.cert_path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            PkiError::Io {
                action: "replace",
                path: sc.cert_path.display().to_string(),
                source,
            }
        })?;
        Ok((sc, true))
    }

    /// Whether `sc` chains to the CA and is valid for each of `hosts` and the default names, now
    /// and in [`RENEW_MARGIN`]; `Err` names the first host or time it is not valid for.
    pub fn check_names(&self, sc: &ServiceCert, hosts: &[String]) -> Result<(), String> {
        let chain = sc.chain().map_err(|e| e.to_string())?;
        let roots = Arc::new(self.root_store().map_err(|e| e.to_string())?);
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| e.to_string())?;
        let now = rustls_pki_types::UnixTime::now();
        let later = rustls_pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_secs(now.as_secs()) + RENEW_MARGIN,
        );
        let defaults = ["localhost".to_string(), "127.0.0.1".to_string()];
        for host in defaults.iter().chain(hosts) {
            let server = rustls_pki_types::ServerName::try_from(host.as_str())
                .map_err(|e| format!("{host:?}: {e}"))?;
            for (at, when) in [(now, "now"), (later, "in 30 days")] {
                use rustls::client::danger::ServerCertVerifier;
                verifier
                    .verify_server_cert(&chain[0], &chain[1..], &server, &[], at)
                    .map_err(|e| format!("{} for {host} {when}: {e}", sc.cert_path.display()))?;
            }
        }
        Ok(())
    }

    /// A certificate (PEM) for service `name` with `key`, signed by the CA: valid for localhost,
    /// the loopback addresses, the service name and `hosts`.
    fn issue(&self, name: &str, key: &KeyPair, hosts: &[String]) -> Result<String, PkiError> {
        let issuer = self.issuer()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string(), name.to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        for host in hosts {
            if rustls_pki_types::ServerName::try_from(host.as_str()).is_err() {
                return Err(PkiError::Host(host.clone()));
            }
            let san = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.as_str().try_into()?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "DIVE installation");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + SERVICE_VALIDITY;
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(key, &issuer)?.pem())
    }

    /// A root store holding only the installation CA.
    pub fn root_store(&self) -> Result<RootCertStore, PkiError> {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(&self.ca_cert_path())? {
            roots.add(cert)?;
        }
        Ok(roots)
    }

    /// A TLS client configuration trusting only the installation CA.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, PkiError> {
        Ok(rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store()?)
            .with_no_client_auth())
    }
}

impl ServiceCert {
    /// The PEM certificate chain (service certificate then CA).
    pub fn chain(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        let mut chain = load_certs(&self.cert_path)?;
        chain.extend(load_certs(&self.ca_path)?);
        Ok(chain)
    }

    /// A rustls server configuration for this service, offering HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let key = PrivateKeyDer::from_pem_file(&self.key_path).map_err(|e| PkiError::Pem {
            path: self.key_path.display().to_string(),
            what: "private key",
            reason: e.to_string(),
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain()?, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The crypto provider every DIVE TLS endpoint uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn validate_service_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::ServiceName(name.to_string()))
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| PkiError::Pem {
            path: path.display().to_string(),
            what: "certificate",
            reason: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| PkiError::Pem {
        path: path.display().to_string(),
        what: "certificate",
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.display().to_string(),
            what: "certificate",
            reason: "no CERTIFICATE block".to_string(),
        });
    }
    Ok(certs)
}

fn mkdir(path: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(path).map_err(|source| PkiError::Io {
        action: "create directory",
        path: path.display().to_string(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })
}

/// Write a certificate and its key into a fresh temporary directory, then rename it to `dest`.
/// If another process published `dest` first, its files win and ours are discarded.
fn publish_dir(root: &Path, dest: &Path, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
    let tmp = root.join(format!(".tmp-{}", unique_suffix()));
    mkdir(&tmp)?;
    let result = (|| {
        write_file(&tmp.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        write_file(&tmp.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        match std::fs::rename(&tmp, dest) {
            Ok(()) => Ok(()),
            // Lost the race: the other creator's directory stands.
            Err(_) if dest.join(KEY_FILE).exists() => Ok(()),
            Err(source) => Err(PkiError::Io {
                action: "publish",
                path: dest.display().to_string(),
                source,
            }),
        }
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// A name part no other writer uses at the same time: process, time and a counter (threads of
/// one process may write at once).
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write a file created with `mode` from the start (never briefly world-readable).
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Io {
        action: "write",
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ca_and_service_certs_are_created_once_with_private_keys_0600() {
        let home = tempfile::tempdir().unwrap();
        let pki = Pki::open(home.path()).unwrap();
        let ca_pem = std::fs::read_to_string(pki.ca_cert_path()).unwrap();
        let svc = pki.service("idp").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&svc.key_path), 0o600);
        assert_eq!(mode(&pki.dir().join("ca").join(KEY_FILE)), 0o600);
        let svc_pem = std::fs::read_to_string(&svc.cert_path).unwrap();

        // Opening again reuses everything.
        let again = Pki::open(home.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.ca_cert_path()).unwrap(),
            ca_pem
        );
        let svc2 = again.service("idp").unwrap();
        assert_eq!(std::fs::read_to_string(&svc2.cert_path).unwrap(), svc_pem);
        assert!(svc2.server_config().is_ok());
        assert_eq!(again.root_store().unwrap().len(), 1);
        assert!(again.client_config().is_ok());
    }

    #[test]
    fn a_certificate_is_reissued_with_its_key_for_public_host_names() {
        let home = tempfile::tempdir().unwrap();
        let pki = Pki::open(home.path()).unwrap();
        let svc = pki.service("idp").unwrap();
        let key = std::fs::read(&svc.key_path).unwrap();
        let hosts = ["127.0.0.2".to_string(), "dive-b.example".to_string()];
        let e = pki.check_names(&svc, &hosts[..1]).unwrap_err();
        assert!(e.contains("127.0.0.2"), "{e}");
        let (svc, reissued) = pki.service_for("idp", &hosts).unwrap();
        assert!(reissued);
        pki.check_names(&svc, &hosts).unwrap();
        assert_eq!(std::fs::read(&svc.key_path).unwrap(), key, "same key");
        assert!(svc.server_config().is_ok(), "certificate and key match");
        let pem = std::fs::read(&svc.cert_path).unwrap();
        let (_, reissued) = pki.service_for("idp", &hosts[..1]).unwrap();
        assert!(!reissued, "already valid: kept");
        assert_eq!(std::fs::read(&svc.cert_path).unwrap(), pem);
        let e = pki
            .service_for("idp", &["not a name".to_string()])
            .unwrap_err();
        assert!(e.to_string().contains("not a name"), "{e}");
    }

    #[test]
    fn the_certificate_lock_is_held_by_one_holder_at_a_time() {
        let home = tempfile::tempdir().unwrap();
        let pki = Pki::open(home.path()).unwrap();
        let held = pki.lock_certificates().unwrap();
        let other = std::fs::File::open(home.path().join("pki/certificates.lock")).unwrap();
        assert!(other.try_lock().is_err(), "a second holder must wait");
        drop(held);
        other
            .try_lock()
            .expect("free once the first holder drops it");
    }

    #[test]
    fn bad_service_names_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let pki = Pki::open(home.path()).unwrap();
        for bad in ["", "../x", "IDP", "a b", "-x"] {
            assert!(
                matches!(pki.service(bad), Err(PkiError::ServiceName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_corrupt_ca_key_is_reported_with_its_path() {
        let home = tempfile::tempdir().unwrap();
        let pki = Pki::open(home.path()).unwrap();
        std::fs::write(pki.dir().join("ca").join(KEY_FILE), "garbage").unwrap();
        let err = pki.service("kas").unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
    }
}
