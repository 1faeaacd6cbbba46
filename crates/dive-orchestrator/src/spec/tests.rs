//! Stack-file parsing: every feature and every error, through the public `parse_str` / `load`.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A directory that does not exist: no `.env` is found beside the stack file.
const NOWHERE: &str = "/nonexistent-dive-spec-test/stack.yml";

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<StackSpec, SpecError> {
    parse_str(
        text,
        Path::new(NOWHERE),
        None,
        &Environment::from_map(vars.iter().copied()),
    )
}

fn parse(text: &str) -> Result<StackSpec, SpecError> {
    parse_env(text, &[])
}

fn ok(text: &str) -> StackSpec {
    parse(text).unwrap_or_else(|e| panic!("should parse: {e}"))
}

fn err(text: &str) -> SpecError {
    match parse(text) {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(e) => e,
    }
}

fn svc<'a>(spec: &'a StackSpec, name: &str) -> &'a ServiceSpec {
    &spec.services[name]
}

#[test]
fn minimal_service_gets_compose_defaults() {
    let spec = ok("name: demo\nservices:\n  app:\n    command: sleep 5\n");
    assert_eq!(spec.name, "demo");
    assert_eq!(spec.source, PathBuf::from(NOWHERE));
    let app = svc(&spec, "app");
    assert_eq!(app.argv, ["sleep", "5"]);
    assert_eq!(app.pos, Pos { line: 3, column: 3 });
    assert_eq!(app.restart, RestartPolicy::No);
    assert_eq!(app.stop_grace_period, Duration::from_secs(10));
    assert_eq!(app.stop_signal, 15);
    assert_eq!(
        app.working_dir,
        PathBuf::from("/nonexistent-dive-spec-test")
    );
    assert!(app.healthcheck.is_none());
    assert!(app.depends_on.is_empty());
    assert_eq!(app.class, ServiceClass::Optional);
    assert!(!app.class_explicit);
    assert_eq!(spec.notices.len(), 1);
    assert!(
        spec.notices[0]
            .message
            .contains("no dive.service.class label; assuming optional")
    );
    assert_eq!(spec.notices[0].service.as_deref(), Some("app"));
}

