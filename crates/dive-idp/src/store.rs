//! Opening the IdP database (SQLite file or PostgreSQL URL) and running its migrations.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Executor, SqlSafeStr};

use crate::error::IdpError;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "brokering",
        include_str!("../migrations/0002_brokering.sql"),
    ),
];

/// The IdP's own migrations table, so it can share a PostgreSQL database with other services.
const MIGRATIONS_TABLE: &str = "idp_schema_migrations";

/// Which engine the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(*d),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

impl Db {
    /// Open a `postgres://` URL or a SQLite file path (created 0600 if missing) and migrate.
    pub async fn open(location: &str) -> Result<Db, IdpError> {
        sqlx::any::install_default_drivers();
        let (url, backend) =
            if location.starts_with("postgres://") || location.starts_with("postgresql://") {
                (location.to_string(), Backend::Postgres)
            } else {
                let path = Path::new(location.strip_prefix("sqlite://").unwrap_or(location));
                prepare_sqlite_file(path)?;
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Backend::Sqlite,
                )
            };
        let described = if backend == Backend::Postgres {
            "PostgreSQL".to_string()
        } else {
            location.to_string()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| IdpError::Db {
                location: described.clone(),
                source,
            })?;
        migrator()
            .run(&pool)
            .await
            .map_err(|source| IdpError::Migrate {
                location: described,
                source,
            })?;
        Ok(Db { pool, backend })
    }
}

/// Create the SQLite file and its directory with owner-only permissions: it holds signing keys
/// and TOTP seeds.
fn prepare_sqlite_file(path: &Path) -> Result<(), IdpError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| IdpError::Io {
            action: "create directory",
            path: parent.display().to_string(),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| IdpError::Io {
            action: "create",
            path: path.display().to_string(),
            source,
        })?;
    Ok(())
}
