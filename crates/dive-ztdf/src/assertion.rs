//! Assertions: the handling assertion carrying the STANAG 4774 label, its hash (SHA-256 of the
//! RFC 8785 canonical JSON of the assertion without its binding, as every OpenTDF SDK computes
//! it) and its JWS binding.
//!
//! Binding: an HS256 JWS under the DEK with claims `assertionHash` (hex hash) and `assertionSig`.
//! DIVE writes `assertionSig = base64(aggregateHash ‖ assertionHash)`, where `aggregateHash` is
//! the concatenation of the segment hashes — exactly the input of the root signature, so the
//! assertion is bound to this payload; this is the form OpenTDF SDKs verify for DEK-signed
//! assertions. Readers also accept `assertionSig` equal to the manifest's root signature (the
//! OpenTDF "v2" form for key-signed assertions) and the legacy hex forms.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::crypto::{self, b64};
use crate::jws;

pub const HANDLING: &str = "handling";
pub const STANAG_FORMAT: &str = "json+stanag5636";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub format: String,
    pub schema: String,
    /// Always a string; an object value found in older files is re-encoded (sorted, compact)
    /// the way the Go SDK does before hashing.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub method: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub id: String,
    pub kind: String,
    pub scope: String,
    pub applies_to_state: Option<String>,
    pub statement: Statement,
    pub binding: Option<Binding>,
}

fn str_field(m: &Map<String, Value>, k: &str) -> Result<String, String> {
    match m.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => Err(format!("field {k:?} must be a string")),
    }
}

impl Assertion {
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let m = v.as_object().ok_or("an assertion must be an object")?;
        let id = str_field(m, "id")?;
        if id.is_empty() {
            return Err("assertion has no id".into());
        }
        let st = m
            .get("statement")
            .and_then(Value::as_object)
            .ok_or("assertion has no statement object")?;
        let value = match st.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(o @ Value::Object(_)) => go_compact(o),
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err("statement value must be a string or an object".into()),
        };
        let binding = match m.get("binding") {
            None | Some(Value::Null) => None,
            Some(Value::Object(b)) => Some(Binding {
                method: str_field(b, "method")?,
                signature: str_field(b, "signature")?,
            }),
            Some(_) => return Err("binding must be an object".into()),
        };
        Ok(Assertion {
            id,
            kind: str_field(m, "type")?,
            scope: str_field(m, "scope")?,
            applies_to_state: Some(str_field(m, "appliesToState")?).filter(|s| !s.is_empty()),
            statement: Statement {
                format: str_field(st, "format")?,
                schema: str_field(st, "schema")?,
                value,
            },
            binding,
        })
    }

    /// The assertion as JSON; `with_binding` false gives the hashed form.
    pub fn to_json(&self, with_binding: bool) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("type".into(), self.kind.clone().into());
        m.insert("scope".into(), self.scope.clone().into());
        if let Some(a) = &self.applies_to_state {
            m.insert("appliesToState".into(), a.clone().into());
        }
        let mut st = Map::new();
        for (k, v) in [
            ("format", &self.statement.format),
            ("schema", &self.statement.schema),
            ("value", &self.statement.value),
        ] {
            if !v.is_empty() {
                st.insert(k.into(), v.clone().into());
            }
        }
        m.insert("statement".into(), Value::Object(st));
        if with_binding && let Some(b) = &self.binding {
            m.insert(
                "binding".into(),
                serde_json::json!({"method": b.method, "signature": b.signature}),
            );
        }
        Value::Object(m)
    }

    /// SHA-256 of the canonical JSON of the assertion without its binding.
    pub fn hash(&self) -> [u8; 32] {
        crypto::sha256(self.canonical().as_bytes())
    }

    /// RFC 8785 form of [`to_json(false)`](Self::to_json), written directly: every value is a
    /// string and the keys below are already in canonical order (equality is unit-tested).
    pub fn canonical(&self) -> String {
        let st = &self.statement;
        let mut out = String::with_capacity(160 + st.value.len() + st.value.len() / 4);
        let mut sep = '{';
        let mut field = |out: &mut String, k: &str, v: &str| {
            out.push(sep);
            sep = ',';
            write_string(k, out, false);
            out.push(':');
            write_string(v, out, false);
        };
        if let Some(a) = &self.applies_to_state {
            field(&mut out, "appliesToState", a);
        }
        field(&mut out, "id", &self.id);
        field(&mut out, "scope", &self.scope);
        out.push_str(",\"statement\":");
        let mut inner = '{';
        for (k, v) in [
            ("format", &st.format),
            ("schema", &st.schema),
            ("value", &st.value),
        ] {
            if !v.is_empty() {
                out.push(inner);
                inner = ',';
                write_string(k, &mut out, false);
                out.push(':');
                write_string(v, &mut out, false);
            }
        }
        if inner == '{' {
            out.push('{');
        }
        out.push('}');
        field(&mut out, "type", &self.kind);
        out.push('}');
        out
    }

    /// Bind with an HS256 JWS under the DEK (see the module documentation).
    pub fn sign(&mut self, dek: &[u8], aggregate_hash: &[u8]) {
        let hash = self.hash();
        let mut sig_input = Vec::with_capacity(aggregate_hash.len() + hash.len());
        sig_input.extend_from_slice(aggregate_hash);
        sig_input.extend_from_slice(&hash);
        // The claims object as serde writes `{assertionHash, assertionSig, assertionSchema?}`
        // (unit-tested), built directly.
        let mut claims = String::with_capacity(128 + sig_input.len() * 4 / 3);
        claims.push_str("{\"assertionHash\":\"");
        claims.push_str(&hex::encode(hash));
        claims.push_str("\",\"assertionSig\":\"");
        claims.push_str(&b64::encode(&sig_input));
        claims.push('"');
        if !self.statement.schema.is_empty() {
            claims.push_str(",\"assertionSchema\":");
            write_string(&self.statement.schema, &mut claims, false);
        }
        claims.push('}');
        let signature = jws::sign_hs256_json(claims.as_bytes(), dek);
        self.binding = Some(Binding {
            method: "jws".into(),
            signature,
        });
    }

    /// Verify the binding against the DEK, the aggregate segment hash and the root signature.
    pub fn verify(
        &self,
        dek: &[u8],
        aggregate_hash: &[u8],
        root_signature_b64: &str,
    ) -> Result<(), String> {
        let b = self
            .binding
            .as_ref()
            .ok_or("assertion has no binding: it cannot be verified")?;
        if b.method != "jws" {
            return Err(format!("unsupported binding method {:?}", b.method));
        }
        let claims = jws::verify_hs256(&b.signature, dek).map_err(|e| e.to_string())?;
        let claim = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("JWS has no string claim {k:?}"))
        };
        let hash = self.hash();
        let hash_hex = hex::encode(hash);
        if claim("assertionHash")? != hash_hex {
            return Err(
                "assertion content does not match the signed assertionHash (assertion modified)"
                    .into(),
            );
        }
        if let Some(schema) = claims.get("assertionSchema").and_then(Value::as_str)
            && schema != self.statement.schema
        {
            return Err("statement schema does not match the signed assertionSchema".into());
        }
        let sig = claim("assertionSig")?;
        if sig == root_signature_b64 {
            return Ok(());
        }
        // Raw (4.3+) form, then legacy hex form (hex aggregate ‖ hex hash).
        let mut raw = aggregate_hash.to_vec();
        raw.extend_from_slice(&hash);
        let mut legacy = aggregate_hash.to_vec();
        legacy.extend_from_slice(hash_hex.as_bytes());
        if sig == b64::encode(raw) || sig == b64::encode(legacy) {
            Ok(())
        } else {
            Err("assertionSig does not bind this assertion to this payload's segment hashes / root signature".into())
        }
    }
}

