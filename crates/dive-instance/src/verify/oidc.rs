//! Checks of the IdP's protocol surface: discovery, JWKS, the services' confidential clients
//! (client credentials), and the revocation list KAS and API poll.

use serde_json::Value;

use super::{Ctx, Recorder};
use crate::secrets;

pub async fn run(ctx: &mut Ctx, rec: &mut Recorder<'_>) {
    let Some(http) = ctx.http.clone() else {
        return;
    };
    let issuer = ctx.cfg.urls.issuer.clone();
    let mut discovery = None;
    rec.check(
        "oidc.discovery",
        "discovery document names this issuer, the code flow with PKCE S256 and its endpoints",
        async {
            let url = format!("{issuer}/.well-known/openid-configuration");
            let d = get_json(&http, &url).await?;
            if d["issuer"] != issuer.as_str() {
                return Err(format!("issuer is {}, expected {issuer}", d["issuer"]));
            }
            for key in [
                "authorization_endpoint",
                "token_endpoint",
                "userinfo_endpoint",
                "jwks_uri",
            ] {
                let v = d[key].as_str().unwrap_or_default();
                if !v.starts_with(&issuer) {
                    return Err(format!("{key} {v:?} is not under the issuer"));
                }
            }
            let s256 = d["code_challenge_methods_supported"]
                .as_array()
                .is_some_and(|a| a.iter().any(|m| m == "S256"));
            if !s256 {
                return Err("PKCE S256 is not advertised".into());
            }
            discovery = Some(d);
            Ok::<_, String>(url)
        },
    )
    .await;
    ctx.discovery = discovery.clone();
    let jwks_uri = discovery
        .as_ref()
        .and_then(|d| d["jwks_uri"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{issuer}/jwks"));
    rec.check(
        "oidc.jwks",
        "JWKS publishes public RS256/ES256 signing keys with key ids",
        async {
            let jwks = get_json(&http, &jwks_uri).await?;
            let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
            if keys.is_empty() {
                return Err(format!("{jwks_uri}: no keys"));
            }
            for k in &keys {
                if k.get("d").is_some() || k.get("p").is_some() {
                    return Err(format!("{jwks_uri}: a key exposes private parameters"));
                }
                if k["kid"].as_str().unwrap_or_default().is_empty() {
                    return Err(format!("{jwks_uri}: a key has no kid"));
                }
                if !matches!(k["alg"].as_str(), Some("RS256" | "ES256")) {
                    return Err(format!(
                        "{jwks_uri}: key alg {} is not RS256/ES256",
                        k["alg"]
                    ));
                }
            }
            Ok::<_, String>(format!(
                "{} key(s): {}",
                keys.len(),
                keys.iter()
                    .filter_map(|k| k["alg"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        },
    )
    .await;

    let token_endpoint = discovery
        .as_ref()
        .and_then(|d| d["token_endpoint"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{issuer}/token"));
    for service in ["kas", "api"] {
        let http = http.clone();
        let paths = ctx.paths.clone();
        let token_endpoint = token_endpoint.clone();
        rec.check(
            format!("clients.{service}"),
            format!("the {service} client authenticates with its secret (client credentials)"),
            async move {
                let s = secrets::read(&paths, service).map_err(|e| e.to_string())?;
                let r = http
                    .post(&token_endpoint)
                    .basic_auth(&s.client_id, Some(&s.client_secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .map_err(|e| format!("POST {token_endpoint}: {e}"))?;
                let status = r.status();
                let body: Value = r.json().await.map_err(|e| e.to_string())?;
                if status.is_success() && body["access_token"].is_string() {
                    Ok::<_, String>(format!("client {} got an access token", s.client_id))
                } else {
                    Err(format!("client {}: HTTP {status}: {body}", s.client_id))
                }
            },
        )
        .await;
    }
    let paths = ctx.paths.clone();
    rec.check(
        "clients.revocations",
        "the revocation list answers the kas client (what KAS and API poll)",
        async {
            let s = secrets::read(&paths, "kas").map_err(|e| e.to_string())?;
            let url = format!("{issuer}/revocations?since=0");
            let r = http
                .get(&url)
                .basic_auth(&s.client_id, Some(&s.client_secret))
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = r.status();
            let body: Value = r.json().await.map_err(|e| e.to_string())?;
            if status.is_success() && body["jtis"].is_array() && body["subjects"].is_array() {
                Ok::<_, String>(format!(
                    "{} revoked token(s), {} revoked subject(s)",
                    body["jtis"].as_array().map_or(0, Vec::len),
                    body["subjects"].as_array().map_or(0, Vec::len)
                ))
            } else {
                Err(format!("GET {url}: HTTP {status}: {body}"))
            }
        },
    )
    .await;
    let paths = ctx.paths.clone();
    let cfg = ctx.cfg.clone();
    rec.check(
        "clients.registered",
        "the web and CLI clients are registered as configured",
        async {
            let db = dive_idp::Db::open(&paths.idp_db().display().to_string())
                .await
                .map_err(|e| e.to_string())?;
            let ok = secrets::clients_registered(&db, &cfg, &paths).await;
            db.pool.close().await;
            match ok {
                Ok(true) => Ok::<_, String>(format!(
                    "{}, {} and {} (web redirect {}/auth/callback)",
                    secrets::client_id("web"),
                    secrets::CLI_CLIENT_ID,
                    "the service clients",
                    cfg.urls.web
                )),
                Ok(false) => Err(
                    "a registration does not match its secret or redirect URIs; run deploy".into(),
                ),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}

pub(super) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    r.json().await.map_err(|e| format!("GET {url}: {e}"))
}
