//! Checks of the Key Access Service (`dive serve kas`), as a client does it (the path of
//! `dive ztdf decrypt --kas`: download the ZTDF, rewrap its key access objects at the KAS with
//! an ephemeral key, decrypt): a permitted document decrypts to the seeded bytes (their SHA-256
//! is in the seed job's record); a forbidden document's key is refused; an unauthorised user,
//! an expired token and a foreign issuer's token get the very same outward answer; and the
//! KAS audit log has rows for all of it with the real reasons.

use std::io::Cursor;
use std::time::{Duration, Instant};

use dive_kas::{ClientKeyKind, KeyAlgorithm, RemoteKas, Rewrapped};
use dive_ztdf::{KeyAccessObject, TdfReader};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::docs::{Actor, Shared};
use super::{Ctx, Found, Outcome, found};

/// How long the KAS audit may take to show a request (it is written before the answer; this
/// only covers a slow disk).
const AUDIT_WAIT: Duration = Duration::from_secs(3);

/// An issuer no instance trusts.
const FOREIGN_ISSUER: &str = "https://foreign-idp.invalid";

pub async fn run(ctx: &Ctx, shared: &Shared) -> Vec<Found> {
    let titles = titles();
    let skip = if !shared.kas {
        Some("the stack has no kas service")
    } else if ctx.http.is_none() {
        Some("no HTTPS client (the installation PKI is unusable)")
    } else {
        None
    };
    if let Some(why) = skip {
        return titles
            .into_iter()
            .map(|(id, title)| Found {
                id,
                title,
                outcome: Outcome::Skip(why.to_string()),
                ms: 0,
            })
            .collect();
    }
    let [t_keys, t_round, t_forbidden, t_same, t_audit] = titles;
    let mut roundtrip_doc = None;
    let mut same_docs = None;
    let (keys, round, forbidden, same) = tokio::join!(
        found(t_keys.0, t_keys.1, public_keys(ctx)),
        found(
            t_round.0,
            t_round.1,
            roundtrip(ctx, shared, &mut roundtrip_doc)
        ),
        found(t_forbidden.0, t_forbidden.1, forbidden_rewrap(ctx, shared)),
        found(
            t_same.0,
            t_same.1,
            same_response(ctx, shared, &mut same_docs)
        ),
    );
    let audit = found(
        t_audit.0,
        t_audit.1,
        audit(ctx, shared, roundtrip_doc, same_docs),
    )
    .await;
    vec![keys, round, forbidden, same, audit]
}

fn titles() -> [(String, String); 5] {
    let t = |a: &str, b: &str| (a.to_string(), b.to_string());
    [
        t(
            "kas.public_keys",
            "the KAS publishes its RSA-2048 and EC P-256 public keys with key ids",
        ),
        t(
            "kas.roundtrip",
            "a permitted ZTDF, downloaded and rewrapped at the KAS with an ephemeral key, decrypts to the original bytes",
        ),
        t(
            "kas.forbidden",
            "the KAS refuses the key of a document the policy forbids the caller",
        ),
        t(
            "kas.same_response",
            "an unauthorised user, an expired token and a foreign issuer's token get the same KAS answer",
        ),
        t(
            "kas.audit",
            "the KAS audit log has rows for these rewraps, with the real reasons",
        ),
    ]
}

async fn public_keys(ctx: &Ctx) -> Result<String, String> {
    let http = ctx.http.clone().ok_or("no HTTPS client")?;
    let kas = RemoteKas::new(http, ctx.cfg.urls.kas.clone(), "");
    let mut found = Vec::new();
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcP256] {
        let (pem, kid) = kas.public_key(alg).await.map_err(|e| e.to_string())?;
        if !pem.contains("BEGIN PUBLIC KEY") || kid.is_empty() {
            return Err(format!("{}: no PEM public key with a kid", alg.as_str()));
        }
        found.push(format!("{} kid {kid}", alg.as_str()));
    }
    Ok(found.join(", "))
}

/// The policy (base64, as stored) and KAOs of a ZTDF.
fn parts(ztdf: &[u8]) -> Result<(String, Vec<KeyAccessObject>), String> {
    let reader = TdfReader::open(Cursor::new(ztdf)).map_err(|e| format!("the ZTDF: {e}"))?;
    let policy = reader.manifest().encryption_information.policy.clone();
    Ok((policy, reader.key_access_objects().to_vec()))
}

