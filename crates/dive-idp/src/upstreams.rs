//! Upstream OpenID Providers this IdP brokers (a partner instance's IdP, Keycloak, a national
//! IdP): alias, issuer, the client this IdP holds there, scopes, claim mapping, and optionally the
//! CA that signs the upstream's HTTPS certificate (partners have their own installation CA).

use dive_core::CountryCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::IdpError;
use crate::store::Db;
use crate::util::now;

/// Which upstream claim feeds each local claim. Keys are this IdP's claim names, values the
/// upstream's; every default is the coalition claim of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMapping {
    #[serde(rename = "uniqueID")]
    pub unique_id: String,
    pub clearance: String,
    #[serde(rename = "countryOfAffiliation")]
    pub country_of_affiliation: String,
    #[serde(rename = "acpCOI")]
    pub acp_coi: String,
    #[serde(rename = "organizationType")]
    pub organization_type: String,
    pub roles: String,
    pub acr: String,
    pub amr: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            unique_id: "uniqueID".into(),
            clearance: "clearance".into(),
            country_of_affiliation: "countryOfAffiliation".into(),
            acp_coi: "acpCOI".into(),
            organization_type: "organizationType".into(),
            roles: "roles".into(),
            acr: "acr".into(),
            amr: "amr".into(),
        }
    }
}

impl ClaimMapping {
    /// (local name, upstream name) pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 8] {
        [
            ("uniqueID", &self.unique_id),
            ("clearance", &self.clearance),
            ("countryOfAffiliation", &self.country_of_affiliation),
            ("acpCOI", &self.acp_coi),
            ("organizationType", &self.organization_type),
            ("roles", &self.roles),
            ("acr", &self.acr),
            ("amr", &self.amr),
        ]
    }

    fn validate(&self) -> Result<(), IdpError> {
        for (local, upstream) in self.pairs() {
            if upstream.trim().is_empty() || upstream.len() > 128 {
                return Err(IdpError::invalid(
                    "claim_mapping",
                    format!("{local}: the upstream claim name must be 1-128 characters"),
                ));
            }
        }
        Ok(())
    }
}

/// Scopes asked of an upstream unless configured otherwise.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "coalition", "roles"];

/// A configured upstream. The client secret is never serialised nor shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub alias: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub claim_mapping: ClaimMapping,
    /// When set, the only `countryOfAffiliation` this upstream may assert.
    pub country: Option<CountryCode>,
    /// PEM CA certificate(s) trusted for this upstream's HTTPS, besides the installation CA.
    pub ca_pem: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("alias", &self.alias)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The redirect URI this IdP registers at the upstream.
    pub fn redirect_uri(&self, issuer: &str) -> String {
        format!("{issuer}/broker/{}/callback", self.alias)
    }

    /// An HTTPS client for this upstream: trusts the installation CA of `home`, the partner CAs
    /// registered through federation (`pki/partners`) and the upstream's own CA PEM.
    pub fn http_client(&self, home: &std::path::Path) -> Result<reqwest::Client, IdpError> {
        let mut certs = dive_http::trust::trusted_certs(home)
            .map_err(|e| IdpError::invalid("ca_pem", format!("installation CAs: {e}")))?;
        if let Some(pem) = &self.ca_pem {
            certs.extend(parse_ca_pem(pem)?);
        }
        dive_http::trust::client_trusting(certs)
            .map_err(|e| IdpError::invalid("ca_pem", format!("cannot build HTTPS client: {e}")))
    }
}

