//! OAuth clients: how they authenticate, where they may be redirected, which grants they use.

use dive_jose::Jwks;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::IdpError;
use crate::store::Db;
use crate::util::{now, random_token, sha256_hex};

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientAuth {
    /// A public client (browser or native app): no secret, PKCE mandatory.
    None,
    /// `client_secret_basic` or `client_secret_post`; only the secret's SHA-256 is stored.
    Secret {
        #[serde(skip)]
        hash: String,
    },
    /// `private_key_jwt` with the client's public keys.
    PrivateKeyJwt { jwks: Jwks },
}

/// The grants DIVE supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<GrantType> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub client_id: String,
    pub auth: ClientAuth,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// Privileged scopes the client may ask for with client_credentials (e.g. [`ADMIN_SCOPE`]).
    pub scopes: Vec<String>,
}

impl Client {
    /// Whether `secret` is this confidential client's secret (constant-time comparison of the
    /// stored SHA-256).
    pub fn secret_matches(&self, secret: &str) -> bool {
        matches!(&self.auth, ClientAuth::Secret { hash } if crate::util::ct_eq(hash, &crate::util::sha256_hex(secret)))
    }
}

/// The scope of the admin API (`/admin/...`): granted only to confidential clients registered
/// with it, through client_credentials.
pub const ADMIN_SCOPE: &str = "admin";

/// Privileged scopes a client can be registered with.
pub const PRIVILEGED_SCOPES: &[&str] = &[ADMIN_SCOPE];

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth == ClientAuth::None
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// What is needed to register a client.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: String,
    /// `None` for a public client, `Some(Secret)` to generate a secret, or keys for
    /// `private_key_jwt`.
    pub auth: NewClientAuth,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
}

#[derive(Debug, Clone)]
pub enum NewClientAuth {
    Public,
    /// Generate a secret (returned once).
    GenerateSecret,
    /// Use this secret (e.g. one agreed with a federation partner).
    Secret(String),
    PrivateKeyJwt(Jwks),
}

fn validate_redirect(uri: &str) -> Result<(), IdpError> {
    let parsed = url::Url::parse(uri)
        .map_err(|e| IdpError::invalid("redirect_uri", format!("{uri}: {e}")))?;
    if parsed.fragment().is_some() {
        return Err(IdpError::invalid(
            "redirect_uri",
            format!("{uri}: must not have a fragment"),
        ));
    }
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        s => Err(IdpError::invalid(
            "redirect_uri",
            format!("{uri}: scheme {s} not allowed (https, or http on loopback)"),
        )),
    }
}

