//! The HTTPS service: configuration, state, router, start-up and background refresh.

mod federated;
mod handlers;
mod reply;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use dive_authn::{Authenticator, AuthnConfig, RevocationSource};
use dive_core::CountryCode;
use dive_policy::{Pdp, Sources};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::access::Access;
use crate::audit::AuditLog;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::kas::KasKeys;
use crate::store::{ResourceMeta, ResourceStore};

pub use reply::Failure;

/// The routes the service answers (method, path template). The OpenAPI description documents
/// exactly these (a test holds both to it).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/resources"),
    ("POST", "/api/resources"),
    ("POST", "/api/resources/federated-search"),
    ("GET", "/api/resources/{id}"),
    ("DELETE", "/api/resources/{id}"),
    ("GET", "/api/resources/{id}/download"),
    ("GET", "/api/audit"),
    ("GET", "/api/audit/summary"),
    ("GET", "/api/openapi.json"),
    ("GET", "/live"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
];

/// The OpenAPI 3.1 description served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// How the resource service of one instance is run.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub instance: CountryCode,
    /// `$DIVE_HOME`: PKI, secrets and the default database live below it.
    pub home: PathBuf,
    pub bind: SocketAddr,
    /// This instance's KAS (base URL, as written into key access objects).
    pub kas_url: String,
    /// Policy data directory; default `$DIVE_HOME/instances/<code>/policy/` if it exists, else
    /// the data embedded in the binary.
    pub policy_data: Option<PathBuf>,
    /// A `postgres://` URL or SQLite path; default `$DIVE_HOME/instances/<code>/api.db`.
    pub database: Option<String>,
    /// Largest upload (file part), bytes.
    pub max_upload_bytes: usize,
    /// Required token audience; default `dive-<code>` (what the instance IdP issues).
    pub audience: Option<String>,
    /// How often other writers' changes to the store (seeding) are looked for.
    pub catalog_poll: Duration,
    /// Audit entries older than this are deleted (checked hourly); 0 keeps everything.
    pub audit_retention_days: u32,
    /// Revocation list credentials; default `$DIVE_HOME/instances/<code>/secrets/api-client.json`
    /// when that file exists.
    pub revocation_credentials: Option<PathBuf>,
    /// Federation partners for federated search; default
    /// `$DIVE_HOME/instances/<code>/federation/partners.json` (absent: no partners).
    pub partners_file: Option<PathBuf>,
    /// Consecutive failures that open a partner's circuit breaker, and how long it stays open.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl ApiConfig {
    pub fn new(instance: CountryCode, home: PathBuf, kas_url: impl Into<String>) -> ApiConfig {
        ApiConfig {
            instance,
            home,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            kas_url: kas_url.into(),
            policy_data: None,
            database: None,
            max_upload_bytes: crate::upload::DEFAULT_MAX_BYTES,
            audience: None,
            // One cheap `SELECT generation` per tick: a seeding or another replica's upload shows
            // up within a quarter second.
            catalog_poll: Duration::from_millis(250),
            audit_retention_days: 90,
            revocation_credentials: None,
            partners_file: None,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(30),
        }
    }

    pub fn instance_dir(&self) -> PathBuf {
        crate::instance_dir(&self.home, self.instance)
    }

    pub fn database_location(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            crate::default_database(&self.home, self.instance)
                .display()
                .to_string()
        })
    }

    /// The policy data directory in force (`None`: embedded).
    pub fn policy_data_dir(&self) -> Option<PathBuf> {
        self.policy_data.clone().or_else(|| {
            let d = self.instance_dir().join("policy");
            d.is_dir().then_some(d)
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub action: String,
    pub decision: String,
}

pub(crate) struct AppState {
    pub instance: CountryCode,
    pub store: ResourceStore,
    catalog: RwLock<Arc<Catalog>>,
    reload: tokio::sync::Mutex<()>,
    pub access: Arc<Access>,
    pub audit: AuditLog,
    pub kas: KasKeys,
    pub authn: Authenticator,
    pub max_upload_bytes: usize,
    /// HTTPS client for partners' resource services: the installation CA and every partner CA
    /// (followed without a restart).
    pub partner_http: dive_http::TrustedClient,
    pub partners: crate::federation::Partners,
    pub breakers: crate::federation::Breakers,
    pub decisions: Family<DecisionLabels, Counter>,
    pub disagreements: Counter,
    pub documents: Gauge<i64, AtomicI64>,
    /// Keeps the embedded trusted issuers' file alive when no policy directory is used.
    _issuers_file: Option<tempfile::NamedTempFile>,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_catalog(&self, c: Catalog) {
        self.documents.set(c.len() as i64);
        let c = Arc::new(c);
        match self.catalog.write() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }

    /// Reload the catalog from the store if its generation moved.
    pub async fn refresh_catalog(&self) -> Result<(), ApiError> {
        let _one = self.reload.lock().await;
        let stored = self.store.generation().await?;
        if stored == self.catalog().generation {
            return Ok(());
        }
        let (generation, docs) = self.store.load_all().await?;
        let catalog = tokio::task::spawn_blocking(move || Catalog::build(generation, docs))
            .await
            .map_err(|e| ApiError::Config(format!("catalog build: {e}")))?;
        tracing::info!(
            generation,
            documents = catalog.len(),
            classes = catalog.classes().len(),
            "catalog loaded"
        );
        self.set_catalog(catalog);
        Ok(())
    }

    /// Add a document this service just stored (generation `generation`); reload instead if
    /// another writer changed the store in between.
    pub async fn added(&self, meta: ResourceMeta, generation: i64) -> Result<(), ApiError> {
        let _one = self.reload.lock().await;
        let current = self.catalog();
        if generation == current.generation + 1 {
            let next = tokio::task::spawn_blocking(move || current.with_added(meta, generation))
                .await
                .map_err(|e| ApiError::Config(format!("catalog update: {e}")))?;
            self.set_catalog(next);
            return Ok(());
        }
        drop(_one);
        self.refresh_catalog().await
    }
}

/// A running resource service.
pub struct Running {
    pub addr: SocketAddr,
    pub store: ResourceStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, drain, flush the audit log and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Wait until the server ends (after SIGTERM/SIGINT when started with `on_signals`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The trusted issuers file: `<policy data>/trusted_issuers.json`, or the embedded data's list
/// written to a private temporary file.
fn issuers_file(
    data_dir: Option<&Path>,
    pdp: &Pdp,
) -> Result<(PathBuf, Option<tempfile::NamedTempFile>), ApiError> {
    if let Some(dir) = data_dir {
        let p = dir.join("trusted_issuers.json");
        if p.is_file() {
            return Ok((p, None));
        }
    }
    let snapshot = pdp.sources().load()?;
    let issuers = snapshot
        .data
        .pointer("/dive/trusted_issuers")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let io = |source| ApiError::Io {
        action: "write",
        path: "temporary trusted issuers file".into(),
        source,
    };
    let mut f = tempfile::NamedTempFile::new().map_err(io)?;
    std::io::Write::write_all(&mut f, issuers.to_string().as_bytes()).map_err(io)?;
    Ok((f.path().to_path_buf(), Some(f)))
}

/// This instance's own issuer: the trusted issuer whose `instance` is this instance.
fn own_issuer(pdp: &Pdp, instance: CountryCode) -> Result<Option<String>, ApiError> {
    let snapshot = pdp.sources().load()?;
    Ok(snapshot
        .data
        .pointer("/dive/trusted_issuers")
        .and_then(|v| v.as_object())
        .and_then(|m| {
            m.iter()
                .find(|(_, v)| {
                    v.get("instance").and_then(|i| i.as_str()) == Some(instance.as_str())
                })
                .map(|(k, _)| k.clone())
        }))
}

/// Start the service: open the store, load the catalog and the PDP, bind TLS. Runs until
/// [`Running::stop`] or, when `on_signals`, SIGTERM/SIGINT.
pub async fn start(cfg: ApiConfig, on_signals: bool) -> Result<Running, ApiError> {
    let pki = dive_pki::Pki::open(&cfg.home)?;
    let cert = pki.service("api")?;
    let http = dive_http::https_client(&pki)?;
    // Partners (federated search, partners' JWKS) may sit behind another installation's CA.
    let partner_http = dive_http::TrustedClient::new(&cfg.home)?;
    let data_dir = cfg.policy_data_dir();
    let pdp = Arc::new(Pdp::new(Sources {
        policy_dir: None,
        data_dir: data_dir.clone(),
    })?);
    let access = Arc::new(Access::new(pdp.clone())?);
    let (issuers_path, issuers_tmp) = issuers_file(data_dir.as_deref(), &pdp)?;
    let mut authn_cfg = AuthnConfig::new(partner_http.clone(), issuers_path)
        .with_audience(
            cfg.audience
                .clone()
                .unwrap_or_else(|| format!("dive-{}", cfg.instance.as_str().to_lowercase())),
        )
        .accepting_partner_tokens(cfg.instance.as_str());
    let creds = cfg
        .revocation_credentials
        .clone()
        .unwrap_or_else(|| cfg.instance_dir().join("secrets").join("api-client.json"));
    if creds.is_file() {
        let issuer = own_issuer(&pdp, cfg.instance)?.ok_or_else(|| {
            ApiError::Config(format!(
                "{} exists but no trusted issuer belongs to instance {}: cannot poll its revocation list",
                creds.display(),
                cfg.instance
            ))
        })?;
        let source = RevocationSource::from_file(issuer, &creds)
            .map_err(|e| ApiError::Config(e.to_string()))?;
        authn_cfg = authn_cfg.with_revocation(source);
    } else {
        tracing::warn!(path = %creds.display(), "no revocation credentials: revoked tokens are honoured only by expiry");
    }
    let authn = Authenticator::new(authn_cfg).map_err(|e| ApiError::Config(e.to_string()))?;

    let store = ResourceStore::open(&cfg.database_location()).await?;
    let (audit, audit_task) = AuditLog::start(store.clone());
    let metrics = dive_http::Metrics::new("dive_api");
    let decisions = Family::<DecisionLabels, Counter>::default();
    let disagreements = Counter::default();
    let documents = Gauge::<i64, AtomicI64>::default();
    metrics.register(
        "decisions",
        "Access decisions by action and outcome",
        decisions.clone(),
    );
    metrics.register(
        "prefilter_disagreements",
        "Search items the access prefilter admitted but the PDP denied (should stay 0)",
        disagreements.clone(),
    );
    metrics.register(
        "catalog_documents",
        "Documents in the catalog",
        documents.clone(),
    );
    let state = Arc::new(AppState {
        instance: cfg.instance,
        store: store.clone(),
        catalog: RwLock::new(Arc::new(Catalog::default())),
        reload: tokio::sync::Mutex::new(()),
        access,
        audit,
        kas: KasKeys::new(&cfg.kas_url, http.clone()),
        authn,
        max_upload_bytes: cfg.max_upload_bytes,
        partner_http,
        partners: crate::federation::Partners::new(
            cfg.partners_file
                .clone()
                .unwrap_or_else(|| cfg.instance_dir().join("federation").join("partners.json")),
        ),
        breakers: crate::federation::Breakers::new(cfg.breaker_threshold, cfg.breaker_cooldown),
        decisions,
        disagreements,
        documents,
        _issuers_file: issuers_tmp,
    });
    state.refresh_catalog().await?;
    let readiness = dive_http::Readiness::default();
    let app = dive_http::with_operations(
        router(state.clone(), cfg.max_upload_bytes),
        readiness.clone(),
        metrics,
    );
    let bound = dive_http::bind(cfg.bind, cert.server_config()?).await?;
    let addr = bound.local_addr();
    readiness.set(true);

    let refresher = tokio::spawn(refresh_loop(
        state.clone(),
        cfg.catalog_poll,
        cfg.audit_retention_days,
    ));
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
        refresher.abort();
        state.audit.flush().await;
        drop(state);
        let _ = audit_task.await;
    });
    tracing::info!(%addr, instance = %cfg.instance, "resource service listening");
    Ok(Running {
        addr,
        store,
        stop: Some(tx),
        task,
    })
}

/// Pick up other writers' changes to the store, policy data changes, and prune the audit log.
async fn refresh_loop(state: Shared, poll: Duration, retention_days: u32) {
    let mut tick = tokio::time::interval(poll.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        if let Err(e) = state.refresh_catalog().await {
            tracing::warn!(error = %e, "catalog refresh failed; serving the previous catalog");
        }
        let access = state.access.clone();
        match tokio::task::spawn_blocking(move || access.pdp().reload_if_changed()).await {
            Ok(Ok(Some(v))) => tracing::info!(version = %v, "policy data reloaded"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "policy data reload failed; previous data stays")
            }
            _ => {}
        }
        if retention_days > 0 && last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600))
        {
            last_prune = Some(std::time::Instant::now());
            let before = crate::store::now_ms() - i64::from(retention_days) * 86_400_000;
            match state.store.prune_audit(before).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "old audit entries pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
            }
        }
    }
}

fn router(state: Shared, max_upload: usize) -> Router {
    Router::new()
        .route(
            "/api/resources",
            get(handlers::list)
                .post(handlers::upload)
                .layer(DefaultBodyLimit::max(
                    // The file part plus the label and text parts and multipart framing.
                    max_upload.saturating_add(256 * 1024),
                )),
        )
        .route(
            "/api/resources/federated-search",
            axum::routing::post(federated::federated_search),
        )
        .route(
            "/api/resources/{id}",
            get(handlers::get_resource).delete(handlers::delete_resource),
        )
        .route("/api/resources/{id}/download", get(handlers::download))
        .route("/api/audit", get(handlers::audit))
        .route("/api/audit/summary", get(handlers::audit_summary))
        .route("/api/openapi.json", get(handlers::openapi))
        .route("/live", get(|| async { "ok\n" }))
        .fallback(handlers::not_found)
        .with_state(state)
}
