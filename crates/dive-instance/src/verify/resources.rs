//! Checks of the resource service (`dive serve api`), acting as three test users of different
//! clearances with their real tokens: a permitted and a forbidden document get the decisions
//! and reasons the local PDP gives for the same inputs; search returns only accessible
//! documents; the store holds what the seed job made; an upload is accepted, readable back and
//! decrypts (through the real KAS) to the bytes sent; a tampered ZTDF and an incoherent label
//! are refused; and the decision log has rows for all of it.

use std::time::{Duration, Instant};

use dive_core::{Clearance, CountryCode, SecurityLabel};
use serde_json::Value;

use super::docs::{Actor, Shared};
use super::{Ctx, Found, Outcome, found};

/// How long the decision log may take to show a request (it is written in batches).
const AUDIT_WAIT: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Ctx, shared: &Shared) -> Vec<Found> {
    let mut out = Vec::new();
    let skip = if !shared.api {
        Some("the stack has no api service")
    } else if ctx.http.is_none() {
        Some("no HTTPS client (the installation PKI is unusable)")
    } else {
        None
    };
    if let Some(why) = skip {
        for a in &shared.actors {
            for (id, title) in actor_titles(&a.name) {
                out.push(skipped(id, title, why));
            }
        }
        for (id, title) in module_titles() {
            out.push(skipped(id, title, why));
        }
        return out;
    }
    let (a, b, c) = tokio::join!(
        actor_checks(ctx, shared, &shared.actors[0]),
        actor_checks(ctx, shared, &shared.actors[1]),
        actor_checks(ctx, shared, &shared.actors[2]),
    );
    let totals: Vec<(String, Option<u64>)> = [&a, &b, &c]
        .iter()
        .zip(&shared.actors)
        .map(|((_, t), actor)| (actor.name.clone(), *t))
        .collect();
    for (f, _) in [a, b, c] {
        out.extend(f);
    }
    let [
        t_search,
        t_seeded,
        t_upload,
        t_tampered,
        t_incoherent,
        t_audit,
        t_delete,
    ] = module_titles();
    out.push(found(t_search.0, t_search.1, async { search_totals(&totals) }).await);
    let (seeded, (upload, uploaded)) = tokio::join!(
        found(t_seeded.0, t_seeded.1, seeded_count(ctx, shared)),
        async {
            let mut uploaded = None;
            let f = found(t_upload.0, t_upload.1, upload(ctx, shared, &mut uploaded)).await;
            (f, uploaded)
        }
    );
    out.push(seeded);
    out.push(upload);
    let (tampered, incoherent) = tokio::join!(
        found(
            t_tampered.0,
            t_tampered.1,
            upload_tampered(ctx, shared, uploaded.as_ref())
        ),
        found(
            t_incoherent.0,
            t_incoherent.1,
            upload_incoherent(ctx, shared)
        ),
    );
    out.push(tampered);
    out.push(incoherent);
    out.push(
        found(
            t_audit.0,
            t_audit.1,
            audit(shared, uploaded.as_ref().map(|u| u.id.as_str())),
        )
        .await,
    );
    out.push(
        found(
            t_delete.0,
            t_delete.1,
            delete_upload(ctx, uploaded.as_ref()),
        )
        .await,
    );
    out
}

/// The uploader deletes its upload: 204, then GET answers 404.
async fn delete_upload(ctx: &Ctx, up: Option<&Uploaded>) -> Outcome {
    let Some(up) = up else {
        return Outcome::Skip("no uploaded document to delete".into());
    };
    let r: Result<String, String> = async {
        let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
        let path = format!("/api/resources/{}", up.id);
        let url = format!("{}{path}", ctx.cfg.urls.api);
        let status = http
            .delete(&url)
            .bearer_auth(&up.token)
            .send()
            .await
            .map_err(|e| format!("DELETE {url}: {e}"))?
            .status()
            .as_u16();
        if status != 204 {
            return Err(format!("DELETE {url}: HTTP {status}, expected 204"));
        }
        let (status, _) = get(ctx, &up.token, &path).await?;
        if status != 404 {
            return Err(format!(
                "{} is still there after the delete (HTTP {status})",
                up.id
            ));
        }
        Ok(format!(
            "{} deleted by its uploader; GET now answers 404",
            up.id
        ))
    }
    .await;
    r.into()
}

