//! The instance's test users, with passwords generated per installation and written 0600 to
//! `$DIVE_HOME/instances/<code>/test-users.json` (never logged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dive_core::CountryCode;

use crate::error::IdpError;
use crate::store::Db;

/// Create the missing test users and record their passwords. Returns the file and the names of
/// the users created now.
pub async fn seed_test_users(
    home: &Path,
    instance: CountryCode,
    db: &Db,
) -> Result<(PathBuf, Vec<String>), IdpError> {
    let dir = crate::instance_dir(home, instance);
    std::fs::create_dir_all(&dir).map_err(|source| IdpError::Io {
        action: "create directory",
        path: dir.display().to_string(),
        source,
    })?;
    let path = dir.join("test-users.json");
    let mut known: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| IdpError::Corrupt(format!("{}: {e}", path.display())))?,
        Err(_) => BTreeMap::new(),
    };
    let created = crate::users::seed_test_users(db, instance).await?;
    let names = created.iter().map(|(u, _)| u.clone()).collect();
    if !created.is_empty() {
        known.extend(created);
        let text = serde_json::to_string_pretty(&known).unwrap_or_default();
        dive_pki::write_file(&path, text.as_bytes(), 0o600)?;
    }
    Ok((path, names))
}
