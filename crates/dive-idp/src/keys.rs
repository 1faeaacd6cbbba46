//! The IdP's signing keys: one active key signs; retired keys stay published in the JWKS until
//! every token they signed has expired.

use std::sync::{Arc, RwLock};

use base64::Engine;
use dive_jose::{Alg, Jwks, KeySet, SigningKey};
use sqlx::Row;

use crate::error::IdpError;
use crate::store::Db;
use crate::util::{now, random_token};

/// Retired keys are published this long: the longest lifetime of a token they signed (15 min)
/// plus generous room for clock skew and caches.
pub const RETIRED_PUBLISH_SECS: i64 = 3600;

/// The active key plus the published key set, swapped atomically on rotation.
struct Ring {
    active: Arc<SigningKey>,
    jwks: Jwks,
    keyset: Arc<KeySet>,
}

#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Arc<Ring>>>,
    alg: Alg,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl KeyRing {
    /// Load the keys, creating the first one (or a replacement, if the active key is of another
    /// algorithm or older than `max_age_secs`).
    pub async fn load(db: &Db, alg: Alg, max_age_secs: i64) -> Result<KeyRing, IdpError> {
        let ring = KeyRing {
            inner: Arc::new(RwLock::new(Arc::new(Ring {
                active: Arc::new(SigningKey::generate("bootstrap", alg)?),
                jwks: Jwks::default(),
                keyset: Arc::new(KeySet::default()),
            }))),
            alg,
        };
        let active = sqlx::query(
            "SELECT kid, alg, created_at FROM idp_signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC",
        )
        .fetch_optional(&db.pool)
        .await?;
        let fresh = match &active {
            Some(row) => {
                let a: String = row.try_get("alg")?;
                let created: i64 = row.try_get("created_at")?;
                a == alg.as_str() && now() - created < max_age_secs
            }
            None => false,
        };
        if fresh {
            ring.reload(db).await?;
        } else {
            ring.rotate(db).await?;
        }
        Ok(ring)
    }

    /// Make a new active key; the previous one is retired but stays published.
    pub async fn rotate(&self, db: &Db) -> Result<String, IdpError> {
        let kid = random_token(12);
        let key = SigningKey::generate(kid.clone(), self.alg)?;
        let t = now();
        let mut tx = db.pool.begin().await?;
        sqlx::query("UPDATE idp_signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(t)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO idp_signing_keys (kid, alg, pkcs8, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&kid)
        .bind(self.alg.as_str())
        .bind(b64().encode(key.pkcs8_der()))
        .bind(t)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.reload(db).await?;
        tracing::info!(%kid, alg = self.alg.as_str(), "signing key rotated");
        Ok(kid)
    }

    /// Re-read the keys from the database (after a rotation by this or another process).
    pub async fn reload(&self, db: &Db) -> Result<(), IdpError> {
        let cutoff = now() - RETIRED_PUBLISH_SECS;
        let rows = sqlx::query(
            "SELECT kid, alg, pkcs8, retired_at FROM idp_signing_keys \
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
        )
        .bind(cutoff)
        .fetch_all(&db.pool)
        .await?;
        let mut active = None;
        let mut jwks = Jwks::default();
        for row in &rows {
            let kid: String = row.try_get("kid")?;
            let alg = Alg::parse(&row.try_get::<String, _>("alg")?)?;
            let der = b64()
                .decode(row.try_get::<String, _>("pkcs8")?)
                .map_err(|_| IdpError::Corrupt(format!("signing key {kid}")))?;
            let key = SigningKey::from_pkcs8(kid, alg, &der)?;
            jwks.keys.push(key.public_jwk());
            let retired: Option<i64> = row.try_get("retired_at")?;
            if retired.is_none() && active.is_none() {
                active = Some(Arc::new(key));
            }
        }
        let active =
            active.ok_or_else(|| IdpError::Corrupt("no active signing key".to_string()))?;
        let keyset = Arc::new(KeySet::from_jwks(&jwks));
        let mut g = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(Ring {
            active,
            jwks,
            keyset,
        });
        Ok(())
    }

    fn ring(&self) -> Arc<Ring> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(p) => Arc::clone(p.get_ref()),
        }
    }

    pub fn active(&self) -> Arc<SigningKey> {
        self.ring().active.clone()
    }

    pub fn jwks(&self) -> Jwks {
        self.ring().jwks.clone()
    }

    /// The published keys, for verifying our own tokens.
    pub fn keyset(&self) -> Arc<KeySet> {
        self.ring().keyset.clone()
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }
}
