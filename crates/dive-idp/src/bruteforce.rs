//! Brute-force protection: after a number of failures a subject (an account name, known or not,
//! or a source address) must wait, 60 s at first and doubling with each further failure up to
//! 15 min; the count resets 12 h after the last failure or on success.

use sqlx::Row;

use crate::error::IdpError;
use crate::store::Db;
use crate::util::now;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before the first delay.
    pub threshold: i64,
    pub first_delay: i64,
    pub max_delay: i64,
    pub reset_after: i64,
}

/// Per account (the username as typed, so unknown names behave like known ones).
pub const ACCOUNT: Policy = Policy {
    threshold: 5,
    first_delay: 60,
    max_delay: 900,
    reset_after: 12 * 3600,
};

/// Per source address: more failures allowed (addresses are shared behind NAT).
pub const ADDRESS: Policy = Policy {
    threshold: 20,
    first_delay: 60,
    max_delay: 900,
    reset_after: 12 * 3600,
};

/// Seconds the subject must still wait, if it is locked.
pub async fn locked_for(db: &Db, subject: &str) -> Result<Option<i64>, IdpError> {
    let row = sqlx::query("SELECT locked_until FROM idp_login_failures WHERE subject = $1")
        .bind(subject)
        .fetch_optional(&db.pool)
        .await?;
    let t = now();
    Ok(match row {
        Some(r) => {
            let until: i64 = r.try_get("locked_until")?;
            (until > t).then_some(until - t)
        }
        None => None,
    })
}

/// Count a failure; returns the delay now imposed (0 if still under the threshold).
pub async fn record_failure(db: &Db, subject: &str, policy: Policy) -> Result<i64, IdpError> {
    let t = now();
    let mut tx = db.pool.begin().await?;
    let row =
        sqlx::query("SELECT failures, last_failure FROM idp_login_failures WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
    let previous = match &row {
        Some(r) => {
            let f: i64 = r.try_get("failures")?;
            let last: i64 = r.try_get("last_failure")?;
            if t - last > policy.reset_after { 0 } else { f }
        }
        None => 0,
    };
    let failures = previous + 1;
    let delay = if failures >= policy.threshold {
        let doublings = (failures - policy.threshold).min(20) as u32;
        (policy.first_delay.saturating_mul(1i64 << doublings)).min(policy.max_delay)
    } else {
        0
    };
    sqlx::query(
        "INSERT INTO idp_login_failures (subject, failures, last_failure, locked_until) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (subject) DO UPDATE SET \
         failures = excluded.failures, last_failure = excluded.last_failure, \
         locked_until = excluded.locked_until",
    )
    .bind(subject)
    .bind(failures)
    .bind(t)
    .bind(t + delay)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(delay)
}

pub async fn clear(db: &Db, subject: &str) -> Result<(), IdpError> {
    sqlx::query("DELETE FROM idp_login_failures WHERE subject = $1")
        .bind(subject)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub fn account_key(username: &str) -> String {
    format!("user:{}", username.to_lowercase())
}

pub fn address_key(ip: &std::net::IpAddr) -> String {
    format!("ip:{ip}")
}
