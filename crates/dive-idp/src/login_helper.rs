//! A scripted, browser-less login for tests and tools: the authorization code flow with PKCE
//! through the real login pages (password, then TOTP or enrolment), then the code exchange.

use serde_json::Value;

use crate::util::{now, pkce_s256, random_token};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected response at {step}: status {status}: {detail}")]
    Unexpected {
        step: &'static str,
        status: u16,
        detail: String,
    },
    #[error("the IdP redirected with error {error}: {description}")]
    Denied { error: String, description: String },
}

/// What the user and client bring to a login.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
    pub scope: String,
    pub username: String,
    pub password: String,
    /// The user's TOTP secret, when enrolled (base32).
    pub totp_secret: Option<String>,
    /// Extra authorization parameters (e.g. `acr_values`, `max_age`, `prompt`).
    pub extra: Vec<(String, String)>,
}

/// The result of a completed login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub code: String,
    pub code_verifier: String,
    pub state: String,
    pub nonce: String,
    /// The TOTP secret if the login enrolled the user now.
    pub enrolled_totp_secret: Option<String>,
    pub recovery_codes: Vec<String>,
    /// `name=value` of the SSO session cookie.
    pub session_cookie: Option<String>,
    /// The `iss` parameter of the authorization response (RFC 9207).
    pub iss: Option<String>,
}

/// A hidden input's value in a page.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(unescape(&html[start..start + end]))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_string))
        .collect()
}

/// Whether `name=value` is the IdP's cookie `base` (named per instance: `base_<code>`).
fn is_cookie(cookie: &str, base: &str) -> bool {
    cookie
        .split_once('=')
        .is_some_and(|(name, _)| name == base || name.starts_with(&format!("{base}_")))
}

/// The alert shown on a page, or its beginning.
/// The hidden fields of an IdP login page and the CSRF cookie that goes with them.
struct LoginForm {
    request_id: String,
    csrf: String,
    csrf_cookie: String,
}

/// Read the login page `resp`; a page without the form is an error of `step`, described by
/// `detail` from the page's HTML.
async fn login_form(
    resp: reqwest::Response,
    step: &'static str,
    detail: fn(&str) -> String,
) -> Result<LoginForm, LoginError> {
    let status = resp.status().as_u16();
    let csrf_cookie = cookies(&resp)
        .into_iter()
        .find(|c| is_cookie(c, "dive_idp_csrf"));
    let html = resp.text().await?;
    match (
        hidden_value(&html, "request_id"),
        hidden_value(&html, "csrf"),
        csrf_cookie,
    ) {
        (Some(request_id), Some(csrf), Some(csrf_cookie)) => Ok(LoginForm {
            request_id,
            csrf,
            csrf_cookie,
        }),
        _ => Err(LoginError::Unexpected {
            step,
            status,
            detail: detail(&html),
        }),
    }
}

