//! Opening a service's database: a SQLite file (the embedded default) or a PostgreSQL URL, as one
//! `sqlx` `AnyPool`, with the service's own migrations applied.
//!
//! Every DIVE service that keeps state (IdP, KAS audit log, resource store) opens its database
//! the same way: the SQLite file is created owner-only (it may hold keys and TOTP seeds) and run
//! in WAL mode with a busy timeout; each service records its migrations in its own table so that
//! several services can share one PostgreSQL database; and a PostgreSQL URL is never echoed in
//! errors (it may carry a password).

pub mod conditions;

pub use conditions::{Conditions, Param};

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

/// Which engine a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a location names: a `postgres://` or `postgresql://` URL, else a SQLite path.
    pub fn of(location: &str) -> Backend {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Most bind parameters one multi-row statement should carry. The same SQL serves SQLite and
/// PostgreSQL, so parameters are numbered (`$1`, `$2`, …); SQLite looks a numbered parameter's
/// name up by a linear scan and sqlx asks for every parameter's name when binding, so a
/// statement's binding cost grows with the square of its parameters. At 5,500 parameters that
/// was a third of the resource service's CPU under load; a few hundred keep it negligible while
/// still amortising each statement over many rows.
pub const MAX_BIND_PARAMETERS: usize = 240;

/// Rows per multi-row INSERT of `columns` columns within [`MAX_BIND_PARAMETERS`] (at least 1).
pub fn rows_per_statement(columns: usize) -> usize {
    (MAX_BIND_PARAMETERS / columns.max(1)).max(1)
}

/// A service's schema: its migrations (version, description, SQL) and the table that records
/// which have run.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub migrations: &'static [(i64, &'static str, &'static str)],
    /// e.g. `idp_schema_migrations`.
    pub table: &'static str,
}

/// Pool sizes per backend.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub sqlite: u32,
    pub postgres: u32,
}

impl Default for PoolSize {
    fn default() -> PoolSize {
        PoolSize {
            sqlite: 4,
            postgres: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {location}: {source}")]
    Open {
        location: String,
        source: sqlx::Error,
    },
    #[error("migrating database {location}: {source}")]
    Migrate {
        location: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// An open, migrated database.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Where it is, fit for messages: the SQLite path, or `PostgreSQL` without the URL.
    pub location: String,
}

/// Open `location` (a `postgres://` URL or a SQLite file path, created 0600 if missing) and run
/// `schema`'s migrations.
pub async fn open(location: &str, schema: Schema, size: PoolSize) -> Result<Database, DbError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of(location);
    let (url, described) = match backend {
        Backend::Postgres => (location.to_string(), "PostgreSQL".to_string()),
        Backend::Sqlite => {
            let path = Path::new(location.strip_prefix("sqlite://").unwrap_or(location));
            prepare_sqlite_file(path)?;
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                location.to_string(),
            )
        }
    };
    let pool = AnyPoolOptions::new()
        .max_connections(match backend {
            Backend::Sqlite => size.sqlite,
            Backend::Postgres => size.postgres,
        })
        .acquire_timeout(Duration::from_secs(15))
        // A SQLite connection is a file handle on a worker thread: it cannot go stale, and the
        // ping before every acquire was one more thread round trip per transaction (per audited
        // KAS rewrap). A PostgreSQL connection can drop with the server, so it is still tested.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Readers never block the writer; a second writer waits rather than fails.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|source| DbError::Open {
            location: described.clone(),
            source,
        })?;
    migrator(schema)
        .run(&pool)
        .await
        .map_err(|source| DbError::Migrate {
            location: described.clone(),
            source,
        })?;
    Ok(Database {
        pool,
        backend,
        location: described,
    })
}

fn migrator(schema: Schema) -> Migrator {
    let mut m = Migrator::with_migrations(
        schema
            .migrations
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
    m.dangerous_set_table_name(schema.table);
    m
}

/// Create the SQLite file and its directory with owner-only permissions before SQLite does (it
/// would create the file with the umask's).
fn prepare_sqlite_file(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| DbError::Io {
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
        .map_err(|source| DbError::Io {
            action: "create",
            path: path.display().to_string(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn multi_row_statements_stay_within_the_parameter_budget() {
        for columns in [1, 2, 11, 13, 18, 240, 1000] {
            let rows = rows_per_statement(columns);
            assert!(rows >= 1, "{columns} columns");
            assert!(
                rows * columns <= MAX_BIND_PARAMETERS || rows == 1,
                "{columns} columns"
            );
        }
        assert_eq!(rows_per_statement(0), MAX_BIND_PARAMETERS);
    }

    const SCHEMA: Schema = Schema {
        migrations: &[
            (
                1,
                "one",
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
            ),
            (2, "two", "ALTER TABLE t ADD COLUMN w TEXT;"),
        ],
        table: "test_schema_migrations",
    };

    #[test]
    fn locations_name_their_backend() {
        assert_eq!(Backend::of("postgres://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://h/db"), Backend::Postgres);
        assert_eq!(Backend::of("/var/lib/dive/idp.db"), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite:///x.db"), Backend::Sqlite);
    }

    #[tokio::test]
    async fn sqlite_file_is_private_migrated_once_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/x.db");
        let loc = file.display().to_string();
        let db = open(&loc, SCHEMA, PoolSize::default()).await.unwrap();
        assert_eq!(db.backend, Backend::Sqlite);
        assert_eq!(db.location, loc);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        sqlx::query("INSERT INTO t (v, w) VALUES ('a', 'b')")
            .execute(&db.pool)
            .await
            .unwrap();
        db.pool.close().await;
        let db = open(&loc, SCHEMA, PoolSize::default()).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM test_schema_migrations")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(n, 2);
        let v: String = sqlx::query_scalar("SELECT v FROM t")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(v, "a");
    }

    #[tokio::test]
    async fn errors_name_the_place_and_never_echo_a_postgres_url() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let err = open(
            &blocker.join("x.db").display().to_string(),
            SCHEMA,
            PoolSize::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("create directory"), "{err}");
        // The local PostgreSQL refuses a database that does not exist (at once, unlike a
        // refused connection, which is retried until the acquire timeout).
        let err = open(
            "postgres://postgres:hunter2@127.0.0.1:5432/dive_db_test_no_such_database",
            SCHEMA,
            PoolSize::default(),
        )
        .await
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().starts_with("database PostgreSQL"), "{err}");
        let bad = Schema {
            migrations: &[(1, "bad", "CREATE TABLE (;")],
            table: "bad_schema_migrations",
        };
        let err = open(
            &dir.path().join("b.db").display().to_string(),
            bad,
            PoolSize::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DbError::Migrate { .. }), "{err}");
    }
}
