//! This instance's KAS public key, for encrypting uploads: fetched from the OpenTDF endpoint
//! `GET <kas>/v2/kas_public_key?algorithm=rsa:2048` (`<kas>` is the KAS URL if it ends in `/kas`,
//! else the URL plus `/kas`, as OpenTDF clients do) and cached.
//!
//! The cached key is refreshed after [`REFRESH`]; if the KAS cannot be reached then, the cached
//! key keeps being used (a rotated-out key still decrypts: the KAS keeps old keys), and without
//! any key the upload fails with an error naming the KAS.

use std::time::{Duration, Instant};

use dive_ztdf::{KasPublicKey, Recipient};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::ApiError;

/// How long a fetched key is used before asking the KAS again.
pub const REFRESH: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyResponse {
    public_key: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The KAS's public key, fetched on demand and cached.
pub struct KasKeys {
    url: String,
    http: reqwest::Client,
    cached: Mutex<Option<(Instant, Recipient)>>,
}

impl KasKeys {
    /// `kas_url` is the KAS's base URL as it is written into key access objects.
    pub fn new(kas_url: &str, http: reqwest::Client) -> KasKeys {
        KasKeys {
            url: kas_url.trim_end_matches('/').to_string(),
            http,
            cached: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The recipient (URL, kid, key) uploads are encrypted to.
    pub async fn recipient(&self) -> Result<Recipient, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, r)) = cached.as_ref()
            && at.elapsed() < REFRESH
        {
            return Ok(r.clone());
        }
        match self.fetch().await {
            Ok(r) => {
                *cached = Some((Instant::now(), r.clone()));
                Ok(r)
            }
            Err(e) => match cached.as_ref() {
                Some((_, r)) => {
                    tracing::warn!(error = %e, "KAS public key refresh failed; using the cached key");
                    Ok(r.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Recipient, ApiError> {
        let err = |why: String| ApiError::Kas {
            url: self.url.clone(),
            why,
        };
        let resp = self
            .http
            .get(public_key_url(&self.url))
            .send()
            .await
            .map_err(|e| err(format!("cannot fetch the public key: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!("public key request answered {status}")));
        }
        let body: PublicKeyResponse = resp.json().await.map_err(|e| {
            err(format!(
                "public key response is not {{publicKey, kid}}: {e}"
            ))
        })?;
        let key = KasPublicKey::from_pem(&body.public_key).map_err(|e| err(e.to_string()))?;
        tracing::info!(kas = %self.url, kid = ?body.kid, "KAS public key fetched");
        Ok(Recipient::new(self.url.clone(), body.kid, key))
    }
}

/// `<kas>/v2/kas_public_key?algorithm=rsa:2048`, whether or not the URL already ends in `/kas`.
pub fn public_key_url(kas_url: &str) -> String {
    let base = kas_url.trim_end_matches('/');
    if base.ends_with("/kas") {
        format!("{base}/v2/kas_public_key?algorithm=rsa:2048")
    } else {
        format!("{base}/kas/v2/kas_public_key?algorithm=rsa:2048")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_key_url_follows_the_opentdf_rule() {
        assert_eq!(
            super::public_key_url("https://h:9443/"),
            "https://h:9443/kas/v2/kas_public_key?algorithm=rsa:2048"
        );
        assert_eq!(
            super::public_key_url("https://h:8443/kas"),
            "https://h:8443/kas/v2/kas_public_key?algorithm=rsa:2048"
        );
    }
}
