//! How the UI of one instance is run, and what it reads from the instance at start-up: its URLs
//! (`instance.json`, written by INIT) and its confidential client's secret
//! (`secrets/web-client.json`, registered at the IdP by INIT).

use std::net::SocketAddr;
use std::path::PathBuf;

use dive_core::CountryCode;
use dive_instance::{InstancePaths, Role};

use crate::WebError;

/// The service's flags.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub instance: CountryCode,
    /// `$DIVE_HOME`: PKI, instance configuration and secrets live below it.
    pub home: PathBuf,
    pub bind: SocketAddr,
    /// The orchestration state store the operations pages read (`--state-url` /
    /// `DIVE_STATE_URL`); `None`: `$DIVE_HOME/state.db`.
    pub state_location: Option<String>,
}

impl WebConfig {
    pub fn new(instance: CountryCode, home: PathBuf) -> WebConfig {
        WebConfig {
            instance,
            home,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_location: None,
        }
    }
}

/// Where the operations pages read the instance's state: the installation's files (supervisor
/// socket, deployment reports, federation registry) and the orchestration state store.
#[derive(Debug, Clone)]
pub struct OpsSources {
    pub home: PathBuf,
    /// SQLite path or `postgres://` URL of the orchestration state store.
    pub state_location: String,
    /// The instance's stack (and supervisor) name, e.g. `usa`.
    pub stack: String,
    pub role: Role,
}

/// Everything the UI needs to know about its instance.
#[derive(Debug, Clone)]
pub struct Settings {
    pub instance: CountryCode,
    /// The IdP's issuer; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The resource API's base URL.
    pub api_url: String,
    /// The KAS's URL as key access objects name it (`…/kas`); its audit is under `/audit`.
    pub kas_url: String,
    /// The UI's own public base URL (redirect URIs are built from it).
    pub web_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// `federation/partners.json`: the partners offered on the sign-in page.
    pub partners_file: PathBuf,
    /// Refresh the user's tokens when the access token has less than this left (seconds).
    pub refresh_margin_secs: i64,
    pub ops: OpsSources,
}

impl Settings {
    /// Read the instance's configuration and the UI's client secret, failing with the file and
    /// what to do when the instance was never initialised.
    pub fn load(cfg: &WebConfig) -> Result<Settings, WebError> {
        let paths = InstancePaths::new(&cfg.home, cfg.instance);
        let instance = dive_instance::config::load(&paths)?.ok_or_else(|| {
            WebError::Config(format!(
                "instance {} is not initialised ({} is missing): deploy it first (`dive hub deploy` or `dive spoke deploy {}`)",
                cfg.instance,
                paths.config().display(),
                cfg.instance
            ))
        })?;
        let secret = dive_instance::secrets::read(&paths, "web")?;
        Ok(Settings {
            instance: cfg.instance,
            issuer: instance.urls.issuer.trim_end_matches('/').to_string(),
            api_url: instance.urls.api.trim_end_matches('/').to_string(),
            kas_url: instance.urls.kas.trim_end_matches('/').to_string(),
            web_url: instance.urls.web.trim_end_matches('/').to_string(),
            client_id: secret.client_id,
            client_secret: secret.client_secret,
            partners_file: paths.partners_file(),
            refresh_margin_secs: crate::session::REFRESH_MARGIN_SECS,
            ops: OpsSources {
                home: cfg.home.clone(),
                state_location: cfg
                    .state_location
                    .clone()
                    .filter(|l| !l.trim().is_empty())
                    .unwrap_or_else(|| cfg.home.join("state.db").display().to_string()),
                stack: instance.stack_name(),
                role: instance.role,
            },
        })
    }

    /// The registered redirect URI (`dive_instance::secrets::desired_client`).
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.web_url)
    }

    /// The registered post-logout redirect URI.
    pub fn post_logout_uri(&self) -> String {
        format!("{}/", self.web_url)
    }

    /// The session cookie's name: `__Host-` (Secure, Path=/, no Domain) and per instance,
    /// because browsers share cookies across the ports of one host.
    pub fn session_cookie(&self) -> String {
        format!("__Host-dive_web_{}", self.instance.as_str().to_lowercase())
    }

    /// The cookie that binds a pending sign-in to the browser that started it.
    pub fn login_cookie(&self) -> String {
        format!(
            "__Host-dive_web_login_{}",
            self.instance.as_str().to_lowercase()
        )
    }

    /// The origin (scheme://host:port) of a URL, for the CSP's `form-action`.
    pub fn origin_of(url: &str) -> Option<String> {
        let u = url::Url::parse(url).ok()?;
        Some(u.origin().ascii_serialization())
    }
}