fn page_message(html: &str) -> String {
    html.split("role=\"alert\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .map(unescape)
        .unwrap_or_else(|| html.chars().take(300).collect())
}

/// A login page as fetched from `/authorize`.
#[derive(Debug, Clone)]
pub struct LoginPage {
    pub request_id: String,
    pub csrf: String,
    /// `name=value` of the CSRF cookie.
    pub csrf_cookie: String,
}

/// Build the authorization URL with fresh PKCE, state and nonce.
pub fn authorization_url(req: &LoginRequest) -> (String, String, String, String) {
    let verifier = random_token(32);
    let state = random_token(12);
    let nonce = random_token(12);
    let mut url = format!("{}/authorize", req.issuer);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", &req.client_id)
        .append_pair("redirect_uri", &req.redirect_uri)
        .append_pair("scope", &req.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", &req.username);
    for (k, v) in &req.extra {
        q.append_pair(k, v);
    }
    url.push('?');
    url.push_str(&q.finish());
    (url, verifier, state, nonce)
}

/// Parse `code`, `state`, `iss` or `error` from a redirect `Location`.
pub fn parse_redirect(location: &str) -> Result<Vec<(String, String)>, LoginError> {
    let url = url::Url::parse(location).map_err(|e| LoginError::Unexpected {
        step: "redirect",
        status: 303,
        detail: e.to_string(),
    })?;
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if let Some((_, e)) = pairs.iter().find(|(k, _)| k == "error") {
        let d = pairs
            .iter()
            .find(|(k, _)| k == "error_description")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        return Err(LoginError::Denied {
            error: e.clone(),
            description: d,
        });
    }
    Ok(pairs)
}

/// What the login pages ended with: the IdP's redirect to the client.
#[derive(Debug, Clone)]
pub struct PagesOutcome {
    /// The final redirect `Location` (the client's redirect URI with `code`, `state`, `iss`, or
    /// an error).
    pub location: String,
    pub enrolled_totp_secret: Option<String>,
    pub recovery_codes: Vec<String>,
    /// `name=value` of the SSO session cookie, when a login happened now.
    pub session_cookie: Option<String>,
    /// The IdP answered the authorization request at once (existing session, or an error).
    pub at_once: bool,
}

/// Follow an authorization URL — this helper's own, or one another relying party built (a web
/// UI's redirect) — through the login pages as `username`, and return where the IdP sends the
/// browser back. An SSO session sent by the caller (in `http`'s default headers) answers at
/// once. `http` must not follow redirects and must trust the IdP's CA.
pub async fn login_at(
    http: &reqwest::Client,
    issuer: &str,
    url: &str,
    username: &str,
    password: &str,
    totp_secret: Option<&str>,
) -> Result<PagesOutcome, LoginError> {
    let resp = http.get(url).send().await?;
    if resp.status().as_u16() == 303 {
        // An existing session (sent by the caller's cookie) or an error answered at once.
        return Ok(PagesOutcome {
            location: location(&resp),
            enrolled_totp_secret: None,
            recovery_codes: vec![],
            session_cookie: None,
            at_once: true,
        });
    }
    let LoginForm {
        request_id,
        csrf,
        csrf_cookie,
    } = login_form(resp, "authorize", |html| html.chars().take(300).collect()).await?;
    let resp = http
        .post(format!("{issuer}/login"))
        .header(reqwest::header::COOKIE, &csrf_cookie)
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await?;
    let (resp, enrolled, recovery) =
        second_factor(http, issuer, resp, &csrf_cookie, totp_secret).await?;
    let status = resp.status().as_u16();
    if status != 303 {
        return Err(LoginError::Unexpected {
            step: "login",
            status,
            detail: page_message(&resp.text().await?),
        });
    }
    Ok(PagesOutcome {
        session_cookie: cookies(&resp)
            .into_iter()
            .find(|c| is_cookie(c, "dive_idp_session")),
        location: location(&resp),
        enrolled_totp_secret: enrolled,
        recovery_codes: recovery,
        at_once: false,
    })
}

/// Run the login through the pages and return the authorization code.
/// `http` must not follow redirects and must trust the IdP's CA.
pub async fn authorize(
    http: &reqwest::Client,
    req: &LoginRequest,
) -> Result<LoginOutcome, LoginError> {
    let (url, verifier, state, nonce) = authorization_url(req);
    let pages = login_at(
        http,
        &req.issuer,
        &url,
        &req.username,
        &req.password,
        req.totp_secret.as_deref(),
    )
    .await?;
    let pairs = parse_redirect(&pages.location)?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let at_once = pages.at_once;
    let outcome = LoginOutcome {
        code: get("code").unwrap_or_default(),
        code_verifier: verifier,
        state: get("state").unwrap_or_default(),
        nonce,
        enrolled_totp_secret: pages.enrolled_totp_secret,
        recovery_codes: pages.recovery_codes,
        session_cookie: pages.session_cookie,
        iss: get("iss"),
    };
    // The state of an answer given after the login pages must be ours.
    if !at_once && outcome.state != state {
        return Err(LoginError::Unexpected {
            step: "redirect",
            status: 303,
            detail: "state does not match".to_string(),
        });
    }
    Ok(outcome)
}

/// When `resp` is the second-factor page (200: TOTP code or enrolment), answer it with a code
/// from `totp_secret` (or the secret shown for enrolment) and return the IdP's next response,
/// the newly enrolled secret and recovery codes. Any other response is returned as is.
async fn second_factor(
    http: &reqwest::Client,
    issuer: &str,
    resp: reqwest::Response,
    csrf_cookie: &str,
    totp_secret: Option<&str>,
) -> Result<(reqwest::Response, Option<String>, Vec<String>), LoginError> {
    if resp.status().as_u16() != 200 {
        return Ok((resp, None, Vec::new()));
    }
    let html = resp.text().await?;
    let mut enrolled = None;
    let mut recovery = Vec::new();
    let (action, secret) = if html.contains("action=\"/login/enrol\"") {
        let secret = html
            .split("data-secret=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(unescape)
            .unwrap_or_default();
        recovery = html
            .split("<code class=\"recovery\">")
            .skip(1)
            .filter_map(|s| s.split('<').next().map(unescape))
            .collect();
        enrolled = Some(secret.clone());
        ("/login/enrol", secret)
    } else if html.contains("action=\"/login/otp\"") {
        let secret = totp_secret
            .map(str::to_string)
            .ok_or_else(|| LoginError::Unexpected {
                step: "otp",
                status: 200,
                detail: "the IdP asks for a TOTP code but no secret was given".to_string(),
            })?;
        ("/login/otp", secret)
    } else {
        return Err(LoginError::Unexpected {
            step: "login",
            status: 200,
            detail: page_message(&html),
        });
    };
    let (Some(request_id), Some(csrf)) = (
        hidden_value(&html, "request_id"),
        hidden_value(&html, "csrf"),
    ) else {
        return Err(LoginError::Unexpected {
            step: "otp",
            status: 200,
            detail: "the second-factor page has no request_id/csrf".to_string(),
        });
    };
    // The current step may already be used (replay protection): then use the next one.
    let mut last = None;
    for offset in [0, 30] {
        let code = crate::totp::code_at(&secret, now() + offset).unwrap_or_default();
        let r = http
            .post(format!("{issuer}{action}"))
            .header(reqwest::header::COOKIE, csrf_cookie)
            .form(&[
                ("request_id", request_id.as_str()),
                ("csrf", csrf.as_str()),
                ("code", code.as_str()),
            ])
            .send()
            .await?;
        let done = r.status().as_u16() == 303;
        last = Some(r);
        if done {
            break;
        }
    }
    let resp = last.ok_or_else(|| LoginError::Unexpected {
        step: "otp",
        status: 0,
        detail: String::new(),
    })?;
    Ok((resp, enrolled, recovery))
}

/// Exchange a code at the token endpoint (client_secret_basic when a secret is given).
pub async fn exchange(
    http: &reqwest::Client,
    req: &LoginRequest,
    outcome: &LoginOutcome,
) -> Result<Value, LoginError> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", outcome.code.clone()),
        ("redirect_uri", req.redirect_uri.clone()),
        ("code_verifier", outcome.code_verifier.clone()),
    ];
    let mut rb = http.post(format!("{}/token", req.issuer));
    match &req.client_secret {
        Some(s) => rb = rb.basic_auth(&req.client_id, Some(s)),
        None => form.push(("client_id", req.client_id.clone())),
    }
    let resp = rb.form(&form).send().await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await?;
    if status != 200 {
        return Err(LoginError::Unexpected {
            step: "token",
            status,
            detail: body.to_string(),
        });
    }
    Ok(body)
}

/// The whole flow: login pages, then the code exchange. Returns the token response and the
/// login outcome (with any newly enrolled TOTP secret).
pub async fn login(
    http: &reqwest::Client,
    req: &LoginRequest,
) -> Result<(Value, LoginOutcome), LoginError> {
    let outcome = authorize(http, req).await?;
    let tokens = exchange(http, req, &outcome).await?;
    Ok((tokens, outcome))
}

/// A brokered login: the user logs in at this IdP (`login.issuer`, the downstream) through the
/// upstream IdP `alias`.
#[derive(Debug, Clone)]
pub struct BrokerRequest {
    /// The downstream client's authorization request. `username`, `password` and
    /// `totp_secret` are the user's credentials at the upstream.
    pub login: LoginRequest,
    /// The upstream's alias at the downstream.
    pub alias: String,
    /// Send `idp_hint=<alias>` (skip the choice) instead of pressing the login page's button.
    pub use_hint: bool,
    /// The user's TOTP secret at the downstream, when enrolled there (local second factor).
    pub local_totp_secret: Option<String>,
}

/// The first leg: the downstream's redirect to the upstream.
#[derive(Debug, Clone)]
pub struct BrokerStart {
    /// The upstream authorization URL the downstream redirected to.
    pub upstream_url: String,
    /// `name=value` of the downstream's CSRF cookie, which binds the callback to this browser.
    pub csrf_cookie: String,
    pub code_verifier: String,
    pub state: String,
    pub nonce: String,
}

/// A completed brokered login at the downstream.
#[derive(Debug, Clone)]
pub struct BrokerOutcome {
    /// The downstream's code and session; `enrolled_totp_secret` is a local enrolment done now.
    pub outcome: LoginOutcome,
    /// The secret enrolled at the upstream during this login, if any.
    pub upstream_enrolled_totp_secret: Option<String>,
    /// Whether the downstream asked for its own second factor.
    pub local_second_factor: bool,
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn origin(url: &str) -> Result<String, LoginError> {
    let u = url::Url::parse(url).map_err(|e| LoginError::Unexpected {
        step: "redirect",
        status: 303,
        detail: format!("{url}: {e}"),
    })?;
    Ok(u.origin().ascii_serialization())
}

/// Start at the downstream: `/authorize` with `idp_hint`, or the login page's button. Returns
/// where the downstream sends the browser. An error redirect to the client is `Denied`.
pub async fn broker_start(
    http: &reqwest::Client,
    req: &BrokerRequest,
) -> Result<BrokerStart, LoginError> {
    let mut login = req.login.clone();
    if req.use_hint {
        login
            .extra
            .push(("idp_hint".to_string(), req.alias.clone()));
    }
    let (url, verifier, state, nonce) = authorization_url(&login);
    let resp = http.get(&url).send().await?;
    let status = resp.status().as_u16();
    let csrf_cookie = cookies(&resp)
        .into_iter()
        .find(|c| is_cookie(c, "dive_idp_csrf"));
    let resp = if req.use_hint {
        resp
    } else {
        let html = resp.text().await?;
        let action = format!("action=\"/broker/{}/login\"", req.alias);
        let form = html.find(&action).map(|i| &html[i..]).unwrap_or_default();
        let (Some(request_id), Some(csrf), Some(cookie)) = (
            hidden_value(form, "request_id"),
            hidden_value(form, "csrf"),
            csrf_cookie.as_ref(),
        ) else {
            return Err(LoginError::Unexpected {
                step: "broker choice",
                status,
                detail: format!("the login page offers no identity provider {}", req.alias),
            });
        };
        http.post(format!("{}/broker/{}/login", req.login.issuer, req.alias))
            .header(reqwest::header::COOKIE, cookie)
            .form(&[("request_id", request_id), ("csrf", csrf)])
            .send()
            .await?
    };
    let status = resp.status().as_u16();
    if status != 303 {
        return Err(LoginError::Unexpected {
            step: "broker start",
            status,
            detail: page_message(&resp.text().await?),
        });
    }
    let upstream_url = location(&resp);
    if upstream_url.starts_with(&req.login.redirect_uri) {
        parse_redirect(&upstream_url)?;
    }
    let csrf_cookie = csrf_cookie.ok_or_else(|| LoginError::Unexpected {
        step: "broker start",
        status,
        detail: "the downstream set no CSRF cookie".to_string(),
    })?;
    Ok(BrokerStart {
        upstream_url,
        csrf_cookie,
        code_verifier: verifier,
        state,
        nonce,
    })
}

/// Log in at the upstream (its real pages: password, then TOTP or enrolment) and return the
/// callback URL it redirects to, with the secret enrolled there now, if any.
pub async fn upstream_login(
    http: &reqwest::Client,
    upstream_url: &str,
    username: &str,
    password: &str,
    totp_secret: Option<&str>,
) -> Result<(String, Option<String>), LoginError> {
    let base = origin(upstream_url)?;
    let resp = http.get(upstream_url).send().await?;
    let status = resp.status().as_u16();
    if status == 303 {
        // The upstream answered at once (an SSO session, or an error for the downstream).
        return Ok((location(&resp), None));
    }
    let LoginForm {
        request_id,
        csrf,
        csrf_cookie,
    } = login_form(resp, "upstream authorize", page_message).await?;
    let resp = http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, &csrf_cookie)
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await?;
    let (resp, enrolled, _) = second_factor(http, &base, resp, &csrf_cookie, totp_secret).await?;
    let status = resp.status().as_u16();
    if status != 303 {
        return Err(LoginError::Unexpected {
            step: "upstream login",
            status,
            detail: page_message(&resp.text().await?),
        });
    }
    Ok((location(&resp), enrolled))
}

/// Deliver the upstream's callback to the downstream (with its CSRF cookie), answer a local
/// second factor if asked, and return the downstream's code.
pub async fn broker_finish(
    http: &reqwest::Client,
    start: &BrokerStart,
    callback_url: &str,
    local_totp_secret: Option<&str>,
) -> Result<BrokerOutcome, LoginError> {
    let base = origin(callback_url)?;
    let resp = http
        .get(callback_url)
        .header(reqwest::header::COOKIE, &start.csrf_cookie)
        .send()
        .await?;
    let local_second_factor = resp.status().as_u16() == 200;
    let (resp, enrolled, recovery) =
        second_factor(http, &base, resp, &start.csrf_cookie, local_totp_secret).await?;
    let status = resp.status().as_u16();
    if status != 303 {
        return Err(LoginError::Unexpected {
            step: "broker callback",
            status,
            detail: page_message(&resp.text().await?),
        });
    }
    let session_cookie = cookies(&resp)
        .into_iter()
        .find(|c| is_cookie(c, "dive_idp_session"));
    let pairs = parse_redirect(&location(&resp))?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let outcome = LoginOutcome {
        code: get("code").unwrap_or_default(),
        code_verifier: start.code_verifier.clone(),
        state: get("state").unwrap_or_default(),
        nonce: start.nonce.clone(),
        enrolled_totp_secret: enrolled,
        recovery_codes: recovery,
        session_cookie,
        iss: get("iss"),
    };
    if outcome.state != start.state {
        return Err(LoginError::Unexpected {
            step: "redirect",
            status: 303,
            detail: "state does not match".to_string(),
        });
    }
    Ok(BrokerOutcome {
        outcome,
        upstream_enrolled_totp_secret: None,
        local_second_factor,
    })
}

/// The whole brokered login: downstream start, upstream pages, callback (and local second
/// factor), then the code exchange at the downstream. Returns the downstream's token response.
pub async fn broker_login(
    http: &reqwest::Client,
    req: &BrokerRequest,
) -> Result<(Value, BrokerOutcome), LoginError> {
    let start = broker_start(http, req).await?;
    let (callback, upstream_enrolled) = upstream_login(
        http,
        &start.upstream_url,
        &req.login.username,
        &req.login.password,
        req.login.totp_secret.as_deref(),
    )
    .await?;
    let mut outcome =
        broker_finish(http, &start, &callback, req.local_totp_secret.as_deref()).await?;
    outcome.upstream_enrolled_totp_secret = upstream_enrolled;
    let tokens = exchange(http, &req.login, &outcome.outcome).await?;
    Ok((tokens, outcome))
}
