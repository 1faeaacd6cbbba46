//! Opening the store: location parsing, SQLite file and pragmas, migrations.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, Connection, Executor, SqlSafeStr};

use super::{StateError, StateStore};

/// The database engine holding the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// How long a SQLite writer waits for another process's write to finish before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening the store waits for a PostgreSQL server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, in order. The same files run on SQLite and PostgreSQL.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/0001_initial.sql"),
)];

/// Our own migrations table: the database may be shared with other components' sqlx migrations
/// (e.g. on one PostgreSQL server), whose versions must not mix with these.
pub(crate) const MIGRATIONS_TABLE: &str = "orch_schema_migrations";

fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
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

/// The newest schema version this build knows.
pub(crate) fn latest_schema_version() -> i64 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

/// A parsed store location.
#[derive(Debug)]
pub(crate) enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub(crate) fn parse(raw: &str) -> Result<Location, StateError> {
        let invalid = |reason: &str| StateError::InvalidLocation {
            location: redact(raw),
            reason: reason.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid(
                "empty; give a PostgreSQL URL or a SQLite file path",
            ));
        }
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            return Ok(Location::Postgres(trimmed.to_string()));
        }
        let path = match trimmed
            .strip_prefix("sqlite://")
            .or_else(|| trimmed.strip_prefix("sqlite:"))
        {
            // DIVE sets the SQLite options itself (WAL, busy timeout); URL options would be
            // ignored, so they are refused. The rest of the URL is taken as a literal path.
            Some(rest) if rest.contains('?') => {
                return Err(invalid(
                    "SQLite URL options are not supported; give only the file path",
                ));
            }
            Some(rest) => rest,
            None if trimmed.contains("://") => {
                return Err(invalid(
                    "unsupported scheme; use postgres://, postgresql://, sqlite:// or a file path",
                ));
            }
            // A plain path is a file name as is ('?' included).
            None => trimmed,
        };
        if path.is_empty() || path == ":memory:" {
            return Err(invalid("a SQLite store needs a file path"));
        }
        let path = PathBuf::from(path);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(&format!("cannot resolve a relative path: {e}")))?
                .join(path)
        };
        Ok(Location::Sqlite(path))
    }

    fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        }
    }

    fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(u) => redact(u),
        }
    }

    /// The URL sqlx's `Any` driver opens.
    fn driver_url(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("sqlite://{}?mode=rwc", encode_path(p)),
            Location::Postgres(u) => u.clone(),
        }
    }
}

/// Percent-encode the characters that would end or change a path inside a `sqlite://` URL.
fn encode_path(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' | ' ' | '+' | '&' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A URL with any password (in the user info or a `password=` parameter) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let redacted = redact_userinfo(url);
    match redacted.split_once('?') {
        Some((head, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{head}?{}", params.join("&"))
        }
        None => redacted,
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

impl StateStore {
    /// Open (creating if needed) the store at `location` — a `postgres://` / `postgresql://` URL,
    /// a `sqlite://` URL or a SQLite file path — and bring its schema up to date.
    pub async fn open(location: &str) -> Result<StateStore, StateError> {
        sqlx::any::install_default_drivers();
        let loc = Location::parse(location)?;
        let described = loc.describe();
        let open_err = |source| StateError::Open {
            location: described.clone(),
            source,
        };
        if let Location::Sqlite(path) = &loc
            && let Some(parent) = path.parent()
        {
            std::fs::create_dir_all(parent).map_err(|source| StateError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let url = loc.driver_url();
        let backend = loc.backend();
        // One direct connection first: it fails fast (the pool would retry until its acquire
        // timeout) and, on SQLite, switches the file to WAL.
        match backend {
            Backend::Sqlite => enable_wal(&url).await.map_err(open_err)?,
            Backend::Postgres => probe(&url).await.map_err(open_err)?,
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 5,
            })
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        configure_sqlite(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(open_err)?;
        migrator()
            .run(&pool)
            .await
            .map_err(|source| StateError::Migrate {
                location: described.clone(),
                source,
            })?;
        Ok(StateStore {
            pool,
            backend,
            url,
            described,
        })
    }

    pub(crate) fn driver_url(&self) -> &str {
        &self.url
    }
}

/// WAL lets readers proceed while one process writes; it is a property of the file, set once.
/// Switching needs a moment without other connections, so retry briefly if another process is
/// opening the same file at the same time.
async fn enable_wal(url: &str) -> Result<(), sqlx::Error> {
    let mut conn = AnyConnection::connect(url).await?;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match conn.execute("PRAGMA journal_mode = WAL").await {
            Ok(_) => break Ok(()),
            Err(e) if attempt < 50 && is_busy(&e) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => break Err(e),
        }
    };
    conn.close().await?;
    result
}

/// Connect once, within a bounded time, to report an unreachable server quickly.
async fn probe(url: &str) -> Result<(), sqlx::Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(url)).await {
        Ok(conn) => conn?.close().await,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        ))),
    }
}

/// Per-connection settings: wait for concurrent writers instead of failing at once.
async fn configure_sqlite(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    let busy = format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis());
    conn.execute(sqlx::AssertSqlSafe(busy)).await?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let msg = db.message();
            msg.contains("locked") || msg.contains("busy")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_recognised() {
        assert!(matches!(
            Location::parse("postgres://u@h/db"),
            Ok(Location::Postgres(_))
        ));
        assert!(matches!(
            Location::parse("postgresql://u@h/db"),
            Ok(Location::Postgres(_))
        ));
        match Location::parse("sqlite:///tmp/x/state.db") {
            Ok(Location::Sqlite(p)) => assert_eq!(p, PathBuf::from("/tmp/x/state.db")),
            other => panic!("{other:?}"),
        }
        match Location::parse("/var/dive/state.db") {
            Ok(Location::Sqlite(p)) => assert_eq!(p, PathBuf::from("/var/dive/state.db")),
            other => panic!("{other:?}"),
        }
        let err = Location::parse("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unsupported scheme") && !err.contains("secret"),
            "{err}"
        );
        assert!(Location::parse("  ").is_err());
        assert!(Location::parse("sqlite::memory:").is_err());
        let err = Location::parse("sqlite:///tmp/s.db?mode=ro")
            .unwrap_err()
            .to_string();
        assert!(err.contains("URL options are not supported"), "{err}");
        match Location::parse("/tmp/odd?name.db") {
            Ok(Location::Sqlite(p)) => assert_eq!(p, PathBuf::from("/tmp/odd?name.db")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://dive:s3cr@t@db:5432/state"),
            "postgres://dive:***@db:5432/state"
        );
        assert_eq!(
            redact("postgres://dive@db/state"),
            "postgres://dive@db/state"
        );
        assert_eq!(
            redact("postgres://db/state?user=a"),
            "postgres://db/state?user=a"
        );
        assert_eq!(
            redact("postgres://db/state?user=a&password=s3cret&sslmode=require"),
            "postgres://db/state?user=a&password=***&sslmode=require"
        );
    }

    #[test]
    fn awkward_paths_survive_the_url() {
        let loc = Location::Sqlite(PathBuf::from("/tmp/a b/c?d#e%f.db"));
        assert_eq!(
            loc.driver_url(),
            "sqlite:///tmp/a%20b/c%3Fd%23e%25f.db?mode=rwc"
        );
    }
}
