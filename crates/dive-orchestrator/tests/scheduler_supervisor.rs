//! The scheduler against a real supervisor (in-process daemon task, real child processes).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::retry::Backoff;
use dive_orchestrator::scheduler::{self, Gate, SchedulerConfig, ServiceOutcome};
use dive_orchestrator::spec::*;
use dive_orchestrator::supervisor::{Client, daemon};

fn svc(name: &str, script: &str, class: ServiceClass, dir: &Path) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        pos: Pos::default(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        environment: BTreeMap::new(),
        working_dir: dir.to_path_buf(),
        depends_on: vec![],
        healthcheck: None,
        restart: RestartPolicy::No,
        profiles: vec![],
        stop_grace_period: Duration::from_secs(2),
        stop_signal: 15,
        class,
        class_explicit: true,
        description: None,
        start_timeout: None,
        labels: BTreeMap::new(),
    }
}

fn file_probe(path: &str) -> HealthCheck {
    HealthCheck {
        probe: Probe::Shell(format!("test -f {path}")),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        retries: 3,
        start_period: Duration::ZERO,
        start_interval: Duration::from_secs(1),
    }
}

fn dep(name: &str, condition: DependencyCondition) -> Dependency {
    Dependency {
        service: name.into(),
        condition,
        required: true,
        pos: Pos::default(),
    }
}

async fn start_daemon(home: &Path) -> StackPaths {
    let paths = StackPaths::new(home, "t");
    let p = paths.clone();
    tokio::spawn(async move { daemon::run(p, daemon::DaemonConfig::default()).await });
    for _ in 0..500 {
        if Client::connect(&paths).await.is_ok() {
            return paths;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("supervisor did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_starts_in_dependency_order_and_parallel_branches_overlap() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    let paths = start_daemon(d).await;
    // db becomes healthy after 300 ms; api and worker both wait for it; a seed job runs after api.
    let mut db = svc(
        "db",
        "sleep 0.3; touch db.ready; exec sleep 60",
        ServiceClass::Core,
        d,
    );
    db.healthcheck = Some(file_probe("db.ready"));
    let mut api = svc(
        "api",
        "sleep 0.3; touch api.ready; exec sleep 60",
        ServiceClass::Core,
        d,
    );
    api.healthcheck = Some(file_probe("api.ready"));
    api.depends_on = vec![dep("db", DependencyCondition::Healthy)];
    let mut worker = svc(
        "worker",
        "sleep 0.3; touch w.ready; exec sleep 60",
        ServiceClass::Core,
        d,
    );
    worker.healthcheck = Some(file_probe("w.ready"));
    worker.depends_on = vec![dep("db", DependencyCondition::Healthy)];
    let mut seed = svc("seed", "test -f api.ready", ServiceClass::Init, d);
    seed.depends_on = vec![dep("api", DependencyCondition::Healthy)];
    let mut web = svc("web", "exec sleep 60", ServiceClass::Optional, d);
    web.depends_on = vec![dep("seed", DependencyCondition::CompletedSuccessfully)];
    let services = [&db, &api, &worker, &seed, &web];
    let current = Client::connect(&paths)
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    let mut events = Vec::new();
    let t0 = Instant::now();
    let outcome = scheduler::run(
        &paths,
        &services,
        &current,
        &HashMap::new(),
        &SchedulerConfig::default(),
        &mut |e| events.push(e),
        std::future::pending(),
    )
    .await
    .unwrap();
    let elapsed = t0.elapsed();
    assert!(outcome.all_up(), "{outcome:#?}");
    assert_eq!(outcome.services["seed"].outcome, ServiceOutcome::Completed);
    // Not a timing goal (those live in `dive bench orchestrate`); a bound that catches a hang.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let s = &outcome.services;
    // api and worker ran in parallel: each started before the other was ready.
    assert!(s["worker"].start_offset_ms.unwrap() < s["api"].ready_offset_ms.unwrap());
    assert!(s["api"].start_offset_ms.unwrap() < s["worker"].ready_offset_ms.unwrap());
    assert!(s["api"].start_offset_ms.unwrap() >= s["db"].ready_offset_ms.unwrap());
    assert!(s["web"].start_offset_ms.unwrap() >= s["seed"].ready_offset_ms.unwrap());

    // Unchanged re-run: nothing restarts.
    let current = Client::connect(&paths)
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    let again = scheduler::run(
        &paths,
        &services,
        &current,
        &HashMap::new(),
        &SchedulerConfig::default(),
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(
        again
            .services
            .values()
            .all(|s| s.outcome == ServiceOutcome::Unchanged),
        "{again:#?}"
    );
    Client::connect(&paths)
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_service_recovers_by_retry_and_core_failure_stops_the_rest() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    let paths = start_daemon(d).await;
    let fast = SchedulerConfig {
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
            jitter: 0.0,
        },
        ..SchedulerConfig::default()
    };
    // Fails its first two starts (counts attempts in a file), then comes up.
    let mut flaky = svc(
        "flaky",
        "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; [ $n -ge 3 ] || exit 1; touch ok; exec sleep 60",
        ServiceClass::Core,
        d,
    );
    flaky.healthcheck = Some(file_probe("ok"));
    let current = Client::connect(&paths)
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    let out = scheduler::run(
        &paths,
        &[&flaky],
        &current,
        &HashMap::new(),
        &fast,
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(out.services["flaky"].outcome, ServiceOutcome::Ready);
    assert_eq!(out.services["flaky"].attempts.len(), 3);

    let broken = svc("broken", "exit 7", ServiceClass::Core, d);
    let mut broken = broken;
    broken.healthcheck = Some(file_probe("never"));
    let mut after = svc("after", "exec sleep 60", ServiceClass::Core, d);
    after.depends_on = vec![dep("broken", DependencyCondition::Healthy)];
    let mut opt = svc("opt", "exit 1", ServiceClass::Optional, d);
    opt.healthcheck = Some(file_probe("never"));
    let mut gates = HashMap::new();
    gates.insert("opt".to_string(), Gate::Deny("circuit open".into()));
    let out = scheduler::run(
        &paths,
        &[&broken, &after, &opt],
        &current,
        &gates,
        &fast,
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(out.failed_core.as_deref(), Some("broken"));
    assert_eq!(out.services["broken"].attempts.len(), 3);
    assert!(
        out.services["broken"]
            .reason
            .as_ref()
            .unwrap()
            .contains("exit code 7")
    );
    assert!(matches!(
        out.services["after"].outcome,
        ServiceOutcome::NotStarted | ServiceOutcome::Skipped
    ));
    assert_eq!(out.services["opt"].outcome, ServiceOutcome::Failed);
    assert_eq!(
        out.services["opt"].attempts.len(),
        1,
        "a denied gate never starts the service"
    );
    Client::connect(&paths)
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}
