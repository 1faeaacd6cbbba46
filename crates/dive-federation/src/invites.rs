//! The hub registry's record of remote partners: one-time join tokens (stored as SHA-256, bound
//! to a partner code and an expiry) and, once a partner joined, how to reach it.

use dive_core::CountryCode;
use sqlx::Row;

use crate::descriptor::Descriptor;
use crate::registry::now_ms;
use crate::{FederationError, Registry};

/// Why a join token was refused (each told to the joining spoke as it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error(
        "the join token is not valid for {0} (ask the hub's operator for an invitation: `dive federation invite {0}`)"
    )]
    Unknown(CountryCode),
    #[error("the join token for {0} has already been used (ask for a new invitation)")]
    Used(CountryCode),
    #[error("the join token for {partner} expired at {at} (ask for a new invitation)")]
    Expired { partner: CountryCode, at: String },
}

/// A new invitation: the token (shown once) and when it expires.
pub struct Invitation {
    pub token: String,
    pub expires_at_ms: i64,
}

impl Registry {
    /// Create a one-time join token for `partner`, valid for `ttl_ms`.
    pub async fn create_invite(
        &self,
        partner: CountryCode,
        ttl_ms: i64,
    ) -> Result<Invitation, FederationError> {
        let token = dive_idp::util::random_token(32);
        let now = now_ms();
        let expires_at_ms = now.saturating_add(ttl_ms);
        sqlx::query(
            "INSERT INTO federation_invites (token_sha256, partner, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(dive_idp::util::sha256_hex(&token))
        .bind(partner.as_str())
        .bind(now)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(Invitation {
            token,
            expires_at_ms,
        })
    }

    /// Consume `token` for `partner`: it must be one of the partner's invitations (compared in
    /// constant time), unused and unexpired. Marking it used is conditional, so of two
    /// concurrent joins with one token exactly one succeeds.
    pub async fn consume_invite(
        &self,
        partner: CountryCode,
        token: &str,
    ) -> Result<Result<(), TokenRefusal>, FederationError> {
        let presented = dive_idp::util::sha256_hex(token);
        let rows = sqlx::query(
            "SELECT token_sha256, expires_at, used_at FROM federation_invites WHERE partner = $1",
        )
        .bind(partner.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut found = None;
        for r in &rows {
            let stored: String = r.try_get(0)?;
            if dive_idp::util::ct_eq(&stored, &presented) {
                found = Some((
                    stored,
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<Option<i64>, _>(2)?,
                ));
            }
        }
        let Some((stored, expires_at, used_at)) = found else {
            return Ok(Err(TokenRefusal::Unknown(partner)));
        };
        if used_at.is_some() {
            return Ok(Err(TokenRefusal::Used(partner)));
        }
        let now = now_ms();
        if expires_at <= now {
            return Ok(Err(TokenRefusal::Expired {
                partner,
                at: rfc3339(expires_at),
            }));
        }
        let done = sqlx::query(
            "UPDATE federation_invites SET used_at = $1 \
             WHERE token_sha256 = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&stored)
        .execute(&self.pool)
        .await?;
        Ok(if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(TokenRefusal::Used(partner))
        })
    }

    /// Record (or replace) how to reach a remote partner.
    pub async fn put_remote(&self, d: &Descriptor) -> Result<(), FederationError> {
        let text = serde_json::to_string(d)
            .map_err(|e| FederationError::Corrupt(format!("descriptor of {}: {e}", d.code)))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM federation_remote WHERE partner = $1")
            .bind(d.code.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO federation_remote (partner, descriptor, joined_at) VALUES ($1, $2, $3)",
        )
        .bind(d.code.as_str())
        .bind(text)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How to reach `partner`, when it is a remote partner.
    pub async fn remote(
        &self,
        partner: CountryCode,
    ) -> Result<Option<Descriptor>, FederationError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT descriptor FROM federation_remote WHERE partner = $1")
                .bind(partner.as_str())
                .fetch_optional(&self.pool)
                .await?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| FederationError::Corrupt(format!("descriptor of {partner}: {e}")))
        })
        .transpose()
    }

    pub async fn remove_remote(&self, partner: CountryCode) -> Result<(), FederationError> {
        sqlx::query("DELETE FROM federation_remote WHERE partner = $1")
            .bind(partner.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}
