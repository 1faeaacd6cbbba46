//! Minimal PEM (RFC 7468) decoding and encoding for keys.

use crate::crypto::b64;

/// One PEM block: its label (e.g. `PUBLIC KEY`) and DER contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

/// Decode the first PEM block in `text`.
pub fn decode(text: &str) -> Result<Block, String> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no PEM '-----BEGIN ...-----' line found")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or("unterminated PEM BEGIN line")?;
    let label = rest[..label_end].to_string();
    let body_start = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body_start
        .find(&end_marker)
        .ok_or_else(|| format!("no matching '{end_marker}' line"))?;
    let body: String = body_start[..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(':'))
        .collect();
    let der =
        b64::decode(&body).ok_or_else(|| format!("PEM block {label:?} is not valid base64"))?;
    if der.is_empty() {
        return Err(format!("PEM block {label:?} is empty"));
    }
    Ok(Block { label, der })
}

/// Encode DER as a PEM block with 64-character lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b = b64::encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        let text = encode("PUBLIC KEY", &der);
        assert_eq!(
            decode(&text).unwrap(),
            Block {
                label: "PUBLIC KEY".into(),
                der
            }
        );
        assert!(decode("nothing here").is_err());
        assert!(decode("-----BEGIN X-----\nAAAA\n").is_err());
    }
}
