//! The rewrap client: what `dive ztdf decrypt --kas` and other DIVE clients use to obtain a ZTDF's
//! key shares from a KAS as an OpenTDF client does — an ephemeral key pair (RSA-2048 or EC
//! P-256), the request signed by an ephemeral ES256 key announced in the token's `jwk` header,
//! the caller's access token as a bearer, and the returned shares unwrapped locally.
//!
//! ```no_run
//! # async fn f(http: reqwest::Client, token: String) -> Result<(), Box<dyn std::error::Error>> {
//! use dive_kas::client::{ClientKeyKind, RemoteKas};
//! let file = std::fs::File::open("doc.ztdf")?;
//! let reader = dive_ztdf::TdfReader::open(std::io::BufReader::new(file))?;
//! let kas = RemoteKas::new(http, "https://localhost:9443/kas", token)
//!     .with_client_key(ClientKeyKind::EcP256);
//! let shares = kas
//!     .rewrap_kaos(&reader.manifest().encryption_information.policy, reader.key_access_objects())
//!     .await?;
//! let mut unlocked = reader.unlock(&shares)?; // the reader re-checks every binding
//! # Ok(()) }
//! ```

use std::sync::OnceLock;

use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use dive_ztdf::crypto::{self, b64};
use dive_ztdf::{KeyAccessObject, KeyUnwrapper, Policy, UnwrapError};
use prost::Message;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::keys::KeyAlgorithm;
use crate::srt::RequestSigner;
use crate::{proto, wire};

/// Lifetime of the signed request tokens this client makes, seconds.
const SRT_TTL: i64 = 60;

/// The kind of ephemeral key the KAS rewraps shares to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientKeyKind {
    /// RSA-2048: shares come back RSA-OAEP (SHA-1) encrypted.
    #[default]
    Rsa2048,
    /// EC P-256: shares come back under ECDH(session key) + HKDF + AES-GCM.
    EcP256,
}

/// Which of the KAS's protocol bindings to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// `POST <kas>/v2/rewrap` with JSON.
    #[default]
    Rest,
    /// `POST /kas.AccessService/Rewrap`, `application/json`.
    ConnectJson,
    /// `POST /kas.AccessService/Rewrap`, `application/proto`.
    ConnectProto,
}

/// Why a rewrap could not be done at all (per-KAO refusals are [`UnwrapError::Denied`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("KAS at {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("KAS at {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        /// The KAS's `message` (for a 400, it names the field).
        message: String,
    },
    #[error("KAS at {url}: unexpected answer: {detail}")]
    Protocol { url: String, detail: String },
    #[error("{0}")]
    Crypto(String),
    #[error("invalid KAS URL {0:?}: expected https://host[:port][/kas]")]
    Url(String),
}

enum ClientPrivate {
    Rsa(OaepPrivateDecryptingKey),
    Ec(agreement::PrivateKey),
}

/// The ephemeral client key pair.
struct ClientKey {
    private: ClientPrivate,
    public_pem: String,
}

