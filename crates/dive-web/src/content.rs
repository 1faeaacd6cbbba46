//! Opening a document: the KAS rewrap with the user's token, decryption, and rendering by type.
//! Everything a document contains is data: text, JSON and CSV go through the templates'
//! escaping; Markdown is rendered with raw HTML turned into text and unsafe link targets removed;
//! images and HTML are served from a separate same-origin endpoint (HTML only under a `sandbox`
//! CSP, in a frame); anything else is offered as a download.

use std::io::Cursor;

use dive_ztdf::TdfReader;

/// Largest plaintext the UI decrypts (the API's default upload limit).
pub const MAX_PLAINTEXT: u64 = 16 << 20;
/// Text beyond this is cut on the page (the download has it all).
const MAX_SHOWN_TEXT: usize = 1 << 20;
/// CSV tables beyond these are cut on the page.
const MAX_CSV_ROWS: usize = 1000;
const MAX_CSV_COLUMNS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("the file is not a readable ZTDF: {0}")]
    Ztdf(String),
    #[error("the KAS refused to release the key: {0}")]
    Refused(String),
    #[error("the KAS cannot be reached or failed: {0}")]
    Kas(String),
    #[error("the document is too large to open here ({0} bytes); download it instead")]
    TooLarge(u64),
}

/// Rewrap every key access object at the KAS it names, with the user's token, then decrypt.
/// The reader re-verifies every policy binding and segment, so a KAS cannot weaken the check.
pub async fn decrypt(
    http: &reqwest::Client,
    token: &str,
    ztdf: Vec<u8>,
) -> Result<Vec<u8>, ContentError> {
    let reader =
        TdfReader::open(Cursor::new(ztdf)).map_err(|e| ContentError::Ztdf(e.to_string()))?;
    if reader.plaintext_len() > MAX_PLAINTEXT {
        return Err(ContentError::TooLarge(reader.plaintext_len()));
    }
    let all = dive_kas::rewrap_all(
        http,
        token,
        &reader.manifest().encryption_information.policy,
        reader.key_access_objects(),
        dive_kas::ClientKeyKind::EcP256,
        None,
    )
    .await
    .map_err(|e| ContentError::Kas(e.to_string()))?;
    if all.released() == 0 {
        return Err(ContentError::Refused(
            "forbidden (the KAS decides again on the label bound in the file)".into(),
        ));
    }
    // AES-GCM over up to 16 MiB: off the request threads.
    tokio::task::spawn_blocking(move || {
        let mut unlocked = reader
            .unlock(&all)
            .map_err(|e| ContentError::Refused(e.to_string()))?;
        let mut out = Vec::new();
        // Streaming writes only authenticated segments; on error the partial output is dropped.
        unlocked
            .decrypt_streaming_to(&mut out)
            .map_err(|e| ContentError::Ztdf(e.to_string()))?;
        Ok(out)
    })
    .await
    .map_err(|e| ContentError::Ztdf(format!("decryption task failed: {e}")))?
}

/// How a document's content is shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    /// Plain text (escaped by the template); `truncated` when cut.
    Text { text: String, truncated: bool },
    /// Markdown rendered to HTML with every raw HTML fragment escaped and unsafe links removed.
    Markdown(SafeHtml),
    /// Pretty-printed JSON (escaped by the template).
    Json(String),
    /// A table (escaped by the template); `truncated` when cut.
    Csv {
        rows: Vec<Vec<String>>,
        truncated: bool,
    },
    /// An image, loaded by `<img>` from the same-origin content endpoint.
    Image,
    /// HTML, shown only in a sandboxed frame from the content endpoint (scripts cannot run).
    Html,
    /// Not shown inline (PDF, Office files, …): download and open locally.
    Download,
}

/// HTML produced by [`markdown`] only: the one value templates insert unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeHtml(String);

impl SafeHtml {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The image types served to `<img>` (never SVG: it can carry script).
pub fn image_type(mime: &str) -> Option<&'static str> {
    match mime.split(';').next().unwrap_or("").trim() {
        "image/png" => Some("image/png"),
        "image/jpeg" => Some("image/jpeg"),
        "image/gif" => Some("image/gif"),
        _ => None,
    }
}

pub fn is_html(mime: &str) -> bool {
    mime.split(';').next().unwrap_or("").trim() == "text/html"
}

/// Decide how to show `bytes` of type `mime`.
pub fn render(mime: &str, bytes: &[u8]) -> Rendered {
    let base = mime.split(';').next().unwrap_or("").trim();
    if image_type(base).is_some() {
        return Rendered::Image;
    }
    match base {
        "text/html" => Rendered::Html,
        "text/markdown" => Rendered::Markdown(markdown(&String::from_utf8_lossy(bytes))),
        "application/json" => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => Rendered::Json(serde_json::to_string_pretty(&v).unwrap_or_default()),
            Err(_) => text(bytes),
        },
        "text/csv" => {
            let (rows, truncated) = csv(&String::from_utf8_lossy(bytes));
            Rendered::Csv { rows, truncated }
        }
        "text/plain" | "application/xml" | "text/xml" => text(bytes),
        _ => Rendered::Download,
    }
}

