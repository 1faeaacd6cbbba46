//! Errors of the coalition domain: each names the offending value and what is wrong with it.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid country code {code:?}: {why}")]
    InvalidCountry { code: String, why: String },
    #[error("unknown classification label {label:?}{}", country.as_ref().map(|c| format!(" for {c}")).unwrap_or_default())]
    UnknownClearance {
        label: String,
        country: Option<String>,
    },
    #[error("equivalency data: {0}")]
    EquivalencyData(String),
    #[error("COI registry data: {0}")]
    CoiData(String),
    #[error("unknown community of interest {0:?}")]
    UnknownCoi(String),
    #[error("invalid COI operator {0:?}: expected ALL or ANY")]
    InvalidCoiOperator(String),
    #[error("invalid display marking {marking:?}: {why}")]
    InvalidMarking { marking: String, why: String },
    #[error("invalid claim {claim}: {why}")]
    InvalidClaim { claim: String, why: String },
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("cannot read {path}: {why}")]
    Io { path: String, why: String },
}
