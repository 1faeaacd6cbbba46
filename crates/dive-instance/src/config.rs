//! An instance's configuration (`$DIVE_HOME/instances/<code>/instance.json`) and where its files
//! live.
//!
//! Precedence when deploying: flags > `DIVE_*` environment > this file > defaults (the port
//! table). What a deployment resolved is written back, so the next deployment without flags
//! finds the same ports and settings.

use std::path::{Path, PathBuf};

use dive_core::CountryCode;
use serde::{Deserialize, Serialize};

use crate::error::{InstanceError, corrupt, io};
use crate::ports::{PortOverrides, Ports, Service};

/// The hub's country.
pub const HUB_CODE: &str = "USA";
/// The file format version written into `instance.json`.
pub const CONFIG_VERSION: u32 = 1;
/// Documents the hub's seed job creates by default.
pub const DEFAULT_HUB_SEED_COUNT: u32 = 5000;
/// Documents a spoke's seed job creates when `--seed` is given without a count.
pub const DEFAULT_SPOKE_SEED_COUNT: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Hub,
    Spoke,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Hub => "hub",
            Role::Spoke => "spoke",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The instance's URLs, as clients reach them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Urls {
    /// The IdP's issuer (`https://<public host>:<idp port>`, the public host `localhost` unless
    /// configured): what tokens carry in `iss` and what the policy data trusts.
    pub issuer: String,
    pub idp: String,
    pub api: String,
    /// The KAS base URL as ZTDF key access objects name it (`…/kas`; the protocol paths
    /// `/v2/kas_public_key` and `/v2/rewrap` follow it).
    pub kas: String,
    pub web: String,
    pub pdp: String,
}

impl Urls {
    /// The URLs of services reached at `host` (a DNS name or an IP address) on ports `p`. The
    /// decision API is local only.
    pub fn new(host: &str, p: &Ports) -> Urls {
        let h = url_host(host);
        Urls {
            issuer: format!("https://{h}:{}", p.idp),
            idp: format!("https://{h}:{}", p.idp),
            api: format!("https://{h}:{}", p.api),
            kas: format!("https://{h}:{}/kas", p.kas),
            web: format!("https://{h}:{}", p.web),
            pdp: format!("http://127.0.0.1:{}", p.pdp),
        }
    }
}

/// `host` as it goes into a URL (an IPv6 address in brackets).
pub fn url_host(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    }
}

/// The public host of an instance reached on this machine only.
pub const LOCAL_HOST: &str = "localhost";
/// The address services listen on unless configured.
pub const DEFAULT_BIND_HOST: &str = "127.0.0.1";

/// Whether and how the stack's `seed` job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedSettings {
    pub enabled: bool,
    /// ZTDF documents to create.
    pub count: u32,
    /// Makes the generated documents reproducible.
    pub seed_value: String,
}

/// `instance.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    pub version: u32,
    pub code: CountryCode,
    pub role: Role,
    /// Address the services listen on (an IP address; `0.0.0.0` or `::` for every interface).
    pub bind_host: String,
    /// The DNS name or IP address other machines reach this instance at (`--public-host`,
    /// `DIVE_PUBLIC_HOST`): it is the host of the instance's URLs and issuer, and the service
    /// certificates name it. `None`: `localhost`, one machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    pub ports: Ports,
    pub urls: Urls,
    pub seed: SeedSettings,
    /// Bumped by `rotate-secrets`: the services that hold client secrets see a new definition
    /// and are restarted by the next deployment.
    #[serde(default)]
    pub secrets_generation: u32,
}

impl InstanceConfig {
    /// A new instance's configuration from the table's defaults.
    pub fn new(code: CountryCode, role: Role) -> InstanceConfig {
        let ports = Ports::defaults(code);
        let count = match role {
            Role::Hub => DEFAULT_HUB_SEED_COUNT,
            Role::Spoke => DEFAULT_SPOKE_SEED_COUNT,
        };
        InstanceConfig {
            version: CONFIG_VERSION,
            code,
            role,
            bind_host: DEFAULT_BIND_HOST.to_string(),
            public_host: None,
            urls: Urls::new(LOCAL_HOST, &ports),
            ports,
            seed: SeedSettings {
                enabled: role == Role::Hub,
                count,
                seed_value: format!("dive-{}", code.as_str().to_lowercase()),
            },
            secrets_generation: 0,
        }
    }

    /// The stack (and supervisor) name: the code in lower case.
    pub fn stack_name(&self) -> String {
        stack_name(self.code)
    }

