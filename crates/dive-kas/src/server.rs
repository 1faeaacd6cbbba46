//! The HTTPS server: configuration, start-up (keys, PDP, authenticator, audit), the REST and
//! Connect RPC routes, and the outward error shapes.
//!
//! Outward responses of a rewrap, precisely:
//! - no `Authorization` header: 401 `unauthenticated` (nothing was judged);
//! - the token cannot be checked right now (issuer discovery/JWKS or the revocation list out of
//!   reach): 503 `unavailable`;
//! - a malformed request (body, signed request token, client key, KAO structure): 400
//!   `invalid_argument` naming the field — decided before any key is touched, and the same
//!   whoever sends it;
//! - otherwise 200, and every KAO is `permit` or `fail` with `error: "forbidden"`. A token that is
//!   invalid, expired, revoked, of an untrusted issuer or without coalition claims gets exactly
//!   the answer of a valid user the PDP denies, or of a KAO whose binding fails or whose key is
//!   unknown. The real reason is only in the audit log.
//! - the audit rows cannot be committed: 503 `unavailable`, nothing released.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dive_authn::{Authenticator, AuthnConfig, AuthnError, RevocationSource};
use dive_core::CountryCode;
use dive_policy::{Pdp, Sources};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{AuditError, AuditLog, AuditRow};
use crate::keys::{KeyAlgorithm, KeyError, KeyStore};
use crate::rewrap::{Authenticated, Caller, Engine, KeyService, Outcome};
use crate::wire::{self, RequestError, UnsignedRewrap};
use crate::{proto, srt};