/// Rewrap every KAO of `ztdf` at the KAS it names, as the holder of `token`.
async fn rewrap(
    http: &reqwest::Client,
    token: &str,
    ztdf: &[u8],
    kind: ClientKeyKind,
) -> Result<Rewrapped, String> {
    let (policy, kaos) = parts(ztdf)?;
    dive_kas::rewrap_all(http, token, &policy, &kaos, kind, None)
        .await
        .map_err(|e| e.to_string())
}

/// Download-side decryption through the KAS, as `dive ztdf decrypt --kas` does it.
pub(super) async fn decrypt(
    http: &reqwest::Client,
    token: &str,
    ztdf: &[u8],
    kind: ClientKeyKind,
) -> Result<Vec<u8>, String> {
    dive_kas::decrypt_ztdf(http, token, ztdf, kind)
        .await
        .map_err(|e| e.to_string())
}

/// The highest-cleared user with a permitted document downloads it through the API and
/// decrypts it with an ephemeral EC key (the CLI's default).
async fn roundtrip(ctx: &Ctx, shared: &Shared, doc: &mut Option<(String, String)>) -> Outcome {
    let Some((a, token, pick)) =
        shared
            .actors
            .iter()
            .rev()
            .find_map(|a| match (&a.token, &a.permitted) {
                (Ok(t), Ok(p)) => Some((a, t, p)),
                _ => None,
            })
    else {
        return Outcome::Skip(
            shared
                .actors
                .iter()
                .find_map(|a| a.permitted.as_ref().err().cloned())
                .unwrap_or_else(|| "no user has a permitted document".into()),
        );
    };
    let r: Result<String, String> = async {
        let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
        let id = &pick.meta.id;
        let ztdf = if shared.api {
            let url = format!("{}/api/resources/{id}/download", ctx.cfg.urls.api);
            let r = http
                .get(&url)
                .bearer_auth(&token.access_token)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if r.status().as_u16() != 200 {
                return Err(format!("GET {url}: HTTP {}", r.status()));
            }
            r.bytes()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?
                .to_vec()
        } else {
            store_ztdf(shared, id).await?
        };
        let t0 = Instant::now();
        let plain = decrypt(http, &token.access_token, &ztdf, ClientKeyKind::EcP256).await?;
        let ms = t0.elapsed().as_millis();
        *doc = Some((a.unique_id.clone(), pick.meta.policy_uuid.clone()));
        let sha = hex::encode(Sha256::digest(&plain));
        let recorded = shared
            .record
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .and_then(|r| r.plaintext_sha256.get(id));
        match recorded {
            Some(want) if *want == sha => Ok(format!(
                "{} decrypted {id} ({}, {} bytes) in {ms} ms; SHA-256 equals the seed record's",
                a.name,
                pick.meta.label.marking(),
                plain.len()
            )),
            Some(want) => Err(format!(
                "{id} decrypted to {} bytes with SHA-256 {sha}, the seed job recorded {want}",
                plain.len()
            )),
            // Not a seeded document (no seed job): its stored size is what can be compared.
            None if plain.len() as u64 == pick.meta.size => Ok(format!(
                "{} decrypted {id} ({} bytes, as stored; no seed record to compare the bytes with)",
                a.name,
                plain.len()
            )),
            None => Err(format!(
                "{id} decrypted to {} bytes, the store says {}",
                plain.len(),
                pick.meta.size
            )),
        }
    }
    .await;
    r.into()
}

async fn store_ztdf(shared: &Shared, id: &str) -> Result<Vec<u8>, String> {
    let store = shared.store.as_ref().map_err(Clone::clone)?;
    store
        .store
        .ztdf(id)
        .await
        .map_err(|e| format!("{}: {e}", store.location))?
        .ok_or_else(|| format!("{}: no ZTDF for {id}", store.location))
}

/// The lowest-cleared user with a token and a forbidden document.
fn denied_actor(shared: &Shared) -> Option<(&Actor, String)> {
    shared
        .actors
        .iter()
        .find_map(|a| match (&a.token, &a.forbidden) {
            (Ok(t), Ok(_)) => Some((a, t.access_token.clone())),
            _ => None,
        })
}

