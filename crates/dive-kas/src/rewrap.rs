//! The decision and key handling of a rewrap, independent of HTTP: for each KAO, unwrap the share
//! with the KAS key it names, verify the policy binding, let the PDP decide `decrypt` on the
//! caller's token attributes and the attributes **of the bound policy**, and rewrap the share to
//! the client's key. Every failure looks the same to the caller; the real reason goes to the audit.

use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::aead::LessSafeKey;
use aws_lc_rs::agreement::{self, ECDH_P256, EphemeralPrivateKey, ParsedPublicKey};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use dive_core::{ResourceAttributes, SubjectAttributes};
use dive_policy::{Input, Pdp, RequestContext};
use dive_ztdf::crypto::{self, b64};
use dive_ztdf::{KasPublicKey, KeyAccessObject};
use zeroize::Zeroizing;

use crate::keys::{Fingerprint, KasKey, KeyAlgorithm, KeyError, KeyRing, KeyStore};
use crate::wire::{
    FAIL, FAIL_MESSAGE, KaoResult, PERMIT, PolicyRequest, PolicyResult, RequestError,
    RewrapResponse, UnsignedRewrap,
};

/// The KAS keys in force, reloaded when the key index changes on disk (rotation by
/// `dive kas rotate-keys` while the KAS runs).
pub struct KeyService {
    store: KeyStore,
    ring: RwLock<Arc<KeyRing>>,
    fingerprint: Mutex<Fingerprint>,
}

impl KeyService {
    /// Load the keys, generating them on first start.
    pub fn open(store: KeyStore) -> Result<KeyService, KeyError> {
        let ring = store.load_or_create()?;
        let fingerprint = store.fingerprint();
        Ok(KeyService {
            store,
            ring: RwLock::new(Arc::new(ring)),
            fingerprint: Mutex::new(fingerprint),
        })
    }

    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reload when the index changed; `Ok(true)` when new keys are in force. On error the keys in
    /// force stay.
    pub fn reload_if_changed(&self) -> Result<bool, KeyError> {
        let now = self.store.fingerprint();
        let mut last = match self.fingerprint.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if now == *last {
            return Ok(false);
        }
        // Remember it even on failure, so a broken index is reported once, not every poll.
        *last = now;
        let ring = self.store.load()?;
        match self.ring.write() {
            Ok(mut g) => *g = Arc::new(ring),
            Err(p) => *p.into_inner() = Arc::new(ring),
        }
        Ok(true)
    }
}

/// Who is asking, as established from the access token.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A valid token of a trusted issuer.
    Authenticated(Arc<Authenticated>),
    /// No acceptable token: every KAO fails, exactly as for a denied user.
    Rejected {
        /// Why (for the audit; never shown to the caller).
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub attributes: SubjectAttributes,
    /// `iss`, `sub`, `jti` and `client_id`/`azp` of the token, for the audit.
    pub issuer: String,
    pub subject: String,
    pub jti: Option<String>,
    pub client_id: Option<String>,
    /// `cnf.jkt` when the token is bound to a key.
    pub bound_jkt: Option<String>,
}

/// One KAO's outcome with its real reason, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KaoDecision {
    pub policy_id: String,
    pub policy_uuid: Option<String>,
    pub kao_id: String,
    pub kid: Option<String>,
    pub algorithm: String,
    pub permit: bool,
    pub reason: String,
}

/// The response and the audit view of one rewrap.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub response: RewrapResponse,
    pub decisions: Vec<KaoDecision>,
    /// Answer in the legacy v1 shape (one key, or an error).
    pub legacy_v1: bool,
}

/// The client's key, parsed once per request.
enum ClientKey {
    Rsa(KasPublicKey),
    Ec(ParsedPublicKey),
}

impl ClientKey {
    fn parse(pem: &str) -> Result<ClientKey, RequestError> {
        let field = "requestBody.clientPublicKey";
        match KasPublicKey::from_pem(pem) {
            Ok(k @ KasPublicKey::Rsa(_)) => Ok(ClientKey::Rsa(k)),
            Ok(KasPublicKey::Ec(p)) => Ok(ClientKey::Ec(p)),
            Err(e) => Err(RequestError::new(
                field,
                format!("must be a PEM RSA (2048 bits or more) or EC P-256 public key: {e}"),
            )),
        }
    }
}

/// Rewraps shares to the client key. For an EC client key, one ephemeral session key per request
/// (returned as `sessionPublicKey`), created on the first permit.
struct Rewrapper {
    key: ClientKey,
    session: Option<(LessSafeKey, String)>,
}

