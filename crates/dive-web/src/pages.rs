//! Routes and handlers: sign-in (landing page, authorization redirect, callback), sign-out, and
//! the pages (home, documents, one document, open, inspect, download). Every page but the
//! sign-in ones needs a session; without one the browser is sent to sign in and brought back.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dive_core::{Clearance, CountryCode, Equivalency, SubjectAttributes};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::{ApiClient, ApiError, Filters, Page};
use crate::config::Settings;
use crate::content::{self, ContentError};
use crate::oidc::RelyingParty;
use crate::security::{self, SecurityHeaders};
use crate::session::{self, Pending, Session, SessionStore, SharedSession, Tokens};
use crate::templates::*;

const CSS: &str = include_str!("../static/dive.css");

pub struct AppState {
    pub settings: Settings,
    pub rp: RelyingParty,
    pub http: reqwest::Client,
    pub sessions: SessionStore,
    pub security: Arc<SecurityHeaders>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(settings: Settings, http: reqwest::Client) -> AppState {
        let security = SecurityHeaders::new(Settings::origin_of(&settings.issuer).as_deref());
        AppState {
            rp: RelyingParty::new(settings.clone(), http.clone()),
            settings,
            http,
            sessions: SessionStore::default(),
            security,
        }
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/static/dive.css", get(css))
        .route("/signin", get(signin))
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/documents", get(documents))
        .route("/documents/{id}", get(document))
        .route("/documents/{id}/open", get(open))
        .route("/documents/{id}/content", get(content_raw))
        .route("/documents/{id}/inspect", get(inspect))
        .route("/documents/{id}/download", get(download))
        .route(
            "/upload",
            get(crate::upload::form).post(crate::upload::submit).layer(
                axum::extract::DefaultBodyLimit::max(crate::upload::MAX_BODY),
            ),
        )
        .with_state(state)
}

/// Drop expired sessions and sign-ins every minute.
pub async fn sweep_loop(state: Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.sessions.sweep(dive_jose::now()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

pub(crate) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed\n").into_response()
        }
    }
}

pub(crate) fn with_status(status: StatusCode, mut r: Response) -> Response {
    *r.status_mut() = status;
    r
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(to) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    r
}

pub(crate) fn nav(s: &AppState, user: Option<&User>, active: &'static str) -> Nav {
    Nav {
        instance: s.settings.instance.to_string(),
        user: user.map(|u| NavUser {
            unique_id: u.unique_id.clone(),
            csrf: u.csrf.clone(),
        }),
        active,
    }
}

pub(crate) fn error_page(
    s: &AppState,
    user: Option<&User>,
    status: StatusCode,
    heading: &str,
    message: String,
) -> Response {
    let back = if user.is_some() {
        ("/documents", "Back to documents")
    } else {
        ("/signin", "Sign in")
    };
    with_status(
        status,
        render(&ErrorPage {
            nav: nav(s, user, ""),
            heading: heading.to_string(),
            message,
            back_href: back.0.to_string(),
            back_text: back.1.to_string(),
        }),
    )
}

