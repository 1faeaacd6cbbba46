//! `dive stack plan` driven through the real binary.

use std::path::Path;
use std::process::{Command, Output};

const STACK: &str = r#"
name: demo
x-core: &core
  labels:
    dive.service.class: core
services:
  db:
    <<: *core
    image: postgres:16
    command: sleep 60
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      start_period: 2s
  api:
    command: ["sh", "-c", "echo ${GREETING:-hi}"]
    depends_on:
      db:
        condition: service_healthy
    labels:
      dive.service.class: core
      dive.service.description: The API
      dive.health.http: http://127.0.0.1:18080/health
  web:
    command: sleep 60
    depends_on: [api]
  debug:
    command: sleep 1
    profiles: [debug]
    labels: [dive.service.class=optional]
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self
    }

    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }

    fn dive(&self, args: &[&str]) -> Output {
        self.dive_env(args, &[])
    }

    fn dive_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dive"));
        cmd.current_dir(self.dir.path())
            .arg("--home")
            .arg(self.home())
            .args(args)
            .env_remove("GREETING")
            .env_remove("DIVE_HOME")
            .env_remove("DIVE_STATE_URL");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

#[test]
fn plan_prints_levels_classes_probes_and_critical_path() {
    let env = Env::new();
    env.write("stack.yml", STACK);
    let o = env.dive(&["stack", "plan", "-f", "stack.yml"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.starts_with("stack demo (stack.yml): 3 services in 3 levels; profiles: none"),
        "{out}"
    );
    let level0 = out.find("level 0").unwrap();
    let level1 = out.find("level 1").unwrap();
    let level2 = out.find("level 2").unwrap();
    let at = |s: &str| {
        out.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing in:\n{out}"))
    };
    assert!(level0 < at("db   core") && at("db   core") < level1);
    assert!(level1 < at("api  core") && at("api  core") < level2);
    assert!(level2 < at("web  optional"));
    assert!(
        out.contains("health: cmd true (interval 1s, timeout 30s, retries 3, start period 2s)"),
        "{out}"
    );
    assert!(
        out.contains("health: http http://127.0.0.1:18080/health"),
        "{out}"
    );
    assert!(out.contains("after: db (healthy)"), "{out}");
    assert!(out.contains("after: api (started)"), "{out}");
    assert!(out.contains("The API"), "{out}");
    // db's start period (2 s) + api's first probe (100 ms); web only waits for api to start.
    assert!(
        out.contains("critical path (estimated 2.1s): db -> api"),
        "{out}"
    );
    assert!(out.contains("excluded: debug (profiles: debug)"), "{out}");
    assert!(out.contains("stack.yml:9:5: services.db.image"), "{out}");
    assert!(
        out.contains(
            "stack.yml:24:3: services.web: no dive.service.class label; assuming optional"
        ),
        "{out}"
    );
    // Planning touches nothing on disk.
    assert!(!env.home().exists(), "plan must not create DIVE_HOME");
}

#[test]
fn plan_json_and_profiles() {
    let env = Env::new();
    env.write("stack.yml", STACK);
    let o = env.dive(&[
        "stack",
        "plan",
        "-f",
        "stack.yml",
        "--profile",
        "debug",
        "--json",
    ]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plan"]["stack"], "demo");
    assert_eq!(v["plan"]["profiles"], serde_json::json!(["debug"]));
    assert_eq!(
        v["plan"]["levels"],
        serde_json::json!([["db", "debug"], ["api"], ["web"]])
    );
    assert_eq!(
        v["plan"]["services"]["api"]["spec"]["argv"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(
        v["critical_path"]["services"],
        serde_json::json!(["db", "api"])
    );
    assert_eq!(v["critical_path"]["estimate_ms"], 2100);
    assert_eq!(v["ignored"][0]["key"], "image");
    assert_eq!(v["notices"][0]["service"], "web");
}

#[test]
fn project_name_and_environment_precedence() {
    let env = Env::new();
    env.write("stack.yml", STACK)
        .write(".env", "GREETING=from-dotenv\n");
    let o = env.dive(&["stack", "plan", "-f", "stack.yml", "-p", "other", "--json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plan"]["stack"], "other");
    assert_eq!(
        v["plan"]["services"]["api"]["spec"]["argv"][2],
        "echo from-dotenv"
    );
    let o = env.dive_env(
        &["stack", "plan", "-f", "stack.yml", "--json"],
        &[("GREETING", "from-process")],
    );
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["plan"]["services"]["api"]["spec"]["argv"][2],
        "echo from-process"
    );
    let o = env.dive(&["stack", "plan", "-f", "stack.yml", "-p", "Not Valid"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("invalid stack name \"Not Valid\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn default_stack_file_lookup() {
    let env = Env::new();
    let o = env.dive(&["stack", "plan"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains(
        "no stack file: pass -f FILE or create one of dive-stack.yml, compose.yaml, compose.yml"
    ));
    env.write("compose.yml", "services:\n  a:\n    command: x\n");
    let o = env.dive(&["stack", "plan"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("(compose.yml)"), "{}", stdout(&o));
    // dive-stack.yml comes first.
    env.write(
        "dive-stack.yml",
        "name: preferred\nservices:\n  a:\n    command: x\n",
    );
    let o = env.dive(&["stack", "plan"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with("stack preferred (dive-stack.yml)"),
        "{}",
        stdout(&o)
    );
}

/// Each bad file exits 2 and names file, line, column and key on stderr.
#[test]
fn bad_stack_files_exit_2_with_position() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown dependency",
            "services:\n  api:\n    command: x\n    depends_on:\n      db:\n        condition: service_started\n",
            "bad.yml:5:7: services.api.depends_on.db: unknown service \"db\"",
        ),
        (
            "cycle",
            "services:\n  a:\n    command: x\n    depends_on: [b]\n  b:\n    command: x\n    depends_on: [c]\n  c:\n    command: x\n    depends_on: [a]\n",
            "bad.yml:4:18: services.a.depends_on.b: dependency cycle: a -> b -> c -> a",
        ),
        (
            "invalid duration",
            "services:\n  a:\n    command: x\n    stop_grace_period: 10 parsecs\n",
            "bad.yml:4:24: services.a.stop_grace_period: invalid duration \"10 parsecs\"",
        ),
        (
            "invalid class",
            "services:\n  a:\n    command: x\n    labels:\n      dive.service.class: vital\n",
            "bad.yml:5:7: services.a.labels.dive.service.class: invalid class \"vital\"",
        ),
        ("bad yaml", "services:\n  a:\n    command: [x\n", "bad.yml:"),
        (
            "unknown key",
            "services:\n  a:\n    command: x\n    restrat: always\n",
            "bad.yml:4:5: services.a.restrat: unknown key \"restrat\"",
        ),
        (
            "invalid restart",
            "services:\n  a:\n    command: x\n    restart: sometimes\n",
            "bad.yml:4:14: services.a.restart: invalid restart policy \"sometimes\"",
        ),
        (
            "empty command",
            "services:\n  a:\n    image: busybox\n",
            "bad.yml:2:3: services.a: no command",
        ),
        (
            "healthy without healthcheck",
            "services:\n  db:\n    command: x\n  a:\n    command: x\n    depends_on:\n      db: {condition: service_healthy}\n",
            "bad.yml:7:7: services.a.depends_on.db: condition service_healthy, but service \"db\" has no healthcheck",
        ),
        (
            "required variable",
            "services:\n  a:\n    command: run ${TOKEN:?TOKEN must be set}\n",
            "bad.yml:3:14: services.a.command: required variable TOKEN: TOKEN must be set",
        ),
        (
            "bad stack name",
            "name: UPPER\nservices:\n  a:\n    command: x\n",
            "bad.yml:1:7: name: invalid stack name \"UPPER\"",
        ),
        (
            "required dependency disabled by profile",
            "services:\n  dbg:\n    command: x\n    profiles: [debug]\n  a:\n    command: x\n    depends_on: [dbg]\n",
            "bad.yml:7:18: services.a.depends_on.dbg: required dependency \"dbg\" is not enabled",
        ),
    ];
    let env = Env::new();
    for (what, text, want) in cases {
        env.write("bad.yml", text);
        let o = env.dive(&["stack", "plan", "-f", "bad.yml"]);
        assert_eq!(o.status.code(), Some(2), "{what}: stderr {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{what}: want {want:?} in stderr:\n{}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{what}: nothing on stdout");
    }
    let o = env.dive(&["stack", "plan", "-f", "missing.yml"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("missing.yml: cannot read"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&env.home()).exists());
}