#[test]
fn command_string_uses_shell_words_and_entrypoint_comes_first() {
    let spec = ok(r#"
services:
  a:
    entrypoint: /bin/sh -c
    command: "echo 'hello world' \"x y\""
  b:
    command: ["python3", "-m", "http.server", "8000"]
  c:
    entrypoint: ["/usr/bin/env"]
"#);
    assert_eq!(
        svc(&spec, "a").argv,
        ["/bin/sh", "-c", "echo", "hello world", "x y"]
    );
    assert_eq!(
        svc(&spec, "b").argv,
        ["python3", "-m", "http.server", "8000"]
    );
    assert_eq!(svc(&spec, "c").argv, ["/usr/bin/env"]);
}

#[test]
fn missing_or_empty_command_is_an_error() {
    let e = err("services:\n  a:\n    restart: always\n");
    assert_eq!(e.kind, SpecErrorKind::EmptyCommand);
    assert_eq!(e.pos.line, 2);
    assert!(
        e.to_string()
            .starts_with(&format!("{NOWHERE}:2:3: services.a: no command")),
        "{e}"
    );
    assert_eq!(
        err("services:\n  a:\n    command: []\n").kind,
        SpecErrorKind::EmptyCommand
    );
    assert_eq!(
        err("services:\n  a:\n    command: ''\n").kind,
        SpecErrorKind::EmptyCommand
    );
    let e = err("services:\n  a:\n    command: \"echo 'unbalanced\"\n");
    assert!(e.to_string().contains("unbalanced quotes"), "{e}");
}

#[test]
fn environment_map_and_list_forms() {
    let vars = [("FROM_ENV", "outside"), ("PORT", "9000")];
    let spec = parse_env(
        r#"
services:
  map:
    command: x
    environment:
      A: "1"
      NUM: 8080
      BOOL: true
      FROM_ENV:
      NOT_SET:
      URL: http://localhost:${PORT}
  list:
    command: x
    environment:
      - A=1
      - B=with=equals
      - FROM_ENV
      - NOT_SET
      - EMPTY=
"#,
        &vars,
    )
    .unwrap();
    let m = &svc(&spec, "map").environment;
    assert_eq!(m["A"], "1");
    assert_eq!(m["NUM"], "8080");
    assert_eq!(m["BOOL"], "true");
    assert_eq!(m["FROM_ENV"], "outside");
    assert!(!m.contains_key("NOT_SET"));
    assert_eq!(m["URL"], "http://localhost:9000");
    let l = &svc(&spec, "list").environment;
    assert_eq!(l["A"], "1");
    assert_eq!(l["B"], "with=equals");
    assert_eq!(l["FROM_ENV"], "outside");
    assert!(!l.contains_key("NOT_SET"));
    assert_eq!(l["EMPTY"], "");
}

#[test]
fn env_files_in_order_then_environment_on_top() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.env"),
        "A=base\nB=base\n# comment\nC='lit $X'\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("over.env"), "B=over\nD=${OUTER:-dflt}\n").unwrap();
    let stack = dir.path().join("stack.yml");
    let text = r#"
services:
  a:
    command: x
    env_file: [base.env, over.env, {path: missing.env, required: false}]
    environment:
      C: from-environment
  b:
    command: x
    env_file: base.env
"#;
    let spec = parse_str(text, &stack, None, &Environment::from_map([("OUTER", "o")])).unwrap();
    let a = &svc(&spec, "a").environment;
    assert_eq!(a["A"], "base");
    assert_eq!(a["B"], "over");
    assert_eq!(a["C"], "from-environment");
    assert_eq!(a["D"], "o");
    let b = &svc(&spec, "b").environment;
    assert_eq!(b["C"], "lit $X");

    let e = parse_str(
        "services:\n  a:\n    command: x\n    env_file: nope.env\n",
        &stack,
        None,
        &Environment::default(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, SpecErrorKind::Io(_)));
    assert_eq!(e.pos.line, 4);
    assert_eq!(e.path, "services.a.env_file[0]");

    std::fs::write(dir.path().join("bad.env"), "OK=1\n9BAD=2\n").unwrap();
    let e = parse_str(
        "services:\n  a:\n    command: x\n    env_file: bad.env\n",
        &stack,
        None,
        &Environment::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("bad.env:2: invalid variable name"),
        "{e}"
    );
}

#[test]
fn depends_on_list_form_means_started_and_required() {
    let spec =
        ok("services:\n  db:\n    command: x\n  api:\n    command: x\n    depends_on: [db]\n");
    let deps = &svc(&spec, "api").depends_on;
    assert_eq!(
        deps,
        &[Dependency {
            service: "db".into(),
            condition: DependencyCondition::Started,
            required: true,
            pos: Pos {
                line: 6,
                column: 18
            },
        }]
    );
}

