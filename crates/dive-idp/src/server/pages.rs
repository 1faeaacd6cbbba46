//! The server-rendered pages: login, second factor, enrolment, errors. Every value is escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with_forms(status, title, body, &[])
}

/// The origins a page's forms may end up at besides this IdP: browsers apply `form-action` to
/// the redirects that follow a form post too, so a login form must name where the login
/// redirects (the client's redirect URI, an upstream IdP's authorization endpoint).
pub fn form_origins<'a>(urls: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        if let Ok(url) = url::Url::parse(u)
            && matches!(url.scheme(), "https" | "http")
        {
            let o = url.origin().ascii_serialization();
            if !out.contains(&o) {
                out.push(o);
            }
        }
    }
    out
}

fn page_with_forms(
    status: StatusCode,
    title: &str,
    body: &str,
    form_origins: &[String],
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}\
         .error{{color:#a00}}label{{display:block;margin-top:1rem}}</style></head>\
         <body><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The login pages must never be framed (clickjacking) nor load anything foreign.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let mut form_action = String::from("'self'");
    for o in form_origins {
        form_action.push(' ');
        form_action.push_str(o);
    }
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action {form_action}; frame-ancestors 'none'"
    );
    // Origins are ASCII serialisations of parsed URLs: always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn hidden(request_id: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"request_id\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(request_id),
        esc(csrf)
    )
}

fn error_line(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default()
}

pub fn login(
    instance: &str,
    request_id: &str,
    csrf: &str,
    hint: &str,
    upstreams: &[(String, String)],
    error: Option<String>,
    form_origins: &[String],
) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    // One form per upstream IdP (alias, display name): a POST carrying the CSRF token.
    let brokers: String = upstreams
        .iter()
        .map(|(alias, name)| {
            format!(
                "<form method=\"post\" action=\"/broker/{}/login\" class=\"broker\">{}\
                 <button type=\"submit\">Log in with {}</button></form>",
                esc(alias),
                hidden(request_id, csrf),
                esc(name)
            )
        })
        .collect();
    let brokers = if brokers.is_empty() {
        brokers
    } else {
        format!("<p>Or use your home organisation's account:</p>{brokers}")
    };
    page_with_forms(
        status,
        &format!("Sign in to DIVE {instance}"),
        &format!(
            "{}<form method=\"post\" action=\"/login\">{}\
             <label>Username <input name=\"username\" value=\"{}\" autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <p><button type=\"submit\">Sign in</button></p></form>{brokers}",
            error_line(error.as_deref()),
            hidden(request_id, csrf),
            esc(hint)
        ),
        form_origins,
    )
}

pub fn otp(request_id: &str, csrf: &str, error: Option<&str>, form_origins: &[String]) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page_with_forms(
        status,
        "Second factor",
        &format!(
            "{}<form method=\"post\" action=\"/login/otp\">{}\
             <label>Authenticator code or recovery code \
             <input name=\"code\" autocomplete=\"one-time-code\" required></label>\
             <p><button type=\"submit\">Verify</button></p></form>",
            error_line(error),
            hidden(request_id, csrf)
        ),
        form_origins,
    )
}

pub fn enrol(
    request_id: &str,
    csrf: &str,
    secret: &str,
    qr_svg: &str,
    recovery: &[String],
    error: Option<&str>,
    form_origins: &[String],
) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let codes: String = recovery
        .iter()
        .map(|c| format!("<li><code class=\"recovery\">{}</code></li>", esc(c)))
        .collect();
    page_with_forms(
        status,
        "Set up your authenticator",
        &format!(
            "{}<p>Your clearance requires a second factor. Scan this code with an authenticator \
             app, or enter the key by hand.</p><div>{qr_svg}</div>\
             <p>Key: <code id=\"totp-secret\" data-secret=\"{}\">{}</code></p>\
             <p>Recovery codes (each works once; keep them safe):</p><ul>{codes}</ul>\
             <form method=\"post\" action=\"/login/enrol\">{}\
             <label>Code from the app <input name=\"code\" autocomplete=\"one-time-code\" required></label>\
             <p><button type=\"submit\">Confirm</button></p></form>",
            error_line(error),
            esc(secret),
            esc(secret),
            hidden(request_id, csrf)
        ),
        form_origins,
    )
}

pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message)),
    )
}

pub fn signed_out() -> Response {
    page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>")
}

#[cfg(test)]
mod form_action_tests {
    use super::*;

    #[test]
    fn login_forms_may_lead_to_the_client_and_upstreams_only() {
        let o = form_origins([
            "https://localhost:8446/auth/callback",
            "https://localhost:8446/other",
            "http://127.0.0.1/callback",
            "javascript:alert(1)",
            "https://idp.fra.example",
        ]);
        assert_eq!(
            o,
            [
                "https://localhost:8446",
                "http://127.0.0.1",
                "https://idp.fra.example"
            ]
        );
        let r = otp("r", "c", None, &o[..1]);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("form-action 'self' https://localhost:8446;"),
            "{csp}"
        );
        let r = error(StatusCode::BAD_REQUEST, "x", "y");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("form-action 'self';"), "{csp}");
    }
}
