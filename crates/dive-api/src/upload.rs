//! Upload checks: size and type limits (the content must be what its type says), the label
//! (JSON or display marking) and its coherence, encryption to the instance's KAS, and the
//! verification of an already-encrypted ZTDF.
//!
//! A ZTDF upload is verified without its key: container, manifest, every key access object and
//! assertion well-formed; every segment's stored GCM tag equal to the manifest's hash; the
//! payload's and manifest's CRC-32; a DIVE label in the policy; a key access object for this
//! instance's KAS. What needs the key (the policy binding, the root signature, the ciphertext's
//! authentication) is checked by the KAS at every rewrap; see `docs/api.md`.

use std::io::Cursor;

use dive_core::SecurityLabel;
use dive_ztdf::{EncryptOptions, KeyAccessPlan, Recipient, TdfReader};

use crate::access::PolicyFacts;

/// Default upload limit: 16 MiB.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Content types accepted for plaintext uploads, with how their content is checked.
pub const ALLOWED_TYPES: &[&str] = &[
    "text/plain",
    "text/markdown",
    "text/csv",
    "text/html",
    "text/xml",
    "application/json",
    "application/xml",
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];

/// Why an upload is refused. Each maps to one HTTP status and names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The form is malformed (missing or duplicate parts, unknown fields).
    #[error("{0}")]
    Form(String),
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedType(String),
    #[error("invalid label: {0}")]
    Label(String),
    #[error("incoherent security label: {}", .0.join("; "))]
    Incoherent(Vec<String>),
    /// The ZTDF does not verify (the message is the integrity error).
    #[error("the ZTDF does not verify: {0}")]
    Ztdf(String),
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// The essence type of a Content-Type value (`text/plain; charset=utf-8` → `text/plain`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn type_from_extension(file_name: &str) -> Option<&'static str> {
    let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "txt" | "text" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "docx" => ALLOWED_TYPES[11],
        "xlsx" => ALLOWED_TYPES[12],
        "pptx" => ALLOWED_TYPES[13],
        _ => return None,
    })
}

/// The file name to keep: the last path component, without control characters.
pub fn clean_file_name(name: Option<&str>) -> String {
    let base = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.trim().is_empty() {
        "upload".to_string()
    } else {
        cleaned.trim().to_string()
    }
}

/// Decide the content type of a plaintext upload and check the content is of that type.
/// `declared` is the part's Content-Type; without one (or `application/octet-stream`), the file
/// name's extension decides.
pub fn check_content(
    declared: Option<&str>,
    file_name: &str,
    content: &[u8],
) -> Result<String, UploadError> {
    let declared = declared
        .map(essence)
        .filter(|t| t != "application/octet-stream" && !t.is_empty());
    let mime = match declared {
        Some(t) => t,
        None => type_from_extension(file_name)
            .map(str::to_string)
            .ok_or_else(|| {
                UploadError::UnsupportedType(format!(
                    "cannot tell the type of {file_name:?}: send the part's Content-Type (one of {})",
                    ALLOWED_TYPES.join(", ")
                ))
            })?,
    };
    if !ALLOWED_TYPES.contains(&mime.as_str()) {
        return Err(UploadError::UnsupportedType(format!(
            "type {mime} is not accepted; accepted types: {}",
            ALLOWED_TYPES.join(", ")
        )));
    }
    if content.is_empty() {
        return Err(UploadError::Form("the file is empty".into()));
    }
    let mismatch = |what: &str| {
        UploadError::UnsupportedType(format!(
            "the content is not {what} although the type says {mime}"
        ))
    };
    match mime.as_str() {
        "application/pdf" if !content.starts_with(b"%PDF-") => return Err(mismatch("a PDF")),
        "image/png" if !content.starts_with(b"\x89PNG\r\n\x1a\n") => {
            return Err(mismatch("a PNG image"));
        }
        "image/jpeg" if !content.starts_with(&[0xFF, 0xD8, 0xFF]) => {
            return Err(mismatch("a JPEG image"));
        }
        "image/gif" if !(content.starts_with(b"GIF87a") || content.starts_with(b"GIF89a")) => {
            return Err(mismatch("a GIF image"));
        }
        t if t.starts_with("application/vnd.openxmlformats")
            && !content.starts_with(b"PK\x03\x04") =>
        {
            return Err(mismatch("an Office Open XML (ZIP) document"));
        }
        t if t.starts_with("text/") || t == "application/json" || t == "application/xml" => {
            let text = std::str::from_utf8(content).map_err(|_| mismatch("UTF-8 text"))?;
            if text.contains('\0') {
                return Err(mismatch("text (it contains NUL bytes)"));
            }
            if t == "application/json" && serde_json::from_str::<serde_json::Value>(text).is_err() {
                return Err(mismatch("valid JSON"));
            }
        }
        _ => {}
    }
    Ok(mime)
}

