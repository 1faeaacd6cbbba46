//! The GET/download decision memo (`Access::decide_document`) answers exactly what the PDP
//! answers for the same document: over a generated corpus and a spread of subjects, after a
//! policy reload, after a document's label changes in the catalog, across an embargo lifting,
//! and for different subjects that share a uniqueID.

mod common;

use std::sync::Arc;
use std::time::Duration;

use dive_api::access::{Access, MEMO_DEFAULT_TTL, input, memo_lifetime};
use dive_api::store::ResourceMeta;
use dive_core::{Aal, Authentication, Clearance, CountryCode, OrganizationType, SubjectAttributes};
use dive_policy::{Decision, Pdp, Sources};
use time::OffsetDateTime;

const USA_ISSUER: &str = "https://localhost:8443/realms/dive-usa";

fn subject(name: &str, clearance: Clearance, coi: &[&str], mfa: bool) -> SubjectAttributes {
    let usa = CountryCode::new("USA").unwrap();
    let amr: Vec<String> = if mfa {
        vec!["pwd".into(), "otp".into()]
    } else {
        vec!["pwd".into()]
    };
    SubjectAttributes {
        unique_id: format!("{name}@test"),
        clearance,
        clearance_original: clearance.as_str().to_string(),
        clearance_country: usa,
        country_of_affiliation: usa,
        acp_coi: coi.iter().map(|s| s.to_string()).collect(),
        organization_type: OrganizationType::Mil,
        issuer: USA_ISSUER.to_string(),
        roles: vec![],
        authentication: Authentication {
            acr: None,
            aal: Aal::derive(None, &amr),
            amr,
            auth_time: None,
        },
    }
}

fn subjects() -> Vec<SubjectAttributes> {
    vec![
        subject("u", Clearance::Unclassified, &[], false),
        subject("s", Clearance::Secret, &["FVEY", "NATO"], true),
        subject("s-aal1", Clearance::Secret, &["FVEY", "NATO"], false),
        subject(
            "ts",
            Clearance::TopSecret,
            &[
                "FVEY",
                "NATO",
                "NATO-COSMIC",
                "AUKUS",
                "QUAD",
                "EUCOM",
                "PACOM",
                "Alpha",
                "CAN-US",
                "GBR-US",
            ],
            true,
        ),
    ]
}

fn corpus(n: usize) -> Vec<Arc<ResourceMeta>> {
    let (_, recipient, _) = common::kas_keys();
    let now = OffsetDateTime::now_utc();
    dive_api::corpus::generate(n, 42, common::usa(), &recipient, now)
        .unwrap()
        .into_iter()
        .map(|d| Arc::new(d.meta(now)))
        .collect()
}

fn pdp_says(pdp: &Pdp, s: &SubjectAttributes, action: &str, m: &ResourceMeta) -> Decision {
    pdp.decide(&input(s, action, &m.id, &m.label))
}

/// A PDP on a data directory holding the embedded settings (so the test can change data).
fn pdp_on_data_dir(dir: &std::path::Path) -> Arc<Pdp> {
    std::fs::write(
        dir.join("settings.json"),
        include_str!("../../../policies/data/settings.json"),
    )
    .unwrap();
    Arc::new(
        Pdp::new(Sources {
            policy_dir: None,
            data_dir: Some(dir.to_path_buf()),
        })
        .unwrap(),
    )
}

#[test]
fn memoised_decisions_are_the_pdps_document_by_document() {
    let docs = corpus(200);
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let (mut allowed, mut embargoed, mut hits) = (0, 0, 0);
    for s in subjects() {
        for m in &docs {
            for action in ["read", "download"] {
                let first = access.decide_document(&s, action, m);
                let second = access.decide_document(&s, action, m);
                let truth = pdp_says(&pdp, &s, action, m);
                // Whole decisions: allow, reason, obligations (with the resource id) and the
                // per-check evaluation details.
                assert_eq!(first.decision, truth, "{} {action} {}", s.unique_id, m.id);
                assert_eq!(second.decision, truth);
                assert!(Arc::ptr_eq(&first.meta, m));
                hits += usize::from(Arc::ptr_eq(&first, &second));
                allowed += usize::from(truth.allow);
                embargoed += usize::from(truth.reason.starts_with("Embargoed"));
            }
        }
    }
    // The test means something: allows, denies and embargoes, and the memo answered the repeats.
    assert!(allowed > 0 && allowed < 2 * 4 * docs.len(), "{allowed}");
    assert!(embargoed > 0, "the corpus has embargoed documents");
    assert_eq!(hits, 2 * 4 * docs.len(), "every repeat was a memo hit");
    assert!(access.memoised_documents() > 0);
    access.clear();
    assert_eq!(access.memoised_documents(), 0);
}

#[test]
fn subjects_sharing_a_unique_id_get_their_own_decisions() {
    let docs = corpus(120);
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let cleared = subject("same", Clearance::Secret, &["FVEY", "NATO"], true);
    // The same person after a login without MFA, and after a downgrade: same uniqueID and issuer
    // (the memo's hash key), other attributes.
    let mut no_mfa = subject("same", Clearance::Secret, &["FVEY", "NATO"], false);
    no_mfa.authentication.acr = Some("1".into());
    let lower = subject("same", Clearance::Unclassified, &["FVEY", "NATO"], true);
    let mut differ = 0;
    for m in &docs {
        for _ in 0..2 {
            for s in [&cleared, &no_mfa, &lower] {
                let d = access.decide_document(s, "read", m);
                assert_eq!(d.decision, pdp_says(&pdp, s, "read", m), "{}", m.id);
            }
        }
        differ += usize::from(
            pdp_says(&pdp, &cleared, "read", m).allow != pdp_says(&pdp, &lower, "read", m).allow,
        );
    }
    assert!(
        differ > 0,
        "the subjects' decisions differ on some documents"
    );
}