impl Rewrapper {
    fn wrap(&mut self, share: &[u8]) -> Result<String, String> {
        match &self.key {
            ClientKey::Rsa(k) => k
                .wrap(share)
                .map(|(w, _)| w)
                .map_err(|e| format!("RSA-OAEP to the client key failed: {e}")),
            ClientKey::Ec(peer) => {
                if self.session.is_none() {
                    self.session = Some(ec_session(peer)?);
                }
                let (kek, _) = self.session.as_ref().ok_or("no session key")?;
                crypto::gcm_seal(kek, share)
                    .map(b64::encode)
                    .map_err(|e| format!("AES-GCM to the session key failed: {e}"))
            }
        }
    }

    fn session_public_key(&self) -> Option<String> {
        self.session.as_ref().map(|(_, pem)| pem.clone())
    }
}

/// ECDH between a fresh P-256 key and the client's key; HKDF-SHA256 with salt SHA-256("TDF")
/// and empty info (OpenTDF's rewrap KDF) gives the AES-256-GCM key.
fn ec_session(peer: &ParsedPublicKey) -> Result<(LessSafeKey, String), String> {
    let rng = SystemRandom::new();
    let eph = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
        .map_err(|_| "EC session key generation failed".to_string())?;
    let public = eph
        .compute_public_key()
        .map_err(|_| "EC session public key failed".to_string())?;
    let der: PublicKeyX509Der = public
        .as_der()
        .map_err(|_| "EC session key encoding failed".to_string())?;
    let kek = agreement::agree_ephemeral(
        eph,
        peer.clone(),
        "ECDH with the client key failed".to_string(),
        |secret| {
            crypto::hkdf_sha256(&dive_ztdf::keys::ec_wrap_salt(), secret, &[])
                .map_err(|e| e.to_string())
        },
    )?;
    let key = crypto::gcm_key(&kek[..]).map_err(|e| e.to_string())?;
    Ok((key, dive_ztdf::pem::encode("PUBLIC KEY", der.as_ref())))
}

/// Unwrap a KAO's share: with the key its `kid` names, or (no kid) the current key then older
/// ones of the KAO's algorithm.
fn unwrap_share(ring: &KeyRing, kao: &KeyAccessObject) -> Result<Zeroizing<Vec<u8>>, String> {
    let algorithm = KeyAlgorithm::for_kao(kao.alg)
        .ok_or_else(|| format!("{} KAOs are not supported by this KAS", kao.alg.as_str()))?;
    let try_key = |k: &KasKey| k.private().unwrap_kao(kao).map_err(|e| e.to_string());
    match &kao.kid {
        Some(kid) => {
            let key = ring
                .by_kid(kid)
                .ok_or_else(|| format!("unknown kid {kid:?}"))?;
            if key.algorithm != algorithm {
                return Err(format!(
                    "kid {kid:?} is an {} key but the KAO is {}",
                    key.algorithm,
                    kao.alg.as_str()
                ));
            }
            try_key(key)
        }
        None => {
            let mut last = format!("no {algorithm} key");
            for key in ring.candidates(algorithm) {
                match try_key(key) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = format!("no key unwraps it (last: {} {e})", key.kid),
                }
            }
            Err(last)
        }
    }
}

/// The rewrap engine shared by every request.
pub struct Engine {
    pub keys: KeyService,
    pub pdp: Arc<Pdp>,
    /// The attribute namespace of DIVE labels in policies (`dive.coalition`).
    pub namespace: String,
}

impl Engine {
    pub fn new(keys: KeyService, pdp: Arc<Pdp>) -> Engine {
        Engine {
            keys,
            pdp,
            namespace: dive_ztdf::label::DEFAULT_NAMESPACE.to_string(),
        }
    }

    /// Decide and rewrap every KAO of a parsed request. `Err` only for a request that is invalid
    /// whoever sends it (unusable client key): that is a 400, not a per-KAO failure.
    pub fn rewrap(&self, caller: &Caller, req: &UnsignedRewrap) -> Result<Outcome, RequestError> {
        let key = ClientKey::parse(&req.client_public_key)?;
        let mut rewrapper = Rewrapper { key, session: None };
        let ring = self.keys.ring();
        let mut decisions = Vec::with_capacity(req.kao_count());
        let mut responses = Vec::with_capacity(req.requests.len());
        for p in &req.requests {
            let results = match caller {
                Caller::Rejected { reason } => p
                    .kaos
                    .iter()
                    .map(|k| {
                        decisions.push(decision(
                            p,
                            k.kao.kid.clone(),
                            &k.id,
                            &k.kao,
                            false,
                            reason,
                        ));
                        fail(&k.id)
                    })
                    .collect(),
                Caller::Authenticated(who) => {
                    self.policy_request(&ring, who, p, &mut rewrapper, &mut decisions)
                }
            };
            responses.push(PolicyResult {
                policy_id: p.policy_id.clone(),
                results,
            });
        }
        let entity_wrapped_key = if req.legacy_v1 {
            responses
                .first()
                .and_then(|p| p.results.first())
                .and_then(|r| r.kas_wrapped_key.clone())
        } else {
            None
        };
        Ok(Outcome {
            response: RewrapResponse {
                session_public_key: rewrapper.session_public_key(),
                responses,
                entity_wrapped_key,
            },
            decisions,
            legacy_v1: req.legacy_v1,
        })
    }

