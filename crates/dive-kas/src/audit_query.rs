//! Reading the audit log: rows newest first with filters and a cursor, and decisions counted per
//! time bucket by the database (for operators: `dive kas audit`, `GET /kas/audit`).

use dive_db::{Conditions, Param};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{AuditError, AuditLog, AuditRow};

/// Which rows to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The caller's `uniqueID`.
    pub subject: Option<String>,
    /// `permit`, `fail` or `rejected`.
    pub decision: Option<String>,
    /// The ZTDF policy's `uuid` (which object).
    pub policy_uuid: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Rows strictly older than this (at, request id, seq) position: the previous page's last.
    pub before: Option<(i64, String, i64)>,
    pub limit: i64,
}

/// Decisions of one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Start of the bucket, Unix milliseconds.
    pub start_ms: i64,
    pub permit: u64,
    pub fail: u64,
    pub rejected: u64,
}

const COLUMNS: &str = "request_id, seq, at_ms, transport, peer, subject, issuer, jti, client_id, \
     srt_key, policy_id, policy_uuid, kao_id, kid, algorithm, decision, reason, latency_us";

fn conditions(q: &AuditQuery) -> Conditions {
    let mut c = Conditions::new();
    c.when("subject =", q.subject.clone().map(Param::Text));
    c.when("decision =", q.decision.clone().map(Param::Text));
    c.when("policy_uuid =", q.policy_uuid.clone().map(Param::Text));
    c.when("at_ms >=", q.since_ms.map(Param::Int));
    c.when("at_ms <", q.until_ms.map(Param::Int));
    c
}

fn row_of(r: &AnyRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        request_id: r.try_get(0)?,
        seq: r.try_get(1)?,
        at_ms: r.try_get(2)?,
        transport: r.try_get(3)?,
        peer: r.try_get(4)?,
        subject: r.try_get(5)?,
        issuer: r.try_get(6)?,
        jti: r.try_get(7)?,
        client_id: r.try_get(8)?,
        srt_key: r.try_get(9)?,
        policy_id: r.try_get(10)?,
        policy_uuid: r.try_get(11)?,
        kao_id: r.try_get(12)?,
        kid: r.try_get(13)?,
        algorithm: r.try_get(14)?,
        decision: r.try_get(15)?,
        reason: r.try_get(16)?,
        latency_us: r.try_get(17)?,
    })
}

impl AuditLog {
    /// Rows matching `q`, newest first (ties by request id and sequence, descending), at most
    /// `q.limit`.
    pub async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, AuditError> {
        let mut c = conditions(q);
        if let Some((at, request, seq)) = &q.before {
            let (a, b, r, d, e, s) = (
                c.param(Param::Int(*at)),
                c.param(Param::Int(*at)),
                c.param(Param::Text(request.clone())),
                c.param(Param::Int(*at)),
                c.param(Param::Text(request.clone())),
                c.param(Param::Int(*seq)),
            );
            c.and(&format!(
                "at_ms < {a} OR (at_ms = {b} AND request_id < {r}) \
                 OR (at_ms = {d} AND request_id = {e} AND seq < {s})"
            ));
        }
        let limit = c.param(Param::Int(q.limit.max(0)));
        let sql = format!(
            "SELECT {COLUMNS} FROM kas_audit WHERE 1 = 1{} \
             ORDER BY at_ms DESC, request_id DESC, seq DESC LIMIT {limit}",
            c.sql()
        );
        let rows = c.fetch_all(sql, self.pool()).await?;
        rows.iter()
            .map(row_of)
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(AuditError::from)
    }