/// The API would not hand the ZTDF out, so it is read from the store, as a copy obtained
/// elsewhere would be.
async fn forbidden_rewrap(ctx: &Ctx, shared: &Shared) -> Outcome {
    let Some((a, token)) = denied_actor(shared) else {
        return Outcome::Skip("no user has a token and a forbidden document".into());
    };
    let Ok(pick) = &a.forbidden else {
        return Outcome::Skip("no forbidden document".into());
    };
    let r: Result<String, String> = async {
        let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
        let ztdf = store_ztdf(shared, &pick.meta.id).await?;
        let rewrapped = rewrap(http, &token, &ztdf, ClientKeyKind::EcP256).await?;
        if rewrapped.released() > 0 {
            return Err(format!(
                "the KAS released the key of {} to {}, whom the PDP denies: {}",
                pick.meta.id, a.name, pick.reason
            ));
        }
        let answers: Vec<String> = rewrapped
            .outcomes()
            .filter_map(|(_, r)| r.err().map(|e| e.to_string()))
            .collect();
        Ok(format!(
            "{} for {} ({}): {}",
            pick.meta.id,
            a.name,
            pick.reason,
            answers.join("; ")
        ))
    }
    .await;
    r.into()
}

/// The claims of a real token, re-signed by the instance IdP's real active key with an expiry
/// in the past: exactly what an expired token is.
async fn expired_token(ctx: &Ctx, token: &str, claims: &Value) -> Result<String, String> {
    let header = dive_jose::decode_header(token).map_err(|e| e.to_string())?;
    let alg = dive_jose::Alg::parse(&header.alg).map_err(|e| e.to_string())?;
    let db = dive_idp::Db::open(&ctx.paths.idp_db().display().to_string())
        .await
        .map_err(|e| e.to_string())?;
    // With the token's own algorithm and no age limit this only reads the keys (no rotation).
    let ring = dive_idp::keys::KeyRing::load(&db, alg, i64::MAX).await;
    db.pool.close().await;
    let ring = ring.map_err(|e| e.to_string())?;
    let mut c: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    let now = dive_jose::now();
    c.insert("iat".into(), json!(now - 3600));
    c.insert("nbf".into(), json!(now - 3600));
    c.insert("exp".into(), json!(now - 1800));
    c.insert("jti".into(), json!(format!("verify-expired-{now}")));
    ring.active().sign("at+jwt", &c).map_err(|e| e.to_string())
}

/// The same claims from an issuer no instance trusts, signed by its own fresh key.
fn foreign_token(claims: &Value) -> Result<String, String> {
    let key = dive_jose::SigningKey::generate("foreign-1", dive_jose::Alg::ES256)
        .map_err(|e| e.to_string())?;
    let mut c: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    let now = dive_jose::now();
    c.insert("iss".into(), json!(FOREIGN_ISSUER));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + 300));
    c.insert("jti".into(), json!(format!("verify-foreign-{now}")));
    key.sign("at+jwt", &c).map_err(|e| e.to_string())
}

