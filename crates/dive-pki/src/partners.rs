//! Partner CAs: the installation CAs of federation partners in other installations, registered
//! when a link is made (`$DIVE_HOME/pki/partners/<CODE>.pem`). Services trust them besides the
//! installation's own CA; a certificate's SHA-256 fingerprint is what an operator pins before
//! trusting a partner's CA.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::PkiError;

/// `$DIVE_HOME/pki/partners`: one `<CODE>.pem` per partner installation's CA.
pub fn partners_dir(home: &Path) -> PathBuf {
    home.join("pki").join("partners")
}

/// The installation CA certificate (PEM) of `home`, without opening (or creating) the PKI.
pub fn installation_ca_path(home: &Path) -> PathBuf {
    home.join("pki").join("ca").join(crate::CERT_FILE)
}

/// The certificates (DER) of a PEM text; at least one, or an error naming `what`.
pub fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            path: what.to_string(),
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: what.to_string(),
            what: "certificate",
            reason: "no certificate found (expected -----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

/// The SHA-256 fingerprint of a certificate (over its DER), lowercase hex without separators.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref()).as_ref())
}

/// The fingerprint of the single certificate in `pem` (a CA file holds exactly one).
pub fn pem_fingerprint(pem: &str, what: &str) -> Result<String, PkiError> {
    let certs = parse_certs(pem, what)?;
    if certs.len() != 1 {
        return Err(PkiError::Pem {
            path: what.to_string(),
            what: "CA certificate",
            reason: format!("expected one certificate, found {}", certs.len()),
        });
    }
    Ok(fingerprint(&certs[0]))
}

/// Normalise an operator-given fingerprint: hex, colons and case ignored; 64 hex digits.
pub fn normalise_fingerprint(given: &str) -> Option<String> {
    let hex: String = given
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

fn partner_file(home: &Path, code: &str) -> Result<PathBuf, PkiError> {
    // The code names a file: only letters, so it can never leave the directory.
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(PkiError::Pem {
            path: code.to_string(),
            what: "partner code",
            reason: "expected an ISO 3166-1 alpha-3 code in capitals".into(),
        });
    }
    Ok(partners_dir(home).join(format!("{code}.pem")))
}

/// Register `code`'s CA (PEM, validated): written atomically so a service re-reading the
/// directory never sees half a file. Returns whether the file changed.
pub fn store_partner_ca(home: &Path, code: &str, pem: &str) -> Result<bool, PkiError> {
    let path = partner_file(home, code)?;
    pem_fingerprint(pem, &format!("the CA of {code}"))?;
    if std::fs::read_to_string(&path).is_ok_and(|t| t == pem) {
        return Ok(false);
    }
    let dir = partners_dir(home);
    crate::mkdir(&dir)?;
    let tmp = dir.join(format!(".{code}.pem.{}", std::process::id()));
    crate::write_file(&tmp, pem.as_bytes(), 0o644)?;
    std::fs::rename(&tmp, &path).map_err(|source| PkiError::Io {
        action: "rename into place",
        path: path.display().to_string(),
        source,
    })?;
    Ok(true)
}

/// Withdraw `code`'s CA. Returns whether there was one.
pub fn remove_partner_ca(home: &Path, code: &str) -> Result<bool, PkiError> {
    let path = partner_file(home, code)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PkiError::Io {
            action: "remove",
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Every registered partner CA file (`*.pem`), sorted by name; none when the directory is absent.
pub fn partner_ca_files(home: &Path) -> Result<Vec<PathBuf>, PkiError> {
    let dir = partners_dir(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PkiError::Io {
                action: "list",
                path: dir.display().to_string(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "pem")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_cas_are_stored_validated_listed_and_removed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        crate::Pki::open(b.path()).unwrap();
        let pem = std::fs::read_to_string(installation_ca_path(b.path())).unwrap();
        assert!(store_partner_ca(a.path(), "FRA", &pem).unwrap());
        assert!(!store_partner_ca(a.path(), "FRA", &pem).unwrap());
        assert_eq!(
            partner_ca_files(a.path()).unwrap(),
            vec![partners_dir(a.path()).join("FRA.pem")]
        );
        let fp = pem_fingerprint(&pem, "x").unwrap();
        assert_eq!(fp.len(), 64);
        assert_eq!(
            normalise_fingerprint(&fp.to_uppercase()).as_deref(),
            Some(fp.as_str())
        );
        assert!(store_partner_ca(a.path(), "FRA", "not pem").is_err());
        assert!(store_partner_ca(a.path(), "../x", &pem).is_err());
        assert!(remove_partner_ca(a.path(), "FRA").unwrap());
        assert!(!remove_partner_ca(a.path(), "FRA").unwrap());
        assert!(partner_ca_files(a.path()).unwrap().is_empty());
    }
}
