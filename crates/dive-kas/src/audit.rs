//! The audit log of every rewrap request, in SQLite (default) or PostgreSQL.
//!
//! A key is never released before its audit rows are committed: the request handler hands its
//! rows to one writer task and waits for the commit. The writer groups whatever is queued into one
//! transaction (group commit), so throughput does not pay one commit per request. If the log
//! cannot be written the KAS answers 503 and releases nothing (fail closed).

use sqlx::AnyPool;
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
        let pool = dive_db::open(location, SCHEMA, size).await?.pool;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(writer(pool.clone(), rx));
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

/// The single writer: commit everything queued in one transaction, then answer every waiter.
async fn writer(pool: AnyPool, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        let mut rows = batches[0].rows.len();
        while rows < ROWS_PER_COMMIT {
            match rx.try_recv() {
                Ok(b) => {
                    rows += b.rows.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        let result = write(&pool, &batches).await.map_err(|e| {
            tracing::error!(error = %e, rows, "audit log write failed; keys are not released");
            e.to_string()
        });
        for b in batches {
            let _ = b.done.send(result.clone());
        }
    }
}

async fn write(pool: &AnyPool, batches: &[Batch]) -> Result<(), sqlx::Error> {
    let all: Vec<&AuditRow> = batches.iter().flat_map(|b| b.rows.iter()).collect();
    let mut tx = pool.begin().await?;
    for chunk in all.chunks(dive_db::rows_per_statement(COLUMNS)) {
        let mut sql = String::from(
            "INSERT INTO kas_audit (request_id, seq, at_ms, transport, peer, subject, issuer, jti, \
             client_id, srt_key, policy_id, policy_uuid, kao_id, kid, algorithm, decision, reason, \
             latency_us) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..COLUMNS {
                if c > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", i * COLUMNS + c + 1));
            }
            sql.push(')');
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.request_id.clone())
                .bind(r.seq)
                .bind(r.at_ms)
                .bind(r.transport.clone())
                .bind(r.peer.clone())
                .bind(r.subject.clone())
                .bind(r.issuer.clone())
                .bind(r.jti.clone())
                .bind(r.client_id.clone())
                .bind(r.srt_key.clone())
                .bind(r.policy_id.clone())
                .bind(r.policy_uuid.clone())
                .bind(r.kao_id.clone())
                .bind(r.kid.clone())
                .bind(r.algorithm.clone())
                .bind(r.decision.clone())
                .bind(r.reason.clone())
                .bind(r.latency_us);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
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
}
