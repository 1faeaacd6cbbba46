//! DIVE's Key Access Service (`dive serve kas --instance CODE`): the OpenTDF KAS protocol over
//! HTTPS — `GET /kas/v2/kas_public_key`, `POST /kas/v2/rewrap`, and the same operations as Connect
//! RPC (`/kas.AccessService/PublicKey`, `/kas.AccessService/Rewrap`, JSON or protobuf).
//!
//! A rewrap releases a ZTDF data-key share only when the caller's access token is valid (trusted
//! issuer, JWKS, revocation), the KAO unwraps with one of this instance's keys, the policy binding
//! verifies, and the PDP allows `decrypt` for the token's subject attributes and the resource
//! attributes **of the bound policy**. Every failure looks the same to the caller; every request is
//! audited with the real reason. See `docs/kas.md`.
//!
//! - [`keys`]: the instance's RSA-2048 and EC P-256 key pairs, with rotation.
//! - [`wire`], [`proto`], [`srt`]: the protocol (JSON, protobuf, signed request token).
//! - [`rewrap`]: unwrap, binding, decision, rewrap.
//! - [`audit`]: the audit log (SQLite or PostgreSQL, group commit); [`audit_query`] reads it,
//!   [`audit_api`] serves it to administrators (`GET /kas/audit`, `/kas/audit/summary`).
//! - [`client`]: [`RemoteKas`], the rewrap client (a [`dive_ztdf::KeyUnwrapper`]).

pub mod audit;
pub mod audit_api;
pub mod audit_query;
pub mod client;
pub mod keys;
pub mod loadtest;
pub mod proto;
pub mod rewrap;
pub mod server;
pub mod srt;
pub mod wire;

pub use client::{
    ClientError, ClientKeyKind, DecryptError, RemoteKas, Rewrapped, Transport, decrypt_ztdf,
    rewrap_all,
};
pub use keys::{KasKey, KeyAlgorithm, KeyError, KeyRing, KeyStore};
pub use server::{KasConfig, KasError, Running, start};