/// The label of a plaintext upload: exactly one of a JSON label and a display marking.
pub fn parse_label(
    json: Option<&str>,
    marking: Option<&str>,
) -> Result<SecurityLabel, UploadError> {
    match (json, marking) {
        (Some(_), Some(_)) => Err(UploadError::Form(
            "send either a label (JSON) or a marking, not both".into(),
        )),
        (None, None) => Err(UploadError::Form(
            "a label is required: a 'label' part (JSON security label) or a 'marking' part (e.g. SECRET//FVEY//REL TO USA, GBR)".into(),
        )),
        (Some(j), None) => dive_ztdf::label::label_from_json(j).map_err(|e| UploadError::Label(e.to_string())),
        (None, Some(m)) => dive_ztdf::label::label_from_marking(m).map_err(|e| UploadError::Label(e.to_string())),
    }
}

/// Every coherence problem of the label under the policy data in force.
pub fn check_coherence(label: &SecurityLabel, facts: &PolicyFacts) -> Result<(), UploadError> {
    let v = label.coherence(&facts.coi, &facts.equivalency, facts.strict_coherence);
    if v.is_empty() {
        Ok(())
    } else {
        Err(UploadError::Incoherent(
            v.iter().map(ToString::to_string).collect(),
        ))
    }
}

/// An encrypted document: the ZTDF and what the store needs from its encryption.
#[derive(Debug)]
pub struct Encrypted {
    pub ztdf: Vec<u8>,
    pub policy_uuid: String,
    pub plaintext_len: u64,
}

/// Encrypt `content` under `label` to `recipient` (CPU-bound: call from a blocking task).
pub fn encrypt(
    content: &[u8],
    label: &SecurityLabel,
    mime: &str,
    recipient: &Recipient,
) -> Result<Encrypted, UploadError> {
    let opts = EncryptOptions::new(KeyAccessPlan::single(recipient.clone()))
        .label(label.clone())
        .mime_type(mime)
        .plaintext_len(content.len() as u64);
    let mut ztdf = Vec::with_capacity(content.len() + 8192);
    let summary = dive_ztdf::encrypt(content, &mut ztdf, &opts)
        .map_err(|e| UploadError::Encrypt(e.to_string()))?;
    let policy_uuid = summary
        .manifest
        .policy()
        .map_err(|e| UploadError::Encrypt(e.to_string()))?
        .uuid;
    Ok(Encrypted {
        ztdf,
        policy_uuid,
        plaintext_len: summary.plaintext_len,
    })
}

/// What an uploaded ZTDF says about itself, after verification.
#[derive(Debug)]
pub struct VerifiedZtdf {
    pub label: SecurityLabel,
    pub policy_uuid: String,
    pub plaintext_len: u64,
    pub mime_type: String,
}