/// Requests larger than this are refused (a rewrap request is a few KiB).
const MAX_BODY: usize = 1 << 20;
/// KAOs above which the rewrap runs on the blocking pool instead of the request's worker thread.
const INLINE_KAOS: usize = 8;
/// How often keys and policy data are checked for changes on disk.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Errors starting the KAS.
#[derive(Debug, thiserror::Error)]
pub enum KasError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("policy: {0}")]
    Policy(#[from] dive_policy::PolicyError),
    #[error("authentication: {0}")]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Pki(#[from] dive_pki::PkiError),
    #[error(transparent)]
    Http(#[from] dive_http::HttpError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// How the KAS of one instance is run.
#[derive(Debug, Clone)]
pub struct KasConfig {
    pub instance: CountryCode,
    /// `$DIVE_HOME`: PKI, keys, secrets and the default database live below it.
    pub home: PathBuf,
    pub bind: SocketAddr,
    /// PDP data directory; default `$DIVE_HOME/instances/<code>/policy/` when it exists, else the
    /// data embedded in the binary. Its `trusted_issuers.json` lists the issuers the KAS trusts.
    pub policy_data: Option<PathBuf>,
    /// A `postgres://` URL or SQLite path; default `$DIVE_HOME/instances/<code>/kas.db`.
    pub database: Option<String>,
    /// Clock skew tolerated on access tokens and signed request tokens, seconds.
    pub leeway_secs: i64,
    /// Audit rows older than this many days are deleted, hourly (0 keeps everything).
    pub audit_retention_days: u32,
}

/// Key releases are kept a year by default: long enough for an investigation of who obtained
/// which document's key, bounded so the log does not grow for ever.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 365;
/// How often old audit rows are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

impl KasConfig {
    pub fn new(instance: CountryCode, home: PathBuf) -> KasConfig {
        KasConfig {
            instance,
            home,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            policy_data: None,
            database: None,
            leeway_secs: 30,
            audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
        }
    }

    /// `$DIVE_HOME/instances/<code lower-case>`.
    pub fn instance_dir(&self) -> PathBuf {
        self.home
            .join("instances")
            .join(self.instance.as_str().to_lowercase())
    }

    pub fn key_store(&self) -> KeyStore {
        KeyStore::for_instance(&self.home, self.instance)
    }

    pub fn database_location(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.instance_dir().join("kas.db").display().to_string())
    }

    /// The policy data directory in use, `None` for the embedded data.
    pub fn policy_data_dir(&self) -> Option<PathBuf> {
        self.policy_data.clone().or_else(|| {
            let d = self.instance_dir().join("policy");
            d.is_dir().then_some(d)
        })
    }

    /// `$DIVE_HOME/instances/<code>/secrets/kas-client.json`: the KAS's client credentials at the
    /// instance IdP, used to read the revocation list.
    pub fn client_secrets_file(&self) -> PathBuf {
        self.instance_dir().join("secrets").join("kas-client.json")
    }

    /// The audience instance tokens carry (`dive-<code>`, as the IdP mints them).
    pub fn audience(&self) -> String {
        format!("dive-{}", self.instance.as_str().to_lowercase())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

struct AppState {
    engine: Arc<Engine>,
    authn: Authenticator,
    audit: AuditLog,
    leeway: i64,
    kaos: Family<ResultLabel, Counter>,
    requests: Family<OutcomeLabel, Counter>,
}

type Shared = Arc<AppState>;

/// A running KAS.
pub struct Running {
    pub addr: SocketAddr,
    /// The KAS URL to put in KAOs: `https://localhost:<port>/kas`.
    pub url: String,
    pub engine: Arc<Engine>,
    pub audit: AuditLog,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    reload: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, drain, and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        self.reload.abort();
    }

    /// Wait until the server ends (after SIGTERM/SIGINT when started with signals).
    pub async fn wait(self) {
        let _ = self.task.await;
        self.reload.abort();
    }
}

/// The trusted-issuers file the authenticator reads: the data directory's, or the embedded
/// default written out under the key directory (so both paths behave alike).
fn trusted_issuers_file(cfg: &KasConfig, data_dir: Option<&PathBuf>) -> Result<PathBuf, KasError> {
    if let Some(d) = data_dir {
        let f = d.join("trusted_issuers.json");
        if f.exists() {
            return Ok(f);
        }
    }
    let snapshot = Sources::embedded().load()?;
    let doc = snapshot
        .data
        .pointer("/dive/trusted_issuers")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let path = cfg.key_store().dir().join("trusted_issuers.embedded.json");
    dive_pki::write_file(&path, doc.to_string().as_bytes(), 0o644)?;
    Ok(path)
}

/// The instance's own issuer: the trusted issuer whose `instance` is this instance.
fn own_issuer(file: &PathBuf, instance: CountryCode) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    doc.as_object()?
        .iter()
        .find(|(_, v)| v.get("instance").and_then(Value::as_str) == Some(instance.as_str()))
        .map(|(k, _)| k.clone())
}

/// Start the KAS: keys (generated on first start), PDP, authenticator, audit log, TLS. Runs until
/// [`Running::stop`] or, when `on_signals`, SIGTERM/SIGINT.
pub async fn start(cfg: KasConfig, on_signals: bool) -> Result<Running, KasError> {
    let pki = dive_pki::Pki::open(&cfg.home)?;
    let cert = pki.service("kas")?;
    let keys = KeyService::open(cfg.key_store())?;
    let data_dir = cfg.policy_data_dir();
    let pdp = Arc::new(Pdp::new(Sources {
        policy_dir: None,
        data_dir: data_dir.clone(),
    })?);
    // Partners' JWKS may sit behind another installation's CA (followed without a restart).
    let http = dive_http::TrustedClient::new(&cfg.home)?;
    let issuers_file = trusted_issuers_file(&cfg, data_dir.as_ref())?;
    let mut authn_cfg = AuthnConfig::new(http, &issuers_file)
        .with_audience(cfg.audience())
        .accepting_partner_tokens(cfg.instance.as_str());
    authn_cfg.leeway_secs = cfg.leeway_secs;
    let secrets = cfg.client_secrets_file();
    if secrets.exists() {
        match own_issuer(&issuers_file, cfg.instance) {
            Some(issuer) => {
                authn_cfg =
                    authn_cfg.with_revocation(RevocationSource::from_file(issuer, &secrets)?);
            }
            None => tracing::warn!(
                file = %issuers_file.display(),
                "no trusted issuer belongs to this instance: revocations are not checked"
            ),
        }
    } else {
        tracing::warn!(
            file = %secrets.display(),
            "no KAS client credentials: the IdP's revocation list is not checked"
        );
    }
    let authn = Authenticator::new(authn_cfg)?;
    let audit = AuditLog::open(&cfg.database_location()).await?;
    let bound = dive_http::bind(cfg.bind, cert.server_config()?).await?;
    let addr = bound.local_addr();
    let engine = Arc::new(Engine::new(keys, pdp));

    let metrics = dive_http::Metrics::new("dive_kas");
    let kaos = Family::<ResultLabel, Counter>::default();
    let requests = Family::<OutcomeLabel, Counter>::default();
    metrics.register(
        "rewrap_kaos",
        "Key access objects processed by rewrap, by result (permit, fail)",
        kaos.clone(),
    );
    metrics.register(
        "rewrap_requests",
        "Rewrap requests by outcome (ok, bad_request, unauthenticated, unavailable)",
        requests.clone(),
    );
    let audit_api = crate::audit_api::AuditApi {
        authn: authn.clone(),
        pdp: engine.pdp.clone(),
        log: audit.clone(),
        instance: cfg.instance,
    };
    let state = Arc::new(AppState {
        engine: engine.clone(),
        authn,
        audit: audit.clone(),
        leeway: cfg.leeway_secs,
        kaos,
        requests,
    });
    let readiness = dive_http::Readiness::default();
    let app = dive_http::with_operations(
        router(state).merge(crate::audit_api::routes(audit_api)),
        readiness.clone(),
        metrics,
    );
    readiness.set(true);

    let reload = {
        let engine = engine.clone();
        let audit = audit.clone();
        let retention_days = cfg.audit_retention_days;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            let mut last_prune: Option<Instant> = None;
            loop {
                tick.tick().await;
                if retention_days > 0 && last_prune.is_none_or(|t| t.elapsed() > PRUNE_INTERVAL) {
                    last_prune = Some(Instant::now());
                    prune(&audit, retention_days).await;
                }
                match engine.keys.reload_if_changed() {
                    Ok(true) => tracing::info!("KAS keys reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "KAS keys not reloaded; the keys in force stay")
                    }
                }
                if let Err(e) = engine.pdp.reload_if_changed() {
                    tracing::error!(error = %e, "policy data not reloaded; the data in force stays");
                }
            }
        })
    };
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
    let url = format!("https://localhost:{}/kas", addr.port());
    tracing::info!(%addr, %url, keys = %engine.keys.store().dir().display(), "key access service listening");
    Ok(Running {
        addr,
        url,
        engine,
        audit,
        stop: Some(tx),
        task,
        reload,
    })
}

