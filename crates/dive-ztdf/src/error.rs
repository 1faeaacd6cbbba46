//! Errors. Each variant names what failed and where (segment index, KAO index, assertion id), so
//! an operator can tell a damaged file from a tampered one from a missing key.

use crate::kao::KaoErrorCode;
use crate::zip::ZipError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("container: {0}")]
    Container(#[from] ZipError),
    #[error("container: the archive has no {0:?} entry")]
    MissingEntry(&'static str),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("manifest is {size} bytes, above the {limit}-byte limit")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("container: CRC-32 of {entry:?} does not match the ZIP directory")]
    CrcMismatch { entry: &'static str },
    #[error("policy: {0}")]
    Policy(String),
    #[error("security label: {0}")]
    Label(String),
    #[error("key access object {index}: {code}: {detail}")]
    Kao {
        index: usize,
        code: KaoErrorCode,
        detail: String,
    },
    #[error("key: {0}")]
    Key(String),
    #[error("integrity: {0}")]
    Integrity(String),
    #[error("integrity: segment {index}: {detail}")]
    Segment { index: usize, detail: String },
    #[error(
        "integrity: root signature does not match the segment hashes (wrong key or tampered manifest)"
    )]
    RootSignature,
    #[error(
        "policy binding of key access object {index} (split {sid:?}) does not match the policy"
    )]
    PolicyBinding { index: usize, sid: String },
    /// An assertion whose JWS binding does not verify (modified assertion, wrong signature,
    /// not bound to this payload) or that is malformed.
    #[error("assertion {id:?}: {detail}")]
    Assertion { id: String, detail: String },
    /// An assertion without a binding: DIVE accepts only signed assertions.
    #[error(
        "assertion {id:?} has no binding: every assertion must be signed (a JWS over its hash and the payload's segment hashes)"
    )]
    AssertionUnsigned { id: String },
    /// The reader was told to require a signed handling assertion carrying the label, and the
    /// file has none (e.g. it was stripped from the manifest, which the root signature does not cover).
    #[error(
        "no handling assertion carrying the security label ({format}), though one is required: assertion stripped or file not written by DIVE"
    )]
    AssertionMissing { format: &'static str },
    #[error("no key access object of split {sid:?} could be unwrapped: {reasons}")]
    SplitUnavailable { sid: String, reasons: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("encryption options: {0}")]
    Options(String),
    #[error("input length {actual} differs from the announced {announced} bytes")]
    InputLength { announced: u64, actual: u64 },
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

impl Error {
    /// True when the error comes from the caller's input (a malformed or tampered file, bad
    /// options, a wrong key) rather than from the environment (I/O).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Io(_) | Error::Crypto(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