/// RFC 8785 JSON canonicalisation (keys sorted by UTF-16 code units, minimal string escapes).
/// Numbers are written as serde_json prints them; assertions here carry strings only.
pub fn jcs(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out, false);
    out
}

/// Compact JSON with sorted keys and Go's `encoding/json` string escaping.
fn go_compact(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out, true);
    out
}

fn write_canonical(v: &Value, out: &mut String, go_escapes: bool) {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&v.to_string()),
        Value::String(s) => write_string(s, out, go_escapes),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out, go_escapes);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out, go_escapes);
                out.push(':');
                write_canonical(&m[k], out, go_escapes);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal with serde_json's escaping (RFC 8785 minimal escapes).
pub(crate) fn write_json_string(s: &str, out: &mut String) {
    write_string(s, out, false);
}

/// Bytes that end a run of verbatim characters: 1 = escape in both styles, 2 = only in Go's
/// (`<`, `>`, `&`, and 0xE2, the lead byte of U+2028 / U+2029, checked further).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 1;
        i += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t[b'<' as usize] = 2;
    t[b'>' as usize] = 2;
    t[b'&' as usize] = 2;
    t[0xe2] = 2;
    t
};

fn write_string(s: &str, out: &mut String, go_escapes: bool) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Table-driven scan copying runs that need no escape in one go (this writes every policy
    // FQN and the label JSON of every file). Every byte that stops the scan is ASCII or the lead
    // byte of U+2028 / U+2029, so `run` and `i` always sit on character boundaries.
    let stop = if go_escapes { 2 } else { 1 };
    let b = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        let class = ESCAPE[b[i] as usize];
        if class == 0 || class > stop {
            i += 1;
            continue;
        }
        let (esc, len): (&str, usize) = match b[i] {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            0x08 if !go_escapes => ("\\b", 1),
            0x0c if !go_escapes => ("\\f", 1),
            0xe2 => {
                if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)) {
                    ("", 3)
                } else {
                    i += 1;
                    continue;
                }
            }
            _ => ("", 1),
        };
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            let c = s[i..].chars().next().map_or(0, |c| c as u32);
            let _ = write!(out, "\\u{c:04x}");
        } else {
            out.push_str(esc);
        }
        i += len;
        run = i;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jcs_sorts_and_escapes() {
        let v: Value =
            serde_json::from_str(r#"{"b":[1,"\u0007é"],"a":{"z":true,"y":null},"€":"<"}"#).unwrap();
        assert_eq!(
            jcs(&v),
            "{\"a\":{\"y\":null,\"z\":true},\"b\":[1,\"\\u0007é\"],\"€\":\"<\"}"
        );
        assert_eq!(
            go_compact(&v),
            "{\"a\":{\"y\":null,\"z\":true},\"b\":[1,\"\\u0007é\"],\"€\":\"\\u003c\"}"
        );
    }

    /// Older files carry object statement values; the Go SDK re-encodes them before hashing.
    #[test]
    fn object_values_are_hashed_like_the_go_sdk() {
        let v: Value = serde_json::json!({
            "id": "x", "type": "handling", "scope": "tdo", "appliesToState": null,
            "statement": {"format": "f", "value": {"b": 1, "a": "<"}}
        });
        let a = Assertion::from_json(&v).unwrap();
        assert_eq!(a.statement.value, "{\"a\":\"\\u003c\",\"b\":1}");
        assert_eq!(
            jcs(&a.to_json(false)),
            "{\"id\":\"x\",\"scope\":\"tdo\",\"statement\":{\"format\":\"f\",\"value\":\"{\\\"a\\\":\\\"\\\\u003c\\\",\\\"b\\\":1}\"},\"type\":\"handling\"}"
        );
    }

    #[test]
    fn direct_canonical_form_equals_jcs() {
        let mut a = Assertion {
            id: "é\"\u{1}<".into(),
            kind: HANDLING.into(),
            scope: "tdo".into(),
            applies_to_state: Some("encrypted".into()),
            statement: Statement {
                format: "f".into(),
                schema: String::new(),
                value: "{\"a\":1}\n".into(),
            },
            binding: None,
        };
        assert_eq!(a.canonical(), jcs(&a.to_json(false)));
        let mut go = String::new();
        write_string("a\u{2028}b\u{2029}<&>\u{8}\u{c}\u{1f}é\"\\", &mut go, true);
        assert_eq!(
            go,
            r#""a\u2028b\u2029\u003c\u0026\u003e\u0008\u000c\u001fé\"\\""#
        );
        let mut plain = String::new();
        write_string("a\u{2028}<\u{8}\u{c}\u{1f}é", &mut plain, false);
        assert_eq!(plain, "\"a\u{2028}<\\b\\f\\u001fé\"");
        a.applies_to_state = None;
        a.statement = Statement {
            format: String::new(),
            schema: String::new(),
            value: String::new(),
        };
        assert_eq!(a.canonical(), jcs(&a.to_json(false)));
    }

    /// The escaper equals serde_json on strings mixing clean runs with every kind of byte that
    /// needs care, at various positions.
    #[test]
    fn escaper_matches_serde_everywhere() {
        let specials = [
            "\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "\u{7f}", "é", "\u{2028}", "<", "€𝄞",
        ];
        for pre in 0..17 {
            for sp in specials {
                for post in [0, 1, 7, 8, 9, 23] {
                    let s = format!("{}{sp}{}", "a".repeat(pre), "Z/+=".repeat(post));
                    let mut mine = String::new();
                    write_json_string(&s, &mut mine);
                    assert_eq!(mine, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn sign_verify_tamper() {
        let mut a = Assertion {
            id: "a1".into(),
            kind: HANDLING.into(),
            scope: "tdo".into(),
            applies_to_state: Some("encrypted".into()),
            statement: Statement {
                format: STANAG_FORMAT.into(),
                schema: "s".into(),
                value: "{}".into(),
            },
            binding: None,
        };
        let dek = [3u8; 32];
        a.sign(&dek, b"aggregate");
        a.verify(&dek, b"aggregate", "root").unwrap();
        // The claims are exactly what serde writes for them (field order included).
        let token = &a.binding.as_ref().unwrap().signature;
        let payload = b64::url_decode(token.split('.').nth(1).unwrap()).unwrap();
        let mut input = b"aggregate".to_vec();
        input.extend_from_slice(&a.hash());
        let expected = format!(
            r#"{{"assertionHash":"{}","assertionSig":"{}","assertionSchema":"s"}}"#,
            hex::encode(a.hash()),
            b64::encode(&input)
        );
        assert_eq!(String::from_utf8(payload).unwrap(), expected);
        assert!(a.verify(&dek, b"other", "root").is_err());
        assert!(a.verify(&[4u8; 32], b"aggregate", "root").is_err());
        let mut t = a.clone();
        t.statement.value = "{\"x\":1}".into();
        assert!(
            t.verify(&dek, b"aggregate", "root")
                .unwrap_err()
                .contains("assertion modified")
        );
    }
}