/// Delete audit rows older than `days`.
async fn prune(audit: &AuditLog, days: u32) {
    let before = dive_jose::now() * 1000 - i64::from(days) * 86_400_000;
    match audit.prune(before).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, days, "old KAS audit rows pruned"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning the KAS audit log failed"),
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/kas/v2/kas_public_key", get(rest_public_key))
        .route("/kas/kas_public_key", get(rest_legacy_public_key))
        .route("/kas/v2/rewrap", post(rest_rewrap))
        .route("/kas.AccessService/PublicKey", post(connect_public_key))
        .route("/kas.AccessService/Rewrap", post(connect_rewrap))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error answer in Connect's shape (`{code, message}`), used by the REST routes too.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_argument",
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            body["field"] = Value::String(f);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Public key

#[derive(Debug, Default, Deserialize)]
struct PublicKeyQuery {
    algorithm: Option<String>,
    fmt: Option<String>,
}

fn public_key(
    state: &AppState,
    algorithm: Option<&str>,
    fmt: Option<&str>,
) -> Result<wire::PublicKeyResponse, ApiError> {
    let algorithm = match algorithm.filter(|a| !a.is_empty()) {
        None => KeyAlgorithm::Rsa2048,
        Some(a) => KeyAlgorithm::parse(a).ok_or_else(|| {
            ApiError::from(RequestError::new(
                "algorithm",
                format!("{a:?} is not served here; use rsa:2048 or ec:secp256r1"),
            ))
        })?,
    };
    let ring = state.engine.keys.ring();
    let key = ring
        .current(algorithm)
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no key"))?;
    let public_key = match fmt.filter(|f| !f.is_empty()) {
        None | Some("pkcs8") | Some("pem") => key.public_pem.clone(),
        Some("jwk") => key.public_jwk().to_string(),
        Some(other) => {
            return Err(RequestError::new(
                "fmt",
                format!("{other:?} is not a key format; use pkcs8 or jwk"),
            )
            .into());
        }
    };
    Ok(wire::PublicKeyResponse {
        public_key,
        kid: key.kid.clone(),
    })
}

async fn rest_public_key(
    State(state): State<Shared>,
    q: Result<Query<PublicKeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<wire::PublicKeyResponse>, ApiError> {
    let Query(q) = q.map_err(|e| RequestError::new("query", e.body_text()))?;
    public_key(&state, q.algorithm.as_deref(), q.fmt.as_deref()).map(axum::Json)
}

/// The pre-v2 endpoint: the PEM as a JSON string.
async fn rest_legacy_public_key(
    State(state): State<Shared>,
    q: Result<Query<PublicKeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<String>, ApiError> {
    let Query(q) = q.map_err(|e| RequestError::new("query", e.body_text()))?;
    public_key(&state, q.algorithm.as_deref(), None).map(|r| axum::Json(r.public_key))
}

// ---------------------------------------------------------------------------------------------
// Connect RPC

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

impl Codec {
    fn transport(self) -> &'static str {
        match self {
            Codec::Json => "connect+json",
            Codec::Proto => "connect+proto",
        }
    }
}

/// Check the Connect unary request headers and pick the codec.
fn connect_codec(headers: &HeaderMap) -> Result<Codec, ApiError> {
    if let Some(v) = headers.get("connect-protocol-version")
        && v.as_bytes() != b"1"
    {
        return Err(RequestError::new(
            "connect-protocol-version",
            "only Connect protocol version 1 is supported",
        )
        .into());
    }
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unimplemented",
            "compressed requests are not supported; send identity encoding",
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" => Ok(Codec::Json),
        "application/proto" => Ok(Codec::Proto),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unimplemented",
            format!(
                "content-type {ct:?} is not supported; use application/json or application/proto"
            ),
        )),
    }
}

