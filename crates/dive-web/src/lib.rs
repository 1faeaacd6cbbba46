//! DIVE's browser UI (`dive serve web`): a server-rendered backend-for-frontend. It is an OpenID
//! Connect relying party (confidential client `dive-web`) of its instance's IdP and keeps every
//! token server-side; the browser holds only an HttpOnly, Secure, SameSite=Lax session cookie.
//! Pages call the instance's resource API and KAS with the user's own access token, so every
//! decision stays the PDP's.

pub mod api;
mod charts;
pub mod config;
pub mod content;
pub mod oidc;
mod pages;
pub mod security;
pub mod session;
mod templates;
mod timing;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Settings, WebConfig};

/// Errors starting the UI.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Instance(Box<dive_instance::InstanceError>),
    #[error(transparent)]
    Pki(#[from] dive_pki::PkiError),
    #[error(transparent)]
    Http(#[from] dive_http::HttpError),
}

impl From<dive_instance::InstanceError> for WebError {
    fn from(e: dive_instance::InstanceError) -> WebError {
        WebError::Instance(Box::new(e))
    }
}

/// A running UI server.
pub struct Running {
    pub addr: SocketAddr,
    /// The URL users open (the instance's `urls.web`).
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, drain, and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }

    /// Wait until the server ends (after SIGTERM/SIGINT when started with signals).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Start the UI: read the instance's configuration and client secret, bind TLS with the
/// installation's `web` certificate, serve until stopped (or SIGTERM/SIGINT with `on_signals`).
/// The IdP is discovered lazily, so the UI starts (and reports ready) even while the IdP restarts.
pub async fn start(cfg: WebConfig, on_signals: bool) -> Result<Running, WebError> {
    let settings = Settings::load(&cfg)?;
    start_with(settings, &cfg, on_signals).await
}

/// Start the UI with `settings` given rather than read from the instance's files (`cfg` still
/// names the installation, whose PKI provides the certificate and the trusted CA).
pub async fn start_with(
    settings: Settings,
    cfg: &WebConfig,
    on_signals: bool,
) -> Result<Running, WebError> {
    let pki = dive_pki::Pki::open(&cfg.home)?;
    let cert = pki.service("web")?;
    let http = dive_http::https_client(&pki)?;
    let url = settings.web_url.clone();
    let state = Arc::new(pages::AppState::new(settings, http));
    let readiness = dive_http::Readiness::default();
    let metrics = dive_http::Metrics::new("dive_web");
    let app = dive_http::with_operations(pages::router(state.clone()), readiness.clone(), metrics)
        .layer(axum::middleware::from_fn_with_state(
            state.security.clone(),
            security::headers,
        ))
        .layer(axum::middleware::from_fn(timing::server_timing));
    let bound = dive_http::bind(cfg.bind, cert.server_config()?).await?;
    let addr = bound.local_addr();
    readiness.set(true);
    let sweeper = tokio::spawn(pages::sweep_loop(state.clone()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async move {
            if on_signals {
                tokio::select! {
                    _ = rx => {},
                    () = dive_http::shutdown_signal() => {},
                }
            } else {
                let _ = rx.await;
            }
        };
        bound.serve(app, stop).await;
        sweeper.abort();
    });
    tracing::info!(%addr, instance = %cfg.instance, "web UI listening");
    Ok(Running {
        addr,
        url,
        stop: Some(tx),
        task,
    })
}
