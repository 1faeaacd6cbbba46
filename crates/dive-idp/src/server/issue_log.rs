//! Group commit of the token endpoint's writes. Every code exchange and refresh records the access
//! token it issued (for revocation) and a new refresh token, and a refresh claims the token it
//! rotates. On SQLite every such transaction takes the single write lock, so concurrent grants
//! queued behind each other in SQLite's busy handler (sleeping) and refresh was bound by the
//! database, not by signing. One writer task now commits whatever is queued in one transaction
//! and answers each waiter; a claim that loses (the token was already rotated, possibly earlier
//! in the same batch) is reported as reuse and writes nothing for that grant.

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

/// Writes of one grant.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    /// The refresh token being rotated (its hash): claimed first; `None` for a code exchange.
    pub rotating: Option<String>,
    pub family: String,
    pub jti: String,
    pub access_expires_at: i64,
    pub refresh_hash: String,
    pub client_id: String,
    pub grant_data: String,
    pub refresh_expires_at: i64,
}

/// What became of one grant's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Committed,
    /// The rotated refresh token had been used already: nothing was written.
    Reused,
}

struct Queued {
    issue: Issue,
    done: oneshot::Sender<Result<Recorded, String>>,
}

/// Most grants one transaction commits: bounds the latency a batch adds to its first waiter.
const PER_COMMIT: usize = 256;

#[derive(Clone)]
pub(crate) struct IssueLog {
    tx: mpsc::Sender<Queued>,
}

impl IssueLog {
    /// Start the writer task on `pool` (needs a Tokio runtime).
    pub fn start(pool: AnyPool) -> IssueLog {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer(pool, rx));
        IssueLog { tx }
    }

    /// Queue `issue` and wait until its transaction has committed.
    pub async fn record(&self, issue: Issue) -> Result<Recorded, crate::IdpError> {
        let stopped = || crate::IdpError::Store("the write task has stopped".into());
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Queued { issue, done })
            .await
            .map_err(|_| stopped())?;
        wait.await
            .map_err(|_| stopped())?
            .map_err(crate::IdpError::Store)
    }
}

async fn writer(pool: AnyPool, mut rx: mpsc::Receiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < PER_COMMIT {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        match write(&pool, &batch).await {
            Ok(outcomes) => {
                for (q, o) in batch.into_iter().zip(outcomes) {
                    let _ = q.done.send(Ok(o));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, grants = batch.len(), "token writes failed; nothing issued");
                let e = e.to_string();
                for q in batch {
                    let _ = q.done.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn write(pool: &AnyPool, batch: &[Queued]) -> Result<Vec<Recorded>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for Queued { issue: i, .. } in batch {
        if let Some(hash) = &i.rotating {
            let claimed = sqlx::query(
                "UPDATE idp_refresh_tokens SET used = 1 WHERE token_hash = $1 AND used = 0",
            )
            .bind(hash)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                outcomes.push(Recorded::Reused);
                continue;
            }
        }
        sqlx::query("INSERT INTO idp_issued (jti, family, expires_at) VALUES ($1, $2, $3)")
            .bind(&i.jti)
            .bind(&i.family)
            .bind(i.access_expires_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO idp_refresh_tokens (token_hash, family, client_id, grant_data, used, \
             revoked, expires_at) VALUES ($1, $2, $3, $4, 0, 0, $5)",
        )
        .bind(&i.refresh_hash)
        .bind(&i.family)
        .bind(&i.client_id)
        .bind(&i.grant_data)
        .bind(i.refresh_expires_at)
        .execute(&mut *tx)
        .await?;
        outcomes.push(Recorded::Committed);
    }
    tx.commit().await?;
    Ok(outcomes)
}
