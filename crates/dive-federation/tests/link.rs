//! Linking a hub and a spoke of one installation: both sides' files, the registry's lifecycle
//! and history, idempotency, and refusals.

use std::path::Path;

use dive_core::CountryCode;
use dive_core::federation::{LinkStatus, PartnersFile};
use dive_federation::{FederationError, Pair};
use dive_instance::{InstanceConfig, InstancePaths, Role};
use serde_json::Value;

fn cc(s: &str) -> CountryCode {
    CountryCode::new(s).unwrap()
}

/// An initialised instance: its configuration, policy data and IdP database, as INIT writes them.
async fn instance(home: &Path, code: &str, role: Role) -> InstanceConfig {
    let cfg = InstanceConfig::new(cc(code), role);
    let paths = InstancePaths::new(home, cfg.code);
    dive_instance::config::save(&paths, &cfg).unwrap();
    dive_instance::policy::ensure(&paths, &cfg).unwrap();
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string())
        .await
        .unwrap();
    db.pool.close().await;
    cfg
}

/// `me`'s upstream for `other` (enabled?) and `other`'s broker client for `me`, and whether the
/// client's secret is the upstream's.
async fn brokering(
    home: &Path,
    me: &InstanceConfig,
    other: &InstanceConfig,
) -> (Option<bool>, bool) {
    let open = |c: &InstanceConfig| {
        let p = InstancePaths::new(home, c.code).idp_db();
        async move { dive_idp::Db::open(&p.display().to_string()).await.unwrap() }
    };
    let (mine, theirs) = (open(me).await, open(other).await);
    let alias = format!("{}-idp", other.code.as_str().to_ascii_lowercase());
    let up = dive_idp::upstreams::find(&mine, &alias).await.unwrap();
    let client_id = format!("dive-broker-{}", me.code.as_str().to_ascii_lowercase());
    let client = dive_idp::clients::find(&theirs, &client_id).await.unwrap();
    if let (Some(u), Some(c)) = (&up, &client) {
        assert_eq!(u.issuer, other.urls.issuer);
        assert_eq!(u.country, Some(other.code));
        assert_eq!(u.client_id, client_id);
        assert_eq!(c.redirect_uris, [u.redirect_uri(&me.urls.issuer)]);
        // The client authenticates with exactly the upstream's secret.
        assert!(c.secret_matches(&u.client_secret), "shared secret differs");
    }
    mine.pool.close().await;
    theirs.pool.close().await;
    (up.map(|u| u.enabled), client.is_some())
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// (trusts the other's issuer, lists it in the federation matrix, partners-file status).
fn side(
    home: &Path,
    me: &InstanceConfig,
    other: &InstanceConfig,
) -> (bool, bool, Option<LinkStatus>) {
    let paths = InstancePaths::new(home, me.code);
    let issuers = json(&paths.policy_dir().join("trusted_issuers.json"));
    let trusts = issuers[&other.urls.issuer]["instance"] == other.code.as_str();
    let fed = json(&paths.policy_dir().join("federation.json"));
    let listed = fed[me.code.as_str()]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == other.code.as_str());
    let partners = std::fs::read_to_string(paths.partners_file())
        .map(|t| PartnersFile::from_json(&t).unwrap())
        .unwrap_or_default();
    let status = partners
        .partners
        .iter()
        .find(|p| p.code == other.code)
        .map(|p| {
            assert_eq!(p.api_url, other.urls.api);
            p.status
        });
    // Its own issuer is never touched.
    assert_eq!(issuers[&me.urls.issuer]["instance"], me.code.as_str());
    (trusts, listed, status)
}

