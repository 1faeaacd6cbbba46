//! The resource store: document metadata (indexed columns beside the authoritative label JSON)
//! and the ZTDF bytes in their own table, on SQLite (a file under the instance directory) or
//! PostgreSQL, with one migration set. Also the audit log's table.
//!
//! The ZTDF bytes live in the database rather than in files so that a document and its metadata
//! change in one transaction (re-seeding replaces both atomically, a crash leaves no orphans) and
//! so that a PostgreSQL deployment keeps everything in one place that several `api` replicas share.

use dive_core::{CountryCode, SecurityLabel};
pub use dive_db::Backend;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;

use dive_db::{Conditions, Param};

use crate::audit::{AuditEntry, AuditQuery};
use crate::error::ApiError;

const SCHEMA: dive_db::Schema = dive_db::Schema {
    migrations: &[(1, "initial", include_str!("../migrations/0001_initial.sql"))],
    // Its own migrations table, so it can share a PostgreSQL database with other services.
    table: "api_schema_migrations",
};

/// Largest ZTDF the store accepts (the upload limit is usually lower).
pub const MAX_ZTDF_BYTES: usize = 1 << 30;

/// A document to store: its metadata, its label and its ZTDF.
///
/// `label` must be the label bound in the ZTDF's policy (the KAS decides on that one); its
/// `creation_date` is either absent (the store sets it to `created_at`) or equal to `created_at`.
/// `policy_uuid` and `size` come from the encryption: `summary.manifest.policy()?.uuid` and
/// `summary.plaintext_len` of [`dive_ztdf::encrypt`]'s summary.
#[derive(Debug, Clone)]
pub struct NewResource {
    /// 1–128 characters of `A–Z a–z 0–9 . _ : -` (it appears in URLs).
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub label: SecurityLabel,
    /// MIME type of the plaintext (`text/markdown`, `application/pdf`, …).
    pub mime_type: String,
    /// File name of the plaintext (no directory part).
    pub file_name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Creation date: also the label's `creationDate`, so documents dated in the future are
    /// embargoed until then.
    pub created_at: OffsetDateTime,
    /// Who stored it: the uploader's uniqueID, or the seeding job's name.
    pub creator: String,
    pub ztdf: Vec<u8>,
    /// The ZTDF policy's uuid.
    pub policy_uuid: String,
    /// Written by seeding: [`ResourceStore::replace_seeded`] replaces exactly these.
    pub seeded: bool,
}

/// A stored document's metadata (everything but the ZTDF bytes).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMeta {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The label, with `creationDate` always set.
    pub label: SecurityLabel,
    pub mime_type: String,
    pub file_name: String,
    pub size: u64,
    pub ztdf_size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub creator: String,
    pub seeded: bool,
    pub policy_uuid: String,
    #[serde(with = "time::serde::rfc3339")]
    pub stored_at: OffsetDateTime,
}

/// What a seeding run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    /// Seeded documents removed (from an earlier run).
    pub removed: u64,
    pub inserted: u64,
    /// The catalog generation after the run.
    pub generation: i64,
}

/// The store: a pool on SQLite or PostgreSQL, migrated.
#[derive(Clone, Debug)]
pub struct ResourceStore {
    pool: AnyPool,
    backend: Backend,
    location: String,
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A time as Unix milliseconds.
pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_ms(ms: i64) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| ApiError::Corrupt(format!("timestamp {ms}: {e}")))
}

