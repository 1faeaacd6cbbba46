//! The audit log of every rewrap request, in SQLite (default) or PostgreSQL.
//!
//! A key is never released before its audit rows are committed: the request handler hands its
//! rows to one writer task and waits for the commit. The writer groups whatever is queued into one
//! transaction (group commit), so throughput does not pay one commit per request. If the log
//! cannot be written the KAS answers 503 and releases nothing (fail closed).

use std::sync::Arc;

use dive_db::Backend;
use sqlx::any::AnyArguments;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Connection};
use tokio::sync::{mpsc, oneshot};

const SCHEMA: dive_db::Schema = dive_db::Schema {
    migrations: &[(1, "audit", include_str!("../migrations/0001_audit.sql"))],
    // The KAS's own migrations table, so it can share a PostgreSQL database with other services.
    table: "kas_schema_migrations",
};

/// Columns of an audit row (parameters per row of the INSERT).
const COLUMNS: usize = 18;
/// Rows gathered into one transaction at most.
const ROWS_PER_COMMIT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: {0}")]
    Open(#[from] dive_db::DbError),
    #[error("audit log write failed: {0}")]
    Write(String),
    #[error("audit log query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// One audit row: one KAO of a rewrap (or a request refused as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AuditRow {
    pub request_id: String,
    pub seq: i64,
    pub at_ms: i64,
    /// `rest`, `connect+json` or `connect+proto`.
    pub transport: String,
    pub peer: Option<String>,
    /// The caller's `uniqueID` (absent when the token was refused).
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub jti: Option<String>,
    pub client_id: Option<String>,
    /// How the signed request token was signed (`jwk:<thumbprint>` or `unverified`).
    pub srt_key: Option<String>,
    pub policy_id: Option<String>,
    pub policy_uuid: Option<String>,
    pub kao_id: Option<String>,
    pub kid: Option<String>,
    pub algorithm: Option<String>,
    /// `permit`, `fail`, or `rejected` (the request was malformed).
    pub decision: String,
    /// The real reason, also for failures the caller sees only as `forbidden`.
    pub reason: String,
    /// Time from receiving the request to the decision, microseconds.
    pub latency_us: i64,
}

struct Batch {
    rows: Vec<AuditRow>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Batch>,
    pool: AnyPool,
}

impl AuditLog {
    /// Open a `postgres://` URL or a SQLite file path (created 0600), migrate, and start the
    /// writer task (needs a Tokio runtime).
    pub async fn open(location: &str) -> Result<AuditLog, AuditError> {
        // One writer task; readers are operators and tests.
        let size = dive_db::PoolSize {
            sqlite: 2,
            postgres: 4,
        };
        let db = dive_db::open(location, SCHEMA, size).await?;
        let pool = db.pool;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(writer(pool.clone(), db.backend, rx));
        Ok(AuditLog { tx, pool })
    }

    /// Append rows and wait until they are committed.
    pub async fn record(&self, rows: Vec<AuditRow>) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Batch { rows, done })
            .await
            .map_err(|_| AuditError::Write("the audit writer has stopped".into()))?;
        wait.await
            .map_err(|_| AuditError::Write("the audit writer has stopped".into()))?
            .map_err(AuditError::Write)
    }

    /// The most recent rows, newest first (operators, tests).
    pub async fn recent(&self, limit: i64) -> Result<Vec<AuditRow>, AuditError> {
        self.query(&crate::audit_query::AuditQuery {
            limit,
            ..Default::default()
        })
        .await
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The single writer: commit everything queued in one go, then answer every waiter.
///
/// On SQLite it keeps one pooled connection (no pool hand-over per commit); it keeps the INSERT
/// text per row count (the driver then reuses its prepared statement). A drain whose rows fit in one
/// statement is that one statement in autocommit: a single statement is atomic and durable on
/// its own in SQLite and PostgreSQL, so BEGIN and COMMIT would only add two round trips to the
/// database thread or server. Larger drains run in one transaction.
async fn writer(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Batch>) {
    let mut conn: Option<PoolConnection<Any>> = None;
    let mut sql = InsertSql {
        backend,
        by_rows: Vec::new(),
    };
    let mut rows = Vec::new();
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        rows.extend(first.rows);
        waiters.push(first.done);
        // Let the tasks that are ready to run first (requests about to record their rows, under
        // load) join this commit: a commit costs about the same for one row as for ten (mostly
        // the index pages written to the WAL), and the wait is one scheduler round.
        tokio::task::yield_now().await;
        while rows.len() < ROWS_PER_COMMIT {
            match rx.try_recv() {
                Ok(b) => {
                    rows.extend(b.rows);
                    waiters.push(b.done);
                }
                Err(_) => break,
            }
        }
        let n = rows.len();
        let result = write(&pool, &mut conn, &mut sql, std::mem::take(&mut rows))
            .await
            .map_err(|e| {
                // Hand the connection back: the next drain starts on a fresh (for PostgreSQL,
                // tested) one.
                conn = None;
                tracing::error!(error = %e, rows = n, "audit log write failed; keys are not released");
                e.to_string()
            });
        for done in waiters.drain(..) {
            let _ = done.send(result.clone());
        }
        // A PostgreSQL connection can drop with the server: take one from the pool (which tests
        // it) per commit, so a restart costs no failed commit. A SQLite connection cannot.
        if backend == Backend::Postgres {
            conn = None;
        }
    }
}