fn parse_ca_pem(pem: &str) -> Result<Vec<reqwest::Certificate>, IdpError> {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(IdpError::invalid(
            "ca_pem",
            "expected PEM certificate(s) (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| IdpError::invalid("ca_pem", e.to_string()))?;
    if certs.is_empty() {
        return Err(IdpError::invalid("ca_pem", "no certificate found"));
    }
    Ok(certs)
}

/// What creates (or fully replaces) an upstream: the admin API's JSON body and the CLI's flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub alias: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub claim_mapping: Option<ClaimMapping>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A partial update: absent fields keep their value; `ca_pem`/`country` set to an empty string
/// remove it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPatch {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub claim_mapping: Option<ClaimMapping>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

pub fn validate_alias(alias: &str) -> Result<(), IdpError> {
    if alias.is_empty()
        || alias.len() > 64
        || !alias.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        || !alias.as_bytes()[0].is_ascii_alphanumeric()
    {
        return Err(IdpError::invalid(
            "alias",
            format!(
                "{alias:?}: use 1-64 lower-case letters, digits, '-', '_', '.', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn validate_issuer(issuer: &str) -> Result<(), IdpError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| IdpError::invalid("issuer", format!("{issuer:?}: {e}")))?;
    if url.scheme() != "https" {
        return Err(IdpError::invalid(
            "issuer",
            format!("{issuer}: must be an https URL"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(IdpError::invalid(
            "issuer",
            format!("{issuer}: must not have a query or fragment"),
        ));
    }
    Ok(())
}

fn validate_text(field: &'static str, v: &str, max: usize) -> Result<(), IdpError> {
    if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(IdpError::invalid(
            field,
            format!("must be 1-{max} characters without control characters"),
        ));
    }
    Ok(())
}

fn validate_scopes(scopes: &[String]) -> Result<(), IdpError> {
    if !scopes.iter().any(|s| s == "openid") {
        return Err(IdpError::invalid("scopes", "must include openid"));
    }
    if let Some(bad) = scopes.iter().find(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        return Err(IdpError::invalid("scopes", format!("bad scope {bad:?}")));
    }
    Ok(())
}

fn parse_country(v: Option<&str>) -> Result<Option<CountryCode>, IdpError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(c) => CountryCode::new(c)
            .map(Some)
            .map_err(|e| IdpError::invalid("country", e.to_string())),
    }
}

impl Upstream {
    /// Check every field; names the first bad one.
    pub fn validate(&self) -> Result<(), IdpError> {
        validate_alias(&self.alias)?;
        validate_text("display_name", &self.display_name, 64)?;
        validate_issuer(&self.issuer)?;
        validate_text("client_id", &self.client_id, 256)?;
        validate_text("client_secret", &self.client_secret, 1024)?;
        validate_scopes(&self.scopes)?;
        self.claim_mapping.validate()?;
        if let Some(pem) = &self.ca_pem {
            parse_ca_pem(pem)?;
        }
        Ok(())
    }

    fn from_spec(spec: UpstreamSpec, created_at: i64) -> Result<Upstream, IdpError> {
        let t = now();
        let u = Upstream {
            display_name: spec
                .display_name
                .clone()
                .unwrap_or_else(|| default_display_name(&spec.alias)),
            alias: spec.alias,
            issuer: spec.issuer,
            client_id: spec.client_id,
            client_secret: spec.client_secret,
            scopes: spec
                .scopes
                .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()),
            claim_mapping: spec.claim_mapping.unwrap_or_default(),
            country: parse_country(spec.country.as_deref())?,
            ca_pem: spec.ca_pem.filter(|p| !p.trim().is_empty()),
            enabled: spec.enabled.unwrap_or(true),
            created_at,
            updated_at: t,
        };
        u.validate()?;
        Ok(u)
    }
}

/// "fra-idp" → "FRA": what the login page's button says by default.
fn default_display_name(alias: &str) -> String {
    alias
        .split(['-', '_', '.'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(alias)
        .to_uppercase()
}

const COLUMNS: &str = "alias, display_name, issuer, client_id, client_secret, scopes, \
     claim_mapping, country, ca_pem, enabled, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Upstream, IdpError> {
    let corrupt = |w: &str| IdpError::Corrupt(format!("upstream row: {w}"));
    let country: Option<String> = row.try_get("country")?;
    Ok(Upstream {
        alias: row.try_get("alias")?,
        display_name: row.try_get("display_name")?,
        issuer: row.try_get("issuer")?,
        client_id: row.try_get("client_id")?,
        client_secret: row.try_get("client_secret")?,
        scopes: serde_json::from_str(&row.try_get::<String, _>("scopes")?)
            .map_err(|_| corrupt("scopes"))?,
        claim_mapping: serde_json::from_str(&row.try_get::<String, _>("claim_mapping")?)
            .map_err(|_| corrupt("claim_mapping"))?,
        country: country
            .map(|c| CountryCode::new(&c))
            .transpose()
            .map_err(|_| corrupt("country"))?,
        ca_pem: row.try_get("ca_pem")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn find(db: &Db, alias: &str) -> Result<Option<Upstream>, IdpError> {
    let sql = format!("SELECT {COLUMNS} FROM idp_upstreams WHERE alias = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(alias)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<Upstream>, IdpError> {
    let sql = format!("SELECT {COLUMNS} FROM idp_upstreams ORDER BY alias");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Binds $1–$10: the upstream's columns from `alias` to `enabled`, as INSERT and UPDATE number them.
fn bind_fields<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    u: &'q Upstream,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(&u.alias)
        .bind(&u.display_name)
        .bind(&u.issuer)
        .bind(&u.client_id)
        .bind(&u.client_secret)
        .bind(serde_json::to_string(&u.scopes).unwrap_or_default())
        .bind(serde_json::to_string(&u.claim_mapping).unwrap_or_default())
        .bind(u.country.map(|c| c.as_str().to_string()))
        .bind(&u.ca_pem)
        .bind(i64::from(u.enabled))
}

async fn insert(db: &Db, u: &Upstream) -> Result<(), IdpError> {
    bind_fields(
        sqlx::query(
            "INSERT INTO idp_upstreams (alias, display_name, issuer, client_id, client_secret, \
             scopes, claim_mapping, country, ca_pem, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        ),
        u,
    )
    .bind(u.created_at)
    .bind(u.updated_at)
    .execute(&db.pool)
    .await?;
    Ok(())
}

async fn store_update(db: &Db, u: &Upstream) -> Result<(), IdpError> {
    let r = bind_fields(
        sqlx::query(
            "UPDATE idp_upstreams SET display_name = $2, issuer = $3, client_id = $4, \
             client_secret = $5, scopes = $6, claim_mapping = $7, country = $8, ca_pem = $9, \
             enabled = $10, updated_at = $11 WHERE alias = $1",
        ),
        u,
    )
    .bind(u.updated_at)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(IdpError::NotFound(format!("upstream {}", u.alias)));
    }
    Ok(())
}

/// Add an upstream; refused if the alias exists.
pub async fn create(db: &Db, spec: UpstreamSpec) -> Result<Upstream, IdpError> {
    let u = Upstream::from_spec(spec, now())?;
    if find(db, &u.alias).await?.is_some() {
        return Err(IdpError::Exists(format!("upstream {}", u.alias)));
    }
    insert(db, &u).await?;
    Ok(u)
}

/// Create or fully replace an upstream (idempotent: what `dive federation link` re-runs).
/// Returns it and whether it was created now.
pub async fn put(db: &Db, spec: UpstreamSpec) -> Result<(Upstream, bool), IdpError> {
    validate_alias(&spec.alias)?;
    match find(db, &spec.alias).await? {
        Some(existing) => {
            let u = Upstream::from_spec(spec, existing.created_at)?;
            store_update(db, &u).await?;
            Ok((u, false))
        }
        None => Ok((create(db, spec).await?, true)),
    }
}

/// Change some fields of an upstream.
pub async fn update(db: &Db, alias: &str, patch: UpstreamPatch) -> Result<Upstream, IdpError> {
    let mut u = find(db, alias)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("upstream {alias}")))?;
    if let Some(v) = patch.display_name {
        u.display_name = v;
    }
    if let Some(v) = patch.issuer {
        u.issuer = v;
    }
    if let Some(v) = patch.client_id {
        u.client_id = v;
    }
    if let Some(v) = patch.client_secret {
        u.client_secret = v;
    }
    if let Some(v) = patch.scopes {
        u.scopes = v;
    }
    if let Some(v) = patch.claim_mapping {
        u.claim_mapping = v;
    }
    if let Some(v) = patch.country {
        u.country = parse_country(Some(&v))?;
    }
    if let Some(v) = patch.ca_pem {
        u.ca_pem = Some(v).filter(|p| !p.trim().is_empty());
    }
    if let Some(v) = patch.enabled {
        u.enabled = v;
    }
    u.updated_at = now();
    u.validate()?;
    store_update(db, &u).await?;
    Ok(u)
}

pub async fn set_enabled(db: &Db, alias: &str, enabled: bool) -> Result<Upstream, IdpError> {
    update(
        db,
        alias,
        UpstreamPatch {
            enabled: Some(enabled),
            ..Default::default()
        },
    )
    .await
}

/// Remove an upstream. Its federated users stay (their tokens keep their claims until they
/// expire) but can no longer log in through it.
pub async fn remove(db: &Db, alias: &str) -> Result<(), IdpError> {
    let r = sqlx::query("DELETE FROM idp_upstreams WHERE alias = $1")
        .bind(alias)
        .execute(&db.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(IdpError::NotFound(format!("upstream {alias}")));
    }
    sqlx::query("DELETE FROM idp_broker_states WHERE alias = $1")
        .bind(alias)
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_defaults_and_unknown_fields() {
        let m: ClaimMapping = serde_json::from_str(r#"{"clearance": "natClearance"}"#).unwrap();
        assert_eq!(m.clearance, "natClearance");
        assert_eq!(m.unique_id, "uniqueID");
        let err = serde_json::from_str::<ClaimMapping>(r#"{"clearence": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("clearence"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let spec = |f: &dyn Fn(&mut UpstreamSpec)| {
            let mut s = UpstreamSpec {
                alias: "fra-idp".into(),
                issuer: "https://idp.fra.example".into(),
                client_id: "dive-usa".into(),
                client_secret: "s".repeat(40),
                ..Default::default()
            };
            f(&mut s);
            Upstream::from_spec(s, 0)
        };
        let u = spec(&|_| {}).unwrap();
        assert_eq!(u.display_name, "FRA");
        assert!(u.enabled);
        assert!(format!("{u:?}").contains("<redacted>"));
        assert!(!format!("{u:?}").contains("ssss"));
        let field = |r: Result<Upstream, IdpError>| match r {
            Err(IdpError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(field(spec(&|s| s.alias = "FRA IdP".into())), "alias");
        assert_eq!(field(spec(&|s| s.issuer = "http://idp".into())), "issuer");
        assert_eq!(field(spec(&|s| s.client_id = String::new())), "client_id");
        assert_eq!(
            field(spec(&|s| s.client_secret = String::new())),
            "client_secret"
        );
        assert_eq!(
            field(spec(&|s| s.scopes = Some(vec!["profile".into()]))),
            "scopes"
        );
        assert_eq!(field(spec(&|s| s.country = Some("XX".into()))), "country");
        assert_eq!(
            field(spec(&|s| s.ca_pem = Some("not pem".into()))),
            "ca_pem"
        );
    }
}