impl ClientKey {
    fn generate(kind: ClientKeyKind) -> Result<ClientKey, ClientError> {
        let fail = |what: &str| ClientError::Crypto(format!("client key generation: {what}"));
        match kind {
            ClientKeyKind::Rsa2048 => {
                let k =
                    PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| fail("RSA"))?;
                let der: PublicKeyX509Der = k.public_key().as_der().map_err(|_| fail("RSA"))?;
                let public_pem = dive_ztdf::pem::encode("PUBLIC KEY", der.as_ref());
                let k = OaepPrivateDecryptingKey::new(k).map_err(|_| fail("RSA-OAEP"))?;
                Ok(ClientKey {
                    private: ClientPrivate::Rsa(k),
                    public_pem,
                })
            }
            ClientKeyKind::EcP256 => {
                let k = agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| fail("EC"))?;
                let der: PublicKeyX509Der = k
                    .compute_public_key()
                    .map_err(|_| fail("EC"))?
                    .as_der()
                    .map_err(|_| fail("EC"))?;
                Ok(ClientKey {
                    private: ClientPrivate::Ec(k),
                    public_pem: dive_ztdf::pem::encode("PUBLIC KEY", der.as_ref()),
                })
            }
        }
    }

    /// The AES key shared with the KAS's session key (EC only).
    fn session_key(
        &self,
        session_pem: Option<&str>,
    ) -> Result<Option<aws_lc_rs::aead::LessSafeKey>, String> {
        let ClientPrivate::Ec(k) = &self.private else {
            return Ok(None);
        };
        let pem = session_pem.ok_or("the answer has no sessionPublicKey for the EC client key")?;
        let der = dive_ztdf::pem::decode(pem)
            .map_err(|e| format!("sessionPublicKey: {e}"))?
            .der;
        let kek = agreement::agree(
            k,
            UnparsedPublicKey::new(&ECDH_P256, &der),
            "ECDH with the session key failed".to_string(),
            |secret| {
                crypto::hkdf_sha256(&dive_ztdf::keys::ec_wrap_salt(), secret, &[])
                    .map_err(|e| e.to_string())
            },
        )?;
        crypto::gcm_key(&kek[..])
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn unwrap(
        &self,
        wrapped: &[u8],
        session: Option<&aws_lc_rs::aead::LessSafeKey>,
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        match (&self.private, session) {
            (ClientPrivate::Rsa(k), _) => {
                let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
                let n = k
                    .decrypt(&OAEP_SHA1_MGF1SHA1, wrapped, &mut out, None)
                    .map_err(|_| "RSA-OAEP decryption of the returned key failed".to_string())?
                    .len();
                out.truncate(n);
                Ok(out)
            }
            (ClientPrivate::Ec(_), Some(kek)) => crypto::gcm_open(kek, wrapped).ok_or_else(|| {
                "the returned key does not authenticate under the session key".into()
            }),
            (ClientPrivate::Ec(_), None) => Err("no session key".into()),
        }
    }
}

/// A KAS seen from a client: rewraps KAOs for the holder of an access token.
pub struct RemoteKas {
    http: reqwest::Client,
    kas_url: String,
    token: String,
    kind: ClientKeyKind,
    transport: Transport,
    key: OnceLock<ClientKey>,
    signer: OnceLock<RequestSigner>,
}

