//! The coalition domain of DIVE, as types: the clearance ladder and national classification
//! equivalency, ISO 3166 countries, the COI registry, security labels with display markings and
//! coherence rules, and the subject and resource attributes the policy decides on.
//!
//! Pure data and logic; the only I/O is optional loading of replacement data files.

pub mod attributes;
pub mod clearance;
pub mod coi;
pub mod country;
pub mod equivalency;
pub mod error;
pub mod federation;
pub mod label;
pub mod normalize;

pub use attributes::{
    Aal, Authentication, OrganizationType, ResourceAttributes, SubjectAttributes,
};
pub use clearance::Clearance;
pub use coi::{CoiDefinition, CoiFile, CoiOperator, CoiRegistry, US_ONLY};
pub use country::{CountryCode, NATO_MEMBERS};
pub use equivalency::{Equivalency, EquivalencyFile, NATO_TABLE};
pub use error::CoreError;
pub use label::{CoherenceViolation, KNOWN_CAVEATS, SecurityLabel};
pub use normalize::label_key;

/// The role administrative operations need by default (the policy data's `settings.adminRole`),
/// and the role of each instance's `admin-<code>` test user.
pub const ADMIN_ROLE: &str = "dive-admin";
