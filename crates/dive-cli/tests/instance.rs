//! `dive hub|spoke …` and `dive nuke hub|spoke` through the real binary, with a temporary
//! DIVE_HOME and ports chosen per test.
//!
//! The embedded hub stack also runs `serve kas`, `serve api` and the `seed` job; until those
//! exist these tests deploy with `--stack-file` and a stack cut from the exported hub stack that
//! keeps only the IdP (plus, where a test needs one, a shell service that becomes healthy when
//! the test says so).

mod support;
use support::{args, port_flags, ports, text, wait_until};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::Builder::new().prefix("dvi").tempdir().unwrap();
        let home = tmp.path().join("h");
        let dir = tmp.path().join("s");
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            _tmp: tmp,
            home,
            dir,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dive"));
        c.arg("--home").arg(&self.home).args(args);
        c.current_dir(&self.dir).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if (k.starts_with("DIVE_") && k.ends_with("_PORT")) || k == "DIVE_STATE_URL" {
                c.env_remove(k);
            }
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The exported stack of `role`, cut to the IdP, plus `extra` services.
    fn stack(&self, role: &str, extra: &str) -> PathBuf {
        let out = self.run(&["stack", "export", role]);
        assert!(out.status.success(), "{}", text(&out));
        let full = String::from_utf8(out.stdout).unwrap();
        let cut = full.find("\n  kas:\n").expect("the exported stack has kas");
        let p = self.dir.join(format!("{role}-idp.yml"));
        std::fs::write(&p, format!("{}\n{extra}", &full[..cut])).unwrap();
        p
    }

    fn report(&self, stack: &str, id: &str) -> Value {
        let p = self
            .home
            .join("stacks")
            .join(stack)
            .join("deployments")
            .join(id)
            .join("report.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }

    fn deployments(&self, stack: &str) -> Vec<String> {
        let mut ids: Vec<String> =
            std::fs::read_dir(self.home.join("stacks").join(stack).join("deployments"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        ids.sort();
        ids
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Never leave supervisors behind, whatever the test did.
        let _ = Command::new(env!("CARGO_BIN_EXE_dive"))
            .arg("--home")
            .arg(&self.home)
            .args(["-q", "nuke", "all", "--confirm"])
            .output();
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn phases(report: &Value) -> Vec<(String, String, String)> {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
                p["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn phase<'a>(ph: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    ph.iter()
        .find(|p| p.0 == name)
        .unwrap_or_else(|| panic!("no phase {name} in {ph:?}"))
}

/// The deployment id printed by `deploy` ("… deployed in 1.2s (ID)").
fn deployment_id(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.contains("report: "))
        .unwrap_or_else(|| panic!("no report line in {s}"));
    let path = PathBuf::from(line.trim().trim_start_matches("report: "));
    path.parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A core service that becomes healthy once the file `go` exists in the test directory.
const SLOW: &str = r#"  slow:
    command: ["sh", "-c", "rm -f slow.ready; while [ ! -f go ]; do sleep 0.05; done; touch slow.ready; exec sleep 600"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "slow.ready"]
      interval: 1s
      start_interval: 200ms
    labels:
      dive.service.class: core
      dive.service.timeout: 120s
"#;

/// The stack's services as the supervisor reports them.
fn stack_status(env: &Env, stack: &str) -> Value {
    let out = env.run(&["stack", "status", "-p", stack, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn has_service(status: &Value, name: &str) -> bool {
    status["services"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["name"] == name))
}

fn spawn_deploy(env: &Env, a: &[&str]) -> Child {
    env.cmd(a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn hub_deploy_verify_status_redeploy_down_up_restart_and_nuke() {
    let env = Env::new();
    let p = ports();
    let flags = port_flags(&p);
    let stack = env.stack("hub", "");
    let stack_s = stack.to_str().unwrap();
    let out = env.run(&args(&["hub", "deploy", "--stack-file", stack_s], &flags));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("hub USA deployed in"), "{t}");
    assert!(
        t.contains(&format!("issuer  https://localhost:{}", p[0])),
        "{t}"
    );
    let inst = env.home.join("instances/usa");
    assert!(
        t.contains(&format!(
            "test users' passwords: {}",
            inst.join("test-users.json").display()
        )),
        "{t}"
    );
    let verified = t
        .lines()
        .find(|l| l.contains("verify: "))
        .expect("a verify summary");
    let n: usize = verified
        .split("verify: ")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(n >= 30, "{verified}");
    assert!(
        verified.contains(&format!("{n}/{n} checks passed")),
        "{verified}"
    );

    // What INIT wrote: configuration, secrets 0600, policy data for this issuer.
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(inst.join("instance.json")).unwrap()).unwrap();
    assert_eq!(cfg["ports"]["idp"], p[0]);
    assert_eq!(cfg["role"], "hub");
    for s in ["kas", "api", "web"] {
        let f = inst.join(format!("secrets/{s}-client.json"));
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&inst.join("test-users.json")), 0o600);
    assert_eq!(mode(&inst.join("test-users-totp.json")), 0o600);
    let issuers: Value =
        serde_json::from_slice(&std::fs::read(inst.join("policy/trusted_issuers.json")).unwrap())
            .unwrap();
    assert_eq!(issuers.as_object().unwrap().len(), 1);
    assert_eq!(
        issuers[format!("https://localhost:{}", p[0])]["instance"],
        "USA"
    );
    let kas_secret = std::fs::read(inst.join("secrets/kas-client.json")).unwrap();

    let ids = env.deployments("usa");
    assert_eq!(ids.len(), 1);
    let report = env.report("usa", &ids[0]);
    assert_eq!(report["state"], "COMPLETE");
    assert_eq!(report["kind"], "hub");
    let ph = phases(&report);
    let order: Vec<&str> = ph.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        order,
        ["PREFLIGHT", "INIT", "START", "CONFIGURE", "SEED", "VERIFY"]
    );
    for name in ["PREFLIGHT", "INIT", "START", "CONFIGURE", "VERIFY"] {
        assert_eq!(phase(&ph, name).1, "DONE", "{name}: {ph:?}");
    }
    assert_eq!(
        phase(&ph, "SEED").1,
        "SKIPPED",
        "the test stack has no seed job"
    );

    // verify: every check, as JSON, including MFA logins and the coalition claims.
    let out = env.run(&["hub", "verify", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 0, "{v}");
    let check = |id: &str| -> Value {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no check {id}"))
    };
    assert_eq!(check("users.testuser-usa-5.login")["status"], "pass");
    assert!(
        check("users.testuser-usa-5.login")["detail"]
            .as_str()
            .unwrap()
            .contains("otp")
    );
    assert!(
        check("users.testuser-usa-1.login")["detail"]
            .as_str()
            .unwrap()
            .contains("\"1\"")
    );
    assert_eq!(check("users.mfa_enforced")["status"], "pass");
    assert!(
        check("users.testuser-usa-4.claims")["detail"]
            .as_str()
            .unwrap()
            .contains("FVEY")
    );
    assert!(
        check("users.testuser-usa-1.decisions")["detail"]
            .as_str()
            .unwrap()
            .contains("Insufficient clearance")
    );
    assert_eq!(check("services.idp")["status"], "pass");
    assert_eq!(check("pki.idp")["status"], "pass");

    // status
    let out = env.run(&["hub", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["running"], true);
    assert_eq!(st["last_deployment"]["state"], "COMPLETE");
    assert_eq!(st["urls"]["kas"], format!("https://localhost:{}/kas", p[2]));

    // Re-deploying a healthy, unchanged hub changes and records nothing; secrets are kept.
    let out = env.run(&["hub", "deploy", "--stack-file", stack_s]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("hub USA is up to date"), "{t}");
    assert!(t.contains("last verification"), "{t}");
    assert_eq!(
        env.deployments("usa").len(),
        1,
        "a no-op records no deployment"
    );
    assert_eq!(
        std::fs::read(inst.join("secrets/kas-client.json")).unwrap(),
        kas_secret
    );

    // Kill the IdP: the supervisor brings it back and status shows the restart.
    let st = stack_status(&env, "usa");
    let idp = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "idp")
        .unwrap()
        .clone();
    let pid = idp["pid"].as_i64().unwrap() as i32;
    // SAFETY: a plain kill(2) of the IdP process this test's deployment started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_until("the idp to be restarted", Duration::from_secs(60), || {
        let st = stack_status(&env, "usa");
        st["services"].as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s["name"] == "idp"
                    && s["restarts"].as_u64() >= Some(1)
                    && s["state"] == "running"
                    && s["health"] == "healthy"
            })
        })
    });
    let out = env.run(&["hub", "status"]);
    let t = text(&out);
    assert!(
        t.contains("idp") && t.contains("killed"),
        "status shows the last exit: {t}"
    );

    // down, then up (no VERIFY), then deploy verifies again.
    let out = env.run(&["hub", "down"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["hub", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not running"), "{}", text(&out));
    let out = env.run(&["hub", "up"]); // keeps to the stack file of the last deployment
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("hub USA up in") && t.contains("VERIFY skipped"),
        "{t}"
    );
    let out = env.run(&["hub", "deploy", "--stack-file", stack_s]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("hub USA deployed"),
        "after an up, deploy verifies again: {t}"
    );
    let ph = phases(&env.report("usa", &deployment_id(&out)));
    assert_eq!(phase(&ph, "VERIFY").1, "DONE");
    assert!(phase(&ph, "INIT").2.contains("kept as they were"), "{ph:?}");

    // nuke: only with --confirm; then nothing of the hub is left, the installation PKI stays.
    let out = env.run(&["nuke", "hub"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(inst.exists());
    let out = env.run(&["nuke", "hub", "--confirm"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("verified: nothing of hub USA is left"), "{t}");
    assert!(!inst.exists() && !env.home.join("stacks/usa").exists());
    assert!(env.home.join("pki/ca/cert.pem").exists());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p[0])).is_err(),
        "the IdP is gone"
    );
    let out = env.run(&["history", "-p", "usa", "--json"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"hub\""),
        "{}",
        text(&out)
    );
}

#[test]
fn an_interrupted_deploy_resumes_at_the_first_unfinished_phase() {
    let env = Env::new();
    let flags = port_flags(&ports());
    let stack = env.stack("hub", SLOW);
    let stack_s = stack.to_str().unwrap();
    let deploy = args(&["hub", "deploy", "--stack-file", stack_s], &flags);

    // Interrupt a deployment once it is in START (its live event log says so).
    let interrupt = |env: &Env| -> Output {
        let before = env.deployments("usa").len();
        let child = spawn_deploy(env, &deploy);
        wait_until("START to begin", Duration::from_secs(60), || {
            let ids = env.deployments("usa");
            ids.len() > before
                && std::fs::read_to_string(
                    env.home
                        .join("stacks/usa/deployments")
                        .join(ids.last().unwrap())
                        .join("events.jsonl"),
                )
                .is_ok_and(|e| e.contains("\"START started\""))
        });
        // SAFETY: SIGINT to the deploy process this test started.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        child.wait_with_output().unwrap()
    };

    // 1: interrupted in START, after INIT.
    let out = interrupt(&env);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("INTERRUPTED"), "{t}");
    let first = env.deployments("usa").pop().unwrap();
    let r1 = env.report("usa", &first);
    assert_eq!(r1["state"], "INTERRUPTED");
    let ph = phases(&r1);
    assert_eq!(phase(&ph, "INIT").1, "DONE");
    assert_eq!(phase(&ph, "START").1, "FAILED");

    // 2: interrupted again; INIT is not redone: its checkpoint still holds.
    let out = interrupt(&env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let second = env.deployments("usa").pop().unwrap();
    let ph = phases(&env.report("usa", &second));
    let init = phase(&ph, "INIT");
    assert_eq!(init.1, "SKIPPED", "{ph:?}");
    assert!(
        init.2
            .contains(&format!("checkpoint of deployment {first} still holds")),
        "{init:?}"
    );

    // 3: reality no longer matches the checkpoint (a policy document is gone): INIT runs again
    // and restores it; the slow service is let through and the deployment completes.
    let fed = env.home.join("instances/usa/policy/federation.json");
    std::fs::remove_file(&fed).unwrap();
    std::fs::write(env.dir.join("go"), "").unwrap();
    let out = env.run(&deploy);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let r3 = env.report("usa", &deployment_id(&out));
    assert_eq!(r3["state"], "COMPLETE");
    let ph = phases(&r3);
    assert_eq!(phase(&ph, "INIT").1, "DONE", "{ph:?}");
    assert!(fed.exists());
    assert_eq!(phase(&ph, "START").1, "DONE");
    let events = std::fs::read_to_string(
        env.home
            .join("stacks/usa/deployments")
            .join(r3["deployment_id"].as_str().unwrap())
            .join("events.jsonl"),
    )
    .unwrap();
    assert!(
        events.contains("checkpoint_stale") && events.contains("federation.json"),
        "{events}"
    );
}

#[test]
fn a_concurrent_deploy_of_the_same_instance_is_refused_by_the_lock() {
    let env = Env::new();
    let flags = port_flags(&ports());
    let stack = env.stack("hub", SLOW);
    let stack_s = stack.to_str().unwrap();
    let deploy = args(&["hub", "deploy", "--stack-file", stack_s], &flags);
    let first = spawn_deploy(&env, &deploy);
    wait_until("slow to be started", Duration::from_secs(60), || {
        has_service(&stack_status(&env, "usa"), "slow")
    });
    let out = env.run(&deploy);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("another deployment of hub USA is in progress"),
        "{t}"
    );
    std::fs::write(env.dir.join("go"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The refused attempt changed nothing: the next deploy is a no-op.
    let out = env.run(&deploy);
    assert!(text(&out).contains("is up to date"), "{}", text(&out));
}

#[test]
fn a_spoke_runs_beside_the_hub_on_its_own_ports_and_is_nuked_alone() {
    let env = Env::new();
    let hub_ports = ports();
    let hub_flags = port_flags(&hub_ports);
    let hub_stack = env.stack("hub", "");
    let out = env.run(&args(
        &["hub", "deploy", "--stack-file", hub_stack.to_str().unwrap()],
        &hub_flags,
    ));
    assert!(out.status.success(), "{}", text(&out));

    // The spoke's ports come from the environment here (DIVE_<CODE>_<SERVICE>_PORT).
    let fra = ports();
    let spoke_stack = env.stack("spoke", "");
    let mut c = env.cmd(&[
        "spoke",
        "deploy",
        "fra",
        "--stack-file",
        spoke_stack.to_str().unwrap(),
    ]);
    for (s, p) in ["IDP", "API", "KAS", "WEB", "PDP"].iter().zip(fra) {
        c.env(format!("DIVE_FRA_{s}_PORT"), p.to_string());
    }
    let out = c.output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("spoke FRA deployed"), "{t}");
    assert!(
        t.contains(&format!("issuer  https://localhost:{}", fra[0])),
        "{t}"
    );
    let fra_cfg: Value = serde_json::from_slice(
        &std::fs::read(env.home.join("instances/fra/instance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fra_cfg["role"], "spoke");
    assert_eq!(
        fra_cfg["seed"]["enabled"], false,
        "spokes seed only with --seed"
    );
    for (i, s) in ["idp", "api", "kas", "web", "pdp"].iter().enumerate() {
        assert_eq!(fra_cfg["ports"][s], fra[i]);
    }
    let issuers: Value = serde_json::from_slice(
        &std::fs::read(env.home.join("instances/fra/policy/trusted_issuers.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        issuers[format!("https://localhost:{}", fra[0])]["instance"],
        "FRA"
    );
    // Deploying the spoke linked it with the installation's hub (`--standalone` would not).
    assert!(t.contains("federation: USA ⇄ FRA active"), "{t}");
    assert_eq!(
        issuers[format!("https://localhost:{}", hub_ports[0])]["instance"],
        "USA",
        "the spoke trusts the hub's issuer"
    );

    let out = env.run(&["spoke", "verify", "FRA"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("PASS  users.testuser-fra-3.login"), "{t}");
    assert!(
        t.contains("SECRET DÉFENSE") || t.contains("CONFIDENTIEL DÉFENSE"),
        "national labels: {t}"
    );
    let out = env.run(&["stack", "ps", "--json"]);
    let ps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let running: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["running"] == true)
        .map(|r| r["stack"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["fra", "usa"]);

    // Rotating the spoke's kas secret: a new secret, still accepted by the IdP.
    let before = std::fs::read(env.home.join("instances/fra/secrets/kas-client.json")).unwrap();
    let out = env.run(&["spoke", "rotate-secrets", "FRA", "kas"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("re-registered at the IdP: dive-kas"), "{t}");
    assert_ne!(
        std::fs::read(env.home.join("instances/fra/secrets/kas-client.json")).unwrap(),
        before
    );
    let out = env.run(&["spoke", "verify", "FRA", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 0, "{v}");

    // Nuking the spoke leaves the hub running.
    let out = env.run(&["nuke", "spoke", "FRA", "--confirm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!env.home.join("instances/fra").exists());
    let out = env.run(&["hub", "status"]);
    assert!(out.status.success(), "the hub still runs: {}", text(&out));
}

#[test]
fn bad_input_is_refused_with_exit_2_and_changes_nothing() {
    let env = Env::new();
    for (a, why) in [
        (vec!["spoke", "deploy", "USA"], "is the hub"),
        (vec!["spoke", "deploy", "XYZ"], "not an assigned"),
        (
            vec!["spoke", "deploy", "FRA", "--only-phase", "LAUNCH"],
            "--only-phase LAUNCH",
        ),
        (vec!["hub", "up"], "has never been deployed"),
        (vec!["hub", "status"], "has not been deployed"),
        (vec!["nuke", "spoke", "FRA"], "without --confirm"),
        (vec!["stack", "export", "moon"], "choose hub or spoke"),
        (
            vec!["hub", "deploy", "--public-host", "https://hub.example.org"],
            "public host \"https://hub.example.org\" is not a DNS name or an IP address",
        ),
        (
            vec!["spoke", "deploy", "FRA", "--bind-host", "hub.example.org"],
            "bind host \"hub.example.org\" is not an IP address",
        ),
    ] {
        let out = env.run(&a);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{a:?}: {}", text(&out));
    }
    let out = env.run(&[
        "hub",
        "deploy",
        "--only-phase",
        "INIT",
        "--skip-phase",
        "SEED",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "mutually exclusive: {}",
        text(&out)
    );
    assert!(!env.home.join("instances").exists());

    // Only INIT of the hub: files, no services.
    let hub = ports();
    let out = env.run(&args(
        &["hub", "deploy", "--only-phase", "INIT"],
        &port_flags(&hub),
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.home.join("instances/usa/instance.json").exists());
    let ph = phases(&env.report("usa", &deployment_id(&out)));
    assert_eq!(phase(&ph, "INIT").1, "DONE");
    assert_eq!(phase(&ph, "START").1, "SKIPPED");
    // A spoke may not take a port of the hub.
    let mut fra = port_flags(&ports());
    fra[1] = hub[2].to_string(); // --idp-port = the hub's kas port
    let out = env.run(&args(&["spoke", "deploy", "FRA"], &fra));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("kas port of instance USA"),
        "{}",
        text(&out)
    );
    assert!(!env.home.join("instances/fra").exists());
}

#[test]
fn embedded_stacks_export_and_dry_run_show_the_whole_instance() {
    let env = Env::new();
    let out = env.run(&["stack", "export", "hub"]);
    assert!(out.status.success());
    let hub = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "- serve\n      - kas",
        "- serve\n      - api",
        "- --kas-url",
        "- --policy-data",
        "- seed\n      - --instance",
        "dive.service.class: init",
        "condition: service_healthy",
        "dive.health.ca:",
    ] {
        assert!(hub.contains(needle), "{needle:?} in the hub stack");
    }
    let file = env.dir.join("hub.yml");
    let out = env.run(&["stack", "export", "spoke", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("dive spoke deploy")
    );
    let out = env.run(&["stack", "export", "hub", "-o", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "no silent overwrite");

    let out = env.run(&["--dry-run", "hub", "deploy"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "START      api",
        "START      idp",
        "START      kas",
        "SEED       seed",
        "port idp 8443",
    ] {
        assert!(t.contains(needle), "{needle:?} in {t}");
    }
    let out = env.run(&["--dry-run", "spoke", "deploy", "DEU"]);
    let t = text(&out);
    assert!(
        t.contains("SEED       skipped") && t.contains("port idp 8473"),
        "{t}"
    );
    let out = env.run(&[
        "--dry-run",
        "spoke",
        "deploy",
        "DEU",
        "--seed",
        "--seed-count",
        "20",
    ]);
    assert!(text(&out).contains("SEED       seed"), "{}", text(&out));
    assert!(
        !env.home.join("instances").exists(),
        "a dry run writes nothing"
    );
}