    /// The IdP audience of the instance's resource services.
    pub fn audience(&self) -> String {
        format!("dive-{}", self.code.as_str().to_lowercase())
    }

    /// Apply port overrides (URLs follow) and check the result.
    pub fn with_ports(
        mut self,
        overrides: &PortOverrides,
    ) -> Result<InstanceConfig, InstanceError> {
        self.ports = overrides.apply(self.ports);
        self.ports.validate(self.code)?;
        self.urls = Urls::new(self.public_host(), &self.ports);
        Ok(self)
    }

    /// Set the public host and the bind address, where given (`localhost` clears the public
    /// host); the URLs follow. Refuses a public host that is not a DNS name or IP address and a
    /// bind address that is not an IP address.
    pub fn with_hosts(
        mut self,
        public: Option<&str>,
        bind: Option<&str>,
    ) -> Result<InstanceConfig, InstanceError> {
        if let Some(h) = public {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if rustls_pki_types::ServerName::try_from(h.as_str()).is_err()
                || h.contains(':') && h.parse::<std::net::IpAddr>().is_err()
            {
                return Err(InstanceError::invalid(format!(
                    "public host {h:?} is not a DNS name or an IP address (no scheme or port: e.g. dive-fra.example.org or 192.0.2.10)"
                )));
            }
            self.public_host = (h != LOCAL_HOST).then_some(h);
        }
        if let Some(b) = bind {
            let ip: std::net::IpAddr = b.trim().parse().map_err(|_| {
                InstanceError::invalid(format!(
                    "bind host {b:?} is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)"
                ))
            })?;
            self.bind_host = ip.to_string();
        }
        self.urls = Urls::new(self.public_host(), &self.ports);
        Ok(self)
    }

    /// The host of the instance's URLs: the public host, or `localhost`.
    pub fn public_host(&self) -> &str {
        self.public_host.as_deref().unwrap_or(LOCAL_HOST)
    }

    /// Where clients on this machine (the orchestrator's health probes) reach the services, as
    /// a URL host: `localhost` when they listen on every interface or on 127.0.0.1, else the
    /// bind address.
    pub fn local_host(&self) -> String {
        match self.bind_host.parse::<std::net::IpAddr>() {
            Ok(ip)
                if !ip.is_unspecified()
                    && ip != std::net::Ipv4Addr::LOCALHOST
                    && ip != std::net::Ipv6Addr::LOCALHOST =>
            {
                url_host(&self.bind_host)
            }
            _ => LOCAL_HOST.to_string(),
        }
    }

    /// The names the service certificates must carry besides localhost and the loopback
    /// addresses: the public host, and the bind address when clients reach it directly.
    pub fn cert_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = self.public_host.iter().cloned().collect();
        let local = self.local_host();
        if local != LOCAL_HOST && !out.contains(&self.bind_host) {
            out.push(self.bind_host.clone());
        }
        out
    }

    pub fn url(&self, s: Service) -> &str {
        match s {
            Service::Idp => &self.urls.idp,
            Service::Api => &self.urls.api,
            Service::Kas => &self.urls.kas,
            Service::Web => &self.urls.web,
            Service::Pdp => &self.urls.pdp,
        }
    }
}

pub fn stack_name(code: CountryCode) -> String {
    code.as_str().to_lowercase()
}

/// Where an instance's files are.
#[derive(Debug, Clone)]
pub struct InstancePaths {
    pub home: PathBuf,
    pub code: CountryCode,
    /// `$DIVE_HOME/instances/<code>`.
    pub dir: PathBuf,
}

