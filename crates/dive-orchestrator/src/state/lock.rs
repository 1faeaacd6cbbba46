//! Deployment locks: one deployment per stack at a time, different stacks concurrently.
//!
//! * PostgreSQL: `pg_try_advisory_lock(key)` on one dedicated connection that the guard owns for
//!   the whole deployment (key = a stable 64-bit hash of the stack name). The server releases it
//!   when that session ends, however the process dies. A row in `locks` describes the holder.
//! * SQLite: the row in `locks` is the lock — a lease renewed by a heartbeat task while the guard
//!   lives. A row whose owner is gone (its pid is dead on this host, or now belongs to another
//!   process, or its lease was not renewed in time) is taken over, and the guard says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::connect::Backend;
use super::ids::{DeploymentId, UnixMillis, new_id, now_millis};
use super::{StateError, StateStore};

/// Who holds (or held) a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub deployment_id: String,
    pub pid: i64,
    pub host: String,
    /// When the lock was acquired.
    pub since: UnixMillis,
    pub heartbeat_at: UnixMillis,
}

/// A lock as stored, with whether its owner still looks alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub stack: String,
    pub owner: LockOwner,
    pub lease_ms: i64,
    /// The owner is gone: the next acquisition takes the lock over.
    pub stale: bool,
}

/// Lease settings for SQLite locks (PostgreSQL locks need none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// A lock whose heartbeat is older than this is considered abandoned.
    pub lease: Duration,
    /// How often the holder renews its lease.
    pub heartbeat: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// Proof that this process holds the deployment lock of a stack. Release it with
/// [`LockGuard::release`]; dropping it releases on a best-effort basis.
#[derive(Debug)]
pub struct LockGuard {
    stack: String,
    deployment_id: DeploymentId,
    /// The previous holder whose abandoned lock was taken over, for the CLI to mention.
    pub recovered_from: Option<LockOwner>,
    held: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Postgres {
        pool: AnyPool,
        token: String,
        /// Tells the session task to unlock and close (also when dropped).
        stop: oneshot::Sender<()>,
        /// Owns the lock's connection; checks it periodically.
        session: JoinHandle<Result<(), StateError>>,
        lost: Arc<AtomicBool>,
    },
    Sqlite {
        pool: AnyPool,
        token: String,
        stop: oneshot::Sender<()>,
        heartbeat: JoinHandle<()>,
        lost: Arc<AtomicBool>,
    },
}

impl LockGuard {
    pub fn stack(&self) -> &str {
        &self.stack
    }

    pub fn deployment_id(&self) -> &DeploymentId {
        &self.deployment_id
    }

    /// The lock can no longer be trusted: on SQLite the heartbeat found the row gone or owned
    /// by someone else; on PostgreSQL the lock's session failed (server restart, network). The
    /// deployment should stop.
    pub fn is_lost(&self) -> bool {
        match &self.held {
            Some(Held::Sqlite { lost, .. } | Held::Postgres { lost, .. }) => {
                lost.load(Ordering::SeqCst)
            }
            None => false,
        }
    }

