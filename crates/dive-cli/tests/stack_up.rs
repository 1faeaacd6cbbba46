//! `dive stack up|status|logs|down|ps`, history, metrics and nuke, driving the real binary with a
//! temporary DIVE_HOME and small shell services.

mod support;
use support::stack::{Env, ready_after, report_service, service};
use support::text;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn services_start_as_soon_as_their_own_dependencies_are_ready() {
    let env = Env::new();
    // fast and slow both depend on root; after_fast depends only on fast, so it must not wait
    // for slow (no level-by-level barrier).
    let yaml = format!(
        "services:\n{}{}{}{}",
        ready_after("root", 0.1, "core", &[]),
        ready_after("fast", 0.1, "core", &[("root", "service_healthy")]),
        ready_after("slow", 1.0, "core", &[("root", "service_healthy")]),
        ready_after("after_fast", 0.1, "core", &[("fast", "service_healthy")]),
    );
    let f = env.stack("par", &yaml);
    let t0 = Instant::now();
    let out = env.up("par", &f);
    let wall = t0.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let r = env.last_report("par");
    assert_eq!(r["state"], "COMPLETE");
    let start_af = report_service(&r, "after_fast")["start_offset_ms"]
        .as_i64()
        .unwrap();
    let slow_ready = report_service(&r, "slow")["ready_offset_ms"]
        .as_i64()
        .unwrap();
    assert!(
        start_af < slow_ready,
        "after_fast started at {start_af} ms, after slow was ready at {slow_ready} ms"
    );
    // Critical path root+slow = 1.1 s; level by level would be 1.2 s+; the sum is 1.3 s.
    // The ordering above is the behaviour; this only catches a hang (timings live in benches).
    assert!(wall < Duration::from_secs(30), "took {wall:?}");
    assert_eq!(r["critical_chain"], serde_json::json!(["root", "slow"]));
    let st = env.status_json("par");
    for s in ["root", "fast", "slow", "after_fast"] {
        assert_eq!(service(&st, s)["state"], "running", "{st}");
        assert_eq!(service(&st, s)["health"], "healthy");
    }
    env.down("par");
}

#[test]
fn a_core_failure_fails_the_deployment_and_starts_nothing_further() {
    let env = Env::new();
    let yaml = format!(
        "services:\n{}  broken:\n    command: [\"sh\", \"-c\", \"echo cannot open database file >&2; exit 3\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n    labels:\n      dive.service.class: core\n      dive.service.retries: \"1\"\n      dive.service.retry_backoff: 50ms\n{}",
        ready_after("ok", 0.0, "core", &[]),
        ready_after(
            "needs_broken",
            0.0,
            "core",
            &[("broken", "service_healthy")]
        ),
    );
    let f = env.stack("corefail", &yaml);
    let out = env.up("corefail", &f);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("FAILED"), "{t}");
    assert!(t.contains("broken"), "{t}");
    assert!(t.contains("exit code 3"), "{t}");
    assert!(
        t.contains("cannot open database file"),
        "last log lines shown: {t}"
    );
    assert!(
        t.contains("dive stack logs -p corefail broken"),
        "suggests a next step: {t}"
    );
    let r = env.last_report("corefail");
    assert_eq!(r["state"], "FAILED");
    assert_eq!(
        report_service(&r, "broken")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        report_service(&r, "needs_broken")["outcome"]
            .as_str()
            .unwrap(),
        "not_started" | "skipped"
    ));
    // The healthy service is left running, and reported as such.
    let st = env.status_json("corefail");
    assert_eq!(service(&st, "ok")["state"], "running");
    env.down("corefail");
}

#[test]
fn an_optional_failure_degrades_and_skips_its_dependents_with_the_reason() {
    let env = Env::new();
    let yaml = format!(
        "services:\n{}  extra:\n    command: [\"sh\", \"-c\", \"exit 1\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n    labels:\n      dive.service.class: optional\n      dive.service.retries: \"0\"\n{}",
        ready_after("core1", 0.0, "core", &[]),
        ready_after(
            "uses_extra",
            0.0,
            "stretch",
            &[("extra", "service_healthy")]
        ),
    );
    let f = env.stack("opt", &yaml);
    let out = env.up("opt", &f);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("degraded"), "{t}");
    let r = env.last_report("opt");
    assert_eq!(r["state"], "DEGRADED");
    let skipped = report_service(&r, "uses_extra");
    assert_eq!(skipped["outcome"], "skipped");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("dependency extra failed")
    );
    env.down("opt");
}