fn encoded<M: Message>(codec: Codec, json: Value, msg: impl FnOnce() -> M) -> Response {
    match codec {
        Codec::Json => axum::Json(json).into_response(),
        Codec::Proto => (
            [(header::CONTENT_TYPE, "application/proto")],
            msg().encode_to_vec(),
        )
            .into_response(),
    }
}

async fn connect_public_key(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let codec = connect_codec(&headers)?;
    let req = match codec {
        Codec::Proto => proto::PublicKeyRequest::decode(body.as_ref())
            .map_err(|e| RequestError::new("body", format!("not a kas.PublicKeyRequest: {e}")))?,
        Codec::Json => {
            let v: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| RequestError::new("body", format!("not JSON: {e}")))?
            };
            let s = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            proto::PublicKeyRequest {
                algorithm: s("algorithm"),
                fmt: s("fmt"),
                v: s("v"),
            }
        }
    };
    let r = public_key(&state, Some(&req.algorithm), Some(&req.fmt))?;
    let json = serde_json::to_value(&r).unwrap_or(Value::Null);
    Ok(encoded(codec, json, || proto::PublicKeyResponse {
        public_key: r.public_key.clone(),
        kid: r.kid.clone(),
    }))
}

async fn connect_rewrap(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let codec = match connect_codec(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let srt = match codec {
        Codec::Proto => proto::RewrapRequest::decode(body.as_ref())
            .map(|r| r.signed_request_token)
            .map_err(|e| RequestError::new("body", format!("not a kas.RewrapRequest: {e}"))),
        Codec::Json => parse_json_rewrap(&body),
    };
    match rewrap(&state, &headers, peer, codec.transport(), srt, started).await {
        Ok(outcome) => {
            let json = serde_json::to_value(&outcome.response).unwrap_or(Value::Null);
            encoded(codec, json, || {
                proto::RewrapResponse::from_wire(&outcome.response)
            })
        }
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Rewrap

fn parse_json_rewrap(body: &[u8]) -> Result<String, RequestError> {
    let r: wire::RewrapRequest = serde_json::from_slice(body).map_err(|e| {
        RequestError::new(
            "signedRequestToken",
            format!("the body must be JSON {{\"signedRequestToken\": \"<JWT>\"}}: {e}"),
        )
    })?;
    Ok(r.signed_request_token)
}

async fn rest_rewrap(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let srt = parse_json_rewrap(&body);
    match rewrap(&state, &headers, peer, "rest", srt, started).await {
        Ok(outcome) => axum::Json(outcome.response).into_response(),
        Err(e) => e.into_response(),
    }
}

fn request_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 12];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The `iss` and `sub` a refused token claims, for the audit only (never trusted).
fn claimed_identity(header: Option<&str>) -> String {
    use base64::Engine;
    let claims = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .and_then(|t| t.trim().split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match claims {
        Some(c) => format!(
            " (claimed iss {:?}, sub {:?})",
            c.get("iss").and_then(Value::as_str).unwrap_or("-"),
            c.get("sub").and_then(Value::as_str).unwrap_or("-")
        ),
        None => String::new(),
    }
}

/// Everything common to the REST and Connect rewrap: authenticate, check the signed request
/// token, parse, decide and rewrap, audit (committed before answering), count.
async fn rewrap(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    transport: &'static str,
    srt: Result<String, RequestError>,
    started: Instant,
) -> Result<Outcome, ApiError> {
    let rid = request_id();
    let base = AuditRow {
        request_id: rid,
        at_ms: now_ms(),
        transport: transport.to_string(),
        peer: Some(peer.ip().to_string()),
        ..AuditRow::default()
    };
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = decide(state, auth_header, srt).await;
    let latency_us = started.elapsed().as_micros() as i64;
    match result {
        Ok((outcome, caller, srt_key)) => {
            let (subject, issuer, jti, client_id) = match &caller {
                Caller::Authenticated(a) => (
                    Some(a.attributes.unique_id.clone()),
                    Some(a.issuer.clone()),
                    a.jti.clone(),
                    a.client_id.clone(),
                ),
                Caller::Rejected { .. } => (None, None, None, None),
            };
            let rows: Vec<AuditRow> = outcome
                .decisions
                .iter()
                .enumerate()
                .map(|(i, d)| AuditRow {
                    seq: i as i64,
                    subject: subject.clone(),
                    issuer: issuer.clone(),
                    jti: jti.clone(),
                    client_id: client_id.clone(),
                    srt_key: Some(srt_key.clone()),
                    policy_id: Some(d.policy_id.clone()),
                    policy_uuid: d.policy_uuid.clone(),
                    kao_id: Some(d.kao_id.clone()),
                    kid: d.kid.clone(),
                    algorithm: Some(d.algorithm.clone()),
                    decision: if d.permit { wire::PERMIT } else { wire::FAIL }.to_string(),
                    reason: d.reason.clone(),
                    latency_us,
                    ..base.clone()
                })
                .collect();
            if let Err(e) = state.audit.record(rows).await {
                count(&state.requests, "unavailable");
                tracing::error!(error = %e, "rewrap refused: the audit log cannot be written");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the KAS cannot record this request right now; nothing was released",
                ));
            }
            let permits = outcome.decisions.iter().filter(|d| d.permit).count() as u64;
            let fails = outcome.decisions.len() as u64 - permits;
            state
                .kaos
                .get_or_create(&label(wire::PERMIT))
                .inc_by(permits);
            state.kaos.get_or_create(&label(wire::FAIL)).inc_by(fails);
            count(&state.requests, "ok");
            // The v1 shape answers with one key or an error, as OpenTDF's KAS does.
            if outcome.legacy_v1 && outcome.response.entity_wrapped_key.is_none() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "permission_denied",
                    wire::FAIL_MESSAGE,
                ));
            }
            Ok(outcome)
        }
        Err((err, reason)) => {
            let outcome = match err.status {
                StatusCode::BAD_REQUEST => "bad_request",
                StatusCode::UNAUTHORIZED => "unauthenticated",
                _ => "unavailable",
            };
            count(&state.requests, outcome);
            let row = AuditRow {
                decision: "rejected".to_string(),
                reason,
                latency_us,
                ..base
            };
            if let Err(e) = state.audit.record(vec![row]).await {
                tracing::error!(error = %e, "cannot audit a refused rewrap request");
            }
            Err(err)
        }
    }
}

