//! Compose-format stack files: parsing, interpolation and validation.

mod types;

pub use types::*;
