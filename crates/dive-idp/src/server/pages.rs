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
    // The login pages must never be framed (clickjacking) nor load anything foreign. No
    // `form-action`: browsers apply it to every redirect that follows a form post, and a login
    // post ends, through redirects, at the client — through a broker, at the client of another
    // IdP this page cannot know — so any list would break real logins. The forms' actions are
    // fixed relative paths, every value on the page is escaped and no script runs.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
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

/// An upstream IdP offered on the login page.
pub struct Broker {
    pub alias: String,
    pub name: String,
    /// Why it cannot be used right now (its circuit breaker is open): shown, button disabled.
    pub unavailable: Option<String>,
}

pub fn login(
    instance: &str,
    request_id: &str,
    csrf: &str,
    hint: &str,
    upstreams: &[Broker],
    error: Option<String>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    // One form per upstream IdP (alias, display name): a POST carrying the CSRF token.
    let brokers: String = upstreams
        .iter()
        .map(|b| {
            let (disabled, note) = match &b.unavailable {
                Some(why) => (" disabled", format!("<p class=\"note\">{}</p>", esc(why))),
                None => ("", String::new()),
            };
            format!(
                "<form method=\"post\" action=\"/broker/{}/login\" class=\"broker\">{}\
                 <button type=\"submit\"{disabled}>Log in with {}</button>{note}</form>",
                esc(&b.alias),
                hidden(request_id, csrf),
                esc(&b.name)
            )
        })
        .collect();
    let brokers = if brokers.is_empty() {
        brokers
    } else {
        format!("<p>Or use your home organisation's account:</p>{brokers}")
    };
    page(
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
    )
}

pub fn otp(request_id: &str, csrf: &str, error: Option<&str>) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(
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
    )
}

pub fn enrol(
    request_id: &str,
    csrf: &str,
    secret: &str,
    qr_svg: &str,
    recovery: &[String],
    error: Option<&str>,
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
    page(
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
mod csp_tests {
    use super::*;

    #[test]
    fn login_pages_load_nothing_and_leave_form_redirects_to_the_flow() {
        let r = otp("r", "c", None);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("form-action"), "{csp}");
        assert!(!csp.contains("script"), "{csp}");
    }
}
