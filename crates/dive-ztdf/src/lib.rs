//! DIVE's ZTDF: OpenTDF BaseTDF 4.4 with real cryptography.
//!
//! - [`encrypt`] streams plaintext into a ZTDF (ZIP, `0.payload` then `0.manifest.json`,
//!   segmented AES-256-GCM, GMAC segment hashes, HS256 root signature, policy with the security
//!   label as attribute FQNs, KAOs `wrapped` / `ec-wrapped` with policy bindings, key splitting,
//!   a handling assertion carrying the STANAG 4774 label bound by a JWS).
//! - [`TdfReader::open`] checks a file without a key; [`TdfReader::unlock`] obtains the DEK
//!   through a [`KeyUnwrapper`] and verifies bindings, root signature and assertions;
//!   [`UnlockedTdf`] decrypts with per-segment authentication.
//!
//! Crypto is `aws-lc-rs` throughout. See `docs/ztdf.md` for the format and the label mapping.

pub mod assertion;
pub mod crypto;
pub mod error;
pub mod gcm_stream;
pub mod inspect;
pub mod jws;
pub mod kao;
pub mod keys;
pub mod label;
pub mod manifest;
pub mod pem;
pub mod reader;
pub mod writer;
pub mod zip;

pub use dive_core::{Clearance, CoiOperator, CountryCode, SecurityLabel};
pub use error::{Error, Result};
pub use inspect::{Check, Inspection, inspect};
pub use kao::{KaoError, KaoErrorCode, KeyAccessObject, KeyAlg};
pub use keys::{KasPrivateKey, KasPublicKey, KeyUnwrapper, LocalKeyUnwrapper, UnwrapError};
pub use manifest::{Manifest, Policy};
pub use reader::{SegmentInfo, TdfReader, UnlockedTdf};
pub use writer::{
    DEFAULT_SEGMENT_SIZE, EncryptOptions, EncryptSummary, KeyAccessPlan, Recipient, encrypt,
};
