//! Health probes: run one check, bounded by its timeout; and the polling schedule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Probe;

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure(pub String);

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs probes. Holds the HTTP clients so that connections and TLS set-up are reused: one with
/// the system's roots, and one per CA file (rebuilt when the file changes).
#[derive(Default)]
pub struct Prober {
    http: std::sync::OnceLock<reqwest::Client>,
    with_ca: std::sync::Mutex<BTreeMap<PathBuf, (CaStamp, reqwest::Client)>>,
}

/// A CA file's identity: when it changes (rotation), the client trusting it is rebuilt.
type CaStamp = (u64, Option<std::time::SystemTime>);

impl Prober {
    /// Run `probe` once. Command probes get the service's environment and working directory,
    /// as compose runs them inside the service's container.
    pub async fn check(
        &self,
        probe: &Probe,
        timeout: Duration,
        env: &BTreeMap<String, String>,
        working_dir: &Path,
    ) -> Result<(), ProbeFailure> {
        let run = async {
            match probe {
                Probe::Cmd(argv) => run_command(argv, env, working_dir).await,
                Probe::Shell(script) => {
                    let argv = ["/bin/sh".to_string(), "-c".to_string(), script.clone()];
                    run_command(&argv, env, working_dir).await
                }
                Probe::Http { url, ca_file } => self.http_get(url, ca_file.as_deref()).await,
                Probe::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map(drop)
                    .map_err(|e| ProbeFailure(format!("tcp {addr}: {e}"))),
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(ProbeFailure(format!(
                "probe timed out after {}",
                crate::fmt::duration(timeout)
            ))),
        }
    }

    /// The client trusting only the certificates in `ca` (cached while the file is unchanged).
    fn client_for_ca(&self, ca: &Path) -> Result<reqwest::Client, ProbeFailure> {
        let meta = std::fs::metadata(ca)
            .map_err(|e| ProbeFailure(format!("CA file {}: {e}", ca.display())))?;
        let stamp = (meta.len(), meta.modified().ok());
        let mut cache = match self.with_ca.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((s, c)) = cache.get(ca)
            && *s == stamp
        {
            return Ok(c.clone());
        }
        let pem = std::fs::read(ca)
            .map_err(|e| ProbeFailure(format!("CA file {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ProbeFailure(format!(
                "CA file {}: not PEM certificates: {e}",
                ca.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(ProbeFailure(format!(
                "CA file {}: no certificate in it",
                ca.display()
            )));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .tls_certs_only(certs)
            .build()
            .map_err(|e| ProbeFailure(format!("CA file {}: {e}", ca.display())))?;
        cache.insert(ca.to_path_buf(), (stamp, client.clone()));
        Ok(client)
    }

    async fn http_get(&self, url: &str, ca: Option<&Path>) -> Result<(), ProbeFailure> {
        let client = match ca {
            Some(ca) => self.client_for_ca(ca)?,
            None => self
                .http
                .get_or_init(|| {
                    reqwest::Client::builder()
                        .no_proxy()
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap_or_default()
                })
                .clone(),
        };
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| ProbeFailure(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(ProbeFailure(format!("GET {url}: HTTP {status}")))
        }
    }
}

async fn run_command(
    argv: &[String],
    env: &BTreeMap<String, String>,
    working_dir: &Path,
) -> Result<(), ProbeFailure> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(ProbeFailure("empty probe command".into()));
    };
    let status = tokio::process::Command::new(prog)
        .args(args)
        .envs(env)
        .current_dir(working_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true) // a timed-out probe is killed when its future is dropped
        .status()
        .await
        .map_err(|e| ProbeFailure(format!("cannot run {prog}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ProbeFailure(format!("probe {prog} failed: {status}")))
    }
}

/// Delay before the next probe while a service is starting: a tenth of the time it has been
/// starting, at least 5 ms, at most `cap` (compose `start_interval`). Fast services are seen
/// within milliseconds, slow ones are detected within ~10% of their start time, and a service
/// that takes minutes is not hammered.
pub fn starting_delay(elapsed: Duration, cap: Duration) -> Duration {
    let floor = Duration::from_millis(5);
    (elapsed / 10).max(floor).min(cap.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_delay_grows_with_elapsed_time_and_is_capped() {
        let cap = Duration::from_secs(5);
        assert_eq!(
            starting_delay(Duration::ZERO, cap),
            Duration::from_millis(5)
        );
        assert_eq!(
            starting_delay(Duration::from_millis(300), cap),
            Duration::from_millis(30)
        );
        assert_eq!(starting_delay(Duration::from_secs(600), cap), cap);
        // A cap below the floor still polls, at the floor.
        assert_eq!(
            starting_delay(Duration::from_secs(1), Duration::ZERO),
            Duration::from_millis(5)
        );
    }

    #[tokio::test]
    async fn command_tcp_and_timeout_probes() {
        let p = Prober::default();
        let env = BTreeMap::new();
        let wd = std::env::temp_dir();
        let t = Duration::from_secs(5);
        assert!(
            p.check(&Probe::Cmd(vec!["true".into()]), t, &env, &wd)
                .await
                .is_ok()
        );
        assert!(
            p.check(&Probe::Shell("exit 3".into()), t, &env, &wd)
                .await
                .is_err()
        );
        let slow = p
            .check(
                &Probe::Shell("sleep 5".into()),
                Duration::from_millis(50),
                &env,
                &wd,
            )
            .await;
        assert!(slow.unwrap_err().0.contains("timed out"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(p.check(&Probe::Tcp(addr), t, &env, &wd).await.is_ok());
        drop(listener);
    }

    #[tokio::test]
    async fn an_unusable_ca_file_fails_the_probe_naming_the_file() {
        let p = Prober::default();
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(5);
        let probe = |ca: &Path| Probe::Http {
            url: "https://127.0.0.1:9/health".into(),
            ca_file: Some(ca.to_path_buf()),
        };
        let missing = dir.path().join("missing.pem");
        let e = p
            .check(&probe(&missing), t, &BTreeMap::new(), dir.path())
            .await
            .unwrap_err();
        assert!(e.0.contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = p
            .check(&probe(&junk), t, &BTreeMap::new(), dir.path())
            .await
            .unwrap_err();
        assert!(
            e.0.contains("junk.pem") && e.0.contains("no certificate"),
            "{e}"
        );
    }
}
