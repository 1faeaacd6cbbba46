//! Compose-format stack files: parsing, interpolation and validation.
//!
//! [`load`] reads a stack file (and the `.env` beside it) and returns a fully resolved
//! [`StackSpec`] or a [`SpecError`] naming file, line, column and key.

mod duration;
mod env;
mod error;
mod interpolate;
mod resolve;
mod types;
mod validate;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use duration::{format_duration, parse_duration};
pub use env::Environment;
pub use error::{SpecError, SpecErrorKind};
pub use resolve::{
    LABEL_CLASS, LABEL_DESCRIPTION, LABEL_HEALTH_HTTP, LABEL_HEALTH_TCP, LABEL_RETRIES,
    LABEL_RETRY_BACKOFF, LABEL_TIMEOUT, valid_stack_name,
};
pub use types::*;

pub(crate) use validate::cycle_error;

/// Read and resolve a stack file. `project_name` (`-p`) overrides the file's `name`. Variables are
/// looked up in `env` first, then in the `.env` file beside the stack file (if any).
pub fn load(
    path: &Path,
    project_name: Option<&str>,
    env: &Environment,
) -> Result<StackSpec, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, Pos::default(), "", SpecErrorKind::Io(e.to_string())))?;
    parse_str(&text, path, project_name, env)
}

/// Resolve stack-file text as if read from `source_path` (used for messages, the stack
/// directory, relative paths and the `.env` file beside it).
pub fn parse_str(
    text: &str,
    source_path: &Path,
    project_name: Option<&str>,
    env: &Environment,
) -> Result<StackSpec, SpecError> {
    let dir = resolve::stack_dir(source_path);
    let dotenv = read_dotenv(&dir, source_path, env)?;
    let lookup = |name: &str| {
        env.get(name)
            .map(str::to_string)
            .or_else(|| dotenv.get(name).cloned())
    };
    let root = yaml::parse(text)
        .map_err(|e| SpecError::new(source_path, e.pos, "", SpecErrorKind::Yaml(e.message)))?;
    resolve::Resolver::new(source_path, dir, &lookup).stack(root.as_ref(), project_name)
}

/// The `.env` beside the stack file; its own references see the process environment first.
fn read_dotenv(
    dir: &Path,
    source_path: &Path,
    env: &Environment,
) -> Result<BTreeMap<String, String>, SpecError> {
    let path = dir.join(".env");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(SpecError::new(
                path,
                Pos::default(),
                "",
                SpecErrorKind::Io(e.to_string()),
            ));
        }
    };
    let shown = source_path.parent().map(|p| p.join(".env")).unwrap_or(path);
    let vars = env::parse_env_file(&text, &|k| env.get(k).map(str::to_string)).map_err(|e| {
        SpecError::new(
            shown,
            Pos {
                line: e.line,
                column: 1,
            },
            "",
            SpecErrorKind::Invalid(e.message),
        )
    })?;
    Ok(vars.into_iter().collect())
}

impl ServiceSpec {
    /// Hex SHA-256 of the service's definition, excluding source positions: equal hashes mean the
    /// supervisor can keep a running instance; anything else that changed (command, environment,
    /// dependencies, health check, labels...) changes the hash.
    pub fn definition_hash(&self) -> String {
        let mut canonical = self.clone();
        canonical.pos = Pos::default();
        for d in &mut canonical.depends_on {
            d.pos = Pos::default();
        }
        canonical
            .depends_on
            .sort_by(|a, b| a.service.cmp(&b.service));
        // Struct fields serialise in declaration order and maps are BTreeMaps: deterministic.
        let json = serde_json::to_vec(&canonical)
            .expect("invariant: ServiceSpec has only string-keyed maps, so it always serialises");
        hex::encode(Sha256::digest(&json))
    }
}

#[cfg(test)]
mod tests;