/// `INSERT … VALUES (…),(…)` texts by row count, built once.
struct InsertSql {
    backend: Backend,
    by_rows: Vec<Option<Arc<str>>>,
}

impl InsertSql {
    fn get(&mut self, rows: usize) -> Arc<str> {
        if self.by_rows.len() <= rows {
            self.by_rows.resize(rows + 1, None);
        }
        let backend = self.backend;
        self.by_rows[rows]
            .get_or_insert_with(|| {
                let mut sql = String::from(
                    "INSERT INTO kas_audit (request_id, seq, at_ms, transport, peer, subject, \
                     issuer, jti, client_id, srt_key, policy_id, policy_uuid, kao_id, kid, \
                     algorithm, decision, reason, latency_us) VALUES ",
                );
                for i in 0..rows {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push('(');
                    for c in 0..COLUMNS {
                        if c > 0 {
                            sql.push(',');
                        }
                        match backend {
                            // Positional: SQLite binds them in order without looking a name
                            // up per parameter, as it does for `$n`.
                            Backend::Sqlite => sql.push('?'),
                            Backend::Postgres => sql.push_str(&format!("${}", i * COLUMNS + c + 1)),
                        }
                    }
                    sql.push(')');
                }
                Arc::from(sql)
            })
            .clone()
    }
}

fn insert(sql: Arc<str>, rows: Vec<AuditRow>) -> Query<'static, Any, AnyArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rows {
        q = q
            .bind(r.request_id)
            .bind(r.seq)
            .bind(r.at_ms)
            .bind(r.transport)
            .bind(r.peer)
            .bind(r.subject)
            .bind(r.issuer)
            .bind(r.jti)
            .bind(r.client_id)
            .bind(r.srt_key)
            .bind(r.policy_id)
            .bind(r.policy_uuid)
            .bind(r.kao_id)
            .bind(r.kid)
            .bind(r.algorithm)
            .bind(r.decision)
            .bind(r.reason)
            .bind(r.latency_us);
    }
    q
}

async fn write(
    pool: &AnyPool,
    conn: &mut Option<PoolConnection<Any>>,
    sql: &mut InsertSql,
    mut rows: Vec<AuditRow>,
) -> Result<(), sqlx::Error> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(pool.acquire().await?),
    };
    let per_statement = dive_db::rows_per_statement(COLUMNS);
    if rows.len() <= per_statement {
        insert(sql.get(rows.len()), rows).execute(&mut **c).await?;
        return Ok(());
    }
    let mut tx = c.begin().await?;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(per_statement));
        let chunk = std::mem::replace(&mut rows, rest);
        insert(sql.get(chunk.len()), chunk)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    fn row(request: &str, seq: i64, decision: &str) -> AuditRow {
        AuditRow {
            request_id: request.into(),
            seq,
            at_ms: 1_000 + seq,
            transport: "rest".into(),
            subject: Some("alice@example".into()),
            decision: decision.into(),
            reason: format!("reason {seq}"),
            ..AuditRow::default()
        }
    }

    #[tokio::test]
    async fn concurrent_requests_are_committed_before_record_returns() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().join("kas.db").to_str().unwrap())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let rows = (0..3).map(|s| row(&format!("r{i}"), s, "permit")).collect();
                log.record(rows).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let got = log.recent(1000).await.unwrap();
        assert_eq!(got.len(), 120);
        assert!(
            got.iter()
                .all(|r| r.subject.as_deref() == Some("alice@example"))
        );
        // The same (request, seq) twice is refused, and the caller is told.
        assert!(log.record(vec![row("r0", 0, "fail")]).await.is_err());
        // The writer survives a failed batch.
        log.record(vec![row("r-next", 0, "fail")]).await.unwrap();
    }

    async fn count(log: &AuditLog, request: &str) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM kas_audit WHERE request_id = $1")
            .bind(request.to_string())
            .fetch_one(log.pool())
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_row_is_visible_to_another_connection_when_record_returns() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().join("kas.db").to_str().unwrap())
            .await
            .unwrap();
        // Single-row requests from many tasks: drains of one or several requests, each one
        // autocommitted statement or (past one statement's rows) one transaction.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("c{i}");
                log.record(vec![row(&id, 0, "permit")]).await.unwrap();
                count(&log, &id).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1);
        }
        assert_eq!(log.recent(1000).await.unwrap().len(), 200);
    }

    #[tokio::test]
    async fn a_drain_of_several_statements_commits_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().join("kas.db").to_str().unwrap())
            .await
            .unwrap();
        let per_statement = dive_db::rows_per_statement(COLUMNS) as i64;
        let n = 2 * per_statement + 3;
        log.record((0..n).map(|s| row("big", s, "permit")).collect())
            .await
            .unwrap();
        assert_eq!(count(&log, "big").await, n);
        // The last row collides with a committed one: the statements before it are rolled back.
        let mut rows: Vec<AuditRow> = (0..n).map(|s| row("big2", s, "permit")).collect();
        rows.push(row("big", 0, "permit"));
        assert!(log.record(rows).await.is_err());
        assert_eq!(count(&log, "big2").await, 0);
        // A single-statement drain that fails commits none of its rows either.
        let rows = vec![row("small", 0, "permit"), row("big", 1, "permit")];
        assert!(log.record(rows).await.is_err());
        assert_eq!(count(&log, "small").await, 0);
        log.record(vec![row("after", 0, "fail")]).await.unwrap();
        assert_eq!(count(&log, "after").await, 1);
    }
}