#[test]
fn a_policy_reload_is_followed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pdp = pdp_on_data_dir(dir.path());
    let access = Access::new(pdp.clone()).unwrap();
    let s = &subjects()[1];
    let docs = corpus(60);
    let readable: Vec<_> = docs
        .iter()
        .filter(|m| access.decide_document(s, "read", m).decision.allow)
        .cloned()
        .collect();
    assert!(!readable.is_empty());
    // The instance stops trusting its own IdP: every decision turns into a deny.
    std::fs::write(dir.path().join("trusted_issuers.json"), "{}").unwrap();
    pdp.reload().unwrap();
    for m in &readable {
        let d = access.decide_document(s, "read", m);
        assert!(!d.decision.allow, "{}: still {}", m.id, d.decision.reason);
        assert!(d.decision.reason.starts_with("Untrusted token issuer"));
        assert_eq!(d.decision, pdp_says(&pdp, s, "read", m));
    }
}

#[test]
fn a_changed_label_in_the_catalog_is_decided_anew() {
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let s = &subjects()[1];
    let docs = corpus(80);
    let before = docs
        .iter()
        .find(|m| {
            m.label.classification == Clearance::Secret
                && access.decide_document(s, "read", m).decision.allow
        })
        .expect("a readable SECRET document")
        .clone();
    // The same id, relabelled TOP SECRET (a new catalog generation holds a new allocation).
    let mut relabelled = (*before).clone();
    relabelled.label.classification = Clearance::TopSecret;
    relabelled.label.original_classification = None;
    relabelled.label.original_country = None;
    let after = Arc::new(relabelled);
    let d = access.decide_document(s, "read", &after);
    assert!(!d.decision.allow, "{}", d.decision.reason);
    assert!(
        d.decision.reason.starts_with("Insufficient clearance"),
        "{}",
        d.decision.reason
    );
    assert_eq!(d.decision, pdp_says(&pdp, s, "read", &after));
    // And an equal copy of the old metadata (another generation) is decided on its own too.
    let copy = Arc::new((*before).clone());
    let c = access.decide_document(s, "read", &copy);
    assert!(c.decision.allow);
    assert!(Arc::ptr_eq(&c.meta, &copy));
}

#[test]
fn a_memoised_embargo_ends_when_the_embargo_lifts() {
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let facts = access.facts();
    let s = &subjects()[0];
    let mut m = (*corpus(40)
        .into_iter()
        .find(|m| access.decide_document(s, "read", m).decision.allow)
        .expect("an UNCLASSIFIED document"))
    .clone();
    // Created so that the embargo lifts 800 ms from now.
    let skew = time::Duration::milliseconds(facts.embargo_skew_ms);
    let lifts = OffsetDateTime::now_utc() + time::Duration::milliseconds(800);
    m.label.creation_date = Some(lifts + skew);
    let m = Arc::new(m);
    let d = access.decide_document(s, "read", &m);
    assert!(
        d.decision.reason.starts_with("Embargoed"),
        "{}",
        d.decision.reason
    );
    let now = OffsetDateTime::now_utc();
    let life = memo_lifetime(&facts, &d.decision, &m.label, now).expect("memoised");
    assert!(life <= Duration::from_millis(800), "{life:?}");
    // Memoised until then...
    assert!(Arc::ptr_eq(&d, &access.decide_document(s, "read", &m)));
    // ...and the PDP's answer once it has lifted.
    std::thread::sleep(
        (lifts - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or_default(),
    );
    std::thread::sleep(Duration::from_millis(20));
    let after = access.decide_document(s, "read", &m);
    assert!(after.decision.allow, "{}", after.decision.reason);
    assert_eq!(after.decision, pdp_says(&pdp, s, "read", &m));
}

#[test]
fn memo_lifetimes_follow_the_pdps_cache_settings() {
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let facts = access.facts();
    let now = OffsetDateTime::now_utc();
    let ts = &subjects()[3];
    let docs = corpus(200);
    let mut seen = std::collections::BTreeSet::new();
    for m in &docs {
        let d = access.decide_document(ts, "read", m);
        let Some(life) = memo_lifetime(&facts, &d.decision, &m.label, now) else {
            continue;
        };
        let settings = facts.cache_ttl[usize::from(m.label.classification.rank())];
        assert_eq!(
            settings.map(|t| t.as_secs()),
            Some(match m.label.classification {
                Clearance::Unclassified => 120,
                Clearance::Restricted => 90,
                Clearance::Confidential => 60,
                Clearance::Secret => 30,
                Clearance::TopSecret => 15,
            })
        );
        assert!(life <= settings.unwrap(), "{}: {life:?}", m.id);
        seen.insert(m.label.classification);
    }
    assert!(seen.len() >= 3, "{seen:?}");
    // Without settings: never longer than the PDP's shortest default; evaluation failures are
    // not memoised at all.
    let mut bare = (*facts).clone();
    bare.cache_ttl = [None; 5];
    let d = access.decide_document(ts, "read", &docs[0]);
    let life = memo_lifetime(&bare, &d.decision, &docs[0].label, now).unwrap();
    assert!(life <= MEMO_DEFAULT_TTL);
    let failed = Decision::fail_closed("engine error");
    assert_eq!(memo_lifetime(&facts, &failed, &docs[0].label, now), None);
}