fn text(bytes: &[u8]) -> Rendered {
    let s = String::from_utf8_lossy(bytes);
    if s.len() <= MAX_SHOWN_TEXT {
        return Rendered::Text {
            text: s.into_owned(),
            truncated: false,
        };
    }
    let mut end = MAX_SHOWN_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Rendered::Text {
        text: s[..end].to_string(),
        truncated: true,
    }
}

/// A link or image target a document may carry: web and mail links, fragments and relative
/// paths. `javascript:`, `data:` and every other scheme are dropped.
fn safe_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    if u.starts_with("https://") || u.starts_with("http://") || u.starts_with("mailto:") {
        return true;
    }
    // Relative: no scheme before the first `/`, `?` or `#`.
    let head = u.split(['/', '?', '#']).next().unwrap_or("");
    !head.contains(':') && !u.starts_with("//")
}

/// Markdown → HTML with raw HTML shown as text and unsafe targets neutralised.
pub fn markdown(src: &str) -> SafeHtml {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(src, opts).map(|ev| match ev {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: if safe_url(&dest_url) {
                dest_url
            } else {
                CowStr::from("#")
            },
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: if safe_url(&dest_url) {
                dest_url
            } else {
                CowStr::from("")
            },
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    SafeHtml(out)
}

/// RFC 4180 CSV (quoted fields, doubled quotes, CRLF or LF), cut to a size a page can show.
pub fn csv(src: &str) -> (Vec<Vec<String>>, bool) {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut truncated = false;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                if rows.len() >= MAX_CSV_ROWS {
                    truncated = chars.peek().is_some();
                    break;
                }
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    for r in &mut rows {
        if r.len() > MAX_CSV_COLUMNS {
            r.truncate(MAX_CSV_COLUMNS);
            truncated = true;
        }
    }
    (rows, truncated)
}

/// The ZTDF inspector's view: what the file says about itself and the checks that need no key.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub inspection: dive_ztdf::Inspection,
    /// The manifest, pretty-printed, with every wrapped key removed.
    pub manifest: String,
}

pub fn inspect(ztdf: &[u8]) -> Result<Inspected, ContentError> {
    let inspection =
        dive_ztdf::inspect(Cursor::new(ztdf)).map_err(|e| ContentError::Ztdf(e.to_string()))?;
    let mut manifest = inspection.manifest.clone();
    if let Some(kaos) = manifest
        .pointer_mut("/encryptionInformation/keyAccess")
        .and_then(|v| v.as_array_mut())
    {
        for kao in kaos {
            if let Some(o) = kao.as_object_mut() {
                for k in [
                    "wrappedKey",
                    "protectedKey",
                    "ephemeralPublicKey",
                    "ephemeralKey",
                ] {
                    if o.contains_key(k) {
                        o.insert(k.to_string(), serde_json::json!("(not shown)"));
                    }
                }
            }
        }
    }
    Ok(Inspected {
        manifest: serde_json::to_string_pretty(&manifest).unwrap_or_default(),
        inspection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_raw_html_and_drops_script_links() {
        let h = markdown(
            "# Title\n\n<script>alert(1)</script>\n\nhi <b onmouseover=x>there</b> [a](javascript:alert(1)) [b](https://example.org/x) ![i](data:image/svg+xml,evil)\n",
        );
        let s = h.as_str();
        assert!(s.contains("<h1>Title</h1>"), "{s}");
        assert!(!s.contains("<script"), "{s}");
        assert!(s.contains("&lt;script&gt;"), "{s}");
        assert!(!s.contains("<b "), "{s}");
        assert!(!s.contains("javascript:"), "{s}");
        assert!(!s.contains("data:image"), "{s}");
        assert!(s.contains("href=\"https://example.org/x\""), "{s}");
    }

    #[test]
    fn csv_handles_quotes_and_line_ends() {
        let (rows, cut) = csv("a,b,c\r\n\"x, y\",\"he said \"\"hi\"\"\",3\nlast,,\n");
        assert!(!cut);
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["x, y", "he said \"hi\"", "3"],
                vec!["last", "", ""],
            ]
        );
    }

    #[test]
    fn types_are_rendered_by_kind() {
        assert_eq!(render("image/png", b""), Rendered::Image);
        assert_eq!(render("image/svg+xml", b"<svg/>"), Rendered::Download);
        assert_eq!(render("text/html; charset=utf-8", b"<p>"), Rendered::Html);
        assert_eq!(render("application/pdf", b"%PDF"), Rendered::Download);
        assert_eq!(
            render("application/json", b"{\"a\":1}"),
            Rendered::Json("{\n  \"a\": 1\n}".into())
        );
        assert!(matches!(
            render("text/plain", b"hello"),
            Rendered::Text {
                truncated: false,
                ..
            }
        ));
    }

    #[test]
    fn only_web_mail_and_relative_targets_are_safe() {
        for ok in [
            "https://a",
            "http://a",
            "mailto:x@y",
            "#top",
            "doc.md",
            "/a/b?x=1:2",
        ] {
            assert!(safe_url(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            " JavaScript:x",
            "data:text/html,x",
            "vbscript:x",
            "//evil.example",
        ] {
            assert!(!safe_url(bad), "{bad}");
        }
    }
}
