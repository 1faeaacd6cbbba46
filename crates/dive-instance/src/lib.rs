//! DIVE instances: the hub (USA) and spokes (any other ISO 3166-1 alpha-3 code).
//!
//! * [`ports`]: the per-country port table;
//! * [`config`]: `instance.json` and where an instance's files live;
//! * [`init`]: PKI, client secrets, PDP data and IdP clients (INIT);
//! * [`stacks`]: the embedded hub and spoke stack files and their variables;
//! * [`deploy`]: PREFLIGHT → INIT → START → CONFIGURE → SEED → VERIFY on the orchestrator, with
//!   checkpoints, resume, locks and reports;
//! * [`seed_record`]: what the last seed job stored, for SEED's reality check and verify;
//! * [`verify`]: the verification checks;
//! * [`remove`]: tearing an instance down (`dive nuke hub|spoke`).

pub mod config;
pub mod configure;
pub mod deploy;
pub mod error;
pub mod init;
pub mod policy;
pub mod ports;
pub mod remove;
pub mod secrets;
pub mod seed_record;
pub mod stacks;
pub mod verify;

pub use config::{InstanceConfig, InstancePaths, Role};
pub use error::InstanceError;
pub use ports::{PortOverrides, Ports, Service};
