//! The search prefilter (one PDP decision per access class, plus the embargo) agrees with a full
//! PDP decision per document, for a spread of subjects over a generated corpus; and the search's
//! results and facet counts contain exactly the accessible documents.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use dive_api::access::{Access, accessible, input};
use dive_api::catalog::Catalog;
use dive_api::search::{SearchQuery, search};
use dive_api::store::ResourceMeta;
use dive_core::{Aal, Authentication, Clearance, CountryCode, OrganizationType, SubjectAttributes};
use dive_policy::Pdp;
use time::OffsetDateTime;

const USA_ISSUER: &str = "https://localhost:8443/realms/dive-usa";
const FRA_ISSUER: &str = "https://localhost:8444/realms/dive-fra";

fn subject(
    name: &str,
    clearance: Clearance,
    country: &str,
    coi: &[&str],
    org: OrganizationType,
    mfa: bool,
    issuer: &str,
) -> SubjectAttributes {
    let country = CountryCode::new(country).unwrap();
    let amr: Vec<String> = if mfa {
        vec!["pwd".into(), "otp".into()]
    } else {
        vec!["pwd".into()]
    };
    SubjectAttributes {
        unique_id: format!("{name}@test"),
        clearance,
        clearance_original: clearance.as_str().to_string(),
        clearance_country: country,
        country_of_affiliation: country,
        acp_coi: coi.iter().map(|s| s.to_string()).collect(),
        organization_type: org,
        issuer: issuer.to_string(),
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
    use Clearance::*;
    use OrganizationType::*;
    vec![
        subject("u-usa", Unclassified, "USA", &[], Mil, false, USA_ISSUER),
        subject(
            "c-usa",
            Confidential,
            "USA",
            &["NATO"],
            Gov,
            true,
            USA_ISSUER,
        ),
        subject(
            "s-usa",
            Secret,
            "USA",
            &["FVEY", "NATO"],
            Mil,
            true,
            USA_ISSUER,
        ),
        subject(
            "s-usa-aal1",
            Secret,
            "USA",
            &["FVEY", "NATO"],
            Mil,
            false,
            USA_ISSUER,
        ),
        subject(
            "ts-usa-only",
            TopSecret,
            "USA",
            &["US-ONLY"],
            Mil,
            true,
            USA_ISSUER,
        ),
        subject(
            "ts-usa-many",
            TopSecret,
            "USA",
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
            Mil,
            true,
            USA_ISSUER,
        ),
        subject(
            "s-gbr",
            Secret,
            "GBR",
            &["FVEY", "NATO", "GBR-US", "AUKUS"],
            Mil,
            true,
            USA_ISSUER,
        ),
        subject(
            "s-fra",
            Secret,
            "FRA",
            &["NATO", "FRA-US", "EU-RESTRICTED", "EUCOM"],
            Mil,
            true,
            FRA_ISSUER,
        ),
        subject(
            "ind-usa",
            Secret,
            "USA",
            &["FVEY"],
            Industry,
            true,
            USA_ISSUER,
        ),
        subject(
            "ind-deu",
            Secret,
            "DEU",
            &["NATO", "DEU-US"],
            Industry,
            true,
            USA_ISSUER,
        ),
        subject(
            "untrusted",
            TopSecret,
            "USA",
            &["FVEY"],
            Mil,
            true,
            "https://evil.example",
        ),
        subject(
            "r-pol",
            Restricted,
            "POL",
            &["NATO", "EU-RESTRICTED"],
            Gov,
            true,
            USA_ISSUER,
        ),
    ]
}

fn corpus(n: usize) -> Vec<ResourceMeta> {
    let (_, recipient, _) = common::kas_keys();
    let now = OffsetDateTime::now_utc();
    dive_api::corpus::generate(n, 42, common::usa(), &recipient, now)
        .unwrap()
        .into_iter()
        .map(|mut d| {
            d.validate().unwrap();
            d.meta(now)
        })
        .collect()
}

#[test]
fn generated_labels_are_coherent() {
    for d in corpus(400) {
        let v = d.label.coherence(
            dive_core::CoiRegistry::builtin(),
            dive_core::Equivalency::builtin(),
            false,
        );
        assert!(v.is_empty(), "{}: {:?}", d.label.marking(), v);
    }
}

#[test]
fn prefilter_agrees_with_the_pdp_document_by_document() {
    let docs = corpus(250);
    let catalog = Catalog::build(1, docs);
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let skew = access.facts().embargo_skew_ms;
    assert_eq!(skew, 300_000);
    let now = dive_api::store::to_ms(OffsetDateTime::now_utc());
    let mut totals = BTreeMap::new();
    let mut embargoed_seen = 0;
    for s in subjects() {
        let view = access.view(&s, &catalog);
        let mut allowed = 0;
        for e in catalog.entries() {
            let fast = accessible(&view, &catalog, e, now, skew);
            let d = pdp.decide(&input(&s, "read", &e.meta.id, &e.meta.label));
            assert_eq!(
                fast,
                d.allow,
                "{} on {} ({}, created {}): prefilter {fast}, PDP {} ({})",
                s.unique_id,
                e.meta.id,
                e.meta.label.marking(),
                e.meta.created_at,
                d.allow,
                d.reason
            );
            if d.reason.starts_with("Embargoed") {
                embargoed_seen += 1;
            }
            allowed += usize::from(fast);
        }
        // The view asked the PDP about at most one label per class.
        assert!(view.pdp_calls <= catalog.decision_classes(false).len());
        totals.insert(s.unique_id.clone(), allowed);
    }
    eprintln!(
        "{} documents in {} classes; accessible per subject: {totals:?}",
        catalog.len(),
        catalog.decision_classes(false).len()
    );
    // The test means something: some subjects see much, some little, some nothing.
    assert_eq!(totals["untrusted@test"], 0);
    // Without MFA only UNCLASSIFIED documents are readable.
    assert!(totals["s-usa-aal1@test"] > 0 && totals["s-usa-aal1@test"] < totals["c-usa@test"]);
    assert!(totals["ts-usa-many@test"] > totals["s-usa@test"]);
    assert!(totals["s-usa@test"] > totals["c-usa@test"]);
    assert!(totals["c-usa@test"] > totals["u-usa@test"]);
    assert!(totals["u-usa@test"] > 0);
    assert!(totals["s-fra@test"] > 0 && totals["ind-deu@test"] > 0);
    assert!(embargoed_seen > 0, "the corpus has embargoed documents");
}

#[test]
fn search_returns_and_counts_exactly_the_accessible_documents() {
    let docs = corpus(300);
    let catalog = Catalog::build(7, docs);
    let pdp = Arc::new(Pdp::embedded().unwrap());
    let access = Access::new(pdp.clone()).unwrap();
    let skew = access.facts().embargo_skew_ms;
    let now = dive_api::store::to_ms(OffsetDateTime::now_utc());
    let s = &subjects()[2];
    let view = access.view(s, &catalog);
    let truth: Vec<&str> = catalog
        .entries()
        .iter()
        .filter(|e| {
            pdp.decide(&input(s, "read", &e.meta.id, &e.meta.label))
                .allow
        })
        .map(|e| e.meta.id.as_str())
        .collect();

    // Walk every page: the concatenation is the accessible set, newest first, no repeats.
    let mut seen: Vec<String> = Vec::new();
    let mut query = SearchQuery::parse("limit=37").unwrap();
    let first = search(&catalog, &view, &query, now, skew);
    assert_eq!(first.total, truth.len());
    let by_class: usize = first.facets.classification.values().sum();
    assert_eq!(
        by_class,
        truth.len(),
        "classification facet counts accessible documents"
    );
    let by_type: usize = first.facets.file_type.values().sum();
    assert_eq!(by_type, truth.len(), "each document has one file type");
    assert!(
        first
            .facets
            .file_type
            .keys()
            .all(|t| *t == t.to_ascii_lowercase()),
        "file types merge case variants: {:?}",
        first.facets.file_type
    );
    assert!(
        first.facets.coi.values().sum::<usize>() >= truth.len(),
        "every document counts under its COIs or (none): {:?}",
        first.facets.coi
    );
    let mut page = first;
    loop {
        seen.extend(page.items.iter().map(|m| m.id.clone()));
        let Some(c) = page.next_cursor.clone() else {
            break;
        };
        query = SearchQuery::parse(&format!("limit=37&cursor={c}")).unwrap();
        page = search(&catalog, &view, &query, now, skew);
    }
    assert_eq!(seen, truth, "pages cover the accessible set in order");

    // A filter narrows results; its own facet still shows the other values (disjunctive).
    let q = SearchQuery::parse("classification=SECRET&limit=100").unwrap();
    let r = search(&catalog, &view, &q, now, skew);
    let secret_truth = catalog
        .entries()
        .iter()
        .filter(|e| {
            truth.contains(&e.meta.id.as_str()) && e.meta.label.classification == Clearance::Secret
        })
        .count();
    assert_eq!(r.total, secret_truth);
    assert!(
        r.items
            .iter()
            .all(|m| m.label.classification == Clearance::Secret)
    );
    assert_eq!(r.facets.classification.get("SECRET"), Some(&secret_truth));
    assert!(r.facets.classification.len() > 1);
    let country_fra: usize = r.facets.country.get("FRA").copied().unwrap_or(0);
    let fra = search(
        &catalog,
        &view,
        &SearchQuery::parse("classification=SECRET&country=FRA").unwrap(),
        now,
        skew,
    );
    assert_eq!(fra.total, country_fra);

    // Text and type filters.
    let t = search(
        &catalog,
        &view,
        &SearchQuery::parse("q=FUEL&type=text/csv").unwrap(),
        now,
        skew,
    );
    for m in &t.items {
        assert!(m.title.to_lowercase().contains("fuel") || m.file_name.contains("fuel"));
        assert_eq!(m.mime_type, "text/csv");
    }
}

/// In strict coherence mode the policy reads every releasable country: documents are decided by
/// their full classes, and the prefilter still agrees.
#[test]
fn prefilter_agrees_in_strict_coherence_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings: serde_json::Value =
        serde_json::from_str(include_str!("../../../policies/data/settings.json")).unwrap();
    settings["strictCoherence"] = serde_json::Value::Bool(true);
    std::fs::write(dir.path().join("settings.json"), settings.to_string()).unwrap();
    let pdp = Arc::new(
        Pdp::new(dive_policy::Sources {
            policy_dir: None,
            data_dir: Some(dir.path().to_path_buf()),
        })
        .unwrap(),
    );
    let access = Access::new(pdp.clone()).unwrap();
    assert!(access.facts().strict_coherence);
    let catalog = Catalog::build(1, corpus(150));
    let now = dive_api::store::to_ms(OffsetDateTime::now_utc());
    let mut any_allowed = false;
    let mut strict_denials = 0;
    for s in [&subjects()[2], &subjects()[5], &subjects()[7]] {
        let view = access.view(s, &catalog);
        assert!(view.strict);
        for e in catalog.entries() {
            let fast = accessible(&view, &catalog, e, now, 300_000);
            let d = pdp.decide(&input(s, "read", &e.meta.id, &e.meta.label));
            assert_eq!(
                fast,
                d.allow,
                "{} on {}: {}",
                s.unique_id,
                e.meta.label.marking(),
                d.reason
            );
            any_allowed |= fast;
            strict_denials += usize::from(d.reason.contains("strict mode"));
        }
    }
    assert!(any_allowed);
    assert!(strict_denials > 0, "strict mode denied some documents");
}