    /// Release the lock now.
    pub async fn release(mut self) -> Result<(), StateError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        match held {
            Held::Postgres {
                pool,
                token,
                stop,
                session,
                ..
            } => {
                delete_row(&pool, &self.stack, &token).await?;
                let _ = stop.send(());
                match session.await {
                    Ok(result) => result,
                    // Only cancellation (runtime shutdown) gets here: the connection is gone,
                    // and with it the session and the lock.
                    Err(_) => Ok(()),
                }
            }
            Held::Sqlite {
                pool,
                token,
                stop,
                heartbeat,
                ..
            } => {
                let _ = stop.send(());
                let _ = heartbeat.await;
                delete_row(&pool, &self.stack, &token).await
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        // Best effort: the PostgreSQL session ends with its connection (releasing the advisory
        // lock); the row is removed if a runtime is still around to do it. A SQLite row left
        // behind names a dead pid or stops being renewed, so the next acquisition recovers it.
        let (pool, token) = match held {
            // Dropping `stop` makes the session task unlock and close the connection.
            Held::Postgres { pool, token, .. } => (pool, token),
            Held::Sqlite {
                pool,
                token,
                stop,
                heartbeat,
                ..
            } => {
                let _ = stop.send(());
                heartbeat.abort();
                (pool, token)
            }
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let stack = self.stack.clone();
            rt.spawn(async move {
                let _ = delete_row(&pool, &stack, &token).await;
            });
        }
    }
}

async fn delete_row(pool: &AnyPool, stack: &str, token: &str) -> Result<(), StateError> {
    sqlx::query("DELETE FROM locks WHERE stack = $1 AND token = $2")
        .bind(stack)
        .bind(token)
        .execute(pool)
        .await
        .map_err(StateError::query("releasing a lock"))?;
    Ok(())
}

/// Own the connection holding a PostgreSQL advisory lock: check it every `every`, and on
/// `stop` (sent or dropped) unlock and close it. Should the task itself be dropped (runtime
/// shutdown), the connection closes and the server releases the lock with the session.
async fn hold_session(
    mut conn: AnyConnection,
    key: i64,
    stack: String,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
    lost: Arc<AtomicBool>,
) -> Result<(), StateError> {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {
                if let Err(e) = sqlx::query("SELECT 1").execute(&mut conn).await {
                    tracing::error!(stack, error = %e, "the session holding the deployment lock failed");
                    lost.store(true, Ordering::SeqCst);
                    return Err(StateError::Query { what: "keeping the lock session alive", source: e });
                }
            }
        }
    }
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut conn)
        .await
        .map_err(StateError::query("releasing an advisory lock"));
    // Closing ends the session, which releases the lock even if unlocking failed.
    let _ = conn.close().await;
    unlocked.map(|_| ())
}

