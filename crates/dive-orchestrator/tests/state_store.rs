//! The state store's behaviour, run against SQLite (a temporary file) and PostgreSQL (a fresh
//! database per test at `DIVE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::Duration;

use dive_orchestrator::state::{
    Backend, BreakerConfig, BreakerState, DeploymentId, DeploymentState as S, LockOptions,
    ServiceResult, Severity, StateError, StateStore, StepState, StepStatus, advisory_key,
    now_millis, percentiles,
};
use sqlx::{AnyConnection, Connection, Executor};

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's store and where it lives (to open more handles on it, like other processes do).
struct Ctx {
    store: StateStore,
    location: String,
}

impl Ctx {
    async fn another_store(&self) -> StateStore {
        StateStore::open(&self.location)
            .await
            .expect("reopen store")
    }
}

/// A database created for one test and dropped afterwards (even if the test fails).
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

fn with_database(url: &str, db: &str) -> String {
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let path_start = head[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(head.len());
    format!("{}/{db}{query}", &head[..path_start])
}

async fn pg_db() -> Option<PgDb> {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("DIVE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG.to_string());
    let conn =
        tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(&admin_url)).await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            skipped(&admin_url, &e.to_string());
            return None;
        }
        Err(_) => {
            skipped(&admin_url, "connection timed out");
            return None;
        }
    };
    let name = format!("dive_state_test_{:016x}", rand_u64());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    let _ = conn.close().await;
    Some(PgDb {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
    })
}

/// Say so where it is seen: written to the real stderr, past libtest's output capture.
fn skipped(url: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED (no PostgreSQL at {url}): {why}"
    );
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = AnyConnection::connect(&admin).await {
                    let _ = c
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// Run `body` against SQLite and PostgreSQL, as two tests.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let location = dir.path().join("nested/dir/state.db").display().to_string();
                let store = super::StateStore::open(&location).await.expect("open sqlite store");
                assert_eq!(store.backend(), super::Backend::Sqlite);
                super::$name(super::Ctx { store, location }).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = super::pg_db().await else { return };
                let store = super::StateStore::open(&db.url).await.expect("open postgres store");
                assert_eq!(store.backend(), super::Backend::Postgres);
                super::$name(super::Ctx { store, location: db.url.clone() }).await;
            }
        }
    )*};
}

both_backends!(
    deployment_lifecycle,
    refused_transitions_change_nothing,
    listing_and_latest,
    steps_are_checkpoints,
    results_errors_events_and_metrics,
    history_feeds_percentiles,
    breakers_persist_across_handles,
    summary_counts_everything,
    delete_stack_removes_only_that_stack,
    lock_is_exclusive_per_stack,
    lock_race_has_one_winner,
    concurrent_writers_do_not_fail,
    reopening_is_idempotent,
    abandoned_deployments_are_failed,
);

async fn deployment_lifecycle(ctx: Ctx) {
    let s = &ctx.store;
    let id = s
        .create_deployment("demo", "stack", "sha256:abc")
        .await
        .unwrap();
    let d = s.deployment(&id).await.unwrap();
    assert_eq!(
        (d.state, d.stack.as_str(), d.kind.as_str()),
        (S::Pending, "demo", "stack")
    );
    assert_eq!(d.finished_at, None);

    s.transition(&id, S::Initializing, "lock taken")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.transition(&id, S::Deploying, "starting services")
        .await
        .unwrap();
    s.transition(&id, S::Verifying, "all core services healthy")
        .await
        .unwrap();
    let summary = serde_json::json!({"services": 3, "degraded": ["search"]});
    s.finish_deployment(&id, S::Degraded, "test", &summary)
        .await
        .unwrap();

    let d = s.deployment(&id).await.unwrap();
    assert_eq!(d.state, S::Degraded);
    assert_eq!(d.summary, Some(summary));
    let finished = d.finished_at.expect("finished_at set");
    assert!(finished >= d.started_at + 30);
    assert_eq!(d.duration_ms, Some(finished - d.started_at));

    let t = s.transitions(&id).await.unwrap();
    let path: Vec<_> = t.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        path,
        vec![
            (S::Pending, S::Initializing),
            (S::Initializing, S::Deploying),
            (S::Deploying, S::Verifying),
            (S::Verifying, S::Degraded)
        ]
    );
    assert_eq!(t[1].reason, "starting services");
    assert!(
        t[1].duration_ms >= 30,
        "time in INITIALIZING recorded: {}",
        t[1].duration_ms
    );
    assert!(t.iter().all(|t| t.duration_ms >= 0));
}

