use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::spec::{Dependency, Environment, parse_str};

fn spec(text: &str) -> StackSpec {
    parse_str(
        text,
        Path::new("/nonexistent-dive-plan-test/stack.yml"),
        None,
        &Environment::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn plan(text: &str, profiles: &[&str]) -> Result<Plan, SpecError> {
    let profiles: Vec<String> = profiles.iter().map(|s| s.to_string()).collect();
    Plan::build(&spec(text), &profiles)
}

/// db <- (api, worker) <- web ; cache standalone.
const DIAMOND: &str = r#"
services:
  db:
    command: x
    healthcheck: {test: [CMD, "true"]}
  cache:
    command: x
  api:
    command: x
    depends_on: {db: {condition: service_healthy}}
  worker:
    command: x
    depends_on: [db]
  web:
    command: x
    depends_on: [api, worker]
"#;

#[test]
fn levels_and_orders() {
    let p = plan(DIAMOND, &[]).unwrap();
    assert_eq!(
        p.levels,
        vec![vec!["cache", "db"], vec!["api", "worker"], vec!["web"]]
    );
    assert_eq!(p.start_order(), ["cache", "db", "api", "worker", "web"]);
    assert_eq!(p.stop_order(), ["web", "worker", "api", "db", "cache"]);
    assert_eq!(p.get("web").unwrap().level, 2);
    assert_eq!(p.dependents("db"), ["api", "worker"]);
    assert!(p.dependents("web").is_empty());
    assert!(p.dependents("nope").is_empty());
    assert_eq!(p.transitive_dependents("db"), ["api", "worker", "web"]);
    assert!(p.transitive_dependents("cache").is_empty());
    // Every service comes after all of its dependencies in the start order.
    let order = p.start_order();
    for s in p.services.values() {
        let me = order.iter().position(|n| *n == s.spec.name).unwrap();
        for d in &s.spec.depends_on {
            assert!(order.iter().position(|n| *n == d.service).unwrap() < me);
        }
    }
}

#[test]
fn level_is_the_longest_chain_not_the_shortest() {
    let p = plan(
        "services:\n  a:\n    command: x\n  b:\n    command: x\n    depends_on: [a]\n  c:\n    command: x\n    depends_on: [a, b]\n",
        &[],
    )
    .unwrap();
    assert_eq!(p.levels, vec![vec!["a"], vec!["b"], vec!["c"]]);
}

const PROFILES: &str = r#"
services:
  app:
    command: x
  debug:
    command: x
    profiles: [debug]
  tools:
    command: x
    profiles: [tools, debug]
  uses-debug:
    command: x
    profiles: [extra]
    depends_on:
      debug: {required: false}
"#;

#[test]
fn profile_filtering() {
    let p = plan(PROFILES, &[]).unwrap();
    assert_eq!(p.start_order(), ["app"]);
    let excluded: Vec<_> = p.excluded.iter().map(|e| e.service.as_str()).collect();
    assert_eq!(excluded, ["debug", "tools", "uses-debug"]);
    assert_eq!(p.excluded[1].profiles, ["tools", "debug"]);

    let p = plan(PROFILES, &["debug"]).unwrap();
    assert_eq!(p.start_order(), ["app", "debug", "tools"]);

    // A non-required dependency on a disabled service is dropped.
    let p = plan(PROFILES, &["extra"]).unwrap();
    assert_eq!(p.start_order(), ["app", "uses-debug"]);
    assert!(p.get("uses-debug").unwrap().spec.depends_on.is_empty());
    assert_eq!(p.dropped_dependencies.len(), 1);
    assert_eq!(p.dropped_dependencies[0].dependency, "debug");

    // With the profile on, it is kept.
    let p = plan(PROFILES, &["extra", "debug"]).unwrap();
    assert_eq!(
        p.get("uses-debug").unwrap().spec.depends_on[0].service,
        "debug"
    );
    assert_eq!(p.get("uses-debug").unwrap().level, 1);
}

#[test]
fn required_dependency_on_a_disabled_service_is_an_error() {
    let text = PROFILES.replace("{required: false}", "{required: true}");
    let e = plan(&text, &["extra"]).unwrap_err();
    assert_eq!(
        e.kind,
        SpecErrorKind::DependencyNotEnabled {
            service: "debug".into(),
            needs: "debug".into()
        }
    );
    assert_eq!(e.path, "services.uses-debug.depends_on.debug");
    assert_eq!(e.pos.line, 15);
    assert!(
        e.to_string().contains("not enabled by the active profiles"),
        "{e}"
    );
}

#[test]
fn cycles_found_by_the_planner_name_the_cycle_and_position() {
    // The parser rejects cycles, so build one by editing a valid spec.
    let mut s =
        spec("services:\n  a:\n    command: x\n    depends_on: [b]\n  b:\n    command: x\n");
    s.services
        .get_mut("b")
        .unwrap()
        .depends_on
        .push(Dependency {
            service: "a".into(),
            condition: DependencyCondition::Started,
            required: true,
            pos: Pos { line: 9, column: 9 },
        });
    let e = Plan::build(&s, &[]).unwrap_err();
    assert_eq!(
        e.kind,
        SpecErrorKind::Cycle(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(
        e.pos,
        Pos {
            line: 4,
            column: 18
        }
    );
    assert!(
        e.to_string()
            .ends_with("services.a.depends_on.b: dependency cycle: a -> b -> a"),
        "{e}"
    );
}

#[test]
fn find_cycle_reports_only_the_cycle() {
    // entry -> x -> y -> z -> x: the cycle is x, y, z (not entry).
    let s = spec(
        "services:\n  entry:\n    command: x\n  x:\n    command: x\n  y:\n    command: x\n  z:\n    command: x\n",
    );
    let mut services: Vec<ServiceSpec> = s.services.values().cloned().collect();
    let dep = |to: &str| Dependency {
        service: to.into(),
        condition: DependencyCondition::Started,
        required: true,
        pos: Pos::default(),
    };
    for (from, to) in [("entry", "x"), ("x", "y"), ("y", "z"), ("z", "x")] {
        services
            .iter_mut()
            .find(|s| s.name == from)
            .unwrap()
            .depends_on
            .push(dep(to));
    }
    assert_eq!(
        find_cycle(services.iter()),
        Some(vec!["x".into(), "y".into(), "z".into(), "x".into()])
    );
    services
        .iter_mut()
        .find(|s| s.name == "z")
        .unwrap()
        .depends_on
        .clear();
    assert_eq!(find_cycle(services.iter()), None);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn critical_path_follows_conditions() {
    let p = plan(DIAMOND, &[]).unwrap();
    let est = |n: &str| match n {
        "db" => ms(300),
        "api" => ms(200),
        "worker" => ms(700),
        "web" => ms(100),
        _ => ms(50),
    };
    // web waits for api and worker to *start*; api waits for db to be healthy (300 ms), worker only
    // for db to start (0). So worker starts at 0 and finishes at 700; api starts at 300, finishes 500;
    // web starts at max(300, 0) = 300 and finishes at 400. The last to finish is worker.
    let (path, total) = p.critical_path(est);
    assert_eq!(path, ["db", "worker"]);
    assert_eq!(total, ms(700));

    // Make web wait for api healthy-ish: with everything on service_healthy the path is the
    // heaviest chain.
    let healthy = DIAMOND
        .replace(
            "depends_on: [db]",
            "depends_on: {db: {condition: service_healthy}}",
        )
        .replace(
            "depends_on: [api, worker]",
            "depends_on: {api: {condition: service_healthy}, worker: {condition: service_healthy}}",
        )
        .replace(
            "  api:\n    command: x\n",
            "  api:\n    command: x\n    healthcheck: {test: [CMD, 'true']}\n",
        )
        .replace(
            "  worker:\n    command: x\n",
            "  worker:\n    command: x\n    healthcheck: {test: [CMD, 'true']}\n",
        );
    let p = plan(&healthy, &[]).unwrap();
    let (path, total) = p.critical_path(est);
    assert_eq!(path, ["db", "worker", "web"]);
    assert_eq!(total, ms(1100));
    let (path, total) = p.critical_path(|n| if n == "api" { ms(5000) } else { est(n) });
    assert_eq!(path, ["db", "api", "web"]);
    assert_eq!(total, ms(5400));
}

#[test]
fn critical_path_with_zero_estimates_prefers_the_deepest_chain() {
    let p = plan(DIAMOND, &[]).unwrap();
    let (path, total) = p.critical_path(|_| Duration::ZERO);
    assert_eq!(total, Duration::ZERO);
    assert_eq!(path.last().map(String::as_str), Some("web"));
    assert_eq!(path.len(), 3);
}

#[test]
fn default_estimates() {
    let p = plan(
        "services:\n  a:\n    command: x\n  b:\n    command: x\n    healthcheck: {test: [CMD, x]}\n  c:\n    command: x\n    healthcheck: {test: [CMD, x], start_period: 2s}\n",
        &[],
    )
    .unwrap();
    assert_eq!(default_estimate(&p.get("a").unwrap().spec), Duration::ZERO);
    assert_eq!(
        default_estimate(&p.get("b").unwrap().spec),
        FIRST_PROBE_ESTIMATE
    );
    assert_eq!(
        default_estimate(&p.get("c").unwrap().spec),
        Duration::from_secs(2)
    );
}

#[test]
fn critical_chain_walks_back_from_the_last_ready_service() {
    let p = plan(DIAMOND, &[]).unwrap();
    let actual: HashMap<String, (Duration, Duration)> = [
        ("cache", (ms(0), ms(10))),
        ("db", (ms(0), ms(300))),
        ("api", (ms(310), ms(900))),
        ("worker", (ms(5), ms(400))),
        ("web", (ms(320), ms(1000))),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    // web waited for api and worker to start (api started last, at 310); api waited for db healthy.
    assert_eq!(p.critical_chain(&actual), ["db", "api", "web"]);

    // A failed service is missing from `actual`: the chain is built from what ran.
    let mut partial = actual.clone();
    partial.remove("web");
    partial.remove("api");
    assert_eq!(p.critical_chain(&partial), ["db", "worker"]);
    assert!(p.critical_chain(&HashMap::new()).is_empty());
}

#[test]
fn plan_serialises_to_json() {
    let p = plan(DIAMOND, &[]).unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["levels"][2][0], "web");
    assert_eq!(
        v["services"]["api"]["spec"]["depends_on"][0]["condition"],
        "healthy"
    );
    assert_eq!(
        v["services"]["db"]["dependents"],
        serde_json::json!(["api", "worker"])
    );
}