#[test]
fn depends_on_map_form_with_conditions_required_and_restart() {
    let spec = ok(r#"
services:
  db:
    command: x
    healthcheck:
      test: ["CMD", "true"]
  migrate:
    command: x
    labels: {dive.service.class: init}
  cache:
    command: x
  api:
    command: x
    depends_on:
      db:
        condition: service_healthy
        restart: true
      migrate:
        condition: service_completed_successfully
      cache:
        required: false
"#);
    let deps = &svc(&spec, "api").depends_on;
    let names: Vec<_> = deps.iter().map(|d| d.service.as_str()).collect();
    assert_eq!(names, ["cache", "db", "migrate"], "sorted by name");
    assert_eq!(deps[0].condition, DependencyCondition::Started);
    assert!(!deps[0].required);
    assert_eq!(deps[1].condition, DependencyCondition::Healthy);
    assert!(deps[1].required);
    assert_eq!(
        deps[2].condition,
        DependencyCondition::CompletedSuccessfully
    );
    assert_eq!(svc(&spec, "migrate").class, ServiceClass::Init);
}

#[test]
fn unknown_dependency_names_file_line_and_key() {
    let text = "services:\n  api:\n    command: x\n    depends_on:\n      db:\n        condition: service_started\n";
    let e = parse_str(text, Path::new("stack.yml"), None, &Environment::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stack.yml:5:7: services.api.depends_on.db: unknown service \"db\""
    );
    let e = err("services:\n  api:\n    command: x\n    depends_on: [db]\n");
    assert_eq!(e.kind, SpecErrorKind::UnknownService("db".into()));
    assert_eq!(
        e.pos,
        Pos {
            line: 4,
            column: 18
        }
    );
}

#[test]
fn depends_on_errors() {
    let e = err(
        "services:\n  a:\n    command: x\n  b:\n    command: x\n    depends_on: {a: {condition: service_ready}}\n",
    );
    assert!(
        e.to_string()
            .contains("unknown condition \"service_ready\""),
        "{e}"
    );
    let e = err(
        "services:\n  a:\n    command: x\n  b:\n    command: x\n    depends_on: {a: {when: now}}\n",
    );
    assert_eq!(e.kind, SpecErrorKind::UnknownKey("when".into()));
    assert_eq!(e.path, "services.b.depends_on.a.when");
    let e = err("services:\n  a:\n    command: x\n  b:\n    command: x\n    depends_on: [a, a]\n");
    assert!(e.to_string().contains("listed twice"), "{e}");
    let e = err(
        "services:\n  a:\n    command: x\n  b:\n    command: x\n    depends_on: {a: {required: maybe}}\n",
    );
    assert!(e.to_string().contains("expected true or false"), "{e}");
}

#[test]
fn service_healthy_needs_a_healthcheck() {
    let text = "services:\n  db:\n    command: x\n  api:\n    command: x\n    depends_on:\n      db: {condition: service_healthy}\n";
    let e = err(text);
    assert_eq!(
        e.kind,
        SpecErrorKind::HealthyWithoutHealthcheck("db".into())
    );
    assert_eq!(e.pos.line, 7);
    assert_eq!(e.path, "services.api.depends_on.db");
    // A native probe label counts as a health check.
    let ok_text = text.replace(
        "  db:\n    command: x\n",
        "  db:\n    command: x\n    labels: [dive.health.tcp=localhost:5432]\n",
    );
    ok(&ok_text);
    // A disabled healthcheck does not.
    let disabled = text.replace(
        "  db:\n    command: x\n",
        "  db:\n    command: x\n    healthcheck: {test: [CMD, 'true'], disable: true}\n",
    );
    assert_eq!(
        err(&disabled).kind,
        SpecErrorKind::HealthyWithoutHealthcheck("db".into())
    );
}

#[test]
fn dependency_cycle_prints_the_cycle_with_position() {
    let text = "services:\n  c:\n    command: x\n    depends_on: [a]\n  a:\n    command: x\n    depends_on: [b]\n  b:\n    command: x\n    depends_on: [c]\n";
    let e = parse_str(text, Path::new("s.yml"), None, &Environment::default()).unwrap_err();
    assert_eq!(
        e.kind,
        SpecErrorKind::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        e.to_string(),
        "s.yml:7:18: services.a.depends_on.b: dependency cycle: a -> b -> c -> a"
    );
    let e = err("services:\n  a:\n    command: x\n    depends_on: [a]\n");
    assert_eq!(e.kind, SpecErrorKind::Cycle(vec!["a".into(), "a".into()]));
}

#[test]
fn healthcheck_forms_and_timings() {
    let spec = ok(r#"
services:
  cmd:
    command: x
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "localhost"]
      interval: 2s
      timeout: 500ms
      retries: 5
      start_period: 1m30s
      start_interval: 100ms
  shell:
    command: x
    healthcheck:
      test: ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
  string:
    command: x
    healthcheck:
      test: curl -f http://localhost/
  none:
    command: x
    healthcheck:
      test: ["NONE"]
  disabled:
    command: x
    healthcheck:
      test: ["CMD", "true"]
      disable: true
"#);
    let hc = svc(&spec, "cmd").healthcheck.clone().unwrap();
    assert_eq!(
        hc.probe,
        Probe::Cmd(vec!["pg_isready".into(), "-h".into(), "localhost".into()])
    );
    assert_eq!(hc.interval, Duration::from_secs(2));
    assert_eq!(hc.timeout, Duration::from_millis(500));
    assert_eq!(hc.retries, 5);
    assert_eq!(hc.start_period, Duration::from_secs(90));
    assert_eq!(hc.start_interval, Duration::from_millis(100));
    let sh = svc(&spec, "shell").healthcheck.clone().unwrap();
    assert_eq!(
        sh.probe,
        Probe::Shell("curl -f http://localhost/ || exit 1".into())
    );
    assert_eq!(sh.interval, Duration::from_secs(30), "compose default");
    assert_eq!(sh.timeout, Duration::from_secs(30));
    assert_eq!(sh.retries, 3);
    assert_eq!(sh.start_period, Duration::ZERO);
    assert_eq!(sh.start_interval, Duration::from_secs(5));
    assert_eq!(
        svc(&spec, "string").healthcheck.as_ref().unwrap().probe,
        Probe::Shell("curl -f http://localhost/".into())
    );
    assert!(svc(&spec, "none").healthcheck.is_none());
    assert!(svc(&spec, "disabled").healthcheck.is_none());
}

#[test]
fn native_probes_alone_or_with_healthcheck_timings() {
    let spec = ok(r#"
services:
  web:
    command: x
    labels:
      dive.health.http: http://127.0.0.1:8080/healthz
  db:
    command: x
    labels:
      dive.health.tcp: 127.0.0.1:5432
    healthcheck:
      test: ["CMD", "pg_isready"]
      interval: 1s
      start_period: 3s
"#);
    let web = svc(&spec, "web").healthcheck.clone().unwrap();
    assert_eq!(
        web.probe,
        Probe::Http {
            url: "http://127.0.0.1:8080/healthz".into(),
            ca_file: None
        }
    );
    assert_eq!(web.interval, Duration::from_secs(30));
    let db = svc(&spec, "db").healthcheck.clone().unwrap();
    assert_eq!(db.probe, Probe::Tcp("127.0.0.1:5432".into()));
    assert_eq!(db.interval, Duration::from_secs(1));
    assert_eq!(db.start_period, Duration::from_secs(3));

    let e = err("services:\n  a:\n    command: x\n    labels:\n      dive.health.http: ftp://x\n");
    assert_eq!(e.path, "services.a.labels.dive.health.http");
    assert_eq!(e.pos.line, 5);
    let e = err("services:\n  a:\n    command: x\n    labels: [dive.health.tcp=localhost]\n");
    assert!(e.to_string().contains("not host:port"), "{e}");
    let e = err(
        "services:\n  a:\n    command: x\n    labels: {dive.health.tcp: 'h:1', dive.health.http: 'http://h'}\n",
    );
    assert!(e.to_string().contains("choose one"), "{e}");
}

#[test]
fn http_probe_ca_label_is_a_path_beside_the_stack_file_and_only_for_http() {
    let spec = ok(r#"
services:
  idp:
    command: x
    labels:
      dive.health.http: https://localhost:8443/health
      dive.health.ca: pki/ca.pem
"#);
    let Probe::Http { url, ca_file } = svc(&spec, "idp").healthcheck.clone().unwrap().probe else {
        panic!("an http probe");
    };
    assert_eq!(url, "https://localhost:8443/health");
    let ca = ca_file.expect("a CA file");
    assert!(ca.is_absolute() && ca.ends_with("pki/ca.pem"), "{ca:?}");
    let e = err(
        "services:\n  a:\n    command: x\n    labels: {dive.health.tcp: 'h:1', dive.health.ca: ca.pem}\n",
    );
    assert!(
        e.to_string()
            .contains("only applies to a dive.health.http probe"),
        "{e}"
    );
    assert_eq!(e.path, "services.a.labels.dive.health.ca");
    let e = err(
        "services:\n  a:\n    command: x\n    labels: {dive.health.http: 'https://h', dive.health.ca: ''}\n",
    );
    assert!(e.to_string().contains("empty CA file path"), "{e}");
}

#[test]
fn healthcheck_errors() {
    let e =
        err("services:\n  a:\n    command: x\n    healthcheck:\n      test: [\"EXEC\", \"x\"]\n");
    assert!(
        e.to_string()
            .contains("must start with \"CMD\", \"CMD-SHELL\" or \"NONE\""),
        "{e}"
    );
    assert_eq!(e.path, "services.a.healthcheck.test");
    let e = err("services:\n  a:\n    command: x\n    healthcheck:\n      test: [CMD]\n");
    assert!(e.to_string().contains("needs a program"), "{e}");
    let e = err(
        "services:\n  a:\n    command: x\n    healthcheck:\n      test: [CMD, x]\n      retries: many\n",
    );
    assert_eq!(e.path, "services.a.healthcheck.retries");
    let e = err(
        "services:\n  a:\n    command: x\n    healthcheck:\n      test: [CMD, x]\n      interval: 0s\n",
    );
    assert!(
        e.to_string().contains("interval must be greater than 0"),
        "{e}"
    );
    let e = err(
        "services:\n  a:\n    command: x\n    healthcheck:\n      test: [CMD, x]\n      every: 1s\n",
    );
    assert_eq!(e.kind, SpecErrorKind::UnknownKey("every".into()));
}

#[test]
fn restart_policies() {
    let cases = [
        ("no", RestartPolicy::No),
        ("\"no\"", RestartPolicy::No),
        ("always", RestartPolicy::Always),
        ("on-failure", RestartPolicy::OnFailure(None)),
        ("on-failure:3", RestartPolicy::OnFailure(Some(3))),
        ("unless-stopped", RestartPolicy::UnlessStopped),
    ];
    for (text, want) in cases {
        let spec = ok(&format!(
            "services:\n  a:\n    command: x\n    restart: {text}\n"
        ));
        assert_eq!(svc(&spec, "a").restart, want, "{text}");
    }
    for bad in ["sometimes", "on-failure:x", "on-failure:-1", "true"] {
        let e = err(&format!(
            "services:\n  a:\n    command: x\n    restart: {bad}\n"
        ));
        assert!(
            matches!(e.kind, SpecErrorKind::InvalidRestart(_)),
            "{bad}: {e}"
        );
        assert_eq!(
            e.pos,
            Pos {
                line: 4,
                column: 14
            }
        );
    }
}

#[test]
fn durations_and_invalid_duration_errors() {
    let spec = ok(
        "services:\n  a:\n    command: x\n    stop_grace_period: 1m30s\n    labels: {dive.service.timeout: 2m}\n",
    );
    assert_eq!(svc(&spec, "a").stop_grace_period, Duration::from_secs(90));
    assert_eq!(
        svc(&spec, "a").start_timeout,
        Some(Duration::from_secs(120))
    );
    let e = err("services:\n  a:\n    command: x\n    stop_grace_period: 10\n");
    assert!(matches!(e.kind, SpecErrorKind::InvalidDuration(..)));
    assert_eq!(
        e.to_string().split(": ").nth(1),
        Some("services.a.stop_grace_period")
    );
    assert!(e.to_string().contains("missing unit"), "{e}");
    let e = err(
        "services:\n  a:\n    command: x\n    healthcheck: {test: [CMD, x], timeout: 5 minutes}\n",
    );
    assert_eq!(e.path, "services.a.healthcheck.timeout");
    let e = err("services:\n  a:\n    command: x\n    labels:\n      dive.service.timeout: soon\n");
    assert_eq!(e.path, "services.a.labels.dive.service.timeout");
    assert_eq!(e.pos.line, 5);
}

#[test]
fn classes_and_labels() {
    let spec = ok(r#"
services:
  a:
    command: x
    labels:
      dive.service.class: core
      dive.service.description: The API
      other: 1
  b:
    command: x
    labels: ["dive.service.class=stretch", "flag"]
  c:
    command: x
    labels: {dive.service.class: init}
"#);
    let a = svc(&spec, "a");
    assert_eq!(a.class, ServiceClass::Core);
    assert!(a.class_explicit);
    assert_eq!(a.description.as_deref(), Some("The API"));
    assert_eq!(a.labels["other"], "1");
    assert_eq!(svc(&spec, "b").class, ServiceClass::Stretch);
    assert_eq!(svc(&spec, "b").labels["flag"], "");
    assert_eq!(svc(&spec, "c").class, ServiceClass::Init);
    assert!(spec.notices.is_empty(), "{:?}", spec.notices);

    let e =
        err("services:\n  a:\n    command: x\n    labels:\n      dive.service.class: critical\n");
    assert_eq!(e.kind, SpecErrorKind::InvalidClass("critical".into()));
    assert_eq!(e.pos, Pos { line: 5, column: 7 });
    assert_eq!(e.path, "services.a.labels.dive.service.class");
    let e = err("services:\n  a:\n    command: x\n    labels:\n      dive.service.clas: core\n");
    assert!(
        e.to_string()
            .contains("unknown DIVE label \"dive.service.clas\""),
        "{e}"
    );
}

#[test]
fn interpolation_defaults_alternatives_and_escapes() {
    let spec = parse_env(
        r#"
name: ${STACK:-fallback}
services:
  a:
    command: echo ${GREETING} ${MISSING:-def} ${EMPTY:-e} ${EMPTY-n} ${SET:+alt} $$HOME $${X}
    working_dir: /srv/${SET}
"#,
        &[("GREETING", "hello"), ("EMPTY", ""), ("SET", "yes")],
    )
    .unwrap();
    assert_eq!(spec.name, "fallback");
    assert_eq!(
        svc(&spec, "a").argv,
        ["echo", "hello", "def", "e", "alt", "$HOME", "${X}"]
    );
    assert_eq!(svc(&spec, "a").working_dir, PathBuf::from("/srv/yes"));
}

#[test]
fn unset_variable_is_empty_with_a_notice() {
    let spec =
        ok("services:\n  a:\n    command: echo x$NOPE\n    labels: {dive.service.class: core}\n");
    assert_eq!(svc(&spec, "a").argv, ["echo", "x"]);
    assert_eq!(spec.notices.len(), 1);
    assert!(spec.notices[0].message.contains("variable NOPE is not set"));
    assert_eq!(spec.notices[0].pos.line, 3);
}

#[test]
fn required_variable_error_names_file_and_line() {
    let text = "services:\n  a:\n    command: x\n    environment:\n      DB: ${DB_URL:?set DB_URL to the database}\n";
    let e = parse_str(text, Path::new("stack.yml"), None, &Environment::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stack.yml:5:11: services.a.environment.DB: required variable DB_URL: set DB_URL to the database"
    );
    let e = err("services:\n  a:\n    command: ${CMD?}\n");
    assert!(
        e.to_string().contains("required variable CMD is not set"),
        "{e}"
    );
    let e = err("services:\n  a:\n    command: echo $ 5\n");
    assert!(matches!(e.kind, SpecErrorKind::BadInterpolation(_)), "{e}");
    assert_eq!(e.pos.line, 3);
}

#[test]
fn dotenv_beside_the_stack_and_process_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "A=from-dotenv\nB=from-dotenv\nC=${A}-c\n",
    )
    .unwrap();
    let stack = dir.path().join("stack.yml");
    std::fs::write(&stack, "services:\n  s:\n    command: echo $A $B $C\n").unwrap();
    let spec = load(
        &stack,
        None,
        &Environment::from_map([("A", "from-process")]),
    )
    .unwrap();
    assert_eq!(
        svc(&spec, "s").argv,
        ["echo", "from-process", "from-dotenv", "from-process-c"]
    );
    std::fs::write(dir.path().join(".env"), "A=1\nB='unterminated\n").unwrap();
    let e = load(&stack, None, &Environment::default()).unwrap_err();
    assert!(e.to_string().contains(".env:2:1"), "{e}");
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let spec = ok(r#"
x-base: &base
  restart: always
  stop_signal: SIGINT
  environment: &env
    LOG: debug
  labels:
    dive.service.class: core
services:
  a:
    <<: *base
    command: x
  b:
    <<: *base
    command: y
    restart: "no"
    environment:
      <<: *env
      EXTRA: "1"
"#);
    let a = svc(&spec, "a");
    assert_eq!(a.restart, RestartPolicy::Always);
    assert_eq!(a.stop_signal, 2);
    assert_eq!(a.environment["LOG"], "debug");
    assert_eq!(a.class, ServiceClass::Core);
    let b = svc(&spec, "b");
    assert_eq!(
        b.restart,
        RestartPolicy::No,
        "explicit keys win over merged ones"
    );
    assert_eq!(b.environment["LOG"], "debug");
    assert_eq!(b.environment["EXTRA"], "1");
}

#[test]
fn container_only_keys_are_ignored_and_recorded() {
    let spec = ok(r#"
version: "3.9"
x-anything: {whatever: 1}
services:
  a:
    image: postgres:16
    ports: ["5432:5432"]
    volumes: [data:/var/lib/postgresql/data]
    x-note: ignored silently
    command: x
volumes:
  data: {}
networks:
  default: {}
"#);
    let keys: Vec<(Option<&str>, &str, usize)> = spec
        .ignored
        .iter()
        .map(|k| (k.service.as_deref(), k.key.as_str(), k.pos.line))
        .collect();
    assert_eq!(
        keys,
        [
            (None, "version", 2),
            (Some("a"), "image", 6),
            (Some("a"), "ports", 7),
            (Some("a"), "volumes", 8),
            (None, "volumes", 11),
            (None, "networks", 13),
        ]
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let e = err("services:\n  a:\n    command: x\n    comand: y\n");
    assert_eq!(e.kind, SpecErrorKind::UnknownKey("comand".into()));
    assert_eq!(
        e.to_string(),
        format!("{NOWHERE}:4:5: services.a.comand: unknown key \"comand\"")
    );
    let e = err("servics:\n  a:\n    command: x\n");
    assert_eq!(e.kind, SpecErrorKind::UnknownKey("servics".into()));
    assert_eq!(e.pos, Pos { line: 1, column: 1 });
    let e = err("services:\n  a:\n    command: x\n    extends: base\n");
    assert!(matches!(e.kind, SpecErrorKind::Unsupported(_)));
}

#[test]
fn bad_yaml_names_file_and_line() {
    let e = parse_str(
        "services:\n  a:\n    command: [x\n  b: 1\n",
        Path::new("bad.yml"),
        None,
        &Environment::default(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, SpecErrorKind::Yaml(_)));
    assert!(e.to_string().starts_with("bad.yml:"), "{e}");
    assert!(e.pos.line >= 3, "{e}");
    let e = err("services:\n  a:\n    command: x\n  a:\n    command: y\n");
    assert!(e.to_string().contains(":4:3: duplicate key \"a\""), "{e}");
    assert!(err("").to_string().contains("empty stack file"));
    assert!(err("services: {}\n").to_string().contains("no services"));
    let e = err("services:\n  a: just-a-string\n");
    assert!(
        e.to_string()
            .contains("services.a: expected a mapping, found a scalar"),
        "{e}"
    );
}

#[test]
fn stack_names() {
    let text = "name: Bad Name\nservices:\n  a:\n    command: x\n";
    let e = err(text);
    assert_eq!(e.kind, SpecErrorKind::BadName("Bad Name".into()));
    assert_eq!(e.pos, Pos { line: 1, column: 7 });
    // -p overrides the file's name (valid or not).
    let env = Environment::default();
    let spec = parse_str(text, Path::new(NOWHERE), Some("good-1"), &env).unwrap();
    assert_eq!(spec.name, "good-1");
    let e = parse_str(text, Path::new(NOWHERE), Some("UPPER"), &env).unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::BadName("UPPER".into()));
    // No name: the directory's, normalised like compose.
    let spec = parse_str(
        "services:\n  a:\n    command: x\n",
        Path::new("/tmp/My_Stack.d/s.yml"),
        None,
        &env,
    )
    .unwrap();
    assert_eq!(spec.name, "my_stackd");
}

#[test]
fn stop_signal_profiles_working_dir() {
    let spec = ok(r#"
services:
  a:
    command: x
    stop_signal: SIGKILL
    profiles: [debug, tools]
    working_dir: sub/dir
  b:
    command: x
    stop_signal: "2"
    working_dir: /abs
"#);
    let a = svc(&spec, "a");
    assert_eq!(a.stop_signal, 9);
    assert_eq!(a.profiles, ["debug", "tools"]);
    assert_eq!(
        a.working_dir,
        PathBuf::from("/nonexistent-dive-spec-test/sub/dir")
    );
    assert_eq!(svc(&spec, "b").stop_signal, 2);
    assert_eq!(svc(&spec, "b").working_dir, PathBuf::from("/abs"));
    let e = err("services:\n  a:\n    command: x\n    stop_signal: SIGFOO\n");
    assert!(e.to_string().contains("unknown signal \"SIGFOO\""), "{e}");
    let e = err("services:\n  a:\n    command: x\n    profiles: [\"bad profile\"]\n");
    assert_eq!(e.path, "services.a.profiles[0]");
}

#[test]
fn definition_hash_ignores_positions_but_not_content() {
    let a = ok("services:\n  a:\n    command: x --flag\n    environment: {K: v}\n");
    let moved =
        ok("# a comment\n\nservices:\n\n  a:\n    environment: {K: v}\n    command: [x, --flag]\n");
    let changed = ok("services:\n  a:\n    command: x --flag\n    environment: {K: w}\n");
    let h = svc(&a, "a").definition_hash();
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(h, svc(&moved, "a").definition_hash());
    assert_ne!(h, svc(&changed, "a").definition_hash());
}

#[test]
fn load_reports_unreadable_files() {
    let e = load(
        Path::new("/nonexistent-dive/stack.yml"),
        None,
        &Environment::default(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, SpecErrorKind::Io(_)));
    assert!(
        e.to_string()
            .starts_with("/nonexistent-dive/stack.yml: cannot read:"),
        "{e}"
    );
}

#[test]
fn healthcheck_without_test_is_none_with_a_notice() {
    let spec = ok(
        "services:\n  a:\n    command: x\n    labels: {dive.service.class: core}\n    healthcheck:\n      interval: 1s\n",
    );
    assert!(svc(&spec, "a").healthcheck.is_none());
    assert_eq!(spec.notices.len(), 1);
    assert!(
        spec.notices[0]
            .message
            .contains("services.a.healthcheck: no `test`"),
        "{:?}",
        spec.notices
    );
    assert_eq!(spec.notices[0].pos.line, 6);
}