impl InstancePaths {
    pub fn new(home: &Path, code: CountryCode) -> InstancePaths {
        InstancePaths {
            home: home.to_path_buf(),
            code,
            dir: dive_idp::instance_dir(home, code),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("instance.json")
    }
    /// Client secrets, one JSON file per service (0600).
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.join("secrets")
    }
    pub fn client_secret(&self, service: &str) -> PathBuf {
        self.secrets_dir().join(format!("{service}-client.json"))
    }
    /// The PDP data documents of this instance (the `--policy-data` default of kas and api).
    pub fn policy_dir(&self) -> PathBuf {
        self.dir.join("policy")
    }
    /// The stack file the instance runs (the embedded one, written out for the operator).
    pub fn stack_file(&self) -> PathBuf {
        self.dir.join("stack.yml")
    }
    /// Test users' passwords (written by dive-idp, 0600).
    pub fn test_users(&self) -> PathBuf {
        self.dir.join("test-users.json")
    }
    /// Test users' TOTP secrets, recorded when `verify` enrols them (0600).
    pub fn test_users_totp(&self) -> PathBuf {
        self.dir.join("test-users-totp.json")
    }
    pub fn idp_db(&self) -> PathBuf {
        self.dir.join("idp.db")
    }
    /// Federation partners for federated search (`dive federation link` writes it).
    pub fn partners_file(&self) -> PathBuf {
        self.dir.join("federation").join("partners.json")
    }
    /// The federation registry of a hub (its links).
    pub fn federation_db(&self) -> PathBuf {
        self.dir.join("federation.db")
    }
    /// The lock link operations of a hub take (`dive-federation`).
    pub fn federation_lock(&self) -> PathBuf {
        self.dir.join("federation.lock")
    }
    /// What the last seed job stored (written by `dive seed`).
    pub fn seed_record(&self) -> PathBuf {
        self.dir.join("seed.json")
    }
    /// The result of the last verification.
    pub fn last_verify(&self) -> PathBuf {
        self.dir.join("last-verify.json")
    }
}

/// Read `instance.json`, if the instance was ever initialised.
pub fn load(paths: &InstancePaths) -> Result<Option<InstanceConfig>, InstanceError> {
    let path = paths.config();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let cfg: InstanceConfig = serde_json::from_str(&text).map_err(|e| corrupt(&path, e))?;
    if cfg.code != paths.code {
        return Err(corrupt(
            &path,
            format!("it describes instance {}, not {}", cfg.code, paths.code),
        ));
    }
    if cfg.version != CONFIG_VERSION {
        return Err(corrupt(
            &path,
            format!(
                "format version {} is not supported (expected {CONFIG_VERSION})",
                cfg.version
            ),
        ));
    }
    Ok(Some(cfg))
}

/// Write `instance.json` (atomically) if it differs from what is there. Returns whether it changed.
pub fn save(paths: &InstancePaths, cfg: &InstanceConfig) -> Result<bool, InstanceError> {
    let text = serde_json::to_string_pretty(cfg).map_err(|e| corrupt(&paths.config(), e))? + "\n";
    write_if_changed(&paths.config(), text.as_bytes(), 0o644)
}

/// Every initialised instance under `home`.
pub fn all(home: &Path) -> Result<Vec<InstanceConfig>, InstanceError> {
    let root = home.join("instances");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("read", &root)(e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_ascii_uppercase();
        let Ok(code) = CountryCode::new(&name) else {
            continue;
        };
        if let Some(cfg) = load(&InstancePaths::new(home, code))? {
            out.push(cfg);
        }
    }
    out.sort_by_key(|c| c.code);
    Ok(out)
}