#[tokio::test]
async fn link_suspend_resume_revoke_relink_and_unlink_act_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let usa = instance(home, "USA", Role::Hub).await;
    let fra = instance(home, "FRA", Role::Spoke).await;
    let deu = instance(home, "DEU", Role::Spoke).await;
    let pair = Pair::load(home, cc("FRA")).unwrap();

    let out = dive_federation::link(&pair, "test").await.unwrap();
    assert_eq!(out.status, Some(LinkStatus::Active));
    assert!(!out.changed.is_empty());
    assert_eq!(
        side(home, &usa, &fra),
        (true, true, Some(LinkStatus::Active))
    );
    assert_eq!(
        side(home, &fra, &usa),
        (true, true, Some(LinkStatus::Active))
    );
    // Each IdP brokers the other, with one shared secret per direction.
    assert_eq!(brokering(home, &usa, &fra).await, (Some(true), true));
    assert_eq!(brokering(home, &fra, &usa).await, (Some(true), true));
    // DEU is not involved.
    assert_eq!(side(home, &usa, &deu), (false, false, None));
    assert_eq!(brokering(home, &usa, &deu).await, (None, false));

    // Again: nothing to change, nothing recorded.
    let again = dive_federation::link(&pair, "test").await.unwrap();
    assert!(again.changed.is_empty(), "{:?}", again.changed);

    dive_federation::set_status(&pair, LinkStatus::Suspended, "exercise paused")
        .await
        .unwrap();
    assert_eq!(
        side(home, &usa, &fra),
        (false, false, Some(LinkStatus::Suspended))
    );
    assert_eq!(
        side(home, &fra, &usa),
        (false, false, Some(LinkStatus::Suspended))
    );
    // Linking a suspended partner does not resume it behind the operator's back.
    let relink = dive_federation::link(&pair, "test").await.unwrap();
    assert_eq!(relink.status, Some(LinkStatus::Suspended));
    dive_federation::set_status(&pair, LinkStatus::Active, "resumed")
        .await
        .unwrap();
    assert_eq!(
        side(home, &fra, &usa),
        (true, true, Some(LinkStatus::Active))
    );

    dive_federation::set_status(&pair, LinkStatus::Revoked, "compromised")
        .await
        .unwrap();
    assert_eq!(
        side(home, &usa, &fra),
        (false, false, Some(LinkStatus::Revoked))
    );
    let err = dive_federation::set_status(&pair, LinkStatus::Active, "oops")
        .await
        .unwrap_err();
    assert!(matches!(err, FederationError::Transition { .. }), "{err}");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("revoked"), "{err}");

    // A new link after revocation starts over, and the history tells the whole story.
    dive_federation::link(&pair, "new agreement").await.unwrap();
    assert_eq!(
        side(home, &fra, &usa),
        (true, true, Some(LinkStatus::Active))
    );
    let report = dive_federation::status(home).await.unwrap();
    assert_eq!(report.len(), 1);
    assert!(report[0].hub_trusts_spoke && report[0].spoke_trusts_hub == Some(true));
    let steps: Vec<String> = report[0]
        .history
        .iter()
        .map(|c| format!("{}>{}", c.from.map_or("-", |s| s.as_str()), c.to))
        .collect();
    assert_eq!(
        steps,
        [
            "->pending",
            "pending>active",
            "active>suspended",
            "suspended>active",
            "active>revoked",
            "revoked>pending",
            "pending>active"
        ]
    );

    dive_federation::unlink(&pair, "ended").await.unwrap();
    assert_eq!(side(home, &usa, &fra), (false, false, None));
    assert_eq!(side(home, &fra, &usa), (false, false, None));
    assert_eq!(brokering(home, &usa, &fra).await, (None, false));
    assert!(dive_federation::status(home).await.unwrap().is_empty());
    // Unlinking again is a no-op.
    assert!(
        dive_federation::unlink(&pair, "ended")
            .await
            .unwrap()
            .changed
            .is_empty()
    );
}

#[tokio::test]
async fn refusals_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let e = Pair::load(home, cc("FRA")).err().unwrap();
    assert!(e.to_string().contains("no hub"), "{e}");
    instance(home, "USA", Role::Hub).await;
    let e = Pair::load(home, cc("FRA")).err().unwrap();
    assert!(e.to_string().contains("dive spoke deploy FRA"), "{e}");
    let e = Pair::load(home, cc("USA")).err().unwrap();
    assert!(e.to_string().contains("is the hub"), "{e}");
    instance(home, "FRA", Role::Spoke).await;
    let pair = Pair::load(home, cc("FRA")).unwrap();
    let e = dive_federation::set_status(&pair, LinkStatus::Suspended, "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("dive federation link FRA"), "{e}");
    // A broken policy file on one side is reported with its path, and nothing is trusted.
    let p = InstancePaths::new(home, cc("FRA"))
        .policy_dir()
        .join("trusted_issuers.json");
    std::fs::write(&p, "{broken").unwrap();
    let e = dive_federation::link(&pair, "x").await.unwrap_err();
    assert!(e.to_string().contains("trusted_issuers.json"), "{e}");
}

#[tokio::test]
async fn failed_verifications_open_the_link_breaker_and_verify_then_fails_fast() {
    use dive_federation::verify::BREAKER;
    use dive_orchestrator::state::BreakerState;

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    instance(home, "USA", Role::Hub).await;
    instance(home, "FRA", Role::Spoke).await;
    let pair = Pair::load(home, cc("FRA")).unwrap();
    dive_federation::link(&pair, "test").await.unwrap();
    let reg = pair.registry().await.unwrap();
    let report = serde_json::json!({"ok": false});
    for n in 1..=3 {
        let b = reg
            .record_verification(cc("FRA"), &report, Err("USA→FRA.discovery"), &BREAKER)
            .await
            .unwrap();
        let want = if n < 3 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(b.state, want, "after {n} failures");
    }
    reg.close().await;

    // Open: verify refuses at once, saying why and how to force a trial.
    let t0 = std::time::Instant::now();
    let e = dive_federation::verify::verify(&pair, false)
        .await
        .unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(1));
    assert!(matches!(e, FederationError::BreakerOpen { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("3 failed verifications"), "{text}");
    assert!(text.contains("USA→FRA.discovery"), "{text}");
    assert!(text.contains("--force"), "{text}");

    // Status shows the open breaker and, with no services (nor PKI) here, both sides down.
    let status = dive_federation::status(home).await.unwrap();
    assert_eq!(status[0].link.breaker.state, BreakerState::Open);
    assert!(!status[0].hub_health.ok, "{:?}", status[0].hub_health);
    assert!(!status[0].spoke_health.ok, "{:?}", status[0].spoke_health);
    assert!(
        status[0].spoke_health.detail.contains("not probed"),
        "{:?}",
        status[0].spoke_health
    );

    // A successful (forced) trial closes it.
    let reg = pair.registry().await.unwrap();
    let b = reg
        .record_verification(
            cc("FRA"),
            &serde_json::json!({"ok": true}),
            Ok(()),
            &BREAKER,
        )
        .await
        .unwrap();
    assert_eq!(b.state, BreakerState::Closed);
    assert_eq!(b.consecutive_failures, 0);
    reg.close().await;
}