async fn refused_transitions_change_nothing(ctx: Ctx) {
    let s = &ctx.store;
    let id = s.create_deployment("demo", "hub", "h").await.unwrap();
    s.transition(&id, S::Interrupted, "Ctrl-C").await.unwrap();
    match s.transition(&id, S::Deploying, "resume in place").await {
        Err(StateError::InvalidTransition { from, to }) => {
            assert_eq!((from, to), (S::Interrupted, S::Deploying))
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    let err = s.transition(&id, S::Deploying, "x").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployment cannot go from INTERRUPTED to DEPLOYING"
    );
    assert_eq!(s.deployment(&id).await.unwrap().state, S::Interrupted);
    assert_eq!(s.transitions(&id).await.unwrap().len(), 1);

    let id2 = s.create_deployment("demo", "spoke", "h").await.unwrap();
    assert!(matches!(
        s.finish_deployment(&id2, S::Verifying, "test", &serde_json::json!({}))
            .await,
        Err(StateError::NotFinal(S::Verifying))
    ));
    let ghost = DeploymentId::new("no-such-deployment");
    assert!(matches!(
        s.deployment(&ghost).await,
        Err(StateError::UnknownDeployment(_))
    ));
    assert!(matches!(
        s.transition(&ghost, S::Failed, "x").await,
        Err(StateError::UnknownDeployment(_))
    ));
    let err = s
        .create_deployment("demo", "cluster", "h")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"cluster\" (expected stack, hub or spoke)"),
        "{err}"
    );
}

