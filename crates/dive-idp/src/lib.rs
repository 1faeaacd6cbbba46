//! The instance's OpenID Provider (`dive serve idp --instance CODE`): discovery, JWKS with
//! rotation, the authorization code flow with PKCE and a server-rendered login (password, TOTP),
//! refresh-token rotation with reuse detection, client credentials, userinfo, introspection,
//! revocation, RP-initiated logout, coalition claims validated with dive-core, brokering of
//! upstream OpenID Providers, and an admin API for federation.

pub mod bruteforce;
pub mod clients;
pub mod error;
pub mod keys;
pub mod login_helper;
pub mod password;
pub mod seed;
pub mod server;
pub mod store;
pub mod tokens;
pub mod totp;
pub mod upstreams;
pub mod users;
pub mod util;

use std::path::{Path, PathBuf};

pub use error::IdpError;
pub use server::{IdpConfig, Running, start};
pub use store::Db;

/// `$DIVE_HOME/instances/<code>` (lower-case code).
pub fn instance_dir(home: &Path, instance: dive_core::CountryCode) -> PathBuf {
    home.join("instances")
        .join(instance.as_str().to_lowercase())
}