impl NewClient {
    /// Check the client id, redirect URIs, grants and credentials; names the first bad field.
    pub fn validate(&self) -> Result<(), IdpError> {
        let id = &self.client_id;
        if id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(IdpError::invalid("client_id", format!("{id:?}")));
        }
        for uri in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
        {
            validate_redirect(uri)?;
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty()
        {
            return Err(IdpError::invalid(
                "redirect_uris",
                "the authorization_code grant needs at least one redirect URI",
            ));
        }
        match &self.auth {
            NewClientAuth::Public if self.grant_types.contains(&GrantType::ClientCredentials) => {
                Err(IdpError::invalid(
                    "grant_types",
                    "a public client cannot use client_credentials",
                ))
            }
            NewClientAuth::Secret(s) if s.len() < 32 => Err(IdpError::invalid(
                "client_secret",
                "must be at least 32 characters",
            )),
            NewClientAuth::PrivateKeyJwt(jwks) if dive_jose::KeySet::from_jwks(jwks).is_empty() => {
                Err(IdpError::invalid(
                    "jwks",
                    "no usable RS256 or ES256 signing key",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Register a client. Returns it with the generated secret, if one was generated.
pub async fn create(db: &Db, new: &NewClient) -> Result<(Client, Option<String>), IdpError> {
    new.validate()?;
    let id = &new.client_id;
    let (secret, secret_hash, jwks) = match &new.auth {
        NewClientAuth::Public => (None, None, None),
        NewClientAuth::GenerateSecret => {
            let s = random_token(32);
            let h = sha256_hex(&s);
            (Some(s), Some(h), None)
        }
        NewClientAuth::Secret(s) => (None, Some(sha256_hex(s)), None),
        NewClientAuth::PrivateKeyJwt(jwks) => (
            None,
            None,
            Some(serde_json::to_string(jwks).unwrap_or_default()),
        ),
    };
    if find(db, id).await?.is_some() {
        return Err(IdpError::Exists(format!("client {id}")));
    }
    let grants: Vec<&str> = new.grant_types.iter().map(|g| g.as_str()).collect();
    sqlx::query(
        "INSERT INTO idp_clients (client_id, secret_hash, jwks, redirect_uris, \
         post_logout_redirect_uris, grant_types, scopes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, '[]', $7)",
    )
    .bind(id)
    .bind(secret_hash)
    .bind(jwks)
    .bind(serde_json::to_string(&new.redirect_uris).unwrap_or_default())
    .bind(serde_json::to_string(&new.post_logout_redirect_uris).unwrap_or_default())
    .bind(serde_json::to_string(&grants).unwrap_or_default())
    .bind(now())
    .execute(&db.pool)
    .await?;
    let client = find(db, id)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("client {id}")))?;
    Ok((client, secret))
}

fn from_row(row: &AnyRow) -> Result<Client, IdpError> {
    let corrupt = |w: &str| IdpError::Corrupt(format!("client row: {w}"));
    let secret: Option<String> = row.try_get("secret_hash")?;
    let jwks: Option<String> = row.try_get("jwks")?;
    let auth = match (secret, jwks) {
        (Some(hash), _) => ClientAuth::Secret { hash },
        (None, Some(j)) => ClientAuth::PrivateKeyJwt {
            jwks: serde_json::from_str(&j).map_err(|_| corrupt("jwks"))?,
        },
        (None, None) => ClientAuth::None,
    };
    let grants: Vec<String> = serde_json::from_str(&row.try_get::<String, _>("grant_types")?)
        .map_err(|_| corrupt("grant_types"))?;
    Ok(Client {
        client_id: row.try_get("client_id")?,
        auth,
        redirect_uris: serde_json::from_str(&row.try_get::<String, _>("redirect_uris")?)
            .map_err(|_| corrupt("redirect_uris"))?,
        post_logout_redirect_uris: serde_json::from_str(
            &row.try_get::<String, _>("post_logout_redirect_uris")?,
        )
        .map_err(|_| corrupt("post_logout_redirect_uris"))?,
        grant_types: grants.iter().filter_map(|g| GrantType::parse(g)).collect(),
        scopes: serde_json::from_str(&row.try_get::<String, _>("scopes")?)
            .map_err(|_| corrupt("scopes"))?,
    })
}

pub async fn find(db: &Db, client_id: &str) -> Result<Option<Client>, IdpError> {
    let row = sqlx::query(
        "SELECT client_id, secret_hash, jwks, redirect_uris, post_logout_redirect_uris, \
         grant_types, scopes FROM idp_clients WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<Client>, IdpError> {
    let rows = sqlx::query(
        "SELECT client_id, secret_hash, jwks, redirect_uris, post_logout_redirect_uris, \
         grant_types, scopes FROM idp_clients ORDER BY client_id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Set the privileged scopes of a confidential client that may use client_credentials.
pub async fn set_scopes(db: &Db, client_id: &str, scopes: &[String]) -> Result<Client, IdpError> {
    let client = find(db, client_id)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("client {client_id}")))?;
    if let Some(bad) = scopes
        .iter()
        .find(|s| !PRIVILEGED_SCOPES.contains(&s.as_str()))
    {
        return Err(IdpError::invalid(
            "scopes",
            format!(
                "unknown scope {bad:?} (known: {})",
                PRIVILEGED_SCOPES.join(", ")
            ),
        ));
    }
    if !scopes.is_empty() && (client.is_public() || !client.allows(GrantType::ClientCredentials)) {
        return Err(IdpError::invalid(
            "scopes",
            "privileged scopes need a confidential client with the client_credentials grant",
        ));
    }
    sqlx::query("UPDATE idp_clients SET scopes = $1 WHERE client_id = $2")
        .bind(serde_json::to_string(scopes).unwrap_or_default())
        .bind(client_id)
        .execute(&db.pool)
        .await?;
    find(db, client_id)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("client {client_id}")))
}

pub async fn remove(db: &Db, client_id: &str) -> Result<(), IdpError> {
    let r = sqlx::query("DELETE FROM idp_clients WHERE client_id = $1")
        .bind(client_id)
        .execute(&db.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(IdpError::NotFound(format!("client {client_id}")));
    }
    Ok(())
}