fn label(result: &str) -> ResultLabel {
    ResultLabel {
        result: result.to_string(),
    }
}

fn count(f: &Family<OutcomeLabel, Counter>, outcome: &str) {
    f.get_or_create(&OutcomeLabel {
        outcome: outcome.to_string(),
    })
    .inc();
}

type Decided = (Outcome, Caller, String);

/// Authenticate, verify and parse, then run the engine. `Err` carries the outward error and the
/// reason for the audit.
async fn decide(
    state: &AppState,
    auth_header: Option<&str>,
    srt: Result<String, RequestError>,
) -> Result<Decided, (ApiError, String)> {
    let Some(auth) = auth_header else {
        let e = AuthnError::Missing;
        return Err((
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()),
            e.to_string(),
        ));
    };
    let caller = match state.authn.authenticate_header(Some(auth)).await {
        Ok(p) => {
            let claim = |k: &str| p.claims.get(k).and_then(Value::as_str).map(str::to_string);
            let bound_jkt = p
                .claims
                .get("cnf")
                .and_then(|c| c.get("jkt"))
                .and_then(Value::as_str)
                .map(str::to_string);
            Caller::Authenticated(Arc::new(Authenticated {
                client_id: claim("client_id").or_else(|| claim("azp")),
                issuer: p.issuer,
                subject: p.subject,
                jti: p.jti,
                bound_jkt,
                attributes: p.attributes,
            }))
        }
        Err(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "cannot verify tokens");
            return Err((
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "access tokens cannot be verified right now; retry later",
                ),
                e.to_string(),
            ));
        }
        Err(e) => Caller::Rejected {
            reason: format!("access token refused: {e}{}", claimed_identity(Some(auth))),
        },
    };
    let bad = |e: RequestError| {
        let reason = e.to_string();
        (ApiError::from(e), reason)
    };
    let srt = srt.map_err(bad)?;
    let bound = match &caller {
        Caller::Authenticated(a) => a.bound_jkt.clone(),
        Caller::Rejected { .. } => None,
    };
    let signed =
        srt::verify(&srt, bound.as_deref(), dive_jose::now(), state.leeway).map_err(bad)?;
    let req = UnsignedRewrap::parse(&signed.request_body).map_err(bad)?;
    let engine = state.engine.clone();
    let outcome = if req.kao_count() <= INLINE_KAOS {
        engine.rewrap(&caller, &req)
    } else {
        let c = caller.clone();
        tokio::task::spawn_blocking(move || engine.rewrap(&c, &req))
            .await
            .map_err(|e| {
                (
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error",
                    ),
                    format!("rewrap task failed: {e}"),
                )
            })?
    }
    .map_err(bad)?;
    Ok((outcome, caller, signed.key.describe()))
}