/// The names every service certificate of the installation must carry (its instances share
/// them): each instance's [`InstanceConfig::cert_hosts`], sorted, without repeats.
pub fn installation_cert_hosts(home: &Path) -> Result<Vec<String>, InstanceError> {
    let mut hosts: Vec<String> = all(home)?
        .iter()
        .flat_map(InstanceConfig::cert_hosts)
        .collect();
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// Refuse ports that another instance of this installation already uses.
pub fn check_port_clashes(home: &Path, cfg: &InstanceConfig) -> Result<(), InstanceError> {
    for other in all(home)? {
        if other.code == cfg.code {
            continue;
        }
        if let Some((s, p, o)) = cfg.ports.clashes(&other.ports).into_iter().next() {
            return Err(InstanceError::invalid(format!(
                "{} {s} port {p} is already the {o} port of instance {}; choose another with --{s}-port or {}",
                cfg.code,
                other.code,
                PortOverrides::env_name(cfg.code, s)
            )));
        }
    }
    Ok(())
}

/// Write `bytes` to `path` through a temporary file and a rename, unless the file already holds
/// exactly these bytes. Returns whether the file changed.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, InstanceError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes, mode)?;
    Ok(true)
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstanceError> {
    let dir = path
        .parent()
        .ok_or_else(|| InstanceError::invalid(format!("{} has no directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    dive_pki::write_file(&tmp, bytes, mode)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("replace", path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_another_instances_file_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let usa = CountryCode::new("USA").unwrap();
        let paths = InstancePaths::new(home.path(), usa);
        assert!(load(&paths).unwrap().is_none());
        let cfg = InstanceConfig::new(usa, Role::Hub);
        assert_eq!(cfg.urls.issuer, "https://localhost:8443");
        assert!(cfg.seed.enabled);
        assert!(save(&paths, &cfg).unwrap());
        assert!(!save(&paths, &cfg).unwrap(), "unchanged: not rewritten");
        assert_eq!(load(&paths).unwrap(), Some(cfg.clone()));

        let fra = CountryCode::new("FRA").unwrap();
        let fra_paths = InstancePaths::new(home.path(), fra);
        std::fs::create_dir_all(&fra_paths.dir).unwrap();
        std::fs::copy(paths.config(), fra_paths.config()).unwrap();
        let e = load(&fra_paths).unwrap_err().to_string();
        assert!(e.contains("instance USA, not FRA"), "{e}");
    }

    #[test]
    fn a_public_host_names_the_urls_and_certificates_and_the_bind_address_stays_as_configured() {
        let fra = CountryCode::new("FRA").unwrap();
        let cfg = InstanceConfig::new(fra, Role::Spoke);
        assert_eq!(cfg.public_host(), "localhost");
        assert!(cfg.cert_hosts().is_empty());
        assert_eq!(cfg.local_host(), "localhost");

        let cfg = cfg.with_hosts(Some("Dive-FRA.Example.org."), None).unwrap();
        assert_eq!(cfg.public_host.as_deref(), Some("dive-fra.example.org"));
        assert_eq!(cfg.urls.issuer, "https://dive-fra.example.org:8453");
        assert_eq!(cfg.urls.kas, "https://dive-fra.example.org:8455/kas");
        assert_eq!(cfg.bind_host, "127.0.0.1", "not changed by the public host");
        assert_eq!(cfg.cert_hosts(), ["dive-fra.example.org"]);
        // Ports change later: the URLs keep the public host.
        let overrides = PortOverrides([(Service::Idp, 9553)].into_iter().collect());
        let cfg = cfg.with_ports(&overrides).unwrap();
        assert_eq!(cfg.urls.issuer, "https://dive-fra.example.org:9553");

        // Listening on every interface: probes go to localhost; on one address: to it, and the
        // certificates name it.
        let any = cfg.clone().with_hosts(None, Some("0.0.0.0")).unwrap();
        assert_eq!(any.local_host(), "localhost");
        assert_eq!(any.cert_hosts(), ["dive-fra.example.org"]);
        let one = cfg.clone().with_hosts(None, Some("192.0.2.7")).unwrap();
        assert_eq!(one.local_host(), "192.0.2.7");
        assert_eq!(one.cert_hosts(), ["dive-fra.example.org", "192.0.2.7"]);
        let v6 = cfg
            .clone()
            .with_hosts(Some("2001:db8::7"), Some("2001:db8::7"))
            .unwrap();
        assert_eq!(v6.urls.issuer, "https://[2001:db8::7]:9553");
        assert_eq!(v6.local_host(), "[2001:db8::7]");
        assert_eq!(v6.cert_hosts(), ["2001:db8::7"]);

        // `localhost` clears it; nonsense is refused naming what and why.
        let back = cfg.clone().with_hosts(Some("localhost"), None).unwrap();
        assert_eq!(back.public_host, None);
        assert_eq!(back.urls.issuer, "https://localhost:9553");
        for bad in ["https://x.example", "x.example:8443", "a b", ""] {
            let e = cfg
                .clone()
                .with_hosts(Some(bad), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("public host"), "{bad}: {e}");
        }
        let e = cfg
            .with_hosts(None, Some("example.org"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bind host \"example.org\" is not an IP address"),
            "{e}"
        );
    }

    #[test]
    fn a_spoke_may_not_take_the_hubs_ports() {
        let home = tempfile::tempdir().unwrap();
        let usa = CountryCode::new("USA").unwrap();
        let fra = CountryCode::new("FRA").unwrap();
        save(
            &InstancePaths::new(home.path(), usa),
            &InstanceConfig::new(usa, Role::Hub),
        )
        .unwrap();
        let ok = InstanceConfig::new(fra, Role::Spoke);
        check_port_clashes(home.path(), &ok).unwrap();
        let overrides = PortOverrides([(Service::Api, 8445)].into_iter().collect());
        let clash = InstanceConfig::new(fra, Role::Spoke)
            .with_ports(&overrides)
            .unwrap();
        let e = check_port_clashes(home.path(), &clash)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8445")
                && e.contains("kas port of instance USA")
                && e.contains("--api-port"),
            "{e}"
        );
    }
}