    /// Delete rows older than `before_ms`; returns how many.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, AuditError> {
        Ok(sqlx::query("DELETE FROM kas_audit WHERE at_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Rows matching `q` (its cursor and limit aside) counted per bucket of `bucket_ms`, oldest
    /// first, only buckets holding rows; at most `max_buckets` + 1, so a caller can tell that
    /// the range holds more.
    pub async fn summary(
        &self,
        q: &AuditQuery,
        bucket_ms: i64,
        max_buckets: usize,
    ) -> Result<Vec<Bucket>, AuditError> {
        let mut c = conditions(q);
        let width = c.param(Param::Int(bucket_ms.max(1)));
        let limit = c.param(Param::Int(max_buckets as i64 + 1));
        // SUM over CASE stays an integer in PostgreSQL (bigint), as COUNT does.
        let sql = format!(
            "SELECT at_ms / {width} AS bucket, \
             SUM(CASE WHEN decision = 'permit' THEN 1 ELSE 0 END) AS permits, \
             SUM(CASE WHEN decision = 'fail' THEN 1 ELSE 0 END) AS fails, \
             COUNT(*) AS total FROM kas_audit WHERE 1 = 1{} GROUP BY at_ms / {width} \
             ORDER BY bucket LIMIT {limit}",
            c.sql()
        );
        let rows = c.fetch_all(sql, self.pool()).await?;
        let count = |r: &AnyRow, col: &str| -> Result<u64, sqlx::Error> {
            Ok(r.try_get::<i64, _>(col)?.max(0) as u64)
        };
        rows.iter()
            .map(|r| {
                let (permit, fail, total) =
                    (count(r, "permits")?, count(r, "fails")?, count(r, "total")?);
                Ok(Bucket {
                    start_ms: r.try_get::<i64, _>("bucket")? * bucket_ms.max(1),
                    permit,
                    fail,
                    rejected: total.saturating_sub(permit + fail),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(AuditError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(request: &str, seq: i64, at_ms: i64, subject: &str, decision: &str) -> AuditRow {
        AuditRow {
            request_id: request.into(),
            seq,
            at_ms,
            transport: "rest".into(),
            subject: Some(subject.into()),
            policy_uuid: Some(format!("policy-{request}")),
            decision: decision.into(),
            reason: "test".into(),
            ..AuditRow::default()
        }
    }

    #[tokio::test]
    async fn rows_page_newest_first_and_count_per_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().join("kas.db").to_str().unwrap())
            .await
            .unwrap();
        // Request r0 at 1000 with two KAOs, then one request per 10 ms.
        let mut rows = vec![
            row("r0", 0, 1000, "alice", "permit"),
            row("r0", 1, 1000, "alice", "fail"),
        ];
        for i in 1..10 {
            let decision = ["permit", "fail", "rejected"][i % 3];
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            rows.push(row(
                &format!("r{i}"),
                0,
                1000 + 10 * i as i64,
                who,
                decision,
            ));
        }
        log.record(rows).await.unwrap();

        // Paged three at a time: every row once, newest first.
        let mut seen = Vec::new();
        let mut q = AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        };
        loop {
            let page = log.query(&q).await.unwrap();
            if page.is_empty() {
                break;
            }
            let last = page.last().unwrap();
            q.before = Some((last.at_ms, last.request_id.clone(), last.seq));
            seen.extend(page.into_iter().map(|r| (r.request_id, r.seq)));
        }
        assert_eq!(seen.len(), 11);
        assert_eq!(seen[0], ("r9".to_string(), 0));
        assert_eq!(&seen[9..], &[("r0".into(), 1), ("r0".into(), 0)]);
        assert_eq!(log.recent(2).await.unwrap().len(), 2);

        let alice = AuditQuery {
            subject: Some("alice".into()),
            decision: Some("permit".into()),
            limit: 100,
            ..AuditQuery::default()
        };
        let got = log.query(&alice).await.unwrap();
        assert!(
            got.iter()
                .all(|r| r.subject.as_deref() == Some("alice") && r.decision == "permit")
        );
        let ids: Vec<&str> = got.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["r6", "r0"]);

        // 50 ms buckets: [1000, 1050) holds r0 (permit, fail) and r1–r4 (fail, rejected,
        // permit, fail); [1050, 1100) r5–r9 (rejected, permit, fail, rejected, permit).
        let b = log.summary(&AuditQuery::default(), 50, 100).await.unwrap();
        assert_eq!(
            b,
            [
                Bucket {
                    start_ms: 1000,
                    permit: 2,
                    fail: 3,
                    rejected: 1
                },
                Bucket {
                    start_ms: 1050,
                    permit: 2,
                    fail: 1,
                    rejected: 2
                },
            ]
        );
        assert_eq!(
            log.summary(&AuditQuery::default(), 1, 3)
                .await
                .unwrap()
                .len(),
            4
        );
    }
}
