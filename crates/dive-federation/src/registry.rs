//! The federation registry: the single source of truth for the hub's links, in the hub's own
//! database (`instances/<hub>/federation.db`, or PostgreSQL). Every change is a transition of the
//! link's lifecycle ([`LinkStatus::can_become`]) recorded in its history.

use dive_core::CountryCode;
use dive_core::federation::LinkStatus;
use dive_orchestrator::state::{BreakerConfig, BreakerRecord};
use serde::Serialize;
use sqlx::{AnyPool, Row};

use crate::FederationError;

const SCHEMA: dive_db::Schema = dive_db::Schema {
    migrations: &[
        (1, "links", include_str!("../migrations/0001_links.sql")),
        (2, "breaker", include_str!("../migrations/0002_breaker.sql")),
        (3, "remote", include_str!("../migrations/0003_remote.sql")),
    ],
    table: "federation_schema_migrations",
};

/// One link as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub partner: CountryCode,
    pub status: LinkStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_verified_at_ms: Option<i64>,
    /// The last `federation verify` result (JSON), if any.
    pub last_verification: Option<serde_json::Value>,
    /// The link's circuit breaker: consecutive failed verifications open it.
    pub breaker: BreakerRecord,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub seq: i64,
    pub from: Option<LinkStatus>,
    pub to: LinkStatus,
    pub at_ms: i64,
    pub reason: String,
}

