//! CONFIGURE: what the instance needs once its services run — the test users (with passwords
//! recorded 0600), then any [`ConfigureHook`]s. Federation with the hub (issue 7) plugs in here
//! as a hook: it gets the instance, runs after the users exist, and has its own reality check so
//! that a CONFIGURE checkpoint is only trusted while the federation still holds.

use std::future::Future;
use std::pin::Pin;

use crate::config::{InstanceConfig, InstancePaths};
use crate::error::InstanceError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A step of CONFIGURE beyond the test users (e.g. federation links).
pub trait ConfigureHook: Send + Sync {
    /// Shown in progress and recorded in the phase detail.
    fn name(&self) -> &str;
    /// Do it (idempotently). Returns a one-line summary.
    fn run<'a>(
        &'a self,
        paths: &'a InstancePaths,
        cfg: &'a InstanceConfig,
    ) -> BoxFuture<'a, Result<String, InstanceError>>;
    /// Whether what `run` did still holds (`Err` says what does not).
    fn check<'a>(
        &'a self,
        paths: &'a InstancePaths,
        cfg: &'a InstanceConfig,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Create the missing test users; returns a summary.
pub async fn run(
    paths: &InstancePaths,
    cfg: &InstanceConfig,
    hooks: &[&dyn ConfigureHook],
) -> Result<String, InstanceError> {
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string()).await?;
    let seeded = dive_idp::seed::seed_test_users(&paths.home, cfg.code, &db).await;
    db.pool.close().await;
    let (file, created) = seeded?;
    let mut parts = vec![if created.is_empty() {
        format!("test users present (passwords in {})", file.display())
    } else {
        format!(
            "created test users {} (passwords in {})",
            created.join(", "),
            file.display()
        )
    }];
    for h in hooks {
        parts.push(format!("{}: {}", h.name(), h.run(paths, cfg).await?));
    }
    Ok(parts.join("; "))
}

/// Whether a CONFIGURE checkpoint still holds: every test user whose password is recorded
/// exists in the IdP, and every hook's own check passes.
pub async fn check(
    paths: &InstancePaths,
    cfg: &InstanceConfig,
    hooks: &[&dyn ConfigureHook],
) -> Result<(), String> {
    let file = paths.test_users();
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let passwords: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if passwords.is_empty() {
        return Err(format!("{} lists no users", file.display()));
    }
    let db = dive_idp::Db::open(&paths.idp_db().display().to_string())
        .await
        .map_err(|e| e.to_string())?;
    let users = dive_idp::users::list(&db).await;
    db.pool.close().await;
    let users = users.map_err(|e| e.to_string())?;
    for name in passwords.keys() {
        if !users.iter().any(|u| &u.username == name) {
            return Err(format!("test user {name} is not in the IdP"));
        }
    }
    for h in hooks {
        h.check(paths, cfg).await?;
    }
    Ok(())
}
