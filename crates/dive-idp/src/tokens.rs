//! What a grant carries and the tokens minted from it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::IdpError;
use crate::keys::KeyRing;
use crate::users::{User, org_str};
use crate::util::{now, random_token};

/// Access tokens live 15 minutes.
pub const ACCESS_TTL: i64 = 900;
/// ID tokens live as long as access tokens.
pub const ID_TTL: i64 = 900;
/// Refresh tokens end with the SSO session's maximum of 8 hours after authentication.
pub const SESSION_MAX: i64 = 8 * 3600;
/// Authorization codes are valid for one minute.
pub const CODE_TTL: i64 = 60;

/// The media type of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";

/// Scopes this IdP understands.
pub const SCOPES: &[&str] = &["openid", "profile", "coalition", "roles", "offline_access"];

/// Coalition claims released with the `coalition` scope.
pub const COALITION_CLAIMS: &[&str] = &[
    "uniqueID",
    "clearance",
    "countryOfAffiliation",
    "acpCOI",
    "organizationType",
    "home_issuer",
    "idp",
];

/// Everything a code or refresh token stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    /// `None` for client_credentials.
    pub user_id: Option<String>,
    pub scope: Vec<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub code_challenge: Option<String>,
    #[serde(default)]
    pub sid: Option<String>,
}

impl Grant {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scope.iter().any(|x| x == s)
    }
}

/// The user's claims released for `scope`.
pub fn user_claims(user: &User, scope: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    let has = |s: &str| scope.iter().any(|x| x == s);
    if has("profile") {
        m.insert("preferred_username".into(), json!(user.username));
    }
    if has("coalition") {
        m.insert("uniqueID".into(), json!(user.unique_id));
        m.insert("clearance".into(), json!(user.clearance));
        m.insert("countryOfAffiliation".into(), json!(user.country.as_str()));
        m.insert("acpCOI".into(), json!(user.coi));
        m.insert(
            "organizationType".into(),
            json!(org_str(user.organization_type)),
        );
        // Brokered users: where they came from (their home IdP and the upstream alias here).
        if let Some(home) = &user.home_issuer {
            m.insert("home_issuer".into(), json!(home));
        }
        if let Some(alias) = &user.upstream_alias {
            m.insert("idp".into(), json!(alias));
        }
    }
    if has("roles") {
        m.insert("roles".into(), json!(user.roles));
    }
    m
}

/// The resource audience of the instance's services (api, kas): access tokens name it in `aud`.
pub fn resource_audience(instance: &str) -> String {
    format!("dive-{}", instance.to_lowercase())
}

pub struct Minted {
    pub access_token: String,
    pub jti: String,
    pub id_token: Option<String>,
}

/// Sign an access token (and an ID token for `openid` grants with a user).
pub fn mint(
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    grant: &Grant,
    user: Option<&User>,
) -> Result<Minted, IdpError> {
    let t = now();
    let jti = random_token(16);
    let key = keys.active();
    let sub = match user {
        Some(u) => u.id.clone(),
        None => grant.client_id.clone(),
    };
    let mut at = Map::new();
    at.insert("iss".into(), json!(issuer));
    at.insert("sub".into(), json!(sub));
    at.insert("aud".into(), json!(audience));
    at.insert("client_id".into(), json!(grant.client_id));
    at.insert("azp".into(), json!(grant.client_id));
    at.insert("iat".into(), json!(t));
    at.insert("exp".into(), json!(t + ACCESS_TTL));
    at.insert("jti".into(), json!(jti));
    at.insert("scope".into(), json!(grant.scope.join(" ")));
    if let Some(u) = user {
        at.insert("auth_time".into(), json!(grant.auth_time));
        at.insert("acr".into(), json!(grant.acr));
        at.insert("amr".into(), json!(grant.amr));
        if let Some(sid) = &grant.sid {
            at.insert("sid".into(), json!(sid));
        }
        at.extend(user_claims(u, &grant.scope));
    }
    let access_token = key.sign(ACCESS_TYP, &at)?;
    let id_token = match user {
        Some(u) if grant.has_scope("openid") => {
            let mut id = Map::new();
            id.insert("iss".into(), json!(issuer));
            id.insert("sub".into(), json!(sub));
            id.insert("aud".into(), json!(grant.client_id));
            id.insert("azp".into(), json!(grant.client_id));
            id.insert("iat".into(), json!(t));
            id.insert("exp".into(), json!(t + ID_TTL));
            id.insert("auth_time".into(), json!(grant.auth_time));
            id.insert("acr".into(), json!(grant.acr));
            id.insert("amr".into(), json!(grant.amr));
            id.insert("at_hash".into(), json!(dive_jose::half_hash(&access_token)));
            if let Some(n) = &grant.nonce {
                id.insert("nonce".into(), json!(n));
            }
            if let Some(sid) = &grant.sid {
                id.insert("sid".into(), json!(sid));
            }
            id.extend(user_claims(u, &grant.scope));
            Some(key.sign("JWT", &id)?)
        }
        _ => None,
    };
    Ok(Minted {
        access_token,
        jti,
        id_token,
    })
}
