//! The HTTPS server: state, router, metrics and the OAuth error shape.

mod admin;
mod authorize;
mod broker;
mod client_auth;
mod issue_log;
mod pages;
mod resources;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dive_core::CountryCode;
pub use dive_jose::Alg;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

use crate::error::IdpError;
use crate::keys::KeyRing;
use crate::store::Db;

/// How the IdP of one instance is run.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    pub instance: CountryCode,
    /// `$DIVE_HOME`: PKI and the default database live below it.
    pub home: PathBuf,
    pub bind: SocketAddr,
    /// The issuer URL; default `https://localhost:<port>`.
    pub issuer: Option<String>,
    /// A `postgres://` URL or SQLite path; default `$DIVE_HOME/instances/<code>/idp.db`.
    pub database: Option<String>,
    pub alg: Alg,
    /// Rotate the signing key at start-up when it is older than this.
    pub key_max_age_secs: i64,
    /// Further routes served beside the IdP's own (e.g. the federation endpoints, which belong
    /// to `dive-federation`: the IdP serves them without depending on it).
    pub extra_routes: Option<Router>,
    /// Consecutive failures to reach an upstream IdP that open its circuit breaker, and how long
    /// the breaker stays open before one trial login is let through.
    pub upstream_breaker_threshold: u32,
    pub upstream_breaker_cooldown: std::time::Duration,
}

impl IdpConfig {
    pub fn new(instance: CountryCode, home: PathBuf) -> IdpConfig {
        IdpConfig {
            instance,
            home,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: None,
            database: None,
            alg: Alg::RS256,
            key_max_age_secs: 30 * 24 * 3600,
            extra_routes: None,
            upstream_breaker_threshold: 3,
            upstream_breaker_cooldown: std::time::Duration::from_secs(30),
        }
    }

    pub fn instance_dir(&self) -> PathBuf {
        crate::instance_dir(&self.home, self.instance)
    }

    pub fn database_location(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.instance_dir().join("idp.db").display().to_string())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrantLabel {
    pub grant: String,
}

pub(crate) struct AppState {
    pub issuer: String,
    pub instance: CountryCode,
    pub audience: String,
    pub db: Db,
    pub keys: KeyRing,
    /// Verified against for unknown usernames, so they cost the same time as known ones.
    pub dummy_hash: String,
    pub logins: Family<OutcomeLabel, Counter>,
    pub tokens: Family<GrantLabel, Counter>,
    pub clients: ClientCache,
    /// `$DIVE_HOME`: its installation CA and partner CAs are trusted for upstream IdPs besides
    /// their own CA PEM.
    pub home: PathBuf,
    /// Upstreams' discovery documents, HTTPS clients and JWKS verifiers.
    pub upstreams: broker::UpstreamCache,
    /// One circuit breaker per upstream alias: an upstream that is down is not called (nor
    /// offered on the login page) until its cooldown has passed.
    pub upstream_breakers: dive_http::Breakers<String>,
    /// Group-committed writes of the code and refresh grants.
    pub issue_log: issue_log::IssueLog,
}

/// Registered clients read on the token path, kept for a short time: a grant need not read the
/// database for its client. Changes made by `dive idp clients` (another process) apply within
/// [`ClientCache::TTL`].
#[derive(Default)]
pub(crate) struct ClientCache(
    std::sync::Mutex<
        std::collections::HashMap<String, (crate::clients::Client, std::time::Instant)>,
    >,
);

impl ClientCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(2);
    /// Bound on memory; only registered clients are cached, so this is rarely reached.
    const MAX: usize = 10_000;

    /// Forget `id`, so the next lookup reads the database (e.g. after its secret did not match:
    /// a rotated secret must never be refused because of a stale entry).
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    pub async fn find(
        &self,
        db: &Db,
        id: &str,
    ) -> Result<Option<crate::clients::Client>, IdpError> {
        {
            let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((c, at)) = map.get(id)
                && at.elapsed() < Self::TTL
            {
                return Ok(Some(c.clone()));
            }
        }
        let found = crate::clients::find(db, id).await?;
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &found {
            Some(c) => {
                if map.len() >= Self::MAX {
                    map.clear();
                }
                map.insert(id.to_string(), (c.clone(), std::time::Instant::now()));
            }
            None => {
                map.remove(id);
            }
        }
        Ok(found)
    }
}

