//! DIVE's policy decision point: DIVE's own Rego policies (`policies/`) evaluated with regorus,
//! data documents that can be replaced at run time, a decision cache, a Rego test runner and an
//! OPA-compatible Data API.

mod cache;
pub mod decision;
pub mod error;
pub mod input;
pub mod loadtest;
pub mod normalize;
pub mod pdp;
pub mod server;
pub mod sources;
pub mod testing;
pub mod timing;
pub mod workload;

pub use decision::{Decision, DecisionData, Details};
pub use error::PolicyError;
pub use input::{Input, RequestContext};
pub use normalize::{Normalized, Normalizer};
pub use pdp::{EngineKind, Entrypoint, Pdp};
pub use sources::{PolicyFile, Snapshot, Sources, default_data_documents};
pub use testing::{Outcome, TestResult, run_tests};