    fn policy_request(
        &self,
        ring: &KeyRing,
        who: &Authenticated,
        p: &PolicyRequest,
        rewrapper: &mut Rewrapper,
        decisions: &mut Vec<KaoDecision>,
    ) -> Vec<KaoResult> {
        // The decision depends only on the (bound) policy and the subject: made once, on the
        // first KAO whose binding verifies.
        let mut verdict: Option<Result<(), String>> = None;
        let mut results = Vec::with_capacity(p.kaos.len());
        for k in &p.kaos {
            let outcome = (|| -> Result<String, String> {
                let share = unwrap_share(ring, &k.kao)?;
                if share.len() != crypto::KEY_LEN {
                    return Err(format!(
                        "unwrapped share is {} bytes, not {}",
                        share.len(),
                        crypto::KEY_LEN
                    ));
                }
                if !k.kao.verify_policy_binding(&share, &p.policy_b64) {
                    return Err("policy binding does not verify: the policy was altered or does not belong to this key".into());
                }
                verdict.get_or_insert_with(|| self.decide(who, p)).clone()?;
                rewrapper.wrap(&share)
            })();
            match outcome {
                Ok(wrapped) => {
                    decisions.push(decision(
                        p,
                        k.kao.kid.clone(),
                        &k.id,
                        &k.kao,
                        true,
                        "permit",
                    ));
                    results.push(KaoResult {
                        key_access_object_id: k.id.clone(),
                        status: PERMIT.to_string(),
                        kas_wrapped_key: Some(wrapped),
                        error: None,
                    });
                }
                Err(reason) => {
                    decisions.push(decision(
                        p,
                        k.kao.kid.clone(),
                        &k.id,
                        &k.kao,
                        false,
                        &reason,
                    ));
                    results.push(fail(&k.id));
                }
            }
        }
        results
    }

    /// The PDP's `decrypt` decision on the bound policy's label, plus the policy's dissemination
    /// list when it has one. `Err` carries the reason.
    fn decide(&self, who: &Authenticated, p: &PolicyRequest) -> Result<(), String> {
        let label =
            match dive_ztdf::label::from_attribute_fqns(p.policy.attribute_fqns(), &self.namespace)
            {
                Ok(Some(l)) => l,
                Ok(None) => {
                    return Err(format!(
                        "the bound policy carries no {} security label",
                        self.namespace
                    ));
                }
                Err(e) => return Err(format!("the bound policy's label is invalid: {e}")),
            };
        let dissem = &p.policy.body.dissem;
        if !dissem.is_empty()
            && !dissem
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&who.attributes.unique_id))
        {
            return Err("the subject is not in the policy's dissemination list".into());
        }
        let resource = ResourceAttributes::from_label(p.policy.uuid.clone(), label, true);
        let d = self.pdp.decide(&Input::new(
            &who.attributes,
            "decrypt",
            &resource,
            &RequestContext::default(),
        ));
        if d.allow {
            Ok(())
        } else {
            Err(format!("PDP: {}", d.reason))
        }
    }
}

fn fail(id: &str) -> KaoResult {
    KaoResult {
        key_access_object_id: id.to_string(),
        status: FAIL.to_string(),
        kas_wrapped_key: None,
        error: Some(FAIL_MESSAGE.to_string()),
    }
}

fn decision(
    p: &PolicyRequest,
    kid: Option<String>,
    kao_id: &str,
    kao: &KeyAccessObject,
    permit: bool,
    reason: &str,
) -> KaoDecision {
    KaoDecision {
        policy_id: p.policy_id.clone(),
        policy_uuid: Some(p.policy.uuid.clone()),
        kao_id: kao_id.to_string(),
        kid,
        algorithm: kao.alg.as_str().to_string(),
        permit,
        reason: reason.to_string(),
    }
}