impl AppState {
    pub fn count_login(&self, outcome: &str) {
        self.logins
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn count_token(&self, grant: &str) {
        self.tokens
            .get_or_create(&GrantLabel {
                grant: grant.to_string(),
            })
            .inc();
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

pub(crate) type Shared = Arc<AppState>;

/// A running IdP.
pub struct Running {
    pub addr: SocketAddr,
    pub issuer: String,
    pub db: Db,
    pub keys: KeyRing,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, drain, and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Wait until the server ends (after SIGTERM/SIGINT when started by [`serve`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Start the IdP: open the database, load keys, bind TLS. The server runs until [`Running::stop`]
/// or, when `on_signals`, SIGTERM/SIGINT.
pub async fn start(cfg: IdpConfig, on_signals: bool) -> Result<Running, IdpError> {
    let pki = dive_pki::Pki::open(&cfg.home)?;
    let cert = pki.service("idp")?;
    let db = Db::open(&cfg.database_location()).await?;
    let keys = KeyRing::load(&db, cfg.alg, cfg.key_max_age_secs).await?;
    let bound = dive_http::bind(cfg.bind, cert.server_config()?).await?;
    let addr = bound.local_addr();
    let issuer = cfg
        .issuer
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", addr.port()))
        .trim_end_matches('/')
        .to_string();
    let metrics = dive_http::Metrics::new("dive_idp");
    let logins = Family::<OutcomeLabel, Counter>::default();
    let tokens = Family::<GrantLabel, Counter>::default();
    metrics.register("logins", "Login attempts by outcome", logins.clone());
    metrics.register("tokens_issued", "Tokens issued by grant", tokens.clone());
    let state = Arc::new(AppState {
        issuer: issuer.clone(),
        instance: cfg.instance,
        audience: crate::tokens::resource_audience(cfg.instance.as_str()),
        db: db.clone(),
        keys: keys.clone(),
        dummy_hash: crate::password::hash(&crate::util::random_token(24))?,
        logins,
        tokens,
        clients: ClientCache::default(),
        home: cfg.home.clone(),
        upstreams: broker::UpstreamCache::default(),
        upstream_breakers: dive_http::Breakers::new(
            cfg.upstream_breaker_threshold,
            cfg.upstream_breaker_cooldown,
        ),
        issue_log: issue_log::IssueLog::start(db.pool.clone()),
    });
    let readiness = dive_http::Readiness::default();
    let mut routes = router(state);
    if let Some(extra) = cfg.extra_routes {
        routes = routes.merge(extra);
    }
    let app = dive_http::with_operations(routes, readiness.clone(), metrics);
    readiness.set(true);
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
    });
    tracing::info!(%issuer, %addr, "identity provider listening");
    Ok(Running {
        addr,
        issuer,
        db,
        keys,
        stop: Some(tx),
        task,
    })
}

fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(resources::discovery),
        )
        .route("/jwks", get(resources::jwks))
        .route(
            "/authorize",
            get(authorize::authorize).post(authorize::authorize_post),
        )
        .route("/login", post(authorize::login))
        .route("/login/otp", post(authorize::otp))
        .route("/login/enrol", post(authorize::enrol))
        .route("/token", post(token::token))
        .route(
            "/userinfo",
            get(resources::userinfo).post(resources::userinfo),
        )
        .route("/introspect", post(resources::introspect))
        .route("/revoke", post(resources::revoke))
        .route("/revocations", get(resources::revocations))
        .route("/logout", get(resources::logout))
        .route("/broker/{alias}/login", post(broker::login))
        .route("/broker/{alias}/callback", get(broker::callback))
        .route(
            "/admin/upstreams",
            get(admin::list_upstreams).post(admin::create_upstream),
        )
        .route(
            "/admin/upstreams/{alias}",
            get(admin::get_upstream)
                .put(admin::put_upstream)
                .patch(admin::patch_upstream)
                .delete(admin::delete_upstream),
        )
        .route(
            "/admin/clients",
            get(admin::list_clients).post(admin::create_client),
        )
        .route(
            "/admin/clients/{client_id}",
            get(admin::get_client)
                .put(admin::put_client)
                .delete(admin::delete_client),
        )
        .with_state(state)
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Add `WWW-Authenticate: Basic` (client authentication with Basic failed).
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }

    pub fn server(e: IdpError) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; see the IdP log",
        )
    }
}

impl From<IdpError> for OAuthError {
    fn from(e: IdpError) -> Self {
        OAuthError::server(e)
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::server(e.into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"dive-idp\""),
            );
        }
        (
            self.status,
            headers,
            axum::Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}