/// Verify an uploaded ZTDF without its key (see the module docs). CPU-bound.
pub fn verify_ztdf(bytes: &[u8], kas_url: &str) -> Result<VerifiedZtdf, UploadError> {
    let mut reader =
        TdfReader::open(Cursor::new(bytes)).map_err(|e| UploadError::Ztdf(e.to_string()))?;
    reader
        .check_payload_structure()
        .map_err(|e| UploadError::Ztdf(e.to_string()))?;
    let label = reader
        .label()
        .map_err(|e| UploadError::Ztdf(e.to_string()))?
        .ok_or_else(|| {
            UploadError::Ztdf(
                "its policy carries no DIVE security label (dive.coalition attributes)".into(),
            )
        })?;
    let ours = kas_url.trim_end_matches('/');
    if !reader
        .key_access_objects()
        .iter()
        .any(|k| k.kas.trim_end_matches('/') == ours)
    {
        let theirs: Vec<&str> = reader
            .key_access_objects()
            .iter()
            .map(|k| k.kas.as_str())
            .collect();
        return Err(UploadError::Ztdf(format!(
            "no key access object is for this instance's KAS {ours} (it names {})",
            theirs.join(", ")
        )));
    }
    Ok(VerifiedZtdf {
        label,
        policy_uuid: reader.policy().uuid.clone(),
        plaintext_len: reader.plaintext_len(),
        mime_type: reader
            .manifest()
            .payload
            .mime_type
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_must_match_its_type() {
        assert_eq!(
            check_content(Some("text/plain; charset=utf-8"), "a.txt", b"hello").unwrap(),
            "text/plain"
        );
        assert_eq!(
            check_content(None, "r.md", b"# hi").unwrap(),
            "text/markdown"
        );
        assert_eq!(
            check_content(Some("application/octet-stream"), "x.pdf", b"%PDF-1.7").unwrap(),
            "application/pdf"
        );
        let e =
            |t: Option<&str>, n: &str, c: &[u8]| check_content(t, n, c).unwrap_err().to_string();
        assert!(e(Some("application/x-msdownload"), "a.exe", b"MZ").contains("not accepted"));
        assert!(e(Some("application/pdf"), "a.pdf", b"MZ..").contains("not a PDF"));
        assert!(e(Some("image/png"), "a.png", b"GIF89a").contains("PNG"));
        assert!(e(Some("text/plain"), "a.txt", &[0xff, 0xfe, 0]).contains("UTF-8"));
        assert!(e(Some("application/json"), "a.json", b"{nope").contains("JSON"));
        assert!(e(None, "noext", b"x").contains("cannot tell the type"));
        assert!(e(Some("text/plain"), "a.txt", b"").contains("empty"));
    }

    #[test]
    fn labels_from_json_or_marking() {
        let l = parse_label(None, Some("SECRET//FVEY//REL TO USA, GBR")).unwrap();
        assert_eq!(l.coi, vec!["FVEY"]);
        let l = parse_label(
            Some(r#"{"classification":"SECRET","releasabilityTo":["USA"]}"#),
            None,
        )
        .unwrap();
        assert_eq!(l.releasability_to[0].as_str(), "USA");
        assert!(
            parse_label(None, None)
                .unwrap_err()
                .to_string()
                .contains("label is required")
        );
        assert!(
            parse_label(Some("{}"), Some("SECRET"))
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        assert!(
            parse_label(
                Some(r#"{"classification":"SECRET","releasabilityTo":["USA"],"colour":1}"#),
                None
            )
            .unwrap_err()
            .to_string()
            .contains("colour")
        );
        assert!(parse_label(None, Some("SECRET//REL TO usa")).is_err());
    }

    #[test]
    fn file_names_lose_directories() {
        assert_eq!(clean_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_file_name(Some("C:\\x\\report.pdf")), "report.pdf");
        assert_eq!(clean_file_name(None), "upload");
        assert_eq!(clean_file_name(Some("a\u{0}b.txt")), "ab.txt");
    }
}
