//! Checks of the instance's files: configuration, PKI, secrets, PDP data and policy.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use dive_core::{Clearance, Equivalency, SecurityLabel};
use dive_policy::{Input, Pdp, RequestContext};
use serde_json::json;

use super::{Ctx, Outcome, Recorder};
use crate::config;
use crate::secrets::{self, SECRET_SERVICES};

pub async fn run(ctx: &mut Ctx, rec: &mut Recorder<'_>) {
    let paths = ctx.paths.clone();
    let cfg = ctx.cfg.clone();
    rec.check(
        "config.instance",
        "instance.json describes this instance",
        async {
            match config::load(&paths) {
                Ok(Some(c)) if c == cfg => Outcome::Pass(format!(
                    "{} {} at {}",
                    c.role,
                    c.code,
                    paths.config().display()
                )),
                Ok(Some(_)) => Outcome::Fail(format!(
                    "{} differs from the deployed configuration; run deploy again",
                    paths.config().display()
                )),
                Ok(None) => Outcome::Fail(format!("{} is missing", paths.config().display())),
                Err(e) => Outcome::Fail(e.to_string()),
            }
        },
    )
    .await;
    rec.check(
        "config.ports",
        "ports are distinct and not used by another instance",
        async {
            cfg.ports
                .validate(cfg.code)
                .and_then(|()| config::check_port_clashes(&paths.home, &cfg))
                .map(|()| {
                    cfg.ports
                        .iter()
                        .map(|(s, p)| format!("{s} {p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
        },
    )
    .await;

    let home = paths.home.clone();
    rec.check(
        "pki.ca",
        "installation CA present, its key private",
        async {
            let pki = dive_pki::Pki::open(&home).map_err(|e| e.to_string())?;
            pki.root_store().map_err(|e| e.to_string())?;
            private(&pki.dir().join("ca/key.pem"))?;
            Ok::<_, String>(format!("{}", pki.ca_cert_path().display()))
        },
    )
    .await;
    let hosts = cfg.cert_hosts();
    let names = ["localhost", "127.0.0.1"]
        .into_iter()
        .chain(hosts.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    for name in ["idp", "kas", "api", "web"] {
        let (home, hosts) = (home.clone(), hosts.clone());
        rec.check(
            format!("pki.{name}"),
            format!("{name} certificate chains to the CA, valid for {names} for 30 more days"),
            async move { service_cert(&home, name, &hosts) },
        )
        .await;
    }

    for service in SECRET_SERVICES {
        let paths = paths.clone();
        rec.check(
            format!("secrets.{service}"),
            format!("{service} client secret present and 0600"),
            async move {
                secrets::read(&paths, service).map(|s| {
                    format!(
                        "client {} in {}",
                        s.client_id,
                        paths.client_secret(service).display()
                    )
                })
            },
        )
        .await;
    }
    rec.check(
        "secrets.files",
        "databases, passwords and private keys are 0600",
        async {
            let mut files = vec![paths.idp_db(), paths.test_users()];
            for name in crate::init::CERT_SERVICES {
                files.push(home.join("pki/services").join(name).join("key.pem"));
            }
            if paths.test_users_totp().exists() {
                files.push(paths.test_users_totp());
            }
            for f in &files {
                private(f)?;
            }
            Ok::<_, String>(format!("{} files", files.len()))
        },
    )
    .await;

    rec.check(
        "policy.data",
        "PDP data documents load, name this instance and trust its issuer",
        async {
            crate::policy::check(&paths, &cfg).map(|()| {
                format!(
                    "{} trusts {}",
                    paths.policy_dir().display(),
                    cfg.urls.issuer
                )
            })
        },
    )
    .await;
    let pdp = ctx.pdp();
    rec.check(
        "policy.decisions",
        "the policy decides with this data: own issuer allowed, foreign issuer refused",
        async { decisions(&pdp, &cfg) },
    )
    .await;
}

/// Mode 0600 or stricter.
fn private(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} has mode {mode:03o}; it must be 0600",
            path.display()
        ));
    }
    Ok(())
}

/// Verify a service certificate as a TLS client would: chain to the installation CA, names
/// `localhost`, `127.0.0.1` and the instance's public host (and specific bind address), valid now
/// and in 30 days.
fn service_cert(home: &Path, name: &str, hosts: &[String]) -> Result<String, String> {
    let pki = dive_pki::Pki::open(home).map_err(|e| e.to_string())?;
    let dir = pki.dir().join("services").join(name);
    if !dir.join("cert.pem").is_file() {
        return Err(format!("{} is missing", dir.join("cert.pem").display()));
    }
    let cert = pki.service(name).map_err(|e| e.to_string())?;
    pki.check_names(&cert, hosts)?;
    Ok(format!("{}", cert.cert_path.display()))
}

/// Compile the policies with the instance's data and decide two requests: a subject from this
/// instance's issuer reading an UNCLASSIFIED document releasable to its country (allow), and
/// the same subject from an issuer the instance does not trust (deny, untrusted issuer).
fn decisions(
    pdp: &Result<Arc<Pdp>, String>,
    cfg: &crate::InstanceConfig,
) -> Result<String, String> {
    let pdp = pdp.as_ref().map_err(Clone::clone)?;
    let eq = Equivalency::builtin();
    let label = eq
        .labels(cfg.code, Clearance::Secret)
        .into_iter()
        .next()
        .ok_or_else(|| format!("no SECRET label for {}", cfg.code))?;
    let claims = |iss: &str| {
        json!({
            "uniqueID": format!("verify@{}", cfg.code.as_str().to_lowercase()),
            "clearance": label,
            "countryOfAffiliation": cfg.code.as_str(),
            "acpCOI": [],
            "organizationType": "MIL",
            "acr": "2",
            "amr": ["pwd", "otp"],
            "iss": iss,
        })
    };
    let resource = dive_core::ResourceAttributes::from_label(
        "verify-doc",
        SecurityLabel::new(Clearance::Unclassified, [cfg.code]),
        false,
    );
    let decide = |iss: &str| -> Result<dive_policy::Decision, String> {
        let subject = dive_core::SubjectAttributes::from_claims(&claims(iss), eq)
            .map_err(|e| e.to_string())?;
        Ok(pdp.decide(&Input::new(
            &subject,
            "read",
            &resource,
            &RequestContext::default(),
        )))
    };
    let own = decide(&cfg.urls.issuer)?;
    if !own.allow {
        return Err(format!(
            "a subject of this instance's issuer was denied: {}",
            own.reason
        ));
    }
    let foreign = decide("https://foreign.invalid")?;
    if foreign.allow || !foreign.reason.starts_with("Untrusted token issuer") {
        return Err(format!(
            "a foreign issuer was not refused as untrusted: allow={} reason={}",
            foreign.allow, foreign.reason
        ));
    }
    Ok(format!(
        "policy version {}: own issuer allowed; foreign issuer: {}",
        pdp.version(),
        foreign.reason
    ))
}
