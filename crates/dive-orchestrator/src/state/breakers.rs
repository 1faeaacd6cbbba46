//! Persistence of circuit breakers, one per stack and service, kept across deployments.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::breaker::{BreakerConfig, BreakerPermit, BreakerRecord, BreakerState};
use super::ids::UnixMillis;
use super::{StateError, StateStore};

/// A stored breaker with its stack and service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerEntry {
    pub stack: String,
    pub service: String,
    pub record: BreakerRecord,
    pub updated_at: UnixMillis,
}

fn count(row: &AnyRow, col: &str) -> Result<u32, StateError> {
    let v: i64 = row
        .try_get(col)
        .map_err(StateError::query("reading a breaker"))?;
    u32::try_from(v).map_err(|_| StateError::Corrupt {
        what: "breaker counter",
        value: v.to_string(),
    })
}

fn entry_from_row(row: &AnyRow) -> Result<BreakerEntry, StateError> {
    let q = || StateError::query("reading a breaker");
    let state: String = row.try_get("state").map_err(q())?;
    Ok(BreakerEntry {
        stack: row.try_get("stack").map_err(q())?,
        service: row.try_get("service").map_err(q())?,
        record: BreakerRecord {
            state: state.parse().map_err(|_| StateError::Corrupt {
                what: "breaker state",
                value: state,
            })?,
            consecutive_failures: count(row, "consecutive_failures")?,
            consecutive_successes: count(row, "consecutive_successes")?,
            opened_at: row.try_get("opened_at").map_err(q())?,
            last_failure: row.try_get("last_failure").map_err(q())?,
            last_error: row.try_get("last_error").map_err(q())?,
        },
        updated_at: row.try_get("updated_at").map_err(q())?,
    })
}

const COLUMNS: &str = "stack, service, state, consecutive_failures, consecutive_successes, \
                       opened_at, last_failure, last_error, updated_at";

impl StateStore {
    /// The breaker of a service (CLOSED with no failures when none was recorded).
    pub async fn breaker(&self, stack: &str, service: &str) -> Result<BreakerRecord, StateError> {
        let sql = format!("SELECT {COLUMNS} FROM breakers WHERE stack = $1 AND service = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stack)
            .bind(service)
            .fetch_optional(&self.pool)
            .await
            .map_err(StateError::query("reading a breaker"))?;
        Ok(match row {
            Some(r) => entry_from_row(&r)?.record,
            None => BreakerRecord::default(),
        })
    }

    /// May `service` be attempted at `now`? `Err(StateError::BreakerOpen)` when its breaker is
    /// open. An open breaker whose cooldown has passed is stored as HALF_OPEN and allows a trial.
    pub async fn breaker_allows(
        &self,
        stack: &str,
        service: &str,
        now: UnixMillis,
        cfg: &BreakerConfig,
    ) -> Result<BreakerPermit, StateError> {
        let mut record = self.breaker(stack, service).await?;
        let permit = record.check(stack, service, now, cfg)?;
        if record.state == BreakerState::Open && permit.trial {
            record.state = BreakerState::HalfOpen;
            self.store_breaker(stack, service, &record, now).await?;
        }
        Ok(permit)
    }

    /// Record the outcome of an attempt; returns the breaker's new state.
    pub async fn record_attempt(
        &self,
        stack: &str,
        service: &str,
        success: bool,
        error: Option<&str>,
        now: UnixMillis,
        cfg: &BreakerConfig,
    ) -> Result<BreakerState, StateError> {
        // One deployment per stack at a time (the lock), so read-modify-write is not contended.
        let mut record = self.breaker(stack, service).await?;
        let state = record.record(success, error, now, cfg);
        self.store_breaker(stack, service, &record, now).await?;
        Ok(state)
    }

    async fn store_breaker(
        &self,
        stack: &str,
        service: &str,
        r: &BreakerRecord,
        now: UnixMillis,
    ) -> Result<(), StateError> {
        let sql = format!(
            "INSERT INTO breakers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (stack, service) DO UPDATE SET state = excluded.state, \
             consecutive_failures = excluded.consecutive_failures, \
             consecutive_successes = excluded.consecutive_successes, \
             opened_at = excluded.opened_at, last_failure = excluded.last_failure, \
             last_error = excluded.last_error, updated_at = excluded.updated_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stack)
            .bind(service)
            .bind(r.state.as_str())
            .bind(i64::from(r.consecutive_failures))
            .bind(i64::from(r.consecutive_successes))
            .bind(r.opened_at)
            .bind(r.last_failure)
            .bind(r.last_error.as_deref())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StateError::query("storing a breaker"))?;
        Ok(())
    }

    /// Forget the breakers of a stack (all, or one service's); returns how many were reset.
    pub async fn reset_breaker(
        &self,
        stack: &str,
        service: Option<&str>,
    ) -> Result<u64, StateError> {
        let done =
            sqlx::query("DELETE FROM breakers WHERE stack = $1 AND ($2 IS NULL OR service = $2)")
                .bind(stack)
                .bind(service)
                .execute(&self.pool)
                .await
                .map_err(StateError::query("resetting breakers"))?;
        Ok(done.rows_affected())
    }

    /// Stored breakers (of one stack or all), by stack and service. The stored state is shown
    /// as recorded; use [`BreakerRecord::effective_state`] to account for elapsed cooldowns.
    pub async fn list_breakers(
        &self,
        stack: Option<&str>,
    ) -> Result<Vec<BreakerEntry>, StateError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM breakers WHERE ($1 IS NULL OR stack = $1) ORDER BY stack, service"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stack)
            .fetch_all(&self.pool)
            .await
            .map_err(StateError::query("listing breakers"))?;
        rows.iter().map(entry_from_row).collect()
    }
}