/// A return address after sign-in: a local path only (no scheme, no `//host`), else `/`.
fn local_path(p: &str) -> String {
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.chars().any(|c| c.is_control() || c == '\\');
    if ok { p.to_string() } else { "/".to_string() }
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// The signed-in user of a request, with a fresh access token.
pub(crate) struct User {
    session_id: String,
    session: SharedSession,
    pub token: String,
    pub csrf: String,
    unique_id: String,
    pub claims: Map<String, Value>,
}

/// The request's session, refreshed if its access token is about to expire; `None` when there
/// is no usable session (none, expired, or the refresh was refused — then it is dropped).
async fn current_user(s: &AppState, headers: &HeaderMap) -> Option<User> {
    let id = security::cookie(headers, &s.settings.session_cookie())?;
    let shared = s.sessions.get(&id)?;
    let mut g = shared.lock().await;
    let now = dive_jose::now();
    if !session::is_live(&g, now) {
        drop(g);
        s.sessions.remove(&id);
        return None;
    }
    if g.needs_refresh(now, s.settings.refresh_margin_secs)
        && let Err(e) = refresh(s, &mut g).await
    {
        tracing::info!(error = %e, "session refresh failed; the user signs in again");
        drop(g);
        s.sessions.remove(&id);
        return None;
    }
    g.last_seen = now;
    let user = User {
        session_id: id,
        token: g.tokens.access_token.clone(),
        csrf: g.csrf.clone(),
        unique_id: g
            .claims
            .get("uniqueID")
            .and_then(Value::as_str)
            .unwrap_or(&g.sub)
            .to_string(),
        claims: g.claims.clone(),
        session: shared.clone(),
    };
    Some(user)
}

/// Use the refresh token (single use: the lock held by the caller keeps concurrent requests of
/// the session from presenting it twice).
async fn refresh(s: &AppState, g: &mut Session) -> Result<(), String> {
    let rt = g
        .tokens
        .refresh_token
        .clone()
        .ok_or("the session has no refresh token")?;
    let t = s.rp.refresh(&rt).await.map_err(|e| e.to_string())?;
    let now = dive_jose::now();
    if let Some(id) = &t.id_token {
        let claims =
            s.rp.validate_id_token(id, &t.access_token, None, Some(&g.sub))
                .await
                .map_err(|e| e.to_string())?;
        g.claims = claims;
        g.tokens.id_token = id.clone();
    }
    g.tokens.access_token = t.access_token;
    g.tokens.access_expires_at = now + t.expires_in.unwrap_or(300);
    if t.refresh_token.is_some() {
        g.tokens.refresh_token = t.refresh_token;
    }
    Ok(())
}

/// The user, or a redirect to sign in that comes back to this page.
pub(crate) async fn require_user(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<User, Response> {
    match current_user(s, headers).await {
        Some(u) => Ok(u),
        None => {
            let back = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            Err(redirect(&format!(
                "/signin?{}",
                query_string(&[("return_to", local_path(&back))])
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out

/// The upstream alias a partner's IdP has at this instance's IdP (as federation linking names
/// it, `dive_federation::broker::upstream_alias`): `fra-idp`.
fn partner_alias(code: CountryCode) -> String {
    format!("{}-idp", code.as_str().to_ascii_lowercase())
}

/// The active partners of `partners.json` (none when there is no file).
fn partners(s: &AppState) -> Result<Vec<dive_core::federation::Partner>, String> {
    let path = &s.settings.partners_file;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file = dive_core::federation::PartnersFile::from_json(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file
        .partners
        .into_iter()
        .filter(|p| p.status.is_active())
        .collect())
}

#[derive(Deserialize)]
struct SignInQuery {
    return_to: Option<String>,
    error: Option<String>,
}

async fn signin(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    // A signed-in user who opens the sign-in page simply goes on.
    if current_user(&s, &headers).await.is_some() {
        return redirect(&local_path(q.return_to.as_deref().unwrap_or("/")));
    }
    signin_page(&s, q.return_to.as_deref(), q.error)
}

fn signin_page(s: &AppState, return_to: Option<&str>, error: Option<String>) -> Response {
    let back = local_path(return_to.unwrap_or("/"));
    let own = s.settings.instance;
    let mut idps = vec![IdpChoice {
        code: own.to_string(),
        label: format!("Sign in with {own} (this instance)"),
        href: format!(
            "/auth/login?{}",
            query_string(&[("return_to", back.clone())])
        ),
        home: true,
    }];
    let (list, partners_error) = match partners(s) {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    for p in list {
        idps.push(IdpChoice {
            code: p.code.to_string(),
            label: format!("Sign in with {} (federated partner)", p.code),
            href: format!(
                "/auth/login?{}",
                query_string(&[("idp", partner_alias(p.code)), ("return_to", back.clone())])
            ),
            home: false,
        });
    }
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    with_status(
        status,
        render(&SignInPage {
            nav: nav(s, None, "signin"),
            idps,
            error,
            partners_error,
        }),
    )
}

#[derive(Deserialize)]
struct LoginQuery {
    idp: Option<String>,
    return_to: Option<String>,
}

/// Start a sign-in: remember state, nonce and PKCE verifier, bind them to this browser with a
/// short-lived cookie, and send the browser to the IdP (through a partner with `idp_hint`).
async fn login(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let hint = match q.idp.as_deref().filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => {
            let known = partners(&s)
                .unwrap_or_default()
                .into_iter()
                .any(|p| partner_alias(p.code) == h);
            if !known {
                return signin_page(
                    &s,
                    q.return_to.as_deref(),
                    Some(format!(
                        "{h:?} is not an identity provider of an active federation partner"
                    )),
                );
            }
            Some(h.to_string())
        }
    };
    let req = match s.rp.authorization_request(hint.as_deref()).await {
        Ok(r) => r,
        Err(e) => {
            return error_page(
                &s,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable",
                e.to_string(),
            );
        }
    };
    let browser = security::cookie(&headers, &s.settings.login_cookie())
        .filter(|b| {
            b.len() >= 32
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or_else(|| dive_idp::util::random_token(24));
    s.sessions.add_pending(
        &req.state,
        Pending {
            nonce: req.nonce,
            code_verifier: req.code_verifier,
            browser: browser.clone(),
            return_to: local_path(q.return_to.as_deref().unwrap_or("/")),
            created_at: dive_jose::now(),
        },
    );
    let mut r = redirect(&req.url);
    r.headers_mut().append(
        header::SET_COOKIE,
        security::set_cookie(
            &s.settings.login_cookie(),
            &browser,
            session::PENDING_TTL_SECS,
        ),
    );
    r
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The IdP's answer: the state must be one this UI issued to this browser, then the code is
/// exchanged and the ID token validated before a session exists.
async fn callback(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let now = dive_jose::now();
    let unknown = || {
        error_page(
            &s,
            None,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in response is unknown, used or expired, or was started in another browser. Start again.".into(),
        )
    };
    let Some(state) = q.state.as_deref() else {
        return unknown();
    };
    let Some(pending) = s.sessions.take_pending(state, now) else {
        return unknown();
    };
    let browser = security::cookie(&headers, &s.settings.login_cookie()).unwrap_or_default();
    if !dive_idp::util::ct_eq(&browser, &pending.browser) {
        return unknown();
    }
    if let Some(err) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("no description");
        return signin_page(
            &s,
            Some(&pending.return_to),
            Some(format!(
                "The identity provider refused the sign-in ({err}): {detail}"
            )),
        );
    }
    if let Some(iss) = &q.iss
        && *iss != s.settings.issuer
    {
        return signin_page(
            &s,
            Some(&pending.return_to),
            Some(format!(
                "The sign-in response came from {iss:?}, not this instance's identity provider"
            )),
        );
    }
    let Some(code) = q.code.as_deref() else {
        return unknown();
    };
    let tokens = match s.rp.exchange_code(code, &pending.code_verifier).await {
        Ok(t) => t,
        Err(e) => return signin_page(&s, Some(&pending.return_to), Some(e.to_string())),
    };
    let Some(id_token) = tokens.id_token.clone() else {
        return signin_page(
            &s,
            Some(&pending.return_to),
            Some("the identity provider returned no ID token".into()),
        );
    };
    let claims = match s
        .rp
        .validate_id_token(&id_token, &tokens.access_token, Some(&pending.nonce), None)
        .await
    {
        Ok(c) => c,
        Err(e) => return signin_page(&s, Some(&pending.return_to), Some(e.to_string())),
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let session = Session {
        csrf: dive_idp::util::random_token(32),
        tokens: Tokens {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            id_token,
            access_expires_at: now + tokens.expires_in.unwrap_or(300),
        },
        sub,
        claims,
        created_at: now,
        last_seen: now,
    };
    // A session this browser held before ends: the new sign-in gets a new id (no fixation).
    if let Some(old) = security::cookie(&headers, &s.settings.session_cookie()) {
        s.sessions.remove(&old);
    }
    let id = match s.sessions.create(session, now) {
        Ok(id) => id,
        Err(e) => {
            return error_page(
                &s,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                e.to_string(),
            );
        }
    };
    let mut r = redirect(&pending.return_to);
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        security::set_cookie(
            &s.settings.session_cookie(),
            &id,
            session::ABSOLUTE_TTL_SECS,
        ),
    );
    h.append(
        header::SET_COOKIE,
        security::set_cookie(&s.settings.login_cookie(), "", 0),
    );
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// Sign out: end the session here, then at the IdP (RP-initiated logout, which also revokes the
/// user's tokens) and come back to the start page.
async fn logout(State(s): State<Shared>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some(u) = current_user(&s, &headers).await else {
        return redirect("/signin");
    };
    if !security::csrf_ok(&u.csrf, f.csrf.as_deref()) {
        return error_page(
            &s,
            Some(&u),
            StatusCode::FORBIDDEN,
            "Request refused",
            "The form's security token is missing or wrong (CSRF protection). Reload the page and try again.".into(),
        );
    }
    let id_token = u.session.lock().await.tokens.id_token.clone();
    s.sessions.remove(&u.session_id);
    let to =
        s.rp.logout_url(Some(&id_token))
            .await
            .unwrap_or_else(|_| "/signin".to_string());
    let mut r = redirect(&to);
    r.headers_mut().append(
        header::SET_COOKIE,
        security::set_cookie(&s.settings.session_cookie(), "", 0),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Home

fn me(claims: &Map<String, Value>) -> Result<Me, String> {
    let v = Value::Object(claims.clone());
    let a = SubjectAttributes::from_claims(&v, Equivalency::builtin())
        .map_err(|e| format!("your sign-in carries no usable coalition attributes: {e}"))?;
    let amr = a.authentication.amr.join(", ");
    Ok(Me {
        unique_id: a.unique_id,
        clearance_label: a.clearance_original,
        clearance_level: a.clearance.marking().to_string(),
        clearance_rank: a.clearance.rank(),
        country: a.country_of_affiliation.to_string(),
        cois: a.acp_coi,
        organization_type: claims
            .get("organizationType")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string(),
        aal: serde_json::to_value(a.authentication.aal)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        acr: a.authentication.acr.unwrap_or_else(|| "-".into()),
        amr: if amr.is_empty() { "-".into() } else { amr },
        home_issuer: claims
            .get("home_issuer")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn reach(page: &Page) -> Reach {
    let by_classification = Clearance::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                c.marking().to_string(),
                page.facets
                    .classification
                    .get(c.as_str())
                    .copied()
                    .unwrap_or(0),
            )
        })
        .collect();
    Reach {
        total: page.total,
        by_classification,
    }
}

async fn home(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let me = match me(&u.claims) {
        Ok(m) => m,
        Err(e) => return error_page(&s, Some(&u), StatusCode::FORBIDDEN, "No attributes", e),
    };
    let api = ApiClient::new(s.http.clone(), &s.settings.api_url);
    let reach = match api.search(&u.token, &Filters::default()).await {
        Ok(p) => Ok(reach(&p)),
        Err(e) => Err(e.to_string()),
    };
    render(&HomePage {
        nav: nav(&s, Some(&u), "home"),
        me,
        reach,
    })
}

// ---------------------------------------------------------------------------------------------
// Documents

#[derive(Deserialize, Default)]
struct DocQuery {
    q: Option<String>,
    classification: Option<String>,
    country: Option<String>,
    coi: Option<String>,
    #[serde(rename = "type")]
    file_type: Option<String>,
    scope: Option<String>,
    cursor: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl DocQuery {
    fn filters(&self) -> Result<Filters, String> {
        let classification = match nonempty(&self.classification) {
            None => None,
            Some(c) => Some(
                serde_json::from_value::<Clearance>(Value::String(c.clone()))
                    .map_err(|_| format!("classification {c:?} is not a known level"))?,
            ),
        };
        let country = match nonempty(&self.country) {
            None => None,
            Some(c) => Some(
                CountryCode::new(&c.to_ascii_uppercase())
                    .map_err(|e| format!("country {c:?}: {e}"))?,
            ),
        };
        Ok(Filters {
            q: nonempty(&self.q),
            classification,
            country,
            coi: nonempty(&self.coi),
            file_type: nonempty(&self.file_type),
            cursor: nonempty(&self.cursor),
        })
    }

    fn federated(&self) -> bool {
        self.scope.as_deref() == Some("federated")
    }

    /// The link for these filters with one changed (`None` removes it); a cursor only when
    /// `key` is `cursor`.
    fn href_with(&self, key: &str, value: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut push = |k: &'static str, v: &Option<String>| {
            let v = if k == key {
                value.map(str::to_string)
            } else {
                nonempty(v)
            };
            if let Some(v) = v {
                pairs.push((k, v));
            }
        };
        push("q", &self.q);
        push("classification", &self.classification);
        push("country", &self.country);
        push("coi", &self.coi);
        push("type", &self.file_type);
        push("scope", &self.scope);
        push("cursor", &None);
        format!("/documents?{}", query_string(&pairs))
    }
}

fn options(
    values: impl IntoIterator<Item = (String, String)>,
    selected: &Option<String>,
) -> Vec<SelectOption> {
    let sel = nonempty(selected);
    let mut out: Vec<SelectOption> = values
        .into_iter()
        .map(|(value, text)| SelectOption {
            selected: sel.as_deref() == Some(value.as_str()),
            value,
            text,
        })
        .collect();
    // A selected value the facets no longer list stays selectable.
    if let Some(v) = sel
        && !out.iter().any(|o| o.value == v)
    {
        out.push(SelectOption {
            value: v.clone(),
            text: v,
            selected: true,
        });
    }
    out
}

fn doc_href(id: &str, instance: Option<&str>, own: CountryCode) -> String {
    let base = format!("/documents/{}", crate::api::path_segment(id));
    match instance {
        Some(i) if i != own.as_str() => {
            format!("{base}?{}", query_string(&[("instance", i.to_string())]))
        }
        _ => base,
    }
}

fn results(s: &AppState, q: &DocQuery, page: Page, federated: bool) -> Results {
    let own = s.settings.instance;
    let facet =
        |title: &'static str, key: &str, m: &std::collections::BTreeMap<String, u64>| FacetGroup {
            title,
            entries: m
                .iter()
                .filter(|(k, _)| key != "coi" || k.as_str() != "(none)")
                .map(|(k, c)| FacetEntry {
                    text: match key {
                        "classification" => {
                            serde_json::from_value::<Clearance>(Value::String(k.clone()))
                                .map(|c| c.marking().to_string())
                                .unwrap_or_else(|_| k.clone())
                        }
                        _ => k.clone(),
                    },
                    count: *c,
                    href: q.href_with(key, Some(k)),
                })
                .collect(),
        };
    let facets = vec![
        facet(
            "Classification",
            "classification",
            &page.facets.classification,
        ),
        facet("Releasable to", "country", &page.facets.country),
        facet("Community of interest", "coi", &page.facets.coi),
        facet("File type", "type", &page.facets.file_type),
    ];
    let items = page
        .items
        .iter()
        .map(|d| DocRow {
            title: d.title.clone(),
            href: doc_href(&d.id, d.instance.as_deref(), own),
            marking: d.marking.clone(),
            classification: d.label.classification.as_str().to_string(),
            mime_type: d.mime_type.clone(),
            created: d.created_at.chars().take(10).collect(),
            instance: d.instance.clone().unwrap_or_else(|| own.to_string()),
        })
        .collect();
    let next_href = (!federated)
        .then_some(page.next_cursor.as_ref())
        .flatten()
        .map(|c| q.href_with("cursor", Some(c)));
    Results {
        federated,
        total: page.total,
        items,
        facets,
        partial: page.partial,
        instances: page.instances,
        federation_error: page.federation_error,
        first_href: nonempty(&q.cursor).map(|_| q.href_with("cursor", None)),
        next_href,
        page_size: crate::api::PAGE_SIZE,
    }
}

fn search_form(q: &DocQuery, page: Option<&Page>) -> SearchForm {
    let facets = page.map(|p| p.facets.clone()).unwrap_or_default();
    SearchForm {
        q: q.q.clone().unwrap_or_default(),
        classifications: options(
            Clearance::ALL
                .iter()
                .map(|c| (c.as_str().to_string(), c.marking().to_string())),
            &q.classification,
        ),
        countries: options(
            facets.country.keys().map(|k| (k.clone(), k.clone())),
            &q.country,
        ),
        cois: options(
            facets
                .coi
                .keys()
                .filter(|k| k.as_str() != "(none)")
                .map(|k| (k.clone(), k.clone())),
            &q.coi,
        ),
        types: options(
            facets.file_type.keys().map(|k| (k.clone(), k.clone())),
            &q.file_type,
        ),
        federated: q.federated(),
    }
}

async fn documents(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<DocQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error_page(
                &s,
                Some(&u),
                StatusCode::BAD_REQUEST,
                "Bad search",
                e.body_text(),
            );
        }
    };
    let filters = match q.filters() {
        Ok(f) => f,
        Err(e) => {
            return with_status(
                StatusCode::BAD_REQUEST,
                render(&DocumentsPage {
                    nav: nav(&s, Some(&u), "documents"),
                    form: search_form(&q, None),
                    error: Some(e),
                    results: None,
                }),
            );
        }
    };
    let api = ApiClient::new(s.http.clone(), &s.settings.api_url);
    let federated = q.federated();
    let answer = if federated {
        api.federated_search(&u.token, &filters).await
    } else {
        api.search(&u.token, &filters).await
    };
    match answer {
        Ok(page) => {
            let form = search_form(&q, Some(&page));
            let results = results(&s, &q, page, federated);
            render(&DocumentsPage {
                nav: nav(&s, Some(&u), "documents"),
                form,
                error: None,
                results: Some(results),
            })
        }
        Err(e) => {
            let status = api_status(&e);
            with_status(
                status,
                render(&DocumentsPage {
                    nav: nav(&s, Some(&u), "documents"),
                    form: search_form(&q, None),
                    error: Some(e.to_string()),
                    results: None,
                }),
            )
        }
    }
}

fn api_status(e: &ApiError) -> StatusCode {
    match e {
        ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
}

#[derive(Deserialize)]
struct InstanceQuery {
    instance: Option<String>,
}

/// The API that holds a document: this instance's, or an active partner's (federated results).
fn api_for(s: &AppState, instance: Option<&str>) -> Result<(ApiClient, String), String> {
    let own = s.settings.instance;
    let code = match instance.map(str::trim).filter(|i| !i.is_empty()) {
        None => {
            return Ok((
                ApiClient::new(s.http.clone(), &s.settings.api_url),
                own.to_string(),
            ));
        }
        Some(i) => {
            CountryCode::new(&i.to_ascii_uppercase()).map_err(|e| format!("instance {i:?}: {e}"))?
        }
    };
    if code == own {
        return Ok((
            ApiClient::new(s.http.clone(), &s.settings.api_url),
            own.to_string(),
        ));
    }
    let p = partners(s)?
        .into_iter()
        .find(|p| p.code == code)
        .ok_or_else(|| format!("{code} is not an active federation partner of {own}"))?;
    Ok((ApiClient::new(s.http.clone(), &p.api_url), code.to_string()))
}

/// What a denied user would need, from the failed checks.
fn needed(d: &crate::api::Denial) -> Option<String> {
    let failed: Vec<&str> = d
        .checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(k, _)| k.as_str())
        .collect();
    let mut needs = Vec::new();
    for f in failed {
        let n = match f {
            "clearance" => "a clearance at or above the document's classification",
            "releasability" => "a country of affiliation among the document's releasability list",
            "coi" => "membership of the document's communities of interest",
            "authentication_strength" => match (&d.aal, &d.aal_required) {
                (_, Some(_)) => {
                    "a stronger sign-in (a second factor: sign out and sign in again with your one-time code)"
                }
                _ => "a stronger sign-in",
            },
            "embargo" => "patience: the document is under embargo until its release date",
            "industry" => {
                "a government or military affiliation (the document is not releasable to industry)"
            }
            "trusted_issuer" | "federation" => {
                "an identity provider this instance trusts for this document"
            }
            _ => continue,
        };
        needs.push(n);
    }
    (!needs.is_empty()).then(|| needs.join("; "))
}

fn allowed_view(a: crate::api::Allowed, instance: &str, own: CountryCode) -> AllowedView {
    let d = a.item;
    let l = &d.label;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let inst = (instance != own.as_str()).then_some(instance);
    let href = |suffix: &str| {
        format!("{}{suffix}", doc_href(&d.id, None, own))
            + &inst
                .map(|i| format!("?{}", query_string(&[("instance", i.to_string())])))
                .unwrap_or_default()
    };
    AllowedView {
        open_href: href("/open"),
        inspect_href: href("/inspect"),
        download_href: href("/download"),
        instance: instance.to_string(),
        title: d.title.clone(),
        description: d.description.clone(),
        marking: d.marking.clone(),
        classification: l.classification.as_str().to_string(),
        classification_text: l.classification.marking().to_string(),
        original: l
            .original_classification
            .clone()
            .map(|o| match l.original_country {
                Some(c) => format!("{o} ({c})"),
                None => o,
            }),
        releasability: list(l.releasability_to.iter().map(|c| c.to_string()).collect()),
        cois: if l.coi.is_empty() {
            "none".to_string()
        } else {
            format!(
                "{} ({})",
                l.coi.join(", "),
                serde_json::to_value(l.coi_operator)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        },
        caveats: list(l.caveats.clone()),
        industry: l.releasable_to_industry,
        created: d.created_at.clone(),
        creator: d.creator.clone(),
        file_name: d.file_name.clone(),
        mime_type: d.mime_type.clone(),
        size: d.size,
        ztdf_size: d.ztdf_size,
        reason: a.reason,
        checks: a.checks,
        aal: a.aal,
        id: d.id,
    }
}

async fn document(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (api, instance) = match api_for(&s, iq.instance.as_deref()) {
        Ok(x) => x,
        Err(e) => return error_page(&s, Some(&u), StatusCode::NOT_FOUND, "Unknown instance", e),
    };
    let own = s.settings.instance;
    match api.get(&u.token, &id).await {
        Ok(a) => {
            let v = allowed_view(a, &instance, own);
            render(&DocumentPage {
                nav: nav(&s, Some(&u), "documents"),
                page_title: v.title.clone(),
                view: DocView::Allowed(Box::new(v)),
            })
        }
        Err(ApiError::Forbidden(d)) => with_status(
            StatusCode::FORBIDDEN,
            render(&DocumentPage {
                nav: nav(&s, Some(&u), "documents"),
                page_title: "Access denied".into(),
                view: DocView::Denied(DeniedView {
                    id: id.clone(),
                    instance,
                    needed: needed(&d),
                    reason: d.reason.clone(),
                    checks: d.checks.clone(),
                }),
            }),
        ),
        Err(e) => error_page(
            &s,
            Some(&u),
            api_status(&e),
            "Document unavailable",
            e.to_string(),
        ),
    }
}

/// The document's metadata (allowed) and its ZTDF, for open/inspect/download.
async fn fetch(
    s: &AppState,
    u: &User,
    id: &str,
    instance: Option<&str>,
) -> Result<(crate::api::Allowed, String, Vec<u8>), Response> {
    let (api, inst) = api_for(s, instance)
        .map_err(|e| error_page(s, Some(u), StatusCode::NOT_FOUND, "Unknown instance", e))?;
    let fail = |e: ApiError| {
        let status = api_status(&e);
        let msg = match &e {
            ApiError::Forbidden(d) => format!("Access denied: {}", d.reason),
            other => other.to_string(),
        };
        error_page(s, Some(u), status, "Document unavailable", msg)
    };
    let meta = api.get(&u.token, id).await.map_err(fail)?;
    let ztdf = api.download(&u.token, id).await.map_err(fail)?;
    Ok((meta, inst, ztdf))
}

fn content_error(s: &AppState, u: &User, e: ContentError) -> Response {
    let status = match e {
        ContentError::Refused(_) => StatusCode::FORBIDDEN,
        ContentError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ContentError::Kas(_) => StatusCode::BAD_GATEWAY,
        ContentError::Ztdf(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error_page(
        s,
        Some(u),
        status,
        "Cannot open the document",
        e.to_string(),
    )
}

fn suffix_href(id: &str, suffix: &str, instance: &str, own: CountryCode) -> String {
    let mut h = format!("/documents/{}{suffix}", crate::api::path_segment(id));
    if instance != own.as_str() {
        h.push('?');
        h.push_str(&query_string(&[("instance", instance.to_string())]));
    }
    h
}

/// "Open": rewrap at the KAS with the user's token, decrypt, render by type.
async fn open(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (meta, inst, ztdf) = match fetch(&s, &u, &id, iq.instance.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let plain = match content::decrypt(&s.http, &u.token, ztdf).await {
        Ok(p) => p,
        Err(e) => return content_error(&s, &u, e),
    };
    let own = s.settings.instance;
    let d = meta.item;
    let rendered = content::render(&d.mime_type, &plain);
    let content_href = suffix_href(&id, "/content", &inst, own);
    render(&OpenPage {
        nav: nav(&s, Some(&u), "documents"),
        title: d.title.clone(),
        marking: d.marking.clone(),
        classification: d.label.classification.as_str().to_string(),
        mime_type: d.mime_type.clone(),
        rendered,
        back_href: suffix_href(&id, "", &inst, own),
        download_href: suffix_href(&id, "/download", &inst, own),
        content_download_href: format!(
            "{content_href}{}download=1",
            if content_href.contains('?') { "&" } else { "?" }
        ),
        content_href,
    })
}

#[derive(Deserialize)]
struct ContentQuery {
    instance: Option<String>,
    download: Option<String>,
}

/// The decrypted bytes for `<img>`, the sandboxed HTML frame, or a download. Images only of the
/// allow-listed types; HTML only under a `sandbox` CSP (opaque origin, no scripts); anything else
/// only as an attachment.
async fn content_raw(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(cq): Query<ContentQuery>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (meta, _, ztdf) = match fetch(&s, &u, &id, cq.instance.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let plain = match content::decrypt(&s.http, &u.token, ztdf).await {
        Ok(p) => p,
        Err(e) => return content_error(&s, &u, e),
    };
    let d = meta.item;
    let mut r = plain.into_response();
    let h = r.headers_mut();
    let attach = cq.download.is_some();
    if !attach && let Some(t) = content::image_type(&d.mime_type) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(security::IMAGE_CSP),
        );
    } else if !attach && content::is_html(&d.mime_type) {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(security::SANDBOXED_CONTENT_CSP),
        );
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        );
        let name = d.file_name.replace(
            |c: char| !c.is_ascii_graphic() || c == '"' || c == '\\',
            "_",
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

async fn inspect(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (meta, inst, ztdf) = match fetch(&s, &u, &id, iq.instance.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ins = match content::inspect(&ztdf) {
        Ok(i) => i,
        Err(e) => return content_error(&s, &u, e),
    };
    let d = meta.item;
    render(&InspectPage {
        nav: nav(&s, Some(&u), "documents"),
        title: d.title.clone(),
        marking: d.marking.clone(),
        classification: d.label.classification.as_str().to_string(),
        back_href: suffix_href(&id, "", &inst, s.settings.instance),
        ins,
    })
}

/// The ZTDF as stored (still encrypted: opening it needs the KAS again).
async fn download(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(iq): Query<InstanceQuery>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (meta, _, ztdf) = match fetch(&s, &u, &id, iq.instance.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = format!("{}.tdf", meta.item.file_name).replace(
        |c: char| !c.is_ascii_graphic() || c == '"' || c == '\\',
        "_",
    );
    let mut r = ztdf.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.item.marking) {
        h.insert("x-dive-marking", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_stay_local() {
        assert_eq!(local_path("/documents?q=x"), "/documents?q=x");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "documents",
            "/a\nb",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn partner_aliases_follow_federation_linking() {
        assert_eq!(partner_alias(CountryCode::new("FRA").unwrap()), "fra-idp");
    }
}