/// ` USA GBR ` — space-delimited with outer spaces, so SQL can match `% USA %`.
fn delimited<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::from(" ");
    for i in items {
        s.push_str(i);
        s.push(' ');
    }
    s
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl NewResource {
    /// The metadata this document has once stored at `stored_at`.
    pub fn meta(&self, stored_at: OffsetDateTime) -> ResourceMeta {
        ResourceMeta {
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            label: self.label.clone(),
            mime_type: self.mime_type.clone(),
            file_name: self.file_name.clone(),
            size: self.size,
            ztdf_size: self.ztdf.len() as u64,
            created_at: self.created_at,
            creator: self.creator.clone(),
            seeded: self.seeded,
            policy_uuid: self.policy_uuid.clone(),
            stored_at,
        }
    }

    /// The checks that need no decryption: shape of every field, label usable in a ZTDF,
    /// creation date consistent. Fills the label's creation date. Errors name the field.
    pub fn validate(&mut self) -> Result<(), ApiError> {
        let id = self.id.clone();
        let bad = |field, why: &str| ApiError::invalid(&id, field, why);
        if !valid_id(&self.id) {
            return Err(bad(
                "id",
                "must be 1–128 characters of letters, digits, '.', '_', ':' or '-'",
            ));
        }
        if self.title.trim().is_empty() || self.title.len() > 512 {
            return Err(bad("title", "must be 1–512 bytes and not blank"));
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 8192) {
            return Err(bad("description", "must be at most 8192 bytes"));
        }
        if self.mime_type.is_empty()
            || self.mime_type.len() > 127
            || !self.mime_type.contains('/')
            || self
                .mime_type
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("mimeType", "must be a MIME type such as text/plain"));
        }
        if self.file_name.is_empty()
            || self.file_name.len() > 255
            || self
                .file_name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return Err(bad(
                "fileName",
                "must be 1–255 bytes without '/', '\\' or control characters",
            ));
        }
        if self.creator.is_empty() {
            return Err(bad("creator", "must not be empty"));
        }
        if self.policy_uuid.is_empty() {
            return Err(bad("policyUuid", "must not be empty"));
        }
        if self.ztdf.len() < 4 || &self.ztdf[..2] != b"PK" {
            return Err(bad("ztdf", "is not a ZTDF (ZIP) container"));
        }
        if self.ztdf.len() > MAX_ZTDF_BYTES {
            return Err(bad("ztdf", "is larger than 1 GiB"));
        }
        dive_ztdf::label::validate(&self.label).map_err(|e| bad("label", &e.to_string()))?;
        match self.label.creation_date {
            None => self.label.creation_date = Some(self.created_at),
            Some(d) if d == self.created_at => {}
            Some(d) => {
                return Err(bad(
                    "label.creationDate",
                    &format!("{d} differs from createdAt {}", self.created_at),
                ));
            }
        }
        Ok(())
    }
}

const RESOURCE_COLUMNS: &[&str] = &[
    "id",
    "title",
    "description",
    "classification",
    "classification_rank",
    "releasability",
    "coi",
    "coi_operator",
    "caveats",
    "original_classification",
    "original_country",
    "releasable_to_industry",
    "originator",
    "label",
    "mime_type",
    "file_name",
    "size",
    "ztdf_size",
    "created_at",
    "creator",
    "seeded",
    "policy_uuid",
    "stored_at",
];

const META_SELECT: &str = "SELECT id, title, description, label, mime_type, file_name, size, \
     ztdf_size, created_at, creator, seeded, policy_uuid, stored_at FROM api_resources";

/// `INSERT INTO table (cols) VALUES ($1, …), (…)` for `rows` rows.
fn insert_sql(table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Bind one document's metadata row (the order of [`RESOURCE_COLUMNS`]).
fn bind_meta<'q>(q: AnyQuery<'q>, d: &NewResource, label_json: String, now: i64) -> AnyQuery<'q> {
    let l = &d.label;
    q.bind(d.id.clone())
        .bind(d.title.clone())
        .bind(d.description.clone())
        .bind(l.classification.as_str())
        .bind(i64::from(l.classification.rank()))
        .bind(delimited(
            l.releasability_to.iter().map(CountryCode::as_str),
        ))
        .bind(delimited(l.coi.iter().map(String::as_str)))
        .bind(l.coi_operator.as_str())
        .bind(delimited(l.caveats.iter().map(String::as_str)))
        .bind(l.original_classification.clone())
        .bind(l.original_country.map(|c| c.as_str().to_string()))
        .bind(i64::from(l.releasable_to_industry))
        .bind(l.originator.clone())
        .bind(label_json)
        .bind(d.mime_type.clone())
        .bind(d.file_name.clone())
        .bind(d.size as i64)
        .bind(d.ztdf.len() as i64)
        .bind(to_ms(d.created_at))
        .bind(d.creator.clone())
        .bind(i64::from(d.seeded))
        .bind(d.policy_uuid.clone())
        .bind(now)
}

