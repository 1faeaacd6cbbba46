//! Opening the IdP database (SQLite file or PostgreSQL URL) and running its migrations.

use sqlx::AnyPool;

use crate::error::IdpError;

pub use dive_db::Backend;

const SCHEMA: dive_db::Schema = dive_db::Schema {
    migrations: &[
        (1, "initial", include_str!("../migrations/0001_initial.sql")),
        (
            2,
            "brokering",
            include_str!("../migrations/0002_brokering.sql"),
        ),
    ],
    // The IdP's own migrations table, so it can share a PostgreSQL database with other services.
    table: "idp_schema_migrations",
};

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Open a `postgres://` URL or a SQLite file path (created 0600 if missing: it holds signing
    /// keys and TOTP seeds) and migrate.
    pub async fn open(location: &str) -> Result<Db, IdpError> {
        let db = dive_db::open(location, SCHEMA, dive_db::PoolSize::default()).await?;
        Ok(Db {
            pool: db.pool,
            backend: db.backend,
        })
    }
}