fn skipped(id: String, title: String, why: &str) -> Found {
    Found {
        id,
        title,
        outcome: Outcome::Skip(why.to_string()),
        ms: 0,
    }
}

fn actor_titles(name: &str) -> [(String, String); 3] {
    [
        (
            format!("api.{name}.permitted"),
            format!("{name} GETs a document the policy permits: 200 with the decision"),
        ),
        (
            format!("api.{name}.forbidden"),
            format!("{name} GETs a document the policy forbids: 403 with the PDP's reason"),
        ),
        (
            format!("api.{name}.search"),
            format!("{name}'s search returns only documents the policy permits"),
        ),
    ]
}

fn module_titles() -> [(String, String); 7] {
    let t = |a: &str, b: &str| (a.to_string(), b.to_string());
    [
        t(
            "api.search.totals",
            "search totals grow with clearance and stay within the store",
        ),
        t(
            "api.seeded",
            "the resource store holds exactly the seed job's documents",
        ),
        t(
            "api.upload",
            "an upload is accepted, readable back, and decrypts through the KAS to the bytes sent",
        ),
        t("api.upload.tampered", "a tampered ZTDF upload is refused"),
        t(
            "api.upload.incoherent",
            "an upload with an incoherent label is refused",
        ),
        t(
            "api.audit",
            "the decision log has rows for the requests above",
        ),
        t(
            "api.delete",
            "the uploader deletes the upload, which is gone afterwards (verify leaves nothing behind)",
        ),
    ]
}

/// GET `path` of the API with `token`: (status, JSON body).
async fn get(ctx: &Ctx, token: &str, path: &str) -> Result<(u16, Value), String> {
    let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
    let url = format!("{}{path}", ctx.cfg.urls.api);
    let r = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status().as_u16();
    let body = r
        .json::<Value>()
        .await
        .map_err(|e| format!("GET {url}: HTTP {status}, not JSON: {e}"))?;
    Ok((status, body))
}

/// The three per-user checks, and the user's search total (for the cross-user check).
async fn actor_checks(ctx: &Ctx, shared: &Shared, a: &Actor) -> (Vec<Found>, Option<u64>) {
    let [t_ok, t_deny, t_search] = actor_titles(&a.name);
    let token = match &a.token {
        Ok(t) => t.access_token.clone(),
        Err(e) => {
            return (
                vec![
                    skipped(t_ok.0, t_ok.1, e),
                    skipped(t_deny.0, t_deny.1, e),
                    skipped(t_search.0, t_search.1, e),
                ],
                None,
            );
        }
    };
    // No suitable document (an unseeded store, say) means the check cannot be made: SKIP, with
    // why. On a seeded instance these checks must pass (the end-to-end tests hold them to it).
    let permitted = found(t_ok.0, t_ok.1, async {
        let p = match &a.permitted {
            Ok(p) => p,
            Err(why) => return Outcome::Skip(why.clone()),
        };
        let r: Result<String, String> = async {
            let (status, body) = get(ctx, &token, &format!("/api/resources/{}", p.meta.id)).await?;
            if status != 200 {
                return Err(format!(
                    "{}: HTTP {status} ({}), but the local PDP permits: {}",
                    p.meta.id, body["reason"], p.reason
                ));
            }
            if body["decision"]["allow"] != true || body["decision"]["reason"] != p.reason.as_str()
            {
                return Err(format!(
                    "{}: decision {}, the local PDP says allow: {}",
                    p.meta.id, body["decision"], p.reason
                ));
            }
            Ok(format!(
                "{} ({}) → 200, {}",
                p.meta.id,
                p.meta.label.marking(),
                p.reason
            ))
        }
        .await;
        r.into()
    });
    let forbidden = found(t_deny.0, t_deny.1, async {
        let p = match &a.forbidden {
            Ok(p) => p,
            Err(why) => return Outcome::Skip(why.clone()),
        };
        let r: Result<String, String> = async {
            let (status, body) = get(ctx, &token, &format!("/api/resources/{}", p.meta.id)).await?;
            if status != 403 || body["error"] != "forbidden" {
                return Err(format!(
                    "{}: HTTP {status} {}, but the local PDP denies: {}",
                    p.meta.id, body["error"], p.reason
                ));
            }
            if body["reason"] != p.reason.as_str() {
                return Err(format!(
                    "{}: reason {}, the local PDP's is {:?}",
                    p.meta.id, body["reason"], p.reason
                ));
            }
            if body.get("title").is_some() {
                return Err(format!("{}: the denial reveals the title", p.meta.id));
            }
            Ok(format!("{} → 403, {}", p.meta.id, p.reason))
        }
        .await;
        r.into()
    });
    let mut total = None;
    let search = found(
        t_search.0,
        t_search.1,
        search(ctx, shared, a, &token, &mut total),
    );
    let (f1, f2, f3) = tokio::join!(permitted, forbidden, search);
    (vec![f1, f2, f3], total)
}

