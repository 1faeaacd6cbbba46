//! Checks of the running services: the supervisor's view of each, and each HTTPS endpoint
//! reached directly (TLS verified against the installation CA only).

use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::supervisor::Client;
use dive_orchestrator::supervisor::protocol::{Health, ServiceState, StackStatus};

use super::{Ctx, Outcome, Recorder};

pub async fn run(ctx: &mut Ctx, rec: &mut Recorder<'_>) {
    let paths = StackPaths::new(&ctx.paths.home, &ctx.cfg.stack_name());
    let status: Result<StackStatus, String> = async {
        let mut c = Client::connect(&paths).await.map_err(|e| e.to_string())?;
        c.status().await.map_err(|e| e.to_string())
    }
    .await;
    // After `down` and a new supervisor the seed job is unknown to it; SEED skipped it because
    // its last run's documents are in the store, which is what this check then looks at.
    let seed_done = if ctx.planned.iter().any(|s| s.init_job) {
        Some(crate::seed_record::seed_done(&ctx.paths, &ctx.cfg).await)
    } else {
        None
    };
    for svc in ctx.planned.clone() {
        let title = if svc.init_job {
            format!("{} job completed successfully", svc.name)
        } else {
            format!("{} running and healthy under the supervisor", svc.name)
        };
        let outcome = match &status {
            Err(e) => Outcome::Fail(format!(
                "the stack's supervisor is not reachable ({e}); run deploy"
            )),
            Ok(st) => match st.services.iter().find(|s| s.name == svc.name) {
                None if svc.init_job && svc.name == "seed" => match &seed_done {
                    Some(Ok(found)) => {
                        Outcome::Pass(format!("not run by this supervisor: {found}"))
                    }
                    Some(Err(why)) => Outcome::Fail(format!(
                        "not known to the supervisor, and {why}; run deploy"
                    )),
                    None => Outcome::Fail("not known to the supervisor; run deploy".into()),
                },
                None => Outcome::Fail("not known to the supervisor; run deploy".into()),
                Some(s) if svc.init_job => match s.state {
                    ServiceState::Completed => Outcome::Pass("exited 0".into()),
                    other => Outcome::Fail(format!(
                        "{}{}",
                        other.as_str(),
                        s.last_exit
                            .as_ref()
                            .map(|e| format!(" ({})", e.describe()))
                            .unwrap_or_default()
                    )),
                },
                Some(s) => match (s.state, s.health) {
                    (ServiceState::Running, Health::Healthy | Health::None) => {
                        Outcome::Pass(format!(
                            "pid {}, {} restart{}",
                            s.pid.map_or("-".into(), |p| p.to_string()),
                            s.restarts,
                            if s.restarts == 1 { "" } else { "s" }
                        ))
                    }
                    (state, health) => Outcome::Fail(format!(
                        "{} / {}{}; see `{} {}`",
                        state.as_str(),
                        health.as_str(),
                        s.note
                            .as_ref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default(),
                        crate::deploy::instance_cmd(&ctx.cfg, "logs"),
                        svc.name
                    )),
                },
            },
        };
        rec.record(format!("services.{}", svc.name), title, outcome, 0);
    }
    let Some(http) = ctx.http.clone() else {
        rec.record(
            "services.tls".into(),
            "HTTPS client trusting the installation CA".into(),
            Outcome::Fail("cannot build it: the installation PKI is unusable".into()),
            0,
        );
        return;
    };
    for svc in ctx.planned.clone() {
        let Some(url) = svc.probe_url.clone() else {
            continue;
        };
        let http = http.clone();
        rec.check(
            format!("services.{}.endpoint", svc.name),
            format!(
                "{} answers {} over TLS trusted via the installation CA",
                svc.name, url
            ),
            async move { get_ok(&http, &url).await },
        )
        .await;
    }
    if !ctx.planned.iter().any(|s| s.name == "idp") {
        return;
    }
    let http2 = http.clone();
    let idp = ctx.cfg.urls.idp.clone();
    rec.check(
        "services.idp.metrics",
        "the IdP exposes Prometheus metrics",
        async move {
            let url = format!("{idp}/metrics");
            let r = http2
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("GET {url}: HTTP {}", r.status()));
            }
            let body = r.text().await.map_err(|e| e.to_string())?;
            if body.contains("dive_idp_") && body.contains("# TYPE") {
                Ok(format!("{} bytes of exposition text", body.len()))
            } else {
                Err(format!("GET {url}: no dive_idp_ metrics in the answer"))
            }
        },
    )
    .await;
}

async fn get_ok(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        Err(format!("GET {url}: HTTP {status}"))
    }
}