impl std::fmt::Debug for RemoteKas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKas")
            .field("kas_url", &self.kas_url)
            .field("kind", &self.kind)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl RemoteKas {
    /// `kas_url` is the KAS URL as KAOs name it (`https://host:port/kas`); `http` must trust the
    /// KAS's CA (`dive_http::https_client`).
    pub fn new(
        http: reqwest::Client,
        kas_url: impl Into<String>,
        access_token: impl Into<String>,
    ) -> RemoteKas {
        RemoteKas {
            http,
            kas_url: kas_url.into().trim_end_matches('/').to_string(),
            token: access_token.into(),
            kind: ClientKeyKind::default(),
            transport: Transport::default(),
            key: OnceLock::new(),
            signer: OnceLock::new(),
        }
    }

    pub fn with_client_key(mut self, kind: ClientKeyKind) -> RemoteKas {
        self.kind = kind;
        self.key = OnceLock::new();
        self
    }

    pub fn with_transport(mut self, transport: Transport) -> RemoteKas {
        self.transport = transport;
        self
    }

    pub fn kas_url(&self) -> &str {
        &self.kas_url
    }

    /// `<kas>/v2/<path>` whether or not the configured URL already ends in `/kas`.
    fn rest_url(&self, path: &str) -> String {
        if self.kas_url.ends_with("/kas") {
            format!("{}/v2/{path}", self.kas_url)
        } else {
            format!("{}/kas/v2/{path}", self.kas_url)
        }
    }

    /// The REST rewrap endpoint (`<kas>/v2/rewrap`).
    pub fn rewrap_endpoint(&self) -> String {
        self.rest_url("rewrap")
    }

    /// Connect procedures live at the origin's root.
    fn connect_url(&self, procedure: &str) -> Result<String, ClientError> {
        let u = reqwest::Url::parse(&self.kas_url)
            .map_err(|_| ClientError::Url(self.kas_url.clone()))?;
        u.join(&format!("/kas.AccessService/{procedure}"))
            .map(|u| u.to_string())
            .map_err(|_| ClientError::Url(self.kas_url.clone()))
    }

    fn client_key(&self) -> Result<&ClientKey, ClientError> {
        if let Some(k) = self.key.get() {
            return Ok(k);
        }
        let k = ClientKey::generate(self.kind)?;
        Ok(self.key.get_or_init(|| k))
    }

    fn signer(&self) -> Result<&RequestSigner, ClientError> {
        if let Some(s) = self.signer.get() {
            return Ok(s);
        }
        let s = RequestSigner::generate().map_err(ClientError::Crypto)?;
        Ok(self.signer.get_or_init(|| s))
    }

    /// The KAS's current public key for `algorithm`: (PEM, kid).
    pub async fn public_key(
        &self,
        algorithm: KeyAlgorithm,
    ) -> Result<(String, String), ClientError> {
        let url = format!(
            "{}?algorithm={}&fmt=pkcs8",
            self.rest_url("kas_public_key"),
            algorithm.as_str()
        );
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        if status != 200 {
            return Err(status_error(&url, status, &body));
        }
        let r: wire::PublicKeyResponse =
            serde_json::from_value(body).map_err(|e| ClientError::Protocol {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        Ok((r.public_key, r.kid))
    }

    /// Build the signed request token for these KAOs (one policy request).
    pub fn signed_request(
        &self,
        policy_b64: &str,
        kaos: &[KeyAccessObject],
    ) -> Result<String, ClientError> {
        let policy_id = Policy::from_base64(policy_b64)
            .map(|p| p.uuid)
            .unwrap_or_else(|_| "policy-0".to_string());
        let objects: Vec<Value> = kaos
            .iter()
            .enumerate()
            .map(|(i, k)| json!({"keyAccessObjectId": format!("kao-{i}"), "keyAccessObject": k.to_json()}))
            .collect();
        let body = json!({
            "clientPublicKey": self.client_key()?.public_pem,
            "requests": [{"policy": {"id": policy_id, "body": policy_b64}, "keyAccessObjects": objects}],
        });
        self.signer()?
            .sign(&body.to_string(), dive_jose::now(), SRT_TTL)
            .map_err(ClientError::Crypto)
    }

    /// Send one rewrap for `kaos` (all under the policy `policy_b64`, exactly as stored in the
    /// manifest) and unwrap what comes back. KAOs the KAS refused are [`UnwrapError::Denied`].
    pub async fn rewrap_kaos(
        &self,
        policy_b64: &str,
        kaos: &[KeyAccessObject],
    ) -> Result<Rewrapped, ClientError> {
        let srt = self.signed_request(policy_b64, kaos)?;
        let (url, response) = self.send(&srt).await?;
        self.open_response(&url, kaos, &response)
    }

    async fn send(&self, srt: &str) -> Result<(String, wire::RewrapResponse), ClientError> {
        let (url, rb) = match self.transport {
            Transport::Rest => {
                let url = self.rest_url("rewrap");
                let rb = self
                    .http
                    .post(&url)
                    .json(&json!({"signedRequestToken": srt}));
                (url, rb)
            }
            Transport::ConnectJson => {
                let url = self.connect_url("Rewrap")?;
                let rb = self
                    .http
                    .post(&url)
                    .header("connect-protocol-version", "1")
                    .json(&json!({"signedRequestToken": srt}));
                (url, rb)
            }
            Transport::ConnectProto => {
                let url = self.connect_url("Rewrap")?;
                let body = proto::RewrapRequest {
                    signed_request_token: srt.to_string(),
                }
                .encode_to_vec();
                let rb = self
                    .http
                    .post(&url)
                    .header("connect-protocol-version", "1")
                    .header(reqwest::header::CONTENT_TYPE, "application/proto")
                    .body(body);
                (url, rb)
            }
        };
        let http_err = |source| ClientError::Http {
            url: url.clone(),
            source,
        };
        let resp = rb.bearer_auth(&self.token).send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let is_proto = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/proto"));
        let bytes = resp.bytes().await.map_err(http_err)?;
        if status != 200 {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(status_error(&url, status, &body));
        }
        let protocol = |detail: String| ClientError::Protocol {
            url: url.clone(),
            detail,
        };
        let parsed = if is_proto {
            proto::RewrapResponse::decode(bytes.as_ref())
                .map_err(|e| protocol(e.to_string()))?
                .to_wire()
        } else {
            serde_json::from_slice(&bytes).map_err(|e| protocol(e.to_string()))?
        };
        Ok((url, parsed))
    }

    /// Unwrap the shares of a JSON rewrap answer (`body`, REST or Connect JSON) to a request for
    /// `kaos` this client signed ([`RemoteKas::signed_request`]), for callers that send the
    /// request themselves (the load generator).
    pub fn open_json_response(
        &self,
        kaos: &[KeyAccessObject],
        body: &[u8],
    ) -> Result<Rewrapped, ClientError> {
        let url = self.rewrap_endpoint();
        let response: wire::RewrapResponse =
            serde_json::from_slice(body).map_err(|e| ClientError::Protocol {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        self.open_response(&url, kaos, &response)
    }

    fn open_response(
        &self,
        url: &str,
        kaos: &[KeyAccessObject],
        response: &wire::RewrapResponse,
    ) -> Result<Rewrapped, ClientError> {
        let key = self.client_key()?;
        let session = key
            .session_key(response.session_public_key.as_deref())
            .map_err(|detail| ClientError::Protocol {
                url: url.to_string(),
                detail,
            });
        let results: Vec<&wire::KaoResult> =
            response.responses.iter().flat_map(|p| &p.results).collect();
        let mut shares = Vec::with_capacity(kaos.len());
        for (i, kao) in kaos.iter().enumerate() {
            let id = format!("kao-{i}");
            let outcome = match results.iter().find(|r| r.key_access_object_id == id) {
                None => Err(UnwrapError::NoKey(format!(
                    "the KAS at {url} did not answer for this KAO"
                ))),
                Some(r) if r.status == wire::PERMIT => {
                    let wrapped = r
                        .kas_wrapped_key
                        .as_deref()
                        .and_then(b64::decode)
                        .ok_or_else(|| UnwrapError::NoKey("permit without a kasWrappedKey".into()));
                    match (wrapped, &session) {
                        (Ok(w), Ok(s)) => key.unwrap(&w, s.as_ref()).map_err(UnwrapError::NoKey),
                        (Err(e), _) => Err(e),
                        (_, Err(e)) => Err(UnwrapError::NoKey(e.to_string())),
                    }
                }
                Some(r) => Err(UnwrapError::Denied(format!(
                    "the KAS at {url} refused: {}",
                    r.error.as_deref().unwrap_or("no reason given")
                ))),
            };
            shares.push((kao.clone(), outcome));
        }
        Ok(Rewrapped { shares })
    }
}

fn status_error(url: &str, status: u16, body: &Value) -> ClientError {
    ClientError::Status {
        url: url.to_string(),
        status,
        message: body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
    }
}

/// A released share, or why not.
type Share = Result<Zeroizing<Vec<u8>>, UnwrapError>;

/// The shares one or more rewraps returned, ready for [`dive_ztdf::TdfReader::unlock`].
#[derive(Default)]
pub struct Rewrapped {
    shares: Vec<(KeyAccessObject, Share)>,
}

impl std::fmt::Debug for Rewrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewrapped")
            .field("kaos", &self.shares.len())
            .field("released", &self.released())
            .finish()
    }
}

impl Rewrapped {
    /// Add the shares of another rewrap (a file whose KAOs name several KASes).
    pub fn extend(&mut self, other: Rewrapped) {
        self.shares.extend(other.shares);
    }

    /// How many KAOs the KAS released.
    pub fn released(&self) -> usize {
        self.shares.iter().filter(|(_, r)| r.is_ok()).count()
    }

    /// The outcome per KAO, in request order.
    pub fn outcomes(&self) -> impl Iterator<Item = (&KeyAccessObject, Result<(), &UnwrapError>)> {
        self.shares.iter().map(|(k, r)| (k, r.as_ref().map(|_| ())))
    }
}

impl KeyUnwrapper for Rewrapped {
    fn unwrap_share(
        &self,
        kao: &KeyAccessObject,
        _policy_b64: &str,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        match self.shares.iter().find(|(k, _)| k == kao) {
            Some((_, Ok(s))) => Ok(s.clone()),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(UnwrapError::NoKey("this KAO was not sent to a KAS".into())),
        }
    }
}

/// One rewrap per KAO, blocking the calling thread. Needs a multi-threaded Tokio runtime when
/// called from async code (it uses `block_in_place`); outside any runtime it runs its own.
/// [`RemoteKas::rewrap_kaos`] does all KAOs of a file in one request and is preferable.
impl KeyUnwrapper for RemoteKas {
    fn unwrap_share(
        &self,
        kao: &KeyAccessObject,
        policy_b64: &str,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let fut = self.rewrap_kaos(policy_b64, std::slice::from_ref(kao));
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(fut))
            }
            Ok(_) => {
                return Err(UnwrapError::NoKey(
                    "RemoteKas used as a KeyUnwrapper inside a single-threaded runtime: use RemoteKas::rewrap_kaos".into(),
                ));
            }
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| UnwrapError::NoKey(format!("cannot start a runtime: {e}")))?
                .block_on(fut),
        };
        result
            .map_err(|e| UnwrapError::NoKey(e.to_string()))?
            .unwrap_share(kao, policy_b64)
    }
}