/// The PostgreSQL advisory-lock key of a stack's deployment lock: the first 8 bytes of SHA-256
/// over a namespaced name, so it is stable across processes, versions and platforms (and can be
/// looked up in `pg_locks`).
pub fn advisory_key(stack: &str) -> i64 {
    let digest = Sha256::digest(format!("dive.orchestrator.deploy-lock:{stack}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// This process, as a lock owner.
struct Me {
    pid: i64,
    host: String,
    start: Option<i64>,
}

fn me() -> Me {
    let pid = i64::from(std::process::id());
    Me {
        pid,
        host: hostname(),
        start: process_start_time(pid),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The start time of a process (see [`crate::process::start_time`]): with the pid it identifies
/// one process, even after the pid is reused. `None` when it is gone.
pub(crate) fn process_start_time(pid: i64) -> Option<i64> {
    let pid = u32::try_from(pid).ok()?;
    crate::process::start_time(pid).and_then(|t| i64::try_from(t).ok())
}

/// Whether the recorded owner process still runs on this host.
fn owner_alive(pid: i64, recorded_start: Option<i64>) -> bool {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        return false;
    }
    match (process_start_time(pid), recorded_start) {
        (None, _) => {
            // No /proc entry: ask the kernel (EPERM still means it exists).
            // SAFETY: kill with signal 0 only checks for existence; no signal is sent.
            let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

struct Row0 {
    owner: LockOwner,
    token: String,
    owner_start: Option<i64>,
    lease_ms: i64,
}

fn lock_row(row: &AnyRow) -> Result<(String, Row0), StateError> {
    let q = || StateError::query("reading a lock");
    Ok((
        row.try_get("stack").map_err(q())?,
        Row0 {
            owner: LockOwner {
                deployment_id: row.try_get("deployment_id").map_err(q())?,
                pid: row.try_get("owner_pid").map_err(q())?,
                host: row.try_get("owner_host").map_err(q())?,
                since: row.try_get("acquired_at").map_err(q())?,
                heartbeat_at: row.try_get("heartbeat_at").map_err(q())?,
            },
            token: row.try_get("token").map_err(q())?,
            owner_start: row.try_get("owner_start").map_err(q())?,
            lease_ms: row.try_get("lease_ms").map_err(q())?,
        },
    ))
}

impl Row0 {
    /// The owner is gone: dead (or replaced) process on this host, or an expired lease.
    fn is_stale(&self, host: &str, now: UnixMillis) -> bool {
        let dead_here = self.owner.host == host && !owner_alive(self.owner.pid, self.owner_start);
        let expired = now > self.owner.heartbeat_at.saturating_add(self.lease_ms);
        dead_here || expired
    }
}

const LOCK_COLUMNS: &str = "stack, deployment_id, token, owner_pid, owner_host, owner_start, \
                            acquired_at, heartbeat_at, lease_ms";

impl StateStore {
    /// Take the deployment lock of `stack` for `deployment_id`, or fail with
    /// [`StateError::LockHeld`] naming the holder.
    pub async fn acquire_lock(
        &self,
        stack: &str,
        deployment_id: &DeploymentId,
    ) -> Result<LockGuard, StateError> {
        self.acquire_lock_with(stack, deployment_id, LockOptions::default())
            .await
    }

    /// [`StateStore::acquire_lock`] with explicit lease settings.
    pub async fn acquire_lock_with(
        &self,
        stack: &str,
        deployment_id: &DeploymentId,
        options: LockOptions,
    ) -> Result<LockGuard, StateError> {
        if options.heartbeat.is_zero() || options.heartbeat >= options.lease {
            return Err(StateError::InvalidInput {
                what: "lock options",
                reason: format!(
                    "the heartbeat ({:?}) must be positive and shorter than the lease ({:?})",
                    options.heartbeat, options.lease
                ),
            });
        }
        match self.backend() {
            Backend::Postgres => self.acquire_pg(stack, deployment_id, options).await,
            Backend::Sqlite => self.acquire_sqlite(stack, deployment_id, options).await,
        }
    }

    async fn read_lock(&self, stack: &str) -> Result<Option<Row0>, StateError> {
        let sql = format!("SELECT {LOCK_COLUMNS} FROM locks WHERE stack = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stack)
            .fetch_optional(&self.pool)
            .await
            .map_err(StateError::query("reading a lock"))?;
        row.map(|r| lock_row(&r).map(|(_, l)| l)).transpose()
    }

    /// Insert our row unless one exists; true when ours is now the row.
    async fn insert_lock_row(
        &self,
        exec: impl sqlx::Executor<'_, Database = sqlx::Any>,
        stack: &str,
        deployment_id: &DeploymentId,
        token: &str,
        lease_ms: i64,
        replace: bool,
    ) -> Result<bool, StateError> {
        let me = me();
        let now = now_millis();
        let conflict = if replace {
            "DO UPDATE SET deployment_id = excluded.deployment_id, token = excluded.token, \
             owner_pid = excluded.owner_pid, owner_host = excluded.owner_host, \
             owner_start = excluded.owner_start, acquired_at = excluded.acquired_at, \
             heartbeat_at = excluded.heartbeat_at, lease_ms = excluded.lease_ms"
        } else {
            "DO NOTHING"
        };
        let sql = format!(
            "INSERT INTO locks ({LOCK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
             ON CONFLICT (stack) {conflict}"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stack)
            .bind(deployment_id.as_str())
            .bind(token)
            .bind(me.pid)
            .bind(me.host)
            .bind(me.start)
            .bind(now)
            .bind(lease_ms)
            .execute(exec)
            .await
            .map_err(StateError::query("taking a lock"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn acquire_sqlite(
        &self,
        stack: &str,
        deployment_id: &DeploymentId,
        options: LockOptions,
    ) -> Result<LockGuard, StateError> {
        let token = new_id();
        let lease_ms = i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX);
        let host = hostname();
        // A row released, or a stale row taken over by a racing process, in between sends us
        // back to the start; a few rounds settle any race.
        for _ in 0..3 {
            if self
                .insert_lock_row(&self.pool, stack, deployment_id, &token, lease_ms, false)
                .await?
            {
                return Ok(self.sqlite_guard(stack, deployment_id, token, None, options));
            }
            let Some(existing) = self.read_lock(stack).await? else {
                continue; // released in between: try again
            };
            if !existing.is_stale(&host, now_millis()) {
                return Err(StateError::LockHeld {
                    stack: stack.to_string(),
                    owner: Some(existing.owner),
                });
            }
            // Take over only the exact row we judged stale (compare-and-set on its token).
            let me = me();
            let now = now_millis();
            let taken = sqlx::query(
                "UPDATE locks SET deployment_id = $1, token = $2, owner_pid = $3, owner_host = $4, \
                 owner_start = $5, acquired_at = $6, heartbeat_at = $6, lease_ms = $7 \
                 WHERE stack = $8 AND token = $9",
            )
            .bind(deployment_id.as_str())
            .bind(&token)
            .bind(me.pid)
            .bind(me.host)
            .bind(me.start)
            .bind(now)
            .bind(lease_ms)
            .bind(stack)
            .bind(&existing.token)
            .execute(&self.pool)
            .await
            .map_err(StateError::query("recovering a stale lock"))?;
            if taken.rows_affected() == 1 {
                tracing::warn!(
                    stack,
                    previous_deployment = %existing.owner.deployment_id,
                    previous_pid = existing.owner.pid,
                    "recovered a stale deployment lock"
                );
                return Ok(self.sqlite_guard(
                    stack,
                    deployment_id,
                    token,
                    Some(existing.owner),
                    options,
                ));
            }
        }
        match self.read_lock(stack).await? {
            Some(existing) => Err(StateError::LockHeld {
                stack: stack.to_string(),
                owner: Some(existing.owner),
            }),
            None => Err(StateError::LockHeld {
                stack: stack.to_string(),
                owner: None,
            }),
        }
    }

    fn sqlite_guard(
        &self,
        stack: &str,
        deployment_id: &DeploymentId,
        token: String,
        recovered_from: Option<LockOwner>,
        options: LockOptions,
    ) -> LockGuard {
        let (stop, mut stopped) = oneshot::channel();
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let pool = self.pool.clone();
            let stack = stack.to_string();
            let token = token.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(options.heartbeat);
                tick.tick().await; // the first tick is immediate; the row is fresh
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tick.tick() => {}
                    }
                    let renewed = sqlx::query(
                        "UPDATE locks SET heartbeat_at = $1 WHERE stack = $2 AND token = $3",
                    )
                    .bind(now_millis())
                    .bind(&stack)
                    .bind(&token)
                    .execute(&pool)
                    .await;
                    match renewed {
                        Ok(r) if r.rows_affected() == 1 => {}
                        Ok(_) => {
                            tracing::error!(
                                stack,
                                "deployment lock was taken over by another process"
                            );
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A busy database delays one renewal; the lease covers several.
                        Err(e) => {
                            tracing::warn!(stack, error = %e, "could not renew the deployment lock")
                        }
                    }
                }
            })
        };
        LockGuard {
            stack: stack.to_string(),
            deployment_id: deployment_id.clone(),
            recovered_from,
            held: Some(Held::Sqlite {
                pool: self.pool.clone(),
                token,
                stop,
                heartbeat,
                lost,
            }),
        }
    }

    async fn acquire_pg(
        &self,
        stack: &str,
        deployment_id: &DeploymentId,
        options: LockOptions,
    ) -> Result<LockGuard, StateError> {
        let key = advisory_key(stack);
        // A dedicated session: the advisory lock lives exactly as long as this connection.
        let mut conn = AnyConnection::connect(self.driver_url())
            .await
            .map_err(StateError::query("opening the lock connection"))?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(StateError::query("taking an advisory lock"))?;
        if !got {
            let _ = conn.close().await;
            let owner = self.read_lock(stack).await?.map(|r| r.owner);
            return Err(StateError::LockHeld {
                stack: stack.to_string(),
                owner,
            });
        }
        // We hold the lock, so any row left is from a session that ended without cleaning up.
        let previous = self.read_lock(stack).await?.map(|r| r.owner);
        let token = new_id();
        let lease_ms = i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = self
            .insert_lock_row(&self.pool, stack, deployment_id, &token, lease_ms, true)
            .await
        {
            let _ = conn.close().await;
            return Err(e);
        }
        if let Some(prev) = &previous {
            tracing::warn!(
                stack,
                previous_deployment = %prev.deployment_id,
                previous_pid = prev.pid,
                "recovered a deployment lock whose session had ended"
            );
        }
        let (stop, stopped) = oneshot::channel();
        let lost = Arc::new(AtomicBool::new(false));
        let session = tokio::spawn(hold_session(
            conn,
            key,
            stack.to_string(),
            options.heartbeat,
            stopped,
            lost.clone(),
        ));
        Ok(LockGuard {
            stack: stack.to_string(),
            deployment_id: deployment_id.clone(),
            recovered_from: previous,
            held: Some(Held::Postgres {
                pool: self.pool.clone(),
                token,
                stop,
                session,
                lost,
            }),
        })
    }

    /// Locks currently recorded, by stack. On PostgreSQL, only rows whose advisory lock is
    /// actually held are listed; on SQLite, each says whether its owner looks gone.
    pub async fn active_locks(&self) -> Result<Vec<LockRecord>, StateError> {
        let sql = format!("SELECT {LOCK_COLUMNS} FROM locks ORDER BY stack");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(StateError::query("listing locks"))?;
        let held_keys = match self.backend() {
            Backend::Postgres => Some(self.held_advisory_keys().await?),
            Backend::Sqlite => None,
        };
        let host = hostname();
        let now = now_millis();
        let mut out = Vec::new();
        for row in &rows {
            let (stack, lock) = lock_row(row)?;
            let stale = match &held_keys {
                Some(keys) => !keys.contains(&advisory_key(&stack)),
                None => lock.is_stale(&host, now),
            };
            if held_keys.is_some() && stale {
                continue; // the session that held it is gone; the row is only a leftover
            }
            out.push(LockRecord {
                stack,
                owner: lock.owner,
                lease_ms: lock.lease_ms,
                stale,
            });
        }
        Ok(out)
    }

    /// Advisory locks (64-bit keys) granted in this database right now.
    async fn held_advisory_keys(&self) -> Result<Vec<i64>, StateError> {
        // A bigint key is stored as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
        sqlx::query_scalar(
            "SELECT ((classid::bigint << 32) | objid::bigint) AS k FROM pg_locks \
             WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("listing advisory locks"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256("dive.orchestrator.deploy-lock:hub")[..8] as a big-endian i64, computed
    /// independently (Python hashlib).
    const PINNED_HUB_KEY: i64 = -6592992007428899102;

    #[test]
    fn advisory_keys_are_stable_and_distinct() {
        assert_eq!(advisory_key("hub"), advisory_key("hub"));
        assert_ne!(advisory_key("hub"), advisory_key("spoke-fra"));
        // Pinned: the key must never change between versions, or two versions could deploy at once.
        assert_eq!(advisory_key("hub"), PINNED_HUB_KEY);
    }

    #[test]
    fn this_process_is_alive_and_a_fake_start_time_is_not() {
        let pid = i64::from(std::process::id());
        let start = process_start_time(pid);
        assert!(start.is_some());
        assert!(owner_alive(pid, start));
        assert!(
            !owner_alive(pid, start.map(|s| s + 1)),
            "pid reuse is detected"
        );
        assert!(!owner_alive(i64::from(i32::MAX), None));
        assert!(!owner_alive(-1, None));
    }
}