/// The first page (25 items: each is a PDP decision on both sides) all permitted by the local PDP; the total within the store; the
/// forbidden document not findable by its id, the permitted one findable.
async fn search(
    ctx: &Ctx,
    shared: &Shared,
    a: &Actor,
    token: &str,
    total_out: &mut Option<u64>,
) -> Result<String, String> {
    let store = shared.store.as_ref().map_err(Clone::clone)?;
    let pdp = shared.pdp.as_ref().map_err(Clone::clone)?;
    let subject = a.subject.as_ref().ok_or("no subject attributes")?;
    let (status, page) = get(ctx, token, "/api/resources?limit=25").await?;
    if status != 200 {
        return Err(format!("search: HTTP {status}: {page}"));
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let total = page["total"].as_u64().ok_or("search: no total")?;
    let in_store = store.metas.len() as u64;
    if total > in_store || (items.len() as u64) > total {
        return Err(format!(
            "search: total {total} with {} items, but the store holds {in_store} documents",
            items.len()
        ));
    }
    // The local decisions are CPU work: off the runtime's thread, so other checks' requests
    // proceed meanwhile.
    let (pdp, subject, metas) = (pdp.clone(), subject.clone(), store.metas.clone());
    let checked = tokio::task::spawn_blocking(move || -> Result<usize, String> {
        for it in &items {
            let id = it["id"].as_str().unwrap_or_default();
            // A document uploaded since the store was read is decided on the label shown.
            let label = match metas.iter().find(|m| m.id == id) {
                Some(m) => m.label.clone(),
                None => serde_json::from_value(it["label"].clone())
                    .map_err(|e| format!("search item {id}: label: {e}"))?,
            };
            let d = pdp.decide(&dive_api::access::input(&subject, "read", id, &label));
            if !d.allow {
                return Err(format!(
                    "search returned {id}, which the local PDP denies: {}",
                    d.reason
                ));
            }
        }
        Ok(items.len())
    })
    .await
    .map_err(|e| format!("local decisions failed: {e}"))??;
    let mut found_by_id = String::new();
    if let Ok(f) = &a.forbidden {
        let (s, p) = get(ctx, token, &format!("/api/resources?q={}", f.meta.id)).await?;
        if s != 200 || p["total"] != 0 {
            return Err(format!(
                "searching for the forbidden document {}: HTTP {s}, total {}",
                f.meta.id, p["total"]
            ));
        }
        found_by_id.push_str("; the forbidden document is not found by its id");
    }
    if let Ok(f) = &a.permitted {
        let (s, p) = get(ctx, token, &format!("/api/resources?q={}", f.meta.id)).await?;
        if s != 200 || p["total"] != 1 || p["items"][0]["id"] != f.meta.id.as_str() {
            return Err(format!(
                "searching for the permitted document {}: HTTP {s}, total {}",
                f.meta.id, p["total"]
            ));
        }
        found_by_id.push_str(", the permitted one is");
    }
    *total_out = Some(total);
    Ok(format!(
        "{total} of {in_store} documents accessible; the {checked} items of page 1 all permitted{found_by_id}"
    ))
}

/// The test users' accessible sets are nested (higher clearance, more COIs, same nation), so
/// the totals cannot decrease with the level.
fn search_totals(totals: &[(String, Option<u64>)]) -> Outcome {
    let known: Vec<(&String, u64)> = totals
        .iter()
        .filter_map(|(n, t)| t.map(|t| (n, t)))
        .collect();
    if known.len() < 2 {
        return Outcome::Skip("fewer than two users searched".into());
    }
    let text = known
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    if known.windows(2).all(|w| w[0].1 <= w[1].1) && known.iter().any(|(_, t)| *t > 0) {
        Outcome::Pass(text)
    } else {
        Outcome::Fail(format!(
            "{text}: a higher clearance should see at least as much"
        ))
    }
}

/// The running service's catalog size (its `dive_api_catalog_documents` gauge).
async fn catalog_documents(ctx: &Ctx) -> Option<f64> {
    let http = ctx.http.as_ref()?;
    let body = http
        .get(format!("{}/metrics", ctx.cfg.urls.api))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.starts_with("dive_api_catalog_documents"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
}

/// Wait (at most `limit`) until the running service's catalog holds at least `want` documents:
/// the service picks up another writer's changes (the seed job's) by polling its store, so right
/// after SEED it may not have them yet. Checking earlier would test the poll interval.
pub async fn wait_for_catalog(ctx: &Ctx, want: u64, limit: std::time::Duration) {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if catalog_documents(ctx)
            .await
            .is_some_and(|c| c as u64 >= want)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn seeded_count(ctx: &Ctx, shared: &Shared) -> Outcome {
    let has_job = ctx.planned.iter().any(|s| s.init_job && s.name == "seed");
    if !has_job || !ctx.cfg.seed.enabled {
        return Outcome::Skip("the stack has no seed job".into());
    }
    let store = match &shared.store {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(e.clone()),
    };
    let want = u64::from(ctx.cfg.seed.count);
    let seeded = match store.store.count(Some(true)).await {
        Ok(n) => n,
        Err(e) => return Outcome::Fail(format!("{}: {e}", store.location)),
    };
    if seeded != want {
        return Outcome::Fail(format!(
            "{} holds {seeded} seeded documents; the seed job makes {want} (DIVE_SEED_COUNT)",
            store.location
        ));
    }
    match &shared.record {
        Err(e) => return Outcome::Fail(e.clone()),
        Ok(None) => return Outcome::Fail("the seed job left no seed.json record".into()),
        Ok(Some(r)) if r.count != want || r.plaintext_sha256.len() as u64 != want => {
            return Outcome::Fail(format!(
                "seed.json records {} documents ({} hashes), expected {want}",
                r.count,
                r.plaintext_sha256.len()
            ));
        }
        Ok(Some(_)) => {}
    }
    // The running service's catalog holds every document of the store.
    let all = store.store.count(None).await.unwrap_or(0);
    let catalog = catalog_documents(ctx).await;
    match catalog {
        // Uploads made meanwhile (by these checks) may or may not be counted yet.
        Some(c) if (c as u64) < want => Outcome::Fail(format!(
            "the running service's catalog has {c} documents, fewer than the {want} seeded"
        )),
        Some(c) => Outcome::Pass(format!(
            "{seeded} seeded documents, as DIVE_SEED_COUNT says; {all} in the store, {c} in the service's catalog"
        )),
        None => Outcome::Fail(format!(
            "{}/metrics has no dive_api_catalog_documents",
            ctx.cfg.urls.api
        )),
    }
}

/// A form part: (name, file name, content type, bytes).
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart/form-data body.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("dive-verify-{:016x}", rand_u64());
    let mut body = Vec::new();
    for (name, file, ctype, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
                    .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n").as_bytes(),
            ),
        }
        if let Some(t) = ctype {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A nonce for boundaries and upload contents (uniqueness, not secrecy).
fn rand_u64() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}

async fn post_upload(
    ctx: &Ctx,
    token: &str,
    parts: &[Part<'_>],
) -> Result<(u16, Value, Option<String>), String> {
    let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
    let url = format!("{}/api/resources", ctx.cfg.urls.api);
    let (ctype, body) = multipart(parts);
    let r = http
        .post(&url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, ctype)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body, location))
}

/// What the upload check left for the others.
pub struct Uploaded {
    pub id: String,
    pub ztdf: Vec<u8>,
    pub token: String,
}

/// The lowest-cleared user with a token uploads an UNCLASSIFIED text releasable to its nation.
fn uploader(shared: &Shared) -> Option<(&Actor, String)> {
    shared
        .actors
        .iter()
        .find_map(|a| a.token.as_ref().ok().map(|t| (a, t.access_token.clone())))
}

async fn upload(ctx: &Ctx, shared: &Shared, out: &mut Option<Uploaded>) -> Outcome {
    let Some((a, token)) = uploader(shared) else {
        return Outcome::Skip("no test user has a token".into());
    };
    let r: Result<String, String> = async {
        let country = ctx.cfg.code;
        let label = SecurityLabel::new(Clearance::Unclassified, [country]);
        let label = serde_json::to_string(&label).map_err(|e| e.to_string())?;
        let text = format!(
            "DIVE verify upload by {} at {}, nonce {:016x}\n",
            a.name,
            super::now_rfc3339(),
            rand_u64()
        );
        let title = format!("dive verify upload {}", super::now_rfc3339());
        let (status, body, location) = post_upload(
            ctx,
            &token,
            &[
                (
                    "file",
                    Some("verify.txt"),
                    Some("text/plain"),
                    text.as_bytes(),
                ),
                ("label", None, None, label.as_bytes()),
                ("title", None, None, title.as_bytes()),
            ],
        )
        .await?;
        if status != 201 {
            return Err(format!("upload as {}: HTTP {status}: {body}", a.name));
        }
        let id = body["id"]
            .as_str()
            .ok_or("the upload answer has no id")?
            .to_string();
        let loc = location.ok_or("the upload answer has no Location")?;
        let (s, meta) = get(ctx, &token, &loc).await?;
        if s != 200 || meta["id"] != id.as_str() || meta["decision"]["allow"] != true {
            return Err(format!("GET {loc} after the upload: HTTP {s}: {meta}"));
        }
        let http = ctx.http.as_ref().ok_or("no HTTPS client")?;
        let url = format!("{}{loc}/download", ctx.cfg.urls.api);
        let r = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if r.status().as_u16() != 200 {
            return Err(format!("GET {url}: HTTP {}", r.status()));
        }
        let ztdf = r
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
            .to_vec();
        let decrypted = if shared.kas {
            let plain = super::kas::decrypt(
                ctx.http.as_ref().ok_or("no HTTPS client")?,
                &token,
                &ztdf,
                dive_kas::ClientKeyKind::EcP256,
            )
            .await?;
            if plain != text.as_bytes() {
                return Err(format!(
                    "{id}: the KAS round trip gave {} bytes that differ from the {} uploaded",
                    plain.len(),
                    text.len()
                ));
            }
            ", decrypts through the KAS to the same bytes"
        } else {
            " (no kas service: not decrypted)"
        };
        let n = ztdf.len();
        *out = Some(Uploaded {
            id: id.clone(),
            ztdf,
            token: token.clone(),
        });
        Ok(format!(
            "{} uploaded {id} ({} bytes), read it back, downloaded a {n}-byte ZTDF{decrypted}",
            a.name,
            text.len()
        ))
    }
    .await;
    r.into()
}

/// The uploaded ZTDF with one payload byte flipped (its CRC no longer matches).
async fn upload_tampered(ctx: &Ctx, _shared: &Shared, up: Option<&Uploaded>) -> Outcome {
    let Some(up) = up else {
        return Outcome::Skip("no uploaded document to tamper with".into());
    };
    let mut bad = up.ztdf.clone();
    // The payload is the archive's first entry: its data starts after the 30-byte local header
    // and the name; byte 64 is inside the ciphertext of any non-trivial document.
    let at = 64.min(bad.len().saturating_sub(1));
    bad[at] ^= 0x01;
    let r = post_upload(
        ctx,
        &up.token,
        &[("ztdf", Some("tampered.tdf"), Some("application/zip"), &bad)],
    )
    .await;
    match r {
        Err(e) => Outcome::Fail(e),
        Ok((422, body, _)) if body["error"] == "ztdf_invalid" => Outcome::Pass(format!(
            "422 ztdf_invalid: {}",
            body["detail"].as_str().unwrap_or_default()
        )),
        Ok((s, body, _)) => Outcome::Fail(format!(
            "a ZTDF with a flipped payload byte got HTTP {s}: {body}"
        )),
    }
}

/// A NOFORN label releasable beyond USA (NOFORN requires COI US-ONLY and exactly USA).
async fn upload_incoherent(ctx: &Ctx, shared: &Shared) -> Outcome {
    let Some((_, token)) = uploader(shared) else {
        return Outcome::Skip("no test user has a token".into());
    };
    let own = ctx.cfg.code;
    let other = CountryCode::new(if own.as_str() == "FRA" { "DEU" } else { "FRA" });
    let Ok(other) = other else {
        return Outcome::Fail("no second country".into());
    };
    let label = SecurityLabel::new(Clearance::Unclassified, [own, other]).with_caveats(["NOFORN"]);
    let label = serde_json::to_string(&label).unwrap_or_default();
    let r = post_upload(
        ctx,
        &token,
        &[
            (
                "file",
                Some("incoherent.txt"),
                Some("text/plain"),
                b"incoherent label\n",
            ),
            ("label", None, None, label.as_bytes()),
        ],
    )
    .await;
    match r {
        Err(e) => Outcome::Fail(e),
        Ok((422, body, _)) if body["error"] == "incoherent_label" => Outcome::Pass(format!(
            "NOFORN releasable to {own}, {other}: 422 incoherent_label: {}",
            body["message"].as_str().unwrap_or_default()
        )),
        Ok((s, body, _)) => Outcome::Fail(format!(
            "NOFORN releasable to {own}, {other}: HTTP {s}: {body}"
        )),
    }
}

/// Every GET above (allow and deny, per user) and the upload have decision-log rows.
async fn audit(shared: &Shared, uploaded: Option<&str>) -> Outcome {
    let store = match &shared.store {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(e.clone()),
    };
    let mut want: Vec<(String, String, &str, bool)> = Vec::new();
    for a in &shared.actors {
        if a.token.is_err() {
            continue;
        }
        if let Ok(p) = &a.permitted {
            want.push((a.unique_id.clone(), p.meta.id.clone(), "read", true));
        }
        if let Ok(p) = &a.forbidden {
            want.push((a.unique_id.clone(), p.meta.id.clone(), "read", false));
        }
    }
    if let (Some(id), Some((a, _))) = (uploaded, uploader(shared)) {
        want.push((a.unique_id.clone(), id.to_string(), "upload", true));
    }
    if want.is_empty() {
        return Outcome::Skip("no request was made".into());
    }
    let deadline = Instant::now() + AUDIT_WAIT;
    loop {
        let q = dive_api::audit::AuditQuery {
            since_ms: Some(shared.started_ms - 1000),
            limit: 500,
            ..Default::default()
        };
        let rows = match store.store.audit_page(&q).await {
            Ok(r) => r,
            Err(e) => return Outcome::Fail(format!("{}: {e}", store.location)),
        };
        let missing: Vec<String> = want
            .iter()
            .filter(|(sub, id, action, allow)| {
                !rows.iter().any(|r| {
                    &r.subject == sub
                        && r.resource_id.as_deref() == Some(id.as_str())
                        && r.action == *action
                        && r.allow == *allow
                })
            })
            .map(|(sub, id, action, allow)| {
                format!(
                    "{action} {} of {id} by {sub}",
                    if *allow { "allow" } else { "deny" }
                )
            })
            .collect();
        if missing.is_empty() {
            let searches = rows.iter().filter(|r| r.action == "search").count();
            return Outcome::Pass(format!(
                "{} rows since the checks began: every read allow and deny, the upload, {searches} searches",
                rows.len()
            ));
        }
        if Instant::now() >= deadline {
            return Outcome::Fail(format!("no decision-log row for: {}", missing.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