/// One signed rewrap request for a forbidden document, sent with three bearer tokens: the
/// denied user's valid one, an expired one and a foreign one. Status and body must be equal.
async fn same_response(ctx: &Ctx, shared: &Shared, doc: &mut Option<(String, String)>) -> Outcome {
    let Some((a, token)) = denied_actor(shared) else {
        return Outcome::Skip("no user has a token and a forbidden document".into());
    };
    let (Ok(pick), Ok(t)) = (&a.forbidden, &a.token) else {
        return Outcome::Skip("no forbidden document".into());
    };
    let r: Result<String, String> = async {
        let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
        let ztdf = store_ztdf(shared, &pick.meta.id).await?;
        let (policy, kaos) = parts(&ztdf)?;
        let url = &kaos.first().ok_or("the ZTDF has no key access object")?.kas;
        // An EC client key (cheap to make): the KAS creates a session key only to wrap a
        // released share, so refusals carry none and equal answers are byte-for-byte equal.
        let kas = RemoteKas::new(http.clone(), url, "").with_client_key(ClientKeyKind::EcP256);
        let srt = kas
            .signed_request(&policy, &kaos)
            .map_err(|e| e.to_string())?;
        let expired = expired_token(ctx, &token, &t.claims).await?;
        let foreign = foreign_token(&t.claims)?;
        let endpoint = kas.rewrap_endpoint();
        let mut answers = Vec::new();
        for (what, bearer) in [
            ("unauthorised user", token.as_str()),
            ("expired token", expired.as_str()),
            ("foreign-issuer token", foreign.as_str()),
        ] {
            let r = http
                .post(&endpoint)
                .bearer_auth(bearer)
                .json(&json!({"signedRequestToken": srt}))
                .send()
                .await
                .map_err(|e| format!("POST {endpoint}: {e}"))?;
            let status = r.status().as_u16();
            let body = r
                .text()
                .await
                .map_err(|e| format!("POST {endpoint}: {e}"))?;
            answers.push((what, status, body));
        }
        let (_, s0, b0) = &answers[0];
        let parsed: Value = serde_json::from_str(b0).unwrap_or(Value::Null);
        let results = parsed["responses"][0]["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if *s0 != 200
            || results.is_empty()
            || !results
                .iter()
                .all(|r| r["status"] == "fail" && r["error"] == "forbidden")
        {
            return Err(format!(
                "the unauthorised user's answer is HTTP {s0} {b0}, not every KAO fail/forbidden"
            ));
        }
        for (what, s, b) in &answers[1..] {
            if s != s0 || b != b0 {
                return Err(format!(
                    "the {what} got HTTP {s} {b}; the unauthorised user got HTTP {s0} {b0}"
                ));
            }
        }
        *doc = Some((a.unique_id.clone(), pick.meta.policy_uuid.clone()));
        Ok(format!(
            "all three: HTTP {s0}, {} byte(s) of identical body, every KAO fail/forbidden",
            b0.len()
        ))
    }
    .await;
    r.into()
}

/// Rows since the checks began: a permit for the round trip, and fails with the real reasons
/// (a PDP denial of the unauthorised user, an expired token, an untrusted issuer).
async fn audit(
    ctx: &Ctx,
    shared: &Shared,
    roundtrip: Option<(String, String)>,
    denied: Option<(String, String)>,
) -> Outcome {
    if roundtrip.is_none() && denied.is_none() {
        return Outcome::Skip("no rewrap was made".into());
    }
    let location = ctx.paths.dir.join("kas.db").display().to_string();
    if !std::path::Path::new(&location).exists() {
        return Outcome::Fail(format!("the KAS audit log {location} does not exist"));
    }
    let log = match dive_kas::audit::AuditLog::open(&location).await {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(format!("{location}: {e}")),
    };
    let since = shared.started_ms - 1000;
    let deadline = Instant::now() + AUDIT_WAIT;
    loop {
        let rows = match log.recent(1000).await {
            Ok(r) => r,
            Err(e) => return Outcome::Fail(format!("{location}: {e}")),
        };
        let rows: Vec<_> = rows.into_iter().filter(|r| r.at_ms >= since).collect();
        let mut missing = Vec::new();
        if let Some((sub, policy)) = &roundtrip
            && !rows.iter().any(|r| {
                r.decision == "permit"
                    && r.subject.as_deref() == Some(sub)
                    && r.policy_uuid.as_deref() == Some(policy)
            })
        {
            missing.push(format!("a permit for {sub} on policy {policy}"));
        }
        if let Some((sub, policy)) = &denied {
            let has = |f: &dyn Fn(&dive_kas::audit::AuditRow) -> bool| {
                rows.iter().any(|r| r.decision == "fail" && f(r))
            };
            if !has(&|r| {
                r.subject.as_deref() == Some(sub)
                    && r.policy_uuid.as_deref() == Some(policy)
                    && r.reason.starts_with("PDP:")
            }) {
                missing.push(format!("a PDP denial of {sub} on policy {policy}"));
            }
            if !has(&|r| r.reason.contains("expired")) {
                missing.push("a refusal of the expired token".into());
            }
            if !has(&|r| r.reason.contains("not trusted")) {
                missing.push("a refusal of the foreign issuer's token".into());
            }
        }
        if missing.is_empty() {
            return Outcome::Pass(format!(
                "{} rows since the checks began, with the permit and each refusal's real reason",
                rows.len()
            ));
        }
        if Instant::now() >= deadline {
            return Outcome::Fail(format!("{location}: no row for {}", missing.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