#[derive(Clone)]
pub struct Registry {
    pub(crate) pool: AnyPool,
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Registry {
    /// Open (creating and migrating) the registry at a SQLite path or `postgres://` URL.
    pub async fn open(location: &str) -> Result<Registry, FederationError> {
        let db = dive_db::open(location, SCHEMA, dive_db::PoolSize::default()).await?;
        Ok(Registry { pool: db.pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn get(&self, partner: CountryCode) -> Result<Option<Link>, FederationError> {
        let row = sqlx::query(
            "SELECT partner, status, created_at, updated_at, last_verified_at, last_verification, \
             breaker FROM federation_links WHERE partner = $1",
        )
        .bind(partner.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| link_of(&r)).transpose()
    }

    /// Every link, by partner code.
    pub async fn list(&self) -> Result<Vec<Link>, FederationError> {
        let rows = sqlx::query(
            "SELECT partner, status, created_at, updated_at, last_verified_at, last_verification, \
             breaker FROM federation_links ORDER BY partner",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(link_of).collect()
    }

    /// Move `partner`'s link to `to` (creating it, as `pending` only, when absent), recording
    /// the change with `reason`. Staying in the same state records nothing.
    pub async fn transition(
        &self,
        partner: CountryCode,
        to: LinkStatus,
        reason: &str,
    ) -> Result<Link, FederationError> {
        let mut tx = self.pool.begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM federation_links WHERE partner = $1")
                .bind(partner.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let from = match current {
            Some(s) => Some(LinkStatus::parse(&s).ok_or_else(|| {
                FederationError::Corrupt(format!("link {partner} has unknown status {s:?}"))
            })?),
            None => None,
        };
        let now = now_ms();
        match from {
            None if to != LinkStatus::Pending => {
                return Err(FederationError::NotLinked(partner));
            }
            None => {
                sqlx::query(
                    "INSERT INTO federation_links (partner, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $3)",
                )
                .bind(partner.as_str())
                .bind(to.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Some(f) if f == to => {}
            Some(f) if !f.can_become(to) => {
                return Err(FederationError::Transition {
                    partner,
                    from: f,
                    to,
                });
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE federation_links SET status = $1, updated_at = $2 WHERE partner = $3",
                )
                .bind(to.as_str())
                .bind(now)
                .bind(partner.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        if from != Some(to) {
            let seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM federation_history WHERE partner = $1",
            )
            .bind(partner.as_str())
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO federation_history (partner, seq, from_status, to_status, at, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(partner.as_str())
            .bind(seq)
            .bind(from.map(|s| s.as_str().to_string()))
            .bind(to.as_str())
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get(partner)
            .await?
            .ok_or(FederationError::NotLinked(partner))
    }

    /// Forget a link (its history stays).
    pub async fn remove(&self, partner: CountryCode, reason: &str) -> Result<(), FederationError> {
        let Some(link) = self.get(partner).await? else {
            return Ok(());
        };
        if link.status != LinkStatus::Revoked {
            self.transition(partner, LinkStatus::Revoked, reason)
                .await?;
        }
        sqlx::query("DELETE FROM federation_links WHERE partner = $1")
            .bind(partner.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record the result of a verification, and its outcome on the link's breaker, in one
    /// transaction. Returns the breaker as it now stands.
    pub async fn record_verification(
        &self,
        partner: CountryCode,
        result: &serde_json::Value,
        outcome: Result<(), &str>,
        breaker: &BreakerConfig,
    ) -> Result<BreakerRecord, FederationError> {
        let mut tx = self.pool.begin().await?;
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT breaker FROM federation_links WHERE partner = $1")
                .bind(partner.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(stored) = stored else {
            return Err(FederationError::NotLinked(partner));
        };
        let mut record = breaker_of(partner, stored.as_deref())?;
        let now = now_ms();
        record.record(outcome.is_ok(), outcome.err(), now, breaker);
        let text = serde_json::to_string(&record)
            .map_err(|e| FederationError::Corrupt(format!("breaker of {partner}: {e}")))?;
        sqlx::query(
            "UPDATE federation_links SET last_verified_at = $1, last_verification = $2, \
             breaker = $3 WHERE partner = $4",
        )
        .bind(now)
        .bind(result.to_string())
        .bind(text)
        .bind(partner.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// A link's changes, oldest first.
    pub async fn history(&self, partner: CountryCode) -> Result<Vec<Change>, FederationError> {
        let rows = sqlx::query(
            "SELECT seq, from_status, to_status, at, reason FROM federation_history \
             WHERE partner = $1 ORDER BY seq",
        )
        .bind(partner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status = |s: String| {
                    LinkStatus::parse(&s).ok_or_else(|| {
                        FederationError::Corrupt(format!("history of {partner}: status {s:?}"))
                    })
                };
                Ok(Change {
                    seq: r.try_get(0)?,
                    from: r.try_get::<Option<String>, _>(1)?.map(status).transpose()?,
                    to: status(r.try_get(2)?)?,
                    at_ms: r.try_get(3)?,
                    reason: r.try_get(4)?,
                })
            })
            .collect()
    }
}

fn link_of(r: &sqlx::any::AnyRow) -> Result<Link, FederationError> {
    let partner: String = r.try_get(0)?;
    let status: String = r.try_get(1)?;
    let verification: Option<String> = r.try_get(5)?;
    Ok(Link {
        partner: link_partner(&partner)?,
        status: LinkStatus::parse(&status).ok_or_else(|| {
            FederationError::Corrupt(format!("link {partner} has unknown status {status:?}"))
        })?,
        created_at_ms: r.try_get(2)?,
        updated_at_ms: r.try_get(3)?,
        last_verified_at_ms: r.try_get(4)?,
        last_verification: verification.and_then(|v| serde_json::from_str(&v).ok()),
        breaker: breaker_of(
            link_partner(&partner)?,
            r.try_get::<Option<String>, _>(6)?.as_deref(),
        )?,
    })
}

fn link_partner(code: &str) -> Result<CountryCode, FederationError> {
    CountryCode::new(code)
        .map_err(|e| FederationError::Corrupt(format!("link partner {code:?}: {e}")))
}

/// A stored breaker (none yet: closed). A row that does not parse is corruption, not "closed":
/// failing open would hide a partner that keeps failing.
fn breaker_of(
    partner: CountryCode,
    stored: Option<&str>,
) -> Result<BreakerRecord, FederationError> {
    match stored {
        None => Ok(BreakerRecord::default()),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| FederationError::Corrupt(format!("breaker of link {partner}: {e}"))),
    }
}
