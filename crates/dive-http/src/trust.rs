//! HTTPS clients for talking to partners: they trust the installation CA plus every partner CA
//! registered through federation (`$DIVE_HOME/pki/partners/*.pem`). A long-running service holds
//! a [`TrustedClient`], which rebuilds its client when those files change, so a partner linked
//! while the service runs is reachable without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dive_watch::{Followed, Stamp};

use crate::HttpError;

/// How often a [`TrustedClient`] looks at the CA files again (a stat of a few files).
const RECHECK: Duration = Duration::from_secs(1);
/// Request timeout of the clients built here.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The installation CA and the partner CAs of `home`, as certificates a client trusts. An
/// unreadable installation CA is an error; a partner file that does not parse is skipped with a
/// warning naming it (that partner is then simply not trusted: fail closed).
pub fn trusted_certs(home: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let ca = dive_pki::partners::installation_ca_path(home);
    let pem = std::fs::read(&ca).map_err(|source| dive_pki::PkiError::Io {
        action: "read",
        path: ca.display().to_string(),
        source,
    })?;
    let mut certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| HttpError::Client(format!("{}: {e}", ca.display())))?;
    for file in dive_pki::partners::partner_ca_files(home)? {
        match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|p| reqwest::Certificate::from_pem_bundle(&p).map_err(|e| e.to_string()))
        {
            Ok(c) => certs.extend(c),
            Err(e) => tracing::warn!(file = %file.display(), error = %e,
                "partner CA not trusted: the file cannot be read as PEM certificates"),
        }
    }
    Ok(certs)
}

/// A client trusting exactly `certs` (no system roots), without redirects.
pub fn client_trusting(certs: Vec<reqwest::Certificate>) -> Result<reqwest::Client, HttpError> {
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| HttpError::Client(e.to_string()))
}

/// A one-off client trusting the installation CA and every partner CA of `home` (for commands).
pub fn partner_client(home: &Path) -> Result<reqwest::Client, HttpError> {
    client_trusting(trusted_certs(home)?)
}

/// What the CA files look like now.
fn stamp(home: &Path) -> Stamp {
    let mut files = vec![dive_pki::partners::installation_ca_path(home)];
    files.extend(dive_pki::partners::partner_ca_files(home).unwrap_or_default());
    Stamp::of(files)
}

/// A client and its generation, bumped on every rebuild.
type Generation = (reqwest::Client, u64);

/// A client for a long-running service that follows the installation's partner CAs: cheap to
/// clone; [`TrustedClient::get`] returns the current client, rebuilt when a CA file was added,
/// changed or removed (looked at no more than once a second).
#[derive(Clone)]
pub struct TrustedClient {
    home: Arc<PathBuf>,
    client: Arc<Followed<Generation>>,
}

impl std::fmt::Debug for TrustedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedClient")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl TrustedClient {
    /// Build the client now; fails when the installation CA cannot be read.
    pub fn new(home: &Path) -> Result<TrustedClient, HttpError> {
        let stamp = stamp(home);
        let client = partner_client(home)?;
        Ok(TrustedClient {
            home: Arc::new(home.to_path_buf()),
            client: Arc::new(Followed::new((client, 0), stamp, RECHECK)),
        })
    }

    /// The current client. When the CA files changed it is rebuilt; should that fail (the
    /// installation CA became unreadable), the previous client stays in use and the failure is
    /// logged: it never trusts more than the files said when it was built.
    pub fn get(&self) -> reqwest::Client {
        self.current().0
    }

    /// The current client and its generation, which changes whenever the client is rebuilt: a
    /// component that keeps the client (or a connection or cache made with it) rebuilds what
    /// it keeps when the generation changes.
    pub fn current(&self) -> (reqwest::Client, u64) {
        let now = self.client.current(
            || stamp(&self.home),
            |previous| match partner_client(&self.home) {
                Ok(client) => {
                    tracing::info!(home = %self.home.display(), "CA files changed: HTTPS client rebuilt");
                    Some((client, previous.1 + 1))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CA files changed but the HTTPS client could not be rebuilt");
                    None
                }
            },
        );
        (now.0.clone(), now.1)
    }
}

/// Where a component gets its HTTPS client: a fixed one (tests, tools) or one following the
/// installation's partner CAs.
#[derive(Clone, Debug)]
pub enum HttpsSource {
    Fixed(reqwest::Client),
    Trusted(TrustedClient),
}

impl HttpsSource {
    pub fn get(&self) -> reqwest::Client {
        self.current().0
    }

    /// The client and its generation (see [`TrustedClient::current`]; a fixed client's never
    /// changes).
    pub fn current(&self) -> (reqwest::Client, u64) {
        match self {
            HttpsSource::Fixed(c) => (c.clone(), 0),
            HttpsSource::Trusted(t) => t.current(),
        }
    }
}

impl From<reqwest::Client> for HttpsSource {
    fn from(c: reqwest::Client) -> Self {
        HttpsSource::Fixed(c)
    }
}

impl From<TrustedClient> for HttpsSource {
    fn from(c: TrustedClient) -> Self {
        HttpsSource::Trusted(c)
    }
}