async fn listing_and_latest(ctx: Ctx) {
    let s = &ctx.store;
    let mut ids = Vec::new();
    for i in 0..4 {
        let stack = if i % 2 == 0 { "alpha" } else { "beta" };
        ids.push(
            s.create_deployment(stack, "stack", &format!("h{i}"))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let all = s.list_deployments(None, 10).await.unwrap();
    let listed: Vec<_> = all.iter().map(|d| d.id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    let alpha = s.list_deployments(Some("alpha"), 10).await.unwrap();
    assert_eq!(
        alpha
            .iter()
            .map(|d| d.spec_hash.as_str())
            .collect::<Vec<_>>(),
        ["h2", "h0"]
    );
    assert_eq!(s.list_deployments(None, 1).await.unwrap().len(), 1);
    assert_eq!(
        s.latest_deployment("beta").await.unwrap().unwrap().id,
        ids[3]
    );
    assert!(s.latest_deployment("gamma").await.unwrap().is_none());
}

async fn steps_are_checkpoints(ctx: Ctx) {
    let s = &ctx.store;
    assert_eq!(s.last_completed_phase("demo").await.unwrap(), None);
    let first = s.create_deployment("demo", "stack", "h").await.unwrap();
    s.begin_step(&first, "preflight").await.unwrap();
    s.finish_step(&first, "preflight", StepStatus::Done, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    s.begin_step(&first, "init").await.unwrap();
    s.finish_step(&first, "init", StepStatus::Done, Some("pki ready"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    s.begin_step(&first, "start").await.unwrap();
    s.transition(&first, S::Interrupted, "Ctrl-C")
        .await
        .unwrap();

    let steps = s.steps(&first).await.unwrap();
    let view: Vec<_> = steps
        .iter()
        .map(|st| (st.phase.as_str(), st.state))
        .collect();
    assert_eq!(
        view,
        [
            ("preflight", StepState::Finished(StepStatus::Done)),
            ("init", StepState::Finished(StepStatus::Done)),
            ("start", StepState::Running)
        ]
    );
    assert_eq!(steps[1].detail.as_deref(), Some("pki ready"));
    assert!(steps[2].finished_at.is_none());

    // A new deployment resumes after the last completed phase of the interrupted one.
    let cp = s.last_completed_phase("demo").await.unwrap().unwrap();
    assert_eq!(
        (cp.deployment_id.clone(), cp.phase.as_str()),
        (first.clone(), "init")
    );
    let second = s.create_deployment("demo", "stack", "h").await.unwrap();
    s.finish_step(
        &second,
        "preflight",
        StepStatus::Skipped,
        Some("checkpoint"),
    )
    .await
    .unwrap();
    s.begin_step(&second, "start").await.unwrap();
    s.finish_step(
        &second,
        "start",
        StepStatus::Failed,
        Some("core service db failed"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.last_completed_phase("demo").await.unwrap().unwrap().phase,
        "init"
    );
    s.begin_step(&second, "start").await.unwrap();
    s.finish_step(&second, "start", StepStatus::Done, None)
        .await
        .unwrap();
    let cp = s.last_completed_phase("demo").await.unwrap().unwrap();
    assert_eq!(
        (cp.deployment_id, cp.phase.as_str()),
        (second.clone(), "start")
    );
    let st = s.steps(&second).await.unwrap();
    assert_eq!(st.len(), 2, "a retried phase is one step: {st:?}");
    assert!(
        st.iter().any(|x| x.phase == "start" && x.detail.is_none()),
        "retry clears the old detail"
    );
    assert_eq!(s.last_completed_phase("other").await.unwrap(), None);

    let ghost = DeploymentId::new("ghost");
    assert!(matches!(
        s.begin_step(&ghost, "start").await,
        Err(StateError::UnknownDeployment(_))
    ));
}

async fn results_errors_events_and_metrics(ctx: Ctx) {
    let s = &ctx.store;
    let id = s.create_deployment("demo", "stack", "h").await.unwrap();
    let mut db = ServiceResult {
        service: "db".into(),
        class: "core".into(),
        outcome: "failed".into(),
        attempts: 1,
        time_to_healthy_ms: None,
        error: Some("exit 1".into()),
    };
    s.record_service_result(&id, &db).await.unwrap();
    db.outcome = "healthy".into();
    db.attempts = 3;
    db.time_to_healthy_ms = Some(1234);
    db.error = None;
    s.record_service_result(&id, &db).await.unwrap();
    let api = ServiceResult {
        service: "api".into(),
        class: "stretch".into(),
        outcome: "skipped".into(),
        attempts: 0,
        time_to_healthy_ms: None,
        error: Some("dependency search failed".into()),
    };
    s.record_service_result(&id, &api).await.unwrap();
    assert_eq!(s.service_results(&id).await.unwrap(), vec![api, db]);

    s.record_error(
        &id,
        Severity::Warning,
        Some("search"),
        "search failed",
        Some("check its log"),
    )
    .await
    .unwrap();
    s.record_error(&id, Severity::Critical, None, "lock lost", None)
        .await
        .unwrap();
    let errors = s.errors(&id).await.unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].severity, Severity::Warning);
    assert_eq!(errors[0].service.as_deref(), Some("search"));
    assert_eq!(errors[0].remediation.as_deref(), Some("check its log"));
    assert_eq!(
        (errors[1].severity, errors[1].service.as_deref()),
        (Severity::Critical, None)
    );

    s.record_event(&id, Some("db"), "started", Some("pid 42"))
        .await
        .unwrap();
    s.record_event(&id, Some("db"), "healthy", None)
        .await
        .unwrap();
    let ev: Vec<_> = s
        .events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(ev, ["started", "healthy"]);

    s.record_metric(
        Some(&id),
        "dive_service_time_to_healthy_ms",
        &[("service", "db")],
        1234.0,
    )
    .await
    .unwrap();
    s.record_metric(None, "dive_store_opened", &[], 1.0)
        .await
        .unwrap();
    let err = s.record_metric(None, "x", &[], f64::NAN).await.unwrap_err();
    assert!(err.to_string().contains("not a finite number"), "{err}");
    let ghost = DeploymentId::new("ghost");
    assert!(matches!(
        s.record_service_result(
            &ghost,
            &ServiceResult {
                service: "x".into(),
                class: "core".into(),
                outcome: "healthy".into(),
                attempts: 1,
                time_to_healthy_ms: None,
                error: None
            }
        )
        .await,
        Err(StateError::UnknownDeployment(_))
    ));
    assert!(matches!(
        s.record_metric(Some(&ghost), "m", &[], 1.0).await,
        Err(StateError::UnknownDeployment(_))
    ));
    let samples = s
        .metric_samples(Some("dive_service_time_to_healthy_ms"), 10)
        .await
        .unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].deployment_id.as_ref(), Some(&id));
    assert_eq!(
        samples[0].labels.get("service").map(String::as_str),
        Some("db")
    );
    assert_eq!(samples[0].value, 1234.0);
    let all = s.metric_samples(None, 10).await.unwrap();
    assert_eq!(all[0].name, "dive_store_opened", "newest first");
    assert!(all[0].deployment_id.is_none() && all[0].labels.is_empty());
    let metrics = s
        .summary()
        .await
        .unwrap()
        .counts
        .into_iter()
        .find(|c| c.table == "metrics")
        .unwrap();
    assert_eq!(metrics.rows, 2);
}

async fn history_feeds_percentiles(ctx: Ctx) {
    let s = &ctx.store;
    for (i, ms) in [100, 200, 300, 400].into_iter().enumerate() {
        let id = s.create_deployment("demo", "stack", "h").await.unwrap();
        s.record_service_result(
            &id,
            &ServiceResult {
                service: "db".into(),
                class: "core".into(),
                outcome: "healthy".into(),
                attempts: 1,
                time_to_healthy_ms: Some(ms),
                error: None,
            },
        )
        .await
        .unwrap();
        if i < 3 {
            s.finish_deployment(&id, S::Complete, "test", &serde_json::json!({}))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let other = s.create_deployment("other", "stack", "h").await.unwrap();
    s.record_service_result(
        &other,
        &ServiceResult {
            service: "web".into(),
            class: "core".into(),
            outcome: "healthy".into(),
            attempts: 1,
            time_to_healthy_ms: Some(9),
            error: None,
        },
    )
    .await
    .unwrap();

    let durations = s.service_durations(Some("demo"), 10).await.unwrap();
    let ms: Vec<_> = durations.iter().map(|d| d.time_to_healthy_ms).collect();
    assert_eq!(ms, [400, 300, 200, 100], "newest first");
    assert_eq!(
        s.service_durations(Some("demo"), 2).await.unwrap().len(),
        2,
        "limit counts deployments"
    );
    assert_eq!(s.service_durations(None, 10).await.unwrap().len(), 5);
    let p = percentiles(&ms.iter().map(|v| *v as f64).collect::<Vec<_>>()).unwrap();
    assert_eq!((p.p50, p.p95, p.p99), (200.0, 400.0, 400.0));

    let totals = s.deployment_durations(Some("demo"), 10).await.unwrap();
    assert_eq!(totals.len(), 3, "only finished deployments have a duration");
    assert!(
        totals
            .iter()
            .all(|d| d.duration_ms >= 0 && d.state == S::Complete)
    );
}

async fn breakers_persist_across_handles(ctx: Ctx) {
    let s = &ctx.store;
    let cfg = BreakerConfig {
        failure_threshold: 2,
        cooldown: Duration::from_secs(60),
        success_threshold: 1,
    };
    let t0 = now_millis();
    assert_eq!(
        s.breaker("demo", "db").await.unwrap().state,
        BreakerState::Closed
    );
    assert!(
        !s.breaker_allows("demo", "db", t0, &cfg)
            .await
            .unwrap()
            .trial
    );
    assert_eq!(
        s.record_attempt("demo", "db", false, Some("exit 1"), t0, &cfg)
            .await
            .unwrap(),
        BreakerState::Closed
    );
    assert_eq!(
        s.record_attempt("demo", "db", false, Some("exit 2"), t0 + 1, &cfg)
            .await
            .unwrap(),
        BreakerState::Open
    );

    // Another process (another handle) sees the open breaker and is refused.
    let other = ctx.another_store().await;
    match other.breaker_allows("demo", "db", t0 + 10, &cfg).await {
        Err(StateError::BreakerOpen(open)) => {
            assert_eq!(open.until, t0 + 1 + 60_000);
            assert_eq!(open.failures, 2);
            assert_eq!(open.last_error.as_deref(), Some("exit 2"));
            assert!(
                open.to_string().contains("service db of stack demo"),
                "{open}"
            );
        }
        other => panic!("expected BreakerOpen, got {other:?}"),
    }
    // Other services and stacks are unaffected.
    assert!(
        other
            .breaker_allows("demo", "api", t0 + 10, &cfg)
            .await
            .is_ok()
    );
    assert!(
        other
            .breaker_allows("prod", "db", t0 + 10, &cfg)
            .await
            .is_ok()
    );

    // After the cooldown a trial is allowed and the breaker is stored as half-open.
    let permit = other
        .breaker_allows("demo", "db", t0 + 60_001, &cfg)
        .await
        .unwrap();
    assert!(permit.trial);
    assert_eq!(
        s.breaker("demo", "db").await.unwrap().state,
        BreakerState::HalfOpen
    );
    assert_eq!(
        s.record_attempt("demo", "db", true, None, t0 + 60_002, &cfg)
            .await
            .unwrap(),
        BreakerState::Closed
    );
    let rec = s.breaker("demo", "db").await.unwrap();
    assert_eq!(
        (rec.state, rec.consecutive_failures, rec.opened_at),
        (BreakerState::Closed, 0, None)
    );

    // Open two, list them, reset one service then the whole stack.
    for svc in ["db", "api"] {
        for i in 0..2 {
            s.record_attempt("demo", svc, false, None, t0 + 70_000 + i, &cfg)
                .await
                .unwrap();
        }
    }
    s.record_attempt("prod", "db", false, None, t0, &cfg)
        .await
        .unwrap();
    let listed: Vec<_> = s
        .list_breakers(Some("demo"))
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.service, b.record.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("api".to_string(), BreakerState::Open),
            ("db".to_string(), BreakerState::Open)
        ]
    );
    assert_eq!(s.list_breakers(None).await.unwrap().len(), 3);
    assert_eq!(s.reset_breaker("demo", Some("db")).await.unwrap(), 1);
    assert!(
        s.breaker_allows("demo", "db", t0 + 70_010, &cfg)
            .await
            .is_ok()
    );
    assert!(
        s.breaker_allows("demo", "api", t0 + 70_010, &cfg)
            .await
            .is_err()
    );
    assert_eq!(s.reset_breaker("demo", None).await.unwrap(), 1);
    assert!(
        s.breaker_allows("demo", "api", t0 + 70_010, &cfg)
            .await
            .is_ok()
    );
    assert_eq!(
        s.list_breakers(None).await.unwrap().len(),
        1,
        "prod's breaker untouched"
    );
}

async fn summary_counts_everything(ctx: Ctx) {
    let s = &ctx.store;
    let sum = s.summary().await.unwrap();
    assert_eq!(sum.schema_version, 1);
    assert_eq!(sum.latest_schema_version, 1);
    assert!(sum.counts.iter().all(|c| c.rows == 0), "{:?}", sum.counts);
    assert_eq!(sum.counts.len(), 9);
    assert!(!sum.location.is_empty());

    let id = s.create_deployment("demo", "stack", "h").await.unwrap();
    s.transition(&id, S::Deploying, "go").await.unwrap();
    let cfg = BreakerConfig {
        failure_threshold: 1,
        ..BreakerConfig::default()
    };
    s.record_attempt("demo", "db", false, Some("boom"), now_millis(), &cfg)
        .await
        .unwrap();
    let guard = s.acquire_lock("demo", &id).await.unwrap();
    let sum = s.summary().await.unwrap();
    let count = |t: &str| sum.counts.iter().find(|c| c.table == t).unwrap().rows;
    assert_eq!(
        (
            count("deployments"),
            count("transitions"),
            count("breakers"),
            count("locks")
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(sum.active_locks.len(), 1);
    assert_eq!(sum.active_locks[0].stack, "demo");
    assert_eq!(sum.active_locks[0].owner.deployment_id, id.as_str());
    assert!(!sum.active_locks[0].stale);
    assert_eq!(sum.open_breakers.len(), 1);
    assert_eq!(
        sum.open_breakers[0].record.last_error.as_deref(),
        Some("boom")
    );
    guard.release().await.unwrap();
    assert!(s.summary().await.unwrap().active_locks.is_empty());
}

async fn delete_stack_removes_only_that_stack(ctx: Ctx) {
    let s = &ctx.store;
    let mut ids = Vec::new();
    for stack in ["doomed", "kept"] {
        let id = s.create_deployment(stack, "stack", "h").await.unwrap();
        s.transition(&id, S::Deploying, "go").await.unwrap();
        s.begin_step(&id, "start").await.unwrap();
        s.record_service_result(
            &id,
            &ServiceResult {
                service: "db".into(),
                class: "core".into(),
                outcome: "healthy".into(),
                attempts: 1,
                time_to_healthy_ms: Some(5),
                error: None,
            },
        )
        .await
        .unwrap();
        s.record_error(&id, Severity::Info, None, "note", None)
            .await
            .unwrap();
        s.record_event(&id, None, "started", None).await.unwrap();
        s.record_metric(Some(&id), "m", &[("stack", stack)], 1.0)
            .await
            .unwrap();
        s.record_attempt(
            stack,
            "db",
            false,
            None,
            now_millis(),
            &BreakerConfig::default(),
        )
        .await
        .unwrap();
        ids.push(id);
    }
    let _leftover = std::mem::ManuallyDrop::new(s.acquire_lock("doomed", &ids[0]).await.unwrap());
    assert_eq!(s.delete_stack("doomed").await.unwrap(), 1);
    assert!(matches!(
        s.deployment(&ids[0]).await,
        Err(StateError::UnknownDeployment(_))
    ));
    assert!(s.list_breakers(Some("doomed")).await.unwrap().is_empty());
    let sum = s.summary().await.unwrap();
    let count = |t: &str| sum.counts.iter().find(|c| c.table == t).unwrap().rows;
    for t in [
        "deployments",
        "transitions",
        "steps",
        "service_results",
        "events",
        "errors",
        "breakers",
        "metrics",
    ] {
        assert_eq!(count(t), 1, "{t} keeps only the other stack's row");
    }
    assert_eq!(count("locks"), 0);
    assert_eq!(s.steps(&ids[1]).await.unwrap().len(), 1);
    assert_eq!(s.delete_stack("doomed").await.unwrap(), 0);
}

async fn lock_is_exclusive_per_stack(ctx: Ctx) {
    let s = &ctx.store;
    let other = ctx.another_store().await;
    let a = s.create_deployment("alpha", "stack", "h").await.unwrap();
    let b = s.create_deployment("alpha", "stack", "h").await.unwrap();
    let c = s.create_deployment("beta", "stack", "h").await.unwrap();

    let guard = s.acquire_lock("alpha", &a).await.unwrap();
    assert!(guard.recovered_from.is_none());
    assert_eq!(guard.stack(), "alpha");
    match other.acquire_lock("alpha", &b).await {
        Err(StateError::LockHeld {
            stack,
            owner: Some(owner),
        }) => {
            assert_eq!(stack, "alpha");
            assert_eq!(owner.deployment_id, a.as_str());
            assert_eq!(owner.pid, i64::from(std::process::id()));
            let msg = StateError::LockHeld {
                stack,
                owner: Some(owner),
            }
            .to_string();
            assert!(
                msg.contains("stack alpha is being deployed by deployment")
                    && msg.contains(a.as_str()),
                "{msg}"
            );
        }
        other => panic!("expected LockHeld with an owner, got {other:?}"),
    }
    // A different stack deploys concurrently.
    let beta = other.acquire_lock("beta", &c).await.unwrap();
    assert_eq!(s.active_locks().await.unwrap().len(), 2);

    guard.release().await.unwrap();
    let again = other.acquire_lock("alpha", &b).await.unwrap();
    assert!(
        again.recovered_from.is_none(),
        "a released lock is not a recovery"
    );
    assert!(s.acquire_lock("alpha", &a).await.is_err());
    again.release().await.unwrap();
    beta.release().await.unwrap();
    assert!(s.active_locks().await.unwrap().is_empty());

    // Dropping a guard without releasing it frees the stack too (best effort, asynchronously).
    let dropped = s.acquire_lock("alpha", &a).await.unwrap();
    drop(dropped);
    let mut reacquired = None;
    for _ in 0..100 {
        if let Ok(g) = other.acquire_lock("alpha", &b).await {
            reacquired = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reacquired
        .expect("lock free after the guard was dropped")
        .release()
        .await
        .unwrap();
}

async fn lock_race_has_one_winner(ctx: Ctx) {
    let id = ctx
        .store
        .create_deployment("race", "stack", "h")
        .await
        .unwrap();
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(ctx.another_store().await);
    }
    let attempts = stores.into_iter().map(|st| {
        let id = id.clone();
        tokio::spawn(async move {
            let r = st.acquire_lock("race", &id).await;
            // Keep winners alive until everyone has tried.
            tokio::time::sleep(Duration::from_millis(300)).await;
            match r {
                Ok(g) => {
                    g.release().await.unwrap();
                    true
                }
                Err(StateError::LockHeld { .. }) => false,
                Err(e) => panic!("unexpected error: {e}"),
            }
        })
    });
    let mut winners = 0;
    for a in attempts.collect::<Vec<_>>() {
        if a.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn concurrent_writers_do_not_fail(ctx: Ctx) {
    // Several handles (like several CLI processes) writing at once: SQLite waits (WAL + busy
    // timeout) instead of failing with "database is locked".
    let mut tasks = Vec::new();
    for w in 0..4 {
        let st = ctx.another_store().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let id = st
                    .create_deployment(&format!("stack{w}"), "stack", "h")
                    .await?;
                st.transition(&id, S::Deploying, "go").await?;
                st.begin_step(&id, "start").await?;
                st.record_event(&id, Some("svc"), &format!("e{i}"), None)
                    .await?;
                st.finish_deployment(&id, S::Complete, "test", &serde_json::json!({"i": i}))
                    .await?;
            }
            Ok::<_, StateError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("concurrent writes succeed");
    }
    assert_eq!(
        ctx.store.list_deployments(None, 1000).await.unwrap().len(),
        60
    );
}

async fn abandoned_deployments_are_failed(ctx: Ctx) {
    let s = &ctx.store;
    let crashed = s.create_deployment("demo", "stack", "h").await.unwrap();
    s.transition(&crashed, S::Deploying, "go").await.unwrap();
    let finished = s.create_deployment("demo", "stack", "h").await.unwrap();
    s.finish_deployment(&finished, S::Complete, "test", &serde_json::json!({}))
        .await
        .unwrap();
    let elsewhere = s.create_deployment("other", "stack", "h").await.unwrap();
    let current = s.create_deployment("demo", "stack", "h").await.unwrap();

    let closed = s
        .fail_abandoned_deployments("demo", &current)
        .await
        .unwrap();
    assert_eq!(closed, vec![crashed.clone()]);
    let d = s.deployment(&crashed).await.unwrap();
    assert_eq!(d.state, S::Failed);
    assert!(d.finished_at.is_some());
    let t = s.transitions(&crashed).await.unwrap();
    assert!(
        t.last()
            .unwrap()
            .reason
            .starts_with("abandoned in DEPLOYING"),
        "{t:?}"
    );
    assert_eq!(s.deployment(&current).await.unwrap().state, S::Pending);
    assert_eq!(s.deployment(&elsewhere).await.unwrap().state, S::Pending);
    assert_eq!(s.deployment(&finished).await.unwrap().state, S::Complete);
    assert!(
        s.fail_abandoned_deployments("demo", &current)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn reopening_is_idempotent(ctx: Ctx) {
    let id = ctx
        .store
        .create_deployment("demo", "stack", "h")
        .await
        .unwrap();
    let again = ctx.another_store().await;
    assert_eq!(again.deployment(&id).await.unwrap().stack, "demo");
    assert_eq!(again.summary().await.unwrap().schema_version, 1);
    // Our own migrations table, so a database shared with other sqlx users does not mix them.
    let mut conn = AnyConnection::connect(&sqlite_or_pg_url(&ctx.location))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orch_schema_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    conn.close().await.unwrap();
    assert!(!again.describe().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Backend-specific behaviour.

async fn sqlite_store() -> (tempfile::TempDir, String, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("state.db").display().to_string();
    let store = StateStore::open(&location).await.unwrap();
    (dir, location, store)
}

/// Write a lock row as another (possibly dead, possibly remote) process would have.
async fn plant_lock(
    location: &str,
    stack: &str,
    pid: i64,
    host: &str,
    start: Option<i64>,
    heartbeat_age_ms: i64,
) {
    let mut conn = AnyConnection::connect(&format!("sqlite://{location}"))
        .await
        .unwrap();
    let now = now_millis();
    sqlx::query(
        "INSERT INTO locks (stack, deployment_id, token, owner_pid, owner_host, owner_start, acquired_at, heartbeat_at, lease_ms) \
         VALUES ($1, 'old-deployment', 'old-token', $2, $3, $4, $5, $6, 30000)",
    )
    .bind(stack)
    .bind(pid)
    .bind(host)
    .bind(start)
    .bind(now - heartbeat_age_ms)
    .bind(now - heartbeat_age_ms)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

fn sqlite_or_pg_url(location: &str) -> String {
    if location.starts_with("postgres") {
        location.to_string()
    } else {
        format!("sqlite://{location}")
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn dead_pid() -> i64 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    i64::from(pid)
}

#[tokio::test]
async fn sqlite_stale_lock_of_a_dead_process_is_recovered() {
    let (_dir, location, store) = sqlite_store().await;
    let pid = dead_pid();
    plant_lock(&location, "demo", pid, &this_host(), Some(1), 0).await;
    let locks = store.active_locks().await.unwrap();
    assert!(locks[0].stale, "a dead owner is reported as stale");
    let id = store.create_deployment("demo", "stack", "h").await.unwrap();
    let guard = store
        .acquire_lock("demo", &id)
        .await
        .expect("stale lock recovered");
    let prev = guard.recovered_from.clone().expect("recovery reported");
    assert_eq!(
        (prev.pid, prev.deployment_id.as_str()),
        (pid, "old-deployment")
    );
    let locks = store.active_locks().await.unwrap();
    assert_eq!(locks[0].owner.deployment_id, id.as_str());
    assert!(!locks[0].stale);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn sqlite_reused_pid_does_not_keep_a_lock() {
    let (_dir, location, store) = sqlite_store().await;
    // Our own (live) pid, but a different process start time: the recorded owner is gone.
    let me = i64::from(std::process::id());
    plant_lock(&location, "demo", me, &this_host(), Some(1), 0).await;
    let id = store.create_deployment("demo", "stack", "h").await.unwrap();
    let guard = store
        .acquire_lock("demo", &id)
        .await
        .expect("reused pid detected");
    assert!(guard.recovered_from.is_some());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn sqlite_remote_owner_holds_until_its_lease_expires() {
    let (_dir, location, store) = sqlite_store().await;
    let id = store
        .create_deployment("fresh", "stack", "h")
        .await
        .unwrap();
    // Another host's pid cannot be checked here: a fresh heartbeat means it holds the lock.
    plant_lock(&location, "fresh", 1, "some-other-host", None, 1_000).await;
    match store.acquire_lock("fresh", &id).await {
        Err(StateError::LockHeld { owner: Some(o), .. }) => assert_eq!(o.host, "some-other-host"),
        other => panic!("expected LockHeld, got {other:?}"),
    }
    // A lease not renewed for longer than its 30 s lease is abandoned.
    plant_lock(&location, "expired", 1, "some-other-host", None, 31_000).await;
    let guard = store
        .acquire_lock("expired", &id)
        .await
        .expect("expired lease recovered");
    assert_eq!(
        guard.recovered_from.as_ref().map(|o| o.host.as_str()),
        Some("some-other-host")
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn sqlite_heartbeat_renews_the_lease_and_detects_takeover() {
    let (_dir, location, store) = sqlite_store().await;
    let id = store.create_deployment("demo", "stack", "h").await.unwrap();
    let opts = LockOptions {
        lease: Duration::from_millis(600),
        heartbeat: Duration::from_millis(100),
    };
    let guard = store.acquire_lock_with("demo", &id, opts).await.unwrap();
    let first = store.active_locks().await.unwrap()[0].owner.heartbeat_at;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let locks = store.active_locks().await.unwrap();
    assert!(locks[0].owner.heartbeat_at > first, "heartbeat renewed");
    assert!(
        !locks[0].stale,
        "a renewed lease outlives its initial lease time"
    );
    let other = StateStore::open(&location).await.unwrap();
    assert!(other.acquire_lock("demo", &id).await.is_err());
    // Someone force-removes the row (e.g. an operator): the holder notices it lost the lock.
    let mut conn = AnyConnection::connect(&format!("sqlite://{location}"))
        .await
        .unwrap();
    conn.execute("DELETE FROM locks").await.unwrap();
    conn.close().await.unwrap();
    for _ in 0..50 {
        if guard.is_lost() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(guard.is_lost());
    let bad = LockOptions {
        lease: Duration::from_secs(1),
        heartbeat: Duration::from_secs(2),
    };
    assert!(matches!(
        store.acquire_lock_with("x", &id, bad).await,
        Err(StateError::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn sqlite_store_uses_wal_and_creates_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b c/state.db");
    let store = StateStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    assert_eq!(store.describe(), path.display().to_string());
    let mut conn = AnyConnection::connect(&format!(
        "sqlite://{}",
        path.display().to_string().replace(' ', "%20")
    ))
    .await
    .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn bad_locations_are_refused() {
    for bad in ["", "mysql://u:pw@h/db", "sqlite::memory:"] {
        let err = StateStore::open(bad).await.unwrap_err();
        assert!(
            matches!(err, StateError::InvalidLocation { .. }),
            "{bad}: {err}"
        );
        assert!(
            !err.to_string().contains("pw@"),
            "password not shown: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = StateStore::open(&file.join("state.db").display().to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::CreateDir { .. }), "{err}");
}

#[tokio::test]
async fn postgres_lock_held_by_another_session_and_freed_when_it_ends() {
    let Some(db) = pg_db().await else { return };
    let store = StateStore::open(&db.url).await.unwrap();
    let id = store.create_deployment("demo", "stack", "h").await.unwrap();
    // A foreign session holds the stack's advisory lock (no description row).
    let mut foreign = AnyConnection::connect(&db.url).await.unwrap();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(advisory_key("demo"))
        .fetch_one(&mut foreign)
        .await
        .unwrap();
    assert!(got);
    match store.acquire_lock("demo", &id).await {
        Err(StateError::LockHeld { owner: None, .. }) => {}
        other => panic!("expected LockHeld without an owner row, got {other:?}"),
    }
    assert!(store.acquire_lock("other", &id).await.is_ok_and(|g| {
        drop(g);
        true
    }));
    // Ending the session (dropping the connection) frees the lock: no manual cleanup.
    drop(foreign);
    let mut guard = None;
    for _ in 0..100 {
        if let Ok(g) = store.acquire_lock("demo", &id).await {
            guard = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let guard = guard.expect("lock free once the holding session ended");
    // The lock really is the advisory lock, held on the guard's own connection.
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND ((classid::bigint << 32) | objid::bigint) = $1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(advisory_key("demo"))
    .fetch_one(&mut AnyConnection::connect(&db.url).await.unwrap())
    .await
    .unwrap();
    assert_eq!(held, 1);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn postgres_leftover_row_of_an_ended_session_is_reported_as_recovered() {
    let Some(db) = pg_db().await else { return };
    let store = StateStore::open(&db.url).await.unwrap();
    let id = store.create_deployment("demo", "stack", "h").await.unwrap();
    // A guard's session is held for the deployment: a second acquisition is refused.
    let guard = store
        .acquire_lock_with(
            "demo",
            &id,
            LockOptions {
                lease: Duration::from_secs(30),
                heartbeat: Duration::from_millis(100),
            },
        )
        .await
        .unwrap();
    assert!(store.acquire_lock("demo", &id).await.is_err());
    // Simulate a crash: the session ends but the description row remains.
    let pid: i64 = sqlx::query_scalar(
        "SELECT pid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND ((classid::bigint << 32) | objid::bigint) = $1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(advisory_key("demo"))
    .fetch_one(&mut AnyConnection::connect(&db.url).await.unwrap())
    .await
    .unwrap();
    let mut admin = AnyConnection::connect(&db.url).await.unwrap();
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1::int)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    // The holder notices its session is gone.
    for _ in 0..50 {
        if guard.is_lost() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(guard.is_lost(), "a failed lock session is reported");
    let mut recovered = None;
    for _ in 0..100 {
        if let Ok(g) = store.acquire_lock("demo", &id).await {
            recovered = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = recovered.expect("lock free after the session was terminated");
    assert_eq!(
        g.recovered_from.as_ref().map(|o| o.deployment_id.as_str()),
        Some(id.as_str())
    );
    g.release().await.unwrap();
    // Releasing the lost guard reports the failure; it does not touch the new holder's row.
    assert!(guard.release().await.is_err());
    assert!(store.active_locks().await.unwrap().is_empty());
}

#[test]
fn database_urls_are_rewritten_for_test_databases() {
    assert_eq!(
        with_database("postgres://p@h:5432/test", "x"),
        "postgres://p@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://p@h/test?sslmode=disable", "x"),
        "postgres://p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://p@h", "x"), "postgres://p@h/x");
}
