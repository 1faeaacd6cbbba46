//! Sign-in (landing page, authorization redirect, callback) and sign-out.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::*;

#[derive(Deserialize)]
pub(super) struct SignInQuery {
    return_to: Option<String>,
    error: Option<String>,
}

pub(super) async fn signin(
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
        flag: own.flag(),
        country: own.name().to_string(),
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
            flag: p.code.flag(),
            country: p.code.name().to_string(),
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
pub(super) struct LoginQuery {
    idp: Option<String>,
    return_to: Option<String>,
}

/// Start a sign-in: remember state, nonce and PKCE verifier, bind them to this browser with a
/// short-lived cookie, and send the browser to the IdP (through a partner with `idp_hint`).
pub(super) async fn login(
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
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The IdP's answer: the state must be one this UI issued to this browser, then the code is
/// exchanged and the ID token validated before a session exists.
pub(super) async fn callback(
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
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

/// Sign out: end the session here, then at the IdP (RP-initiated logout, which also revokes the
/// user's tokens) and come back to the start page.
pub(super) async fn logout(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let Some(u) = current_user(&s, &headers).await else {
        return redirect("/signin");
    };
    if !security::csrf_ok(&u.csrf, f.csrf.as_deref()) {
        return crate::pages::csrf_refused(&s, &u);
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
