//! What `dive orch-db status` shows, and removal of everything recorded for a stack.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::breaker::BreakerState;
use super::connect::{Backend, MIGRATIONS_TABLE, latest_schema_version};
use super::{StateError, StateStore};

/// Tables of the store, in display order.
pub(crate) const TABLES: [&str; 9] = [
    "deployments",
    "transitions",
    "steps",
    "service_results",
    "events",
    "errors",
    "breakers",
    "metrics",
    "locks",
];

/// The number of rows in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub table: String,
    pub rows: i64,
}

/// An overview of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreSummary {
    pub backend: Backend,
    /// File path or URL (password redacted).
    pub location: String,
    /// The newest migration applied to the database.
    pub schema_version: i64,
    /// The newest migration this build knows.
    pub latest_schema_version: i64,
    /// Row count per table, in schema order.
    pub counts: Vec<TableCount>,
    pub active_locks: Vec<super::LockRecord>,
    /// Breakers not CLOSED (as stored).
    pub open_breakers: Vec<super::BreakerEntry>,
}

impl StateStore {
    /// Backend, location, schema version, row counts, active locks and open breakers.
    pub async fn summary(&self) -> Result<StoreSummary, StateError> {
        let sql = format!("SELECT MAX(version) FROM {MIGRATIONS_TABLE} WHERE success = TRUE");
        let schema_version: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(StateError::query("reading the schema version"))?;
        let mut counts = Vec::new();
        for table in TABLES {
            let sql = format!("SELECT COUNT(*) AS n FROM {table}");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&self.pool)
                .await
                .map_err(StateError::query("counting rows"))?;
            let n: i64 = row
                .try_get("n")
                .map_err(StateError::query("counting rows"))?;
            counts.push(TableCount {
                table: table.to_string(),
                rows: n,
            });
        }
        let open_breakers = self
            .list_breakers(None)
            .await?
            .into_iter()
            .filter(|b| b.record.state != BreakerState::Closed)
            .collect();
        Ok(StoreSummary {
            backend: self.backend(),
            location: self.describe().to_string(),
            schema_version: schema_version.unwrap_or(0),
            latest_schema_version: latest_schema_version(),
            counts,
            active_locks: self.active_locks().await?,
            open_breakers,
        })
    }

    /// Remove everything recorded for `stack` (deployments and all their records, breakers,
    /// lock rows); returns how many deployments were removed.
    pub async fn delete_stack(&self, stack: &str) -> Result<u64, StateError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StateError::query("starting to delete a stack"))?;
        // Children first, explicitly: no reliance on ON DELETE CASCADE being enforced.
        for table in [
            "transitions",
            "steps",
            "service_results",
            "events",
            "errors",
            "metrics",
        ] {
            let sql = format!(
                "DELETE FROM {table} WHERE deployment_id IN (SELECT id FROM deployments WHERE stack = $1)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(stack)
                .execute(&mut *tx)
                .await
                .map_err(StateError::query("deleting a stack's records"))?;
        }
        let removed = sqlx::query("DELETE FROM deployments WHERE stack = $1")
            .bind(stack)
            .execute(&mut *tx)
            .await
            .map_err(StateError::query("deleting a stack's deployments"))?
            .rows_affected();
        for table in ["breakers", "locks"] {
            let sql = format!("DELETE FROM {table} WHERE stack = $1");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(stack)
                .execute(&mut *tx)
                .await
                .map_err(StateError::query("deleting a stack's breakers and locks"))?;
        }
        tx.commit()
            .await
            .map_err(StateError::query("committing a stack deletion"))?;
        Ok(removed)
    }
}
