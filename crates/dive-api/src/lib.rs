//! DIVE's resource service and policy enforcement point (`dive serve api --instance CODE`): a
//! store of ZTDF documents with metadata indexed for search, list and search that return only
//! what the caller may access (with facet counts and cursor pagination), metadata and download
//! decided by the embedded PDP, upload that encrypts to the instance's KAS (or verifies an
//! already-encrypted ZTDF), and an audit log of every decision. See `docs/api.md`.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod corpus;
pub mod error;
pub mod federation;
pub mod kas;
pub mod search;
pub mod server;
pub mod store;
pub mod upload;

use std::path::{Path, PathBuf};

pub use error::ApiError;
pub use server::{ApiConfig, OPENAPI, ROUTES, Running, start};
pub use store::{NewResource, ResourceMeta, ResourceStore, SeedSummary};

/// `$DIVE_HOME/instances/<code>` (lower-case code).
pub fn instance_dir(home: &Path, instance: dive_core::CountryCode) -> PathBuf {
    home.join("instances")
        .join(instance.as_str().to_lowercase())
}

/// The default store location: `$DIVE_HOME/instances/<code>/api.db`.
pub fn default_database(home: &Path, instance: dive_core::CountryCode) -> PathBuf {
    instance_dir(home, instance).join("api.db")
}