/// Rewrap every KAO at the KAS it names (or all at `kas_override`), one request per KAS, as the
/// holder of `token`. A KAS that refuses a KAO is not an error here: see [`Rewrapped::released`].
pub async fn rewrap_all(
    http: &reqwest::Client,
    token: &str,
    policy_b64: &str,
    kaos: &[KeyAccessObject],
    kind: ClientKeyKind,
    kas_override: Option<&str>,
) -> Result<Rewrapped, ClientError> {
    // KAOs grouped by the KAS that holds them, in file order.
    let mut groups: Vec<(&str, Vec<KeyAccessObject>)> = Vec::new();
    for kao in kaos {
        let url = kas_override.unwrap_or(&kao.kas);
        match groups.iter_mut().find(|(u, _)| *u == url) {
            Some((_, v)) => v.push(kao.clone()),
            None => groups.push((url, vec![kao.clone()])),
        }
    }
    let mut all = Rewrapped::default();
    for (url, kaos) in &groups {
        let kas = RemoteKas::new(http.clone(), *url, token).with_client_key(kind);
        all.extend(kas.rewrap_kaos(policy_b64, kaos).await?);
    }
    Ok(all)
}

/// Why a ZTDF could not be decrypted through its KAS.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("the ZTDF: {0}")]
    Ztdf(dive_ztdf::Error),
    #[error(transparent)]
    Kas(#[from] ClientError),
    /// Every KAO was refused (policy, or a file whose binding was altered).
    #[error("the KAS released no key: {0}")]
    Denied(String),
}

/// Download-side decryption as a client does it: rewrap at the KAS(es) the file names, then
/// unlock (the reader re-checks the policy binding and root signature) and decrypt (every
/// segment authenticated).
pub async fn decrypt_ztdf(
    http: &reqwest::Client,
    token: &str,
    ztdf: &[u8],
    kind: ClientKeyKind,
) -> Result<Vec<u8>, DecryptError> {
    let reader =
        dive_ztdf::TdfReader::open(std::io::Cursor::new(ztdf)).map_err(DecryptError::Ztdf)?;
    let rewrapped = rewrap_all(
        http,
        token,
        &reader.manifest().encryption_information.policy,
        reader.key_access_objects(),
        kind,
        None,
    )
    .await?;
    if rewrapped.released() == 0 {
        let why: Vec<String> = rewrapped
            .outcomes()
            .filter_map(|(_, r)| r.err().map(|e| e.to_string()))
            .collect();
        return Err(DecryptError::Denied(why.join("; ")));
    }
    let mut unlocked = reader.unlock(&rewrapped).map_err(DecryptError::Ztdf)?;
    let mut out = Vec::new();
    unlocked.decrypt_to(&mut out).map_err(DecryptError::Ztdf)?;
    Ok(out)
}
