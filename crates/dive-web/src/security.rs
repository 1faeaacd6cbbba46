//! Browser security: the response headers every page carries (a strict Content-Security-Policy
//! without inline scripts or styles, no framing, no sniffing, no referrer, no caching of pages),
//! cookies, and the per-session CSRF token check.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The policy the whole UI runs under.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    csp: HeaderValue,
}

impl SecurityHeaders {
    /// `form-action` must also name the IdP: browsers apply it to the redirect that follows a
    /// form post (sign-out posts here, then goes to the IdP's logout endpoint).
    pub fn new(idp_origin: Option<&str>) -> Arc<SecurityHeaders> {
        let form_action = match idp_origin {
            Some(o) => format!("'self' {o}"),
            None => "'self'".to_string(),
        };
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action {form_action}"
        );
        Arc::new(SecurityHeaders {
            // Origins are ASCII serialisations of parsed URLs: always a valid header value.
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        })
    }

    pub fn csp(&self) -> &HeaderValue {
        &self.csp
    }
}

/// The CSP of decrypted HTML shown in a frame: a unique opaque origin (`sandbox` without
/// `allow-scripts` or `allow-same-origin`), nothing loaded from anywhere, framed only by the UI.
pub const SANDBOXED_CONTENT_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'";

/// The CSP of an image served to an `<img>` of the UI.
pub const IMAGE_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Add the security headers to every response; a handler that set its own CSP or framing rule
/// (sandboxed content) keeps it.
pub async fn headers(
    State(sec): State<Arc<SecurityHeaders>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, sec.csp.clone());
    }
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let fixed: [(&str, &str); 6] = [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("strict-transport-security", "max-age=31536000"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    for (k, v) in fixed {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain; `max_age` seconds
/// (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let v = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    // Names and values are ours (alphanumerics, `_`, `-`): always valid.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Whether the form's CSRF token is the session's (constant time).
pub fn csrf_ok(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(g) if !g.is_empty() => dive_idp::util::ct_eq(expected, g),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_is_strict_and_names_the_idp_for_forms() {
        let s = SecurityHeaders::new(Some("https://localhost:8443"));
        let csp = s.csp().to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("object-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.ends_with("form-action 'self' https://localhost:8443"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        assert!(csrf_ok("abc123", Some("abc123")));
        assert!(!csrf_ok("abc123", Some("abc124")));
        assert!(!csrf_ok("abc123", Some("")));
        assert!(!csrf_ok("abc123", None));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a_b=1; __Host-dive_web_usa=xyz; other=2"),
        );
        assert_eq!(cookie(&h, "__Host-dive_web_usa").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "dive_web_usa"), None);
    }
}
