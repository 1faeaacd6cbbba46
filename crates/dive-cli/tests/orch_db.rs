//! `dive orch-db status` against a real state store in a temporary DIVE_HOME.

use std::process::{Command, Output};

use dive_orchestrator::state::{BreakerConfig, DeploymentState, StateStore, now_millis};

fn dive(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dive"))
        .args(args)
        .env_remove("DIVE_STATE_URL")
        .env_remove("DIVE_HOME")
        .output()
        .expect("run dive")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn status_of_a_fresh_home_creates_an_empty_store() {
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().join("dive").display().to_string();
    let out = dive(&["--home", &home_arg, "orch-db", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let db = home.path().join("dive/state.db");
    assert!(db.exists(), "state.db created in DIVE_HOME");
    assert_eq!(v["backend"], "sqlite");
    assert_eq!(v["location"], db.display().to_string());
    assert_eq!(v["schema_version"], 1);
    let counts = v["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 9);
    assert!(counts.iter().all(|c| c["rows"] == 0), "{counts:?}");
    assert_eq!(v["active_locks"], serde_json::json!([]));
}

#[test]
fn status_shows_deployments_locks_and_open_breakers() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("state.db").display().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(StateStore::open(&db)).unwrap();
    let id = rt
        .block_on(store.create_deployment("demo", "stack", "h"))
        .unwrap();
    rt.block_on(store.transition(&id, DeploymentState::Deploying, "go"))
        .unwrap();
    let cfg = BreakerConfig {
        failure_threshold: 1,
        ..BreakerConfig::default()
    };
    rt.block_on(store.record_attempt("demo", "db", false, Some("exit 3"), now_millis(), &cfg))
        .unwrap();
    let guard = rt.block_on(store.acquire_lock("demo", &id)).unwrap();

    let home_arg = home.path().display().to_string();
    let out = dive(&["orch-db", "status", "--home", &home_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("backend:   sqlite"), "{stdout}");
    assert!(stdout.contains(&format!("location:  {db}")), "{stdout}");
    assert!(stdout.contains("deployments      1"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "demo  deployment {id}  pid {}",
            std::process::id()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("demo/db  OPEN  1 consecutive failures  last error: exit 3"),
        "{stdout}"
    );

    // The same store, named explicitly with --state-url, as JSON.
    let out = dive(&["--state-url", &db, "orch-db", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["active_locks"][0]["stack"], "demo");
    assert_eq!(v["active_locks"][0]["stale"], false);
    assert_eq!(v["open_breakers"][0]["service"], "db");

    rt.block_on(guard.release()).unwrap();
    let out = dive(&["--state-url", &db, "orch-db", "status"]);
    assert!(text(&out.stdout).contains("active locks: none"));
}

#[test]
fn a_bad_state_url_is_bad_input() {
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().display().to_string();
    let out = dive(&[
        "--home",
        &home_arg,
        "--state-url",
        "mysql://dive:hunter2@db/state",
        "orch-db",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unsupported scheme"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "password not echoed: {stderr}");
}

#[test]
fn an_unreachable_postgres_fails_with_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().display().to_string();
    // Port 1 on localhost: nothing listens there.
    let out = dive(&[
        "--home",
        &home_arg,
        "--state-url",
        "postgres://dive:hunter2@127.0.0.1:1/state",
        "orch-db",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot open the state store at postgres://dive:***@127.0.0.1:1/state"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
