//! The resource store on SQLite and PostgreSQL: seeding replaces and never duplicates, uploads
//! survive re-seeding, conflicts and bad documents change nothing, ZTDF bytes round-trip, the
//! generation moves with every write, audit entries page newest first.

mod common;

use dive_api::audit::{AuditEntry, AuditQuery};
use dive_api::store::Backend;
use dive_api::{ApiError, NewResource, ResourceStore};
use dive_ztdf::TdfReader;
use time::OffsetDateTime;

fn corpus(n: usize, seed: u64) -> Vec<NewResource> {
    let (_, recipient, _) = common::kas_keys();
    dive_api::corpus::generate(
        n,
        seed,
        common::usa(),
        &recipient,
        OffsetDateTime::now_utc(),
    )
    .unwrap()
}

async fn exercise(store: ResourceStore) {
    let g0 = store.generation().await.unwrap();

    // Seeding inserts everything; the stored bytes are the ZTDF and carry the stored label.
    let docs = corpus(450, 1);
    let first = docs[0].clone();
    let s = store.replace_seeded(docs).await.unwrap();
    assert_eq!((s.removed, s.inserted), (0, 450));
    assert_eq!(s.generation, g0 + 1);
    assert_eq!(store.count(None).await.unwrap(), 450);
    let meta = store.get(&first.id).await.unwrap().unwrap();
    assert_eq!(meta.title, first.title);
    assert_eq!(meta.label.creation_date, Some(first.created_at));
    assert_eq!(meta.label.classification, first.label.classification);
    assert!(meta.seeded);
    let bytes = store.ztdf(&first.id).await.unwrap().unwrap();
    assert_eq!(bytes, first.ztdf);
    let reader = TdfReader::open(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(reader.policy().uuid, meta.policy_uuid);
    let mut in_ztdf = reader.label().unwrap().unwrap();
    in_ztdf.originator = first.label.originator.clone();
    assert_eq!(in_ztdf.classification, meta.label.classification);
    assert_eq!(in_ztdf.releasability_to, meta.label.releasability_to);

    // An upload, then a re-seed with a different, smaller set: replaced, not duplicated, and
    // the upload survives.
    let mut upload = corpus(1, 99).remove(0);
    upload.id = "upload-1".into();
    upload.seeded = false;
    let (m, g) = store.insert(upload.clone()).await.unwrap();
    assert_eq!(m.id, "upload-1");
    assert_eq!(g, s.generation + 1);
    assert!(matches!(
        store.insert(upload.clone()).await,
        Err(ApiError::Exists(id)) if id == "upload-1"
    ));
    let s2 = store.replace_seeded(corpus(300, 2)).await.unwrap();
    assert_eq!((s2.removed, s2.inserted), (450, 300));
    assert_eq!(store.count(Some(true)).await.unwrap(), 300);
    assert_eq!(store.count(Some(false)).await.unwrap(), 1);
    assert!(store.get("upload-1").await.unwrap().is_some());
    assert!(store.ztdf("doc-00299").await.unwrap().is_some());
    assert!(store.ztdf("doc-00300").await.unwrap().is_none());
    let (gen_loaded, all) = store.load_all().await.unwrap();
    assert_eq!(gen_loaded, s2.generation);
    assert_eq!(all.len(), 301);

    // A seeded id that belongs to an upload: an error, and nothing changes.
    let mut clash = corpus(3, 3);
    clash[2].id = "upload-1".into();
    let err = store.replace_seeded(clash).await.unwrap_err();
    assert!(matches!(err, ApiError::Exists(_)), "{err}");
    assert_eq!(store.count(Some(true)).await.unwrap(), 300);
    assert_eq!(store.generation().await.unwrap(), s2.generation);

    // Bad documents are refused before anything is written, naming document and field.
    let mut bad = corpus(2, 4);
    bad[1].label.releasability_to.clear();
    let err = store.replace_seeded(bad).await.unwrap_err().to_string();
    assert!(err.contains("doc-00001") && err.contains("label"), "{err}");
    let mut bad = corpus(2, 4);
    bad[0].id = "no/slashes".into();
    let err = store.replace_seeded(bad).await.unwrap_err().to_string();
    assert!(err.contains("id"), "{err}");
    let mut bad = corpus(1, 4);
    bad[0].ztdf = b"plain text".to_vec();
    let err = store.replace_seeded(bad).await.unwrap_err().to_string();
    assert!(err.contains("ztdf"), "{err}");
    let mut dup = corpus(2, 5);
    dup[1].id = dup[0].id.clone();
    let err = store.replace_seeded(dup).await.unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
    assert_eq!(store.count(Some(true)).await.unwrap(), 300);

    // Audit: appended in a batch, read newest first with filters and a cursor.
    let mut entries = Vec::new();
    for i in 0..25 {
        let mut e = AuditEntry::new(
            if i % 2 == 0 { "alice@usa" } else { "bob@fra" },
            "read",
            Some(format!("doc-{i:05}")),
            i % 3 != 0,
            "Access granted: all conditions are met",
        );
        e.at_ms = 1_800_000_000_000 + i;
        e.latency_us = 40;
        entries.push(e);
    }
    store.append_audit(&entries).await.unwrap();
    let page = store
        .audit_page(&AuditQuery {
            subject: Some("alice@usa".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(page[0].at_ms, 1_800_000_000_024);
    assert!(page.iter().all(|e| e.subject == "alice@usa"));
    let last = page.last().unwrap();
    let next = store
        .audit_page(&AuditQuery {
            subject: Some("alice@usa".into()),
            before: Some((last.at_ms, last.id.clone())),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 13 - 5);
    assert!(next.iter().all(|e| e.at_ms < last.at_ms));
    let denied = store
        .audit_page(&AuditQuery {
            allow: Some(false),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(denied.len(), 9);
    // Counted per bucket by the database: 10 ms buckets, (start, allowed, denied).
    let t0 = 1_800_000_000_000;
    let all = store
        .audit_summary(&AuditQuery::default(), 10, 100)
        .await
        .unwrap();
    assert_eq!(all, [(t0, 6, 4), (t0 + 10, 7, 3), (t0 + 20, 3, 2)]);
    let alice = AuditQuery {
        subject: Some("alice@usa".into()),
        since_ms: Some(t0 + 10),
        ..Default::default()
    };
    let summary = store.audit_summary(&alice, 10, 100).await.unwrap();
    assert_eq!(summary, [(t0 + 10, 3, 2), (t0 + 20, 2, 1)]);
    // One row beyond the cap tells the caller the range holds more.
    assert_eq!(
        store
            .audit_summary(&AuditQuery::default(), 1, 4)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(store.prune_audit(1_800_000_000_010).await.unwrap(), 10);
    store.close().await;
}

#[tokio::test]
async fn store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instances/usa/api.db");
    let store = ResourceStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    exercise(store).await;
    // Reopening runs no migration twice and keeps the data.
    let again = ResourceStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(again.count(None).await.unwrap(), 301);
}

#[tokio::test]
async fn store_on_postgres() {
    let Some(url) = common::pg_database("api_store").await else {
        return;
    };
    let store = ResourceStore::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    assert_eq!(store.location(), "PostgreSQL");
    exercise(store).await;
}

#[tokio::test]
async fn open_reports_the_location() {
    let err = ResourceStore::open("/proc/definitely/not/here.db")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/proc/definitely/not"), "{err}");
}
