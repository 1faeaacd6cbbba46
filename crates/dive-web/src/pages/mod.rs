//! Routes and shared plumbing of the pages: state, router, rendering helpers, sessions (with
//! refresh), partners. The handlers live in one module per area. Every page but the sign-in ones
//! needs a session; without one the browser is sent to sign in and brought back.

mod auth;
mod document;
mod documents;
mod home;
mod ops;

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dive_core::CountryCode;
use serde_json::{Map, Value};

use crate::api::{ApiClient, ApiError, Filters, Page};
use crate::config::Settings;
use crate::content::{self, ContentError};
use crate::oidc::RelyingParty;
use crate::security::{self, SecurityHeaders};
use crate::session::{self, Pending, Session, SessionStore, SharedSession, Tokens};
use crate::templates::*;

const CSS: &str = include_str!("../../static/dive.css");

pub struct AppState {
    pub settings: Settings,
    pub rp: RelyingParty,
    pub http: reqwest::Client,
    pub sessions: SessionStore,
    pub security: Arc<SecurityHeaders>,
    /// The orchestration state store, opened by the first operations page that needs it.
    pub ops_store: tokio::sync::OnceCell<dive_orchestrator::state::StateStore>,
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
            ops_store: tokio::sync::OnceCell::new(),
        }
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(home::home))
        .route("/static/dive.css", get(css))
        .route("/signin", get(auth::signin))
        .route("/auth/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/logout", post(auth::logout))
        .route("/documents", get(documents::documents))
        .route("/documents/{id}", get(document::document))
        .route("/documents/{id}/open", get(document::open))
        .route("/documents/{id}/content", get(document::content_raw))
        .route("/documents/{id}/inspect", get(document::inspect))
        .route("/documents/{id}/download", get(document::download))
        .route(
            "/upload",
            get(crate::upload::form).post(crate::upload::submit).layer(
                axum::extract::DefaultBodyLimit::max(crate::upload::MAX_BODY),
            ),
        )
        .merge(ops::routes())
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
            admin: ops::is_admin(&u.claims),
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

/// The answer to a POST whose form lacks the session's CSRF token (or carries another).
pub(crate) fn csrf_refused(s: &AppState, u: &User) -> Response {
    error_page(
        s,
        Some(u),
        StatusCode::FORBIDDEN,
        "Request refused",
        "The form's security token is missing or wrong (CSRF protection). Reload the page and try again.".into(),
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

fn api_status(e: &ApiError) -> StatusCode {
    match e {
        ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
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