#[test]
fn retries_recover_a_flaky_service() {
    let env = Env::new();
    let yaml = "services:\n  flaky:\n    command: [\"sh\", \"-c\", \"n=$$(cat n 2>/dev/null || echo 0); n=$$((n+1)); echo $$n > n; [ $$n -ge 3 ] || exit 1; touch flaky.ok; exec sleep 60\"]\n    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"flaky.ok\"]\n    labels:\n      dive.service.class: core\n      dive.service.retry_backoff: 50ms\n";
    let f = env.stack("flaky", yaml);
    let out = env.up("flaky", &f);
    assert!(out.status.success(), "{}", text(&out));
    let r = env.last_report("flaky");
    let attempts = report_service(&r, "flaky")["attempts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(attempts.len(), 3, "{r}");
    assert_eq!(r["retries"], 2);
    env.down("flaky");
}

#[test]
fn the_circuit_breaker_opens_then_fails_fast_until_reset() {
    let env = Env::new();
    // Counts its starts in a file and always fails.
    let yaml = "services:\n  bad:\n    command: [\"sh\", \"-c\", \"echo x >> starts; exit 1\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n    labels:\n      dive.service.class: core\n      dive.service.retries: \"0\"\n";
    let f = env.stack("brk", yaml);
    for _ in 0..3 {
        let out = env.up("brk", &f);
        assert_eq!(out.status.code(), Some(1));
    }
    let starts = || {
        std::fs::read_to_string(env.dir.join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(starts(), 3);
    let t0 = Instant::now();
    let out = env.up("brk", &f);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("circuit breaker open"), "{t}");
    assert!(t.contains("reset-breaker"), "says how to reset: {t}");
    assert_eq!(starts(), 3, "an open breaker never starts the service");
    assert!(t0.elapsed() < Duration::from_secs(20));
    let m = metrics(&env);
    assert!(
        m.contains("dive_circuit_breaker_state{stack=\"brk\",service=\"bad\"} 2"),
        "open = 2: {m}"
    );
    let out = env.run(&["stack", "reset-breaker", "-p", "brk", "bad"]);
    assert!(out.status.success(), "{}", text(&out));
    let _ = env.up("brk", &f);
    assert_eq!(starts(), 4, "after a reset the service is tried again");
}

#[test]
fn a_crashing_service_is_restarted_by_the_supervisor() {
    let env = Env::new();
    let yaml = "services:\n  crashy:\n    command: [\"sh\", \"-c\", \"sleep 0.3; exit 2\"]\n    restart: on-failure\n    labels:\n      dive.service.class: core\n";
    let f = env.stack("crash", yaml);
    let out = env.up("crash", &f);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = env.status_json("crash");
        let restarts = service(&st, "crashy")["restarts"].as_u64().unwrap_or(0);
        if restarts >= 2 {
            assert_eq!(service(&st, "crashy")["last_exit"]["code"], 2);
            let m = metrics(&env);
            let counted = m
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "dive_service_restarts_total{stack=\"crash\",service=\"crashy\"} ",
                    )
                })
                .and_then(|v| v.parse::<u64>().ok());
            assert!(counted >= Some(2), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "no supervised restarts: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    env.down("crash");
}

#[test]
fn on_failure_restarts_stop_at_their_limit() {
    let env = Env::new();
    // Ready as soon as it runs (no probe), so `up` returns before its first exit.
    let yaml = "services:\n  dies:\n    command: [\"sh\", \"-c\", \"sleep 0.2; exit 4\"]\n    restart: on-failure:2\n    labels:\n      dive.service.class: core\n";
    let f = env.stack("lim", yaml);
    let out = env.up("lim", &f);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = env.status_json("lim");
        let dies = service(&st, "dies");
        if dies["state"] == "exited" {
            assert_eq!(dies["restarts"], 2, "{st}");
            assert_eq!(dies["last_exit"]["code"], 4, "{st}");
            assert_eq!(dies["note"], "restart limit reached (on-failure:2)", "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "never gave up restarting: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    env.down("lim");
}

#[test]
fn a_never_healthy_service_times_out_and_is_stopped() {
    let env = Env::new();
    let yaml = format!(
        "services:\n{}  never:\n    command: [\"sleep\", \"60\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 200ms\n    labels:\n      dive.service.class: optional\n      dive.service.timeout: 1s\n      dive.service.retries: \"0\"\n",
        ready_after("ok", 0.0, "core", &[])
    );
    let f = env.stack("never", &yaml);
    let out = env.up("never", &f);
    assert!(out.status.success(), "an optional failure: {}", text(&out));
    assert!(
        text(&out).contains("never (optional) failed: not healthy within 1"),
        "{}",
        text(&out)
    );
    assert_eq!(env.last_report("never")["state"], "DEGRADED");
    let st = env.status_json("never");
    assert_ne!(
        service(&st, "never")["state"],
        "running",
        "stopped, not left half-started: {st}"
    );
    env.down("never");
}

#[test]
fn a_core_service_gone_after_becoming_ready_fails_the_deployment() {
    let env = Env::new();
    // `gone` is ready at once (no probe) and exits for good while `slow` is still starting.
    let yaml = format!(
        "services:\n{}  gone:\n    command: [\"sh\", \"-c\", \"sleep 0.2; exit 3\"]\n    labels:\n      dive.service.class: core\n",
        ready_after("slow", 3.0, "core", &[])
    );
    let f = env.stack("gone", &yaml);
    let out = env.up("gone", &f);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = env.last_report("gone");
    assert_eq!(r["state"], "FAILED", "{r}");
    let gone = report_service(&r, "gone");
    assert_eq!(gone["outcome"], "failed", "{r}");
    assert_eq!(
        gone["reason"],
        "exit code 3 after becoming ready; not restarted"
    );
    // Already-running services are left as they are, and reported.
    assert_eq!(report_service(&r, "slow")["outcome"], "in_progress", "{r}");
    let st = env.status_json("gone");
    assert_eq!(
        service(&st, "slow")["state"],
        "starting",
        "still coming up: {st}"
    );
    env.down("gone");
}

#[test]
fn down_stops_dependents_before_their_dependencies() {
    let env = Env::new();
    let svc = |name: &str, dep: Option<&str>| {
        let mut y = format!(
            "  {name}:\n    command: [\"sh\", \"-c\", \"trap 'echo {name} >> order; exit 0' TERM; while :; do sleep 0.05; done\"]\n    labels:\n      dive.service.class: core\n"
        );
        if let Some(d) = dep {
            y.push_str(&format!("    depends_on: [{d}]\n"));
        }
        y
    };
    let yaml = format!(
        "services:\n{}{}{}",
        svc("db", None),
        svc("api", Some("db")),
        svc("web", Some("api"))
    );
    let f = env.stack("order", &yaml);
    assert!(env.up("order", &f).status.success());
    std::thread::sleep(Duration::from_millis(200)); // let the traps be installed
    let out = env.run(&["stack", "down", "-p", "order"]);
    assert!(out.status.success(), "{}", text(&out));
    let order = std::fs::read_to_string(env.dir.join("order")).unwrap();
    assert_eq!(order.lines().collect::<Vec<_>>(), vec!["web", "api", "db"]);
    let st = env.run(&["stack", "status", "-p", "order"]);
    assert_eq!(st.status.code(), Some(1), "not running after down");
}

#[test]
fn down_sends_each_services_stop_signal() {
    let env = Env::new();
    let yaml = "services:\n  ints:\n    command: [\"sh\", \"-c\", \"trap 'echo INT > got; exit 0' INT; trap 'echo TERM > got; exit 0' TERM; while :; do sleep 0.05; done\"]\n    stop_signal: SIGINT\n    labels:\n      dive.service.class: core\n";
    let f = env.stack("sig", yaml);
    assert!(env.up("sig", &f).status.success());
    std::thread::sleep(Duration::from_millis(200)); // let the traps be installed
    assert!(env.run(&["stack", "down", "-p", "sig"]).status.success());
    let got = std::fs::read_to_string(env.dir.join("got")).unwrap_or_default();
    assert_eq!(got.trim(), "INT");
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let env = Env::new();
    let yaml = "services:\n  stubborn:\n    command: [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.05; done\"]\n    stop_grace_period: 300ms\n    labels:\n      dive.service.class: core\n";
    let f = env.stack("stub", yaml);
    assert!(env.up("stub", &f).status.success());
    let pid = service(&env.status_json("stub"), "stubborn")["pid"]
        .as_u64()
        .unwrap();
    let t0 = Instant::now();
    assert!(env.run(&["stack", "down", "-p", "stub"]).status.success());
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(" Z ")
    );
}

fn metrics(env: &Env) -> String {
    let out = env.run(&["metrics"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn_up(env: &Env, name: &str, file: &Path) -> Child {
    env.cmd(&["stack", "up", "-p", name, "-f", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_lock(env: &Env) {
    // The first deployment holds the lock once its deployment directory exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.home.join("stacks/one/deployments").exists() {
        assert!(Instant::now() < deadline, "first deployment did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn one_deployment_per_stack_while_other_stacks_deploy_concurrently() {
    let env = Env::new();
    let slow = env.stack(
        "one",
        &format!("services:\n{}", ready_after("slowpoke", 2.0, "core", &[])),
    );
    let other = env.stack(
        "two",
        &format!("services:\n{}", ready_after("quick", 0.0, "core", &[])),
    );
    let first = spawn_up(&env, "one", &slow);
    wait_for_lock(&env);
    let m = metrics(&env);
    assert!(
        m.contains("dive_deployment_locks_active{stack=\"one\"} 1"),
        "{m}"
    );
    let second = env.up("one", &slow);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(text(&second).contains("in progress"), "{}", text(&second));
    let other_out = env.up("two", &other);
    assert!(other_out.status.success(), "{}", text(&other_out));
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        !metrics(&env).contains("dive_deployment_locks_active{stack=\"one\"}"),
        "released when the deployment ends"
    );
    env.down("one");
    env.down("two");
}

#[test]
fn a_stale_lock_from_a_killed_deployment_is_recovered_with_a_message() {
    let env = Env::new();
    let slow = env.stack(
        "one",
        &format!("services:\n{}", ready_after("slowpoke", 2.0, "core", &[])),
    );
    let mut first = spawn_up(&env, "one", &slow);
    wait_for_lock(&env);
    first.kill().unwrap(); // SIGKILL: no chance to release the lock
    first.wait().unwrap();
    let out = env.up("one", &slow);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("stale deployment lock"),
        "{}",
        text(&out)
    );
    env.down("one");
}

#[test]
fn ctrl_c_records_interrupted_keeps_healthy_services_and_up_resumes() {
    let env = Env::new();
    let yaml = format!(
        "services:\n{}{}",
        ready_after("early", 0.0, "core", &[]),
        ready_after("late", 3.0, "core", &[("early", "service_healthy")]),
    );
    let f = env.stack("intr", &yaml);
    let child = spawn_up(&env, "intr", &f);
    // Wait until `early` is healthy, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.dir.join("early.ready").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    assert_eq!(env.last_report("intr")["state"], "INTERRUPTED");
    let st = env.status_json("intr");
    assert_eq!(service(&st, "early")["state"], "running");
    let early_pid = service(&st, "early")["pid"].clone();
    // Up again continues: `early` is kept as it is, `late` gets started/finished.
    let out = env.up("intr", &f);
    assert!(out.status.success(), "{}", text(&out));
    let r = env.last_report("intr");
    assert_eq!(report_service(&r, "early")["outcome"], "unchanged");
    assert_eq!(service(&env.status_json("intr"), "early")["pid"], early_pid);
    // The lock was released: history shows both deployments.
    let h = env.run(&["history", "-p", "intr", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    let states: Vec<&str> = h["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"INTERRUPTED") && states.contains(&"COMPLETE"),
        "{states:?}"
    );
    env.down("intr");
}

#[test]
fn re_up_is_a_quick_no_op_and_a_changed_service_is_restarted_alone() {
    let env = Env::new();
    let yaml = |v: &str| {
        format!(
            "services:\n{}  app:\n    command: [\"sleep\", \"60\"]\n    environment:\n      VERSION: \"{v}\"\n    depends_on:\n      base:\n        condition: service_healthy\n    labels:\n      dive.service.class: core\n",
            ready_after("base", 0.0, "core", &[])
        )
    };
    let f = env.stack("idem", &yaml("1"));
    assert!(env.up("idem", &f).status.success());
    let before = env.status_json("idem");
    let t0 = Instant::now();
    let out = env.up("idem", &f);
    let took = t0.elapsed();
    assert!(out.status.success());
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    // `dive bench orchestrate` measures the no-op time; here it only must not redeploy or hang.
    assert!(took < Duration::from_secs(20), "{took:?}");
    std::fs::write(&f, yaml("2")).unwrap();
    let out = env.up("idem", &f);
    assert!(out.status.success(), "{}", text(&out));
    let r = env.last_report("idem");
    // The no-op recorded nothing: one earlier deployment to compare with.
    assert_eq!(r["comparison"]["previous"], 1, "{r}");
    assert!(r["comparison"]["previous_duration_ms"].is_i64(), "{r}");
    let md = std::fs::read_to_string(
        env.home
            .join("stacks/idem/deployments")
            .join(r["deployment_id"].as_str().unwrap())
            .join("report.md"),
    )
    .unwrap();
    assert!(md.contains("1 earlier deployments; previous took"), "{md}");
    assert_eq!(report_service(&r, "base")["outcome"], "unchanged");
    assert_eq!(report_service(&r, "app")["outcome"], "ready");
    let after = env.status_json("idem");
    assert_eq!(
        service(&before, "base")["pid"],
        service(&after, "base")["pid"]
    );
    assert_ne!(
        service(&before, "app")["pid"],
        service(&after, "app")["pid"]
    );
    // A service removed from the file is stopped: the file is the source of truth.
    std::fs::write(
        &f,
        format!("services:\n{}", ready_after("base", 0.0, "core", &[])),
    )
    .unwrap();
    let out = env.up("idem", &f);
    assert!(out.status.success(), "{}", text(&out));
    let st = env.status_json("idem");
    assert_eq!(st["services"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(service(&st, "base")["pid"], service(&before, "base")["pid"]);
    env.down("idem");
}

#[test]
fn a_dead_supervisor_is_detected_and_its_orphans_cleaned_up() {
    let env = Env::new();
    let f = env.stack(
        "orph",
        &format!("services:\n{}", ready_after("svc", 0.0, "core", &[])),
    );
    assert!(env.up("orph", &f).status.success());
    let st = env.status_json("orph");
    let sup = st["supervisor"]["pid"].as_i64().unwrap() as i32;
    let child = service(&st, "svc")["pid"].as_u64().unwrap();
    // SAFETY: killing the supervisor we started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    let out = env.run(&["stack", "status", "-p", "orph"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("died"), "{}", text(&out));
    assert!(
        Path::new(&format!("/proc/{child}")).exists(),
        "orphan still running before cleanup"
    );
    let out = env.up("orph", &f);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("orphan")
            || env.last_report("orph")["warnings"]
                .to_string()
                .contains("orphan")
    );
    std::thread::sleep(Duration::from_millis(100));
    let gone = !Path::new(&format!("/proc/{child}")).exists()
        || std::fs::read_to_string(format!("/proc/{child}/stat"))
            .unwrap_or_default()
            .contains(" Z ");
    assert!(gone, "orphan {child} was cleaned up");
    env.down("orph");
}

#[test]
fn logs_status_ps_history_metrics_and_reports() {
    let env = Env::new();
    let yaml = "services:\n  talker:\n    command: [\"sh\", \"-c\", \"echo hello from talker; echo oops >&2; exec sleep 60\"]\n    labels:\n      dive.service.class: core\n      dive.service.description: Says hello\n";
    let f = env.stack("obs", yaml);
    assert!(env.up("obs", &f).status.success());
    std::thread::sleep(Duration::from_millis(200));
    let logs = env.run(&["stack", "logs", "-p", "obs", "talker"]);
    assert!(logs.status.success());
    let l = String::from_utf8_lossy(&logs.stdout);
    assert!(l.contains("hello from talker") && l.contains("oops"), "{l}");
    let st = env.run(&["stack", "status", "-p", "obs"]);
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(st.contains("talker") && st.contains("Says hello"), "{st}");
    let st = env.status_json("obs");
    assert_eq!(service(&st, "talker")["description"], "Says hello");
    // The supervisor is detached: its own session (and process group), reached over a Unix
    // socket in DIVE_HOME.
    let sup = st["supervisor"]["pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{sup}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    assert_eq!(fields[3], sup.to_string(), "session leader: {stat}");
    assert_eq!(fields[2], sup.to_string(), "process group leader: {stat}");
    assert!(env.home.join("stacks/obs/supervisor.sock").exists());
    let ps = env.run(&["stack", "ps"]);
    assert!(String::from_utf8_lossy(&ps.stdout).contains("obs"));
    let dir = env.home.join("stacks/obs/deployments");
    let dep = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in ["events.jsonl", "report.md", "report.json"] {
        assert!(dep.join(f).exists(), "{f} written");
    }
    let events = std::fs::read_to_string(dep.join("events.jsonl")).unwrap();
    for line in events.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in ["ts", "level", "phase", "service", "event", "duration_ms"] {
            assert!(v.get(k).is_some(), "event has {k}: {line}");
        }
    }
    let md = std::fs::read_to_string(dep.join("report.md")).unwrap();
    assert!(md.contains("| talker | core | ready |"), "{md}");
    let h = env.run(&["history", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    assert!(h["total"]["p50_ms"].is_i64(), "{h}");
    assert!(h["services"]["talker"]["p99_ms"].is_i64(), "{h}");
    let db = env.run(&["orch-db", "status", "--json"]);
    let db: serde_json::Value = serde_json::from_slice(&db.stdout).unwrap();
    let rows = |t: &str| {
        db["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["table"] == t)
            .unwrap()["rows"]
            .as_i64()
            .unwrap()
    };
    assert!(
        rows("events") >= 1 && rows("transitions") >= 2 && rows("service_results") == 1,
        "{db}"
    );
    let m = env.run(&["metrics"]);
    let m = String::from_utf8_lossy(&m.stdout);
    assert!(
        m.contains("dive_deployment_duration_seconds_count{stack=\"obs\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("dive_service_up{stack=\"obs\",service=\"talker\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("dive_deployment_state{stack=\"obs\",state=\"COMPLETE\"} 1"),
        "{m}"
    );
    env.down("obs");
}

#[test]
fn nuke_refuses_without_confirmation_and_cleans_up_with_it() {
    let env = Env::new();
    let f = env.stack(
        "gone",
        &format!("services:\n{}", ready_after("svc", 0.0, "core", &[])),
    );
    assert!(env.up("gone", &f).status.success());
    let pid = service(&env.status_json("gone"), "svc")["pid"]
        .as_u64()
        .unwrap();
    let out = env.run(&["nuke", "stack", "gone"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        env.home.join("stacks/gone").exists(),
        "nothing removed without confirmation"
    );
    let out = env.run(&["--dry-run", "nuke", "stack", "gone", "--confirm"]);
    assert!(out.status.success());
    assert!(
        env.home.join("stacks/gone").exists(),
        "dry run changes nothing"
    );
    let out = env.run(&["nuke", "stack", "gone", "--confirm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("nothing of stack gone is left"),
        "{}",
        text(&out)
    );
    assert!(!env.home.join("stacks/gone").exists());
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(" Z ")
    );
    let h = env.run(&["history", "-p", "gone", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    assert_eq!(
        h["deployments"].as_array().unwrap().len(),
        0,
        "state deleted"
    );
}

#[test]
fn dry_run_up_changes_nothing() {
    let env = Env::new();
    let f = env.stack(
        "dry",
        &format!("services:\n{}", ready_after("svc", 0.0, "core", &[])),
    );
    let out = env.run(&[
        "--dry-run",
        "stack",
        "up",
        "-p",
        "dry",
        "-f",
        f.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("svc"));
    assert!(!env.home.join("stacks/dry").exists());
    assert!(!env.dir.join("svc.ready").exists());
}

/// A fresh PostgreSQL database for one test, dropped afterwards. `None`, with a visible SKIPPED
/// message, only when no PostgreSQL can be reached locally.
struct PgDb {
    base: String,
    name: String,
}

impl PgDb {
    fn create(test: &str) -> Option<PgDb> {
        let base = std::env::var("DIVE_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("dive_cli_{test}_{}", std::process::id());
        let created = Command::new("psql")
            .args([
                &format!("{base}/postgres"),
                "-qc",
                &format!("CREATE DATABASE {name}"),
            ])
            .output();
        if !created.map(|o| o.status.success()).unwrap_or(false) {
            eprintln!("SKIPPED {test}: no PostgreSQL reachable at {base}");
            return None;
        }
        Some(PgDb { base, name })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", self.base),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// The same deployment on PostgreSQL as the state store.
#[test]
fn deploys_with_postgresql_as_the_state_store() {
    let Some(pg) = PgDb::create("deploy") else {
        return;
    };
    let url = pg.url();
    let env = Env::new();
    let f = env.stack(
        "pg",
        &format!("services:\n{}", ready_after("svc", 0.0, "core", &[])),
    );
    let out = env.run(&[
        "--state-url",
        &url,
        "stack",
        "up",
        "-p",
        "pg",
        "-f",
        f.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let h = env.run(&["--state-url", &url, "history", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    assert_eq!(h["deployments"][0]["state"], "COMPLETE", "{h}");
    let s = env.run(&["--state-url", &url, "orch-db", "status"]);
    assert!(s.status.success());
    assert!(
        String::from_utf8_lossy(&s.stdout)
            .to_lowercase()
            .contains("postgres")
    );
    let _ = env.run(&["--state-url", &url, "nuke", "all", "--confirm"]);
}

/// The lock tests of the CLI on PostgreSQL: a session advisory lock refuses a second `up` of
/// the same stack, other stacks deploy meanwhile, and a killed deployment's lock (its session
/// ended) is taken over with a message.
#[test]
fn postgresql_allows_one_deployment_per_stack_and_recovers_from_a_killed_one() {
    let Some(pg) = PgDb::create("locks") else {
        return;
    };
    let url = pg.url();
    let env = Env::new();
    let slow = env.stack(
        "one",
        &format!("services:\n{}", ready_after("slowpoke", 2.0, "core", &[])),
    );
    let other = env.stack(
        "two",
        &format!("services:\n{}", ready_after("quick", 0.0, "core", &[])),
    );
    let up = |name: &str, file: &Path| {
        env.cmd(&[
            "--state-url",
            &url,
            "stack",
            "up",
            "-p",
            name,
            "-f",
            file.to_str().unwrap(),
        ])
    };
    let mut first = up("one", &slow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&env);
    let second = up("one", &slow).output().unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(text(&second).contains("in progress"), "{}", text(&second));
    let two = up("two", &other).output().unwrap();
    assert!(two.status.success(), "{}", text(&two));
    first.kill().unwrap(); // SIGKILL: its connection drops, PostgreSQL ends the advisory lock
    first.wait().unwrap();
    let third = up("one", &slow).output().unwrap();
    assert!(third.status.success(), "{}", text(&third));
    assert!(
        text(&third).contains("stale deployment lock"),
        "{}",
        text(&third)
    );
    let h = env.run(&["--state-url", &url, "history", "-p", "one", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    let states: Vec<&str> = h["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 3, "{states:?}");
    assert_eq!(states[0], "COMPLETE", "newest first: {states:?}");
    assert!(
        states.iter().all(|s| ["COMPLETE", "FAILED"].contains(s)),
        "the killed deployment is closed out: {states:?}"
    );
    let _ = env.run(&["--state-url", &url, "nuke", "all", "--confirm"]);
}