fn label_json(d: &NewResource) -> Result<String, ApiError> {
    serde_json::to_string(&d.label).map_err(|e| ApiError::invalid(&d.id, "label", e.to_string()))
}

fn meta_from_row(row: &AnyRow) -> Result<ResourceMeta, ApiError> {
    let id: String = row.try_get("id")?;
    let label_text: String = row.try_get("label")?;
    let label: SecurityLabel = serde_json::from_str(&label_text)
        .map_err(|e| ApiError::Corrupt(format!("label of resource {id:?}: {e}")))?;
    let created_at = from_ms(row.try_get("created_at")?)?;
    Ok(ResourceMeta {
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        label,
        mime_type: row.try_get("mime_type")?,
        file_name: row.try_get("file_name")?,
        size: row.try_get::<i64, _>("size")?.max(0) as u64,
        ztdf_size: row.try_get::<i64, _>("ztdf_size")?.max(0) as u64,
        created_at,
        creator: row.try_get("creator")?,
        seeded: row.try_get::<i64, _>("seeded")? != 0,
        policy_uuid: row.try_get("policy_uuid")?,
        stored_at: from_ms(row.try_get("stored_at")?)?,
        id,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl ResourceStore {
    /// Open a `postgres://` URL or a SQLite file path (created 0600 if missing) and migrate.
    pub async fn open(location: &str) -> Result<ResourceStore, ApiError> {
        let db = dive_db::open(location, SCHEMA, dive_db::PoolSize::default()).await?;
        Ok(ResourceStore {
            pool: db.pool,
            backend: db.backend,
            location: db.location,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store is (a file path, or `PostgreSQL` without the URL's credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Replace every seeded document with `docs`, in one transaction: re-running a seeding
    /// replaces, never duplicates, and readers see either the old or the new set. Uploaded
    /// (non-seeded) documents are kept; a seeded id equal to an uploaded one is an error and
    /// changes nothing. Every document is validated first ([`NewResource::validate`]).
    pub async fn replace_seeded(
        &self,
        mut docs: Vec<NewResource>,
    ) -> Result<SeedSummary, ApiError> {
        let mut ids = std::collections::HashSet::with_capacity(docs.len());
        for d in &mut docs {
            if !d.seeded {
                return Err(ApiError::invalid(
                    &d.id,
                    "seeded",
                    "replace_seeded stores seeded documents only",
                ));
            }
            d.validate()?;
            if !ids.insert(d.id.clone()) {
                return Err(ApiError::invalid(&d.id, "id", "appears twice in the batch"));
            }
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM api_resource_content WHERE id IN (SELECT id FROM api_resources WHERE seeded = 1)",
        )
        .execute(&mut *tx)
        .await?;
        let removed = sqlx::query("DELETE FROM api_resources WHERE seeded = 1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let inserted = docs.len() as u64;
        let now = now_ms();
        let mut it = docs.into_iter().peekable();
        while it.peek().is_some() {
            let rows = dive_db::rows_per_statement(RESOURCE_COLUMNS.len());
            let batch: Vec<NewResource> = it.by_ref().take(rows).collect();
            self.insert_batch(&mut tx, batch, now).await?;
        }
        let generation = bump_generation(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(removed, inserted, generation, "seeded documents replaced");
        Ok(SeedSummary {
            removed,
            inserted,
            generation,
        })
    }

    async fn insert_batch(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        batch: Vec<NewResource>,
        now: i64,
    ) -> Result<(), ApiError> {
        let meta_sql = insert_sql("api_resources", RESOURCE_COLUMNS, batch.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(meta_sql));
        for d in &batch {
            q = bind_meta(q, d, label_json(d)?, now);
        }
        if let Err(e) = q.execute(&mut **tx).await {
            return Err(if is_unique_violation(&e) {
                ApiError::Exists(
                    "one of the seeded ids (it belongs to an uploaded document)".to_string(),
                )
            } else {
                e.into()
            });
        }
        let content_sql = insert_sql("api_resource_content", &["id", "ztdf"], batch.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(content_sql));
        for d in batch {
            q = q.bind(d.id).bind(d.ztdf);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }

    /// Store one document (an upload). Returns its metadata and the new catalog generation.
    pub async fn insert(&self, mut doc: NewResource) -> Result<(ResourceMeta, i64), ApiError> {
        doc.validate()?;
        let now = now_ms();
        let meta = doc.meta(from_ms(now)?);
        let mut tx = self.pool.begin().await?;
        let q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(
            "api_resources",
            RESOURCE_COLUMNS,
            1,
        )));
        if let Err(e) = bind_meta(q, &doc, label_json(&doc)?, now)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                ApiError::Exists(doc.id)
            } else {
                e.into()
            });
        }
        sqlx::query("INSERT INTO api_resource_content (id, ztdf) VALUES ($1, $2)")
            .bind(doc.id)
            .bind(doc.ztdf)
            .execute(&mut *tx)
            .await?;
        let generation = bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok((meta, generation))
    }

    /// One document's metadata.
    pub async fn get(&self, id: &str) -> Result<Option<ResourceMeta>, ApiError> {
        let sql = format!("{META_SELECT} WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(meta_from_row).transpose()
    }

    /// One document's ZTDF bytes.
    pub async fn ztdf(&self, id: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let row = sqlx::query("SELECT ztdf FROM api_resource_content WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>("ztdf")).transpose()?)
    }

    /// The catalog generation (bumped by every write).
    pub async fn generation(&self) -> Result<i64, ApiError> {
        Ok(
            sqlx::query("SELECT generation FROM api_catalog_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .try_get("generation")?,
        )
    }

    /// Every document's metadata with the generation it belongs to (read in one transaction).
    pub async fn load_all(&self) -> Result<(i64, Vec<ResourceMeta>), ApiError> {
        let mut tx = self.pool.begin().await?;
        let generation: i64 = sqlx::query("SELECT generation FROM api_catalog_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("generation")?;
        let rows = sqlx::query(META_SELECT).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let docs = rows
            .iter()
            .map(meta_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((generation, docs))
    }

    /// Number of documents, all or only seeded/uploaded ones.
    pub async fn count(&self, seeded: Option<bool>) -> Result<u64, ApiError> {
        let row = match seeded {
            None => {
                sqlx::query("SELECT COUNT(*) AS n FROM api_resources")
                    .fetch_one(&self.pool)
                    .await?
            }
            Some(s) => {
                sqlx::query("SELECT COUNT(*) AS n FROM api_resources WHERE seeded = $1")
                    .bind(i64::from(s))
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// Delete a document and its ZTDF. `Ok(Some(generation))` (the new catalog generation)
    /// when it existed, `Ok(None)` when there was nothing to delete.
    pub async fn delete(&self, id: &str) -> Result<Option<i64>, ApiError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM api_resource_content WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM api_resources WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let generation = bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(generation))
    }

    /// Append audit entries in one transaction.
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), ApiError> {
        const COLS: &[&str] = &[
            "id",
            "at",
            "subject",
            "issuer",
            "action",
            "resource_id",
            "allow",
            "reason",
            "latency_us",
            "policy_version",
            "detail",
        ];
        let mut tx = self.pool.begin().await?;
        for chunk in entries.chunks(dive_db::rows_per_statement(COLS.len())) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(
                "api_audit",
                COLS,
                chunk.len(),
            )));
            for e in chunk {
                q = q
                    .bind(e.id.clone())
                    .bind(e.at_ms)
                    .bind(e.subject.clone())
                    .bind(e.issuer.clone())
                    .bind(e.action.clone())
                    .bind(e.resource_id.clone())
                    .bind(i64::from(e.allow))
                    .bind(e.reason.clone())
                    .bind(e.latency_us as i64)
                    .bind(e.policy_version.clone())
                    .bind(e.detail.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries, newest first, filtered; at most `q.limit` (after the cursor, if any).
    pub async fn audit_page(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, ApiError> {
        let mut filter = audit_conditions(q);
        if let Some((at, id)) = &q.before {
            let (a, b, c) = (
                filter.param(Param::Int(*at)),
                filter.param(Param::Int(*at)),
                filter.param(Param::Text(id.clone())),
            );
            filter.and(&format!("at < {a} OR (at = {b} AND id < {c})"));
        }
        let limit = filter.param(Param::Int(q.limit as i64));
        let sql = format!(
            "SELECT id, at, subject, issuer, action, resource_id, allow, reason, latency_us, \
             policy_version, detail FROM api_audit WHERE 1 = 1{} ORDER BY at DESC, id DESC \
             LIMIT {limit}",
            filter.sql()
        );
        let rows = filter.fetch_all(sql, &self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at")?,
                    subject: r.try_get("subject")?,
                    issuer: r.try_get("issuer")?,
                    action: r.try_get("action")?,
                    resource_id: r.try_get("resource_id")?,
                    allow: r.try_get::<i64, _>("allow")? != 0,
                    reason: r.try_get("reason")?,
                    latency_us: r.try_get::<i64, _>("latency_us")?.max(0) as u64,
                    policy_version: r.try_get("policy_version")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Decisions counted per time bucket of `bucket_ms`, oldest first, only buckets with
    /// decisions: `(bucket start ms, allowed, denied)`. The filter's subject, resource, action,
    /// decision and time bounds apply (not its cursor or limit); at most `max_buckets` + 1 rows
    /// are read, so a caller can tell that the range holds more.
    pub async fn audit_summary(
        &self,
        q: &AuditQuery,
        bucket_ms: i64,
        max_buckets: usize,
    ) -> Result<Vec<(i64, u64, u64)>, ApiError> {
        let mut filter = audit_conditions(q);
        let width = filter.param(Param::Int(bucket_ms.max(1)));
        let limit = filter.param(Param::Int(max_buckets as i64 + 1));
        // Integer division in both SQLite and PostgreSQL (bigint / bigint); SUM over a CASE
        // stays an integer in PostgreSQL (a SUM of the column itself would be numeric).
        let sql = format!(
            "SELECT at / {width} AS bucket, SUM(CASE WHEN allow = 0 THEN 0 ELSE 1 END) AS allowed, \
             COUNT(*) AS total FROM api_audit WHERE 1 = 1{} GROUP BY at / {width} \
             ORDER BY bucket LIMIT {limit}",
            filter.sql()
        );
        let rows = filter.fetch_all(sql, &self.pool).await?;
        rows.iter()
            .map(|r| {
                let bucket: i64 = r.try_get("bucket")?;
                let allowed = r.try_get::<i64, _>("allowed")?.max(0) as u64;
                let total = r.try_get::<i64, _>("total")?.max(0) as u64;
                Ok((
                    bucket * bucket_ms.max(1),
                    allowed,
                    total.saturating_sub(allowed),
                ))
            })
            .collect()
    }

    /// Delete audit entries older than `before_ms`; returns how many.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64, ApiError> {
        Ok(sqlx::query("DELETE FROM api_audit WHERE at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn bump_generation(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<i64, ApiError> {
    Ok(sqlx::query(
        "UPDATE api_catalog_state SET generation = generation + 1 WHERE id = 1 RETURNING generation",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("generation")?)
}

/// The conditions of an audit query: subject, resource, action, decision, time bounds (not its
/// cursor or limit).
fn audit_conditions(q: &AuditQuery) -> Conditions {
    let mut c = Conditions::new();
    c.when("subject =", q.subject.clone().map(Param::Text));
    c.when("resource_id =", q.resource_id.clone().map(Param::Text));
    c.when("action =", q.action.clone().map(Param::Text));
    c.when("allow =", q.allow.map(|a| Param::Int(i64::from(a))));
    c.when("at >=", q.since_ms.map(Param::Int));
    c.when("at <", q.until_ms.map(Param::Int));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_insert_numbers_parameters_in_order() {
        assert_eq!(
            insert_sql("t", &["a", "b"], 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(delimited(["USA", "GBR"].into_iter()), " USA GBR ");
    }

    #[test]
    fn ids_are_url_safe() {
        assert!(valid_id("doc-0001.v2:x_y"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"x".repeat(129)));
    }
}
