//! Users: their coalition attributes (validated with dive-core), credentials and state.

use dive_core::{Clearance, CoiRegistry, CountryCode, Equivalency, OrganizationType};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::IdpError;
use crate::store::Db;
use crate::util::{now, random_token};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub unique_id: String,
    /// The national label as issued (e.g. "SECRET DÉFENSE").
    pub clearance: String,
    pub country: CountryCode,
    pub coi: Vec<String>,
    pub organization_type: OrganizationType,
    pub roles: Vec<String>,
    pub enabled: bool,
    #[serde(skip)]
    pub totp_secret: Option<String>,
    #[serde(skip)]
    pub totp_last_step: i64,
    /// For a federated user: the alias of the upstream IdP it logs in through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_alias: Option<String>,
    /// For a federated user: the issuer of its home IdP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_issuer: Option<String>,
}

impl User {
    /// The DIVE level of the user's national label. Validated on creation, so a failure here
    /// means the equivalency tables changed; the caller must then fail closed.
    pub fn level(&self) -> Result<Clearance, IdpError> {
        Equivalency::builtin()
            .normalize(self.country, &self.clearance)
            .map_err(|e| IdpError::Corrupt(format!("user {}: {e}", self.username)))
    }

    /// Users cleared above UNCLASSIFIED must use a second factor (AAL2).
    pub fn requires_otp(&self) -> bool {
        self.level().is_ok_and(|l| l > Clearance::Unclassified) || self.level().is_err()
    }

    pub fn totp_enrolled(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// What is needed to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub unique_id: Option<String>,
    pub clearance: String,
    pub country: CountryCode,
    pub coi: Vec<String>,
    pub organization_type: OrganizationType,
    pub roles: Vec<String>,
}

impl NewUser {
    /// Check every attribute: username shape, password policy, a clearance label valid for the
    /// user's country, known COIs.
    pub fn validate(&self) -> Result<(), IdpError> {
        let u = &self.username;
        if u.is_empty()
            || u.len() > 64
            || !u
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err(IdpError::invalid(
                "username",
                format!("{u:?}: use 1-64 letters, digits, '-', '_', '.', '@'"),
            ));
        }
        crate::password::check_policy(u, &self.password)?;
        Equivalency::builtin()
            .normalize(self.country, &self.clearance)
            .map_err(|e| IdpError::invalid("clearance", e.to_string()))?;
        let registry = CoiRegistry::builtin();
        for tag in &self.coi {
            if !registry.contains(tag) {
                return Err(IdpError::invalid("acpCOI", format!("unknown COI {tag:?}")));
            }
        }
        Ok(())
    }
}

const COLUMNS: &str = "id, username, password_hash, unique_id, clearance, country, coi, \
     organization_type, roles, enabled, totp_secret, totp_last_step, upstream_alias, home_issuer";

fn from_row(row: &AnyRow) -> Result<User, IdpError> {
    let corrupt = |what: &str| IdpError::Corrupt(format!("user row: {what}"));
    let country: String = row.try_get("country")?;
    let org: String = row.try_get("organization_type")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        unique_id: row.try_get("unique_id")?,
        clearance: row.try_get("clearance")?,
        country: CountryCode::new(&country).map_err(|_| corrupt("country"))?,
        coi: serde_json::from_str(&row.try_get::<String, _>("coi")?).map_err(|_| corrupt("coi"))?,
        organization_type: serde_json::from_value(serde_json::Value::String(org))
            .map_err(|_| corrupt("organization_type"))?,
        roles: serde_json::from_str(&row.try_get::<String, _>("roles")?)
            .map_err(|_| corrupt("roles"))?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        upstream_alias: row.try_get("upstream_alias")?,
        home_issuer: row.try_get("home_issuer")?,
    })
}

pub fn org_str(o: OrganizationType) -> &'static str {
    match o {
        OrganizationType::Gov => "GOV",
        OrganizationType::Mil => "MIL",
        OrganizationType::Industry => "INDUSTRY",
    }
}

pub async fn create(db: &Db, new: &NewUser) -> Result<User, IdpError> {
    new.validate()?;
    if find_by_username(db, &new.username).await?.is_some() {
        return Err(IdpError::Exists(format!("user {}", new.username)));
    }
    let id = random_token(16);
    let hash = crate::password::hash(&new.password)?;
    let unique_id = new
        .unique_id
        .clone()
        .unwrap_or_else(|| format!("{}@{}", new.username, new.country.as_str().to_lowercase()));
    sqlx::query(
        "INSERT INTO idp_users (id, username, password_hash, unique_id, clearance, country, coi, \
         organization_type, roles, enabled, totp_secret, totp_last_step, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, NULL, 0, $10)",
    )
    .bind(&id)
    .bind(&new.username)
    .bind(&hash)
    .bind(&unique_id)
    .bind(&new.clearance)
    .bind(new.country.as_str())
    .bind(serde_json::to_string(&new.coi).unwrap_or_default())
    .bind(org_str(new.organization_type))
    .bind(serde_json::to_string(&new.roles).unwrap_or_default())
    .bind(now())
    .execute(&db.pool)
    .await?;
    find_by_id(db, &id)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("user {}", new.username)))
}

/// The password hash of federated users: not a PHC string, so no password ever verifies.
const NO_PASSWORD: &str = "!federated";

/// Create or re-sync (on every brokered login) the local account of a user of upstream `alias`:
/// username `<alias>:<upstream sub>`, no password, attributes as the upstream asserted them
/// (already normalised and checked through dive-core by the caller). A locally disabled account
/// stays disabled.
pub async fn upsert_federated(
    db: &Db,
    alias: &str,
    upstream_sub: &str,
    home_issuer: &str,
    attrs: &dive_core::SubjectAttributes,
) -> Result<User, IdpError> {
    if upstream_sub.is_empty()
        || upstream_sub.len() > 200
        || upstream_sub.chars().any(char::is_control)
    {
        return Err(IdpError::invalid(
            "sub",
            "the upstream subject must be 1-200 characters without control characters",
        ));
    }
    let registry = CoiRegistry::builtin();
    for tag in &attrs.acp_coi {
        if !registry.contains(tag) {
            return Err(IdpError::invalid("acpCOI", format!("unknown COI {tag:?}")));
        }
    }
    let username = format!("{alias}:{upstream_sub}");
    let coi = serde_json::to_string(&attrs.acp_coi).unwrap_or_default();
    let roles = serde_json::to_string(&attrs.roles).unwrap_or_default();
    sqlx::query(
        "INSERT INTO idp_users (id, username, password_hash, unique_id, clearance, country, coi, \
         organization_type, roles, enabled, totp_secret, totp_last_step, created_at, \
         upstream_alias, home_issuer) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, NULL, 0, $10, $11, $12) \
         ON CONFLICT (username) DO UPDATE SET unique_id = $4, clearance = $5, country = $6, \
         coi = $7, organization_type = $8, roles = $9, upstream_alias = $11, home_issuer = $12",
    )
    .bind(random_token(16))
    .bind(&username)
    .bind(NO_PASSWORD)
    .bind(&attrs.unique_id)
    .bind(&attrs.clearance_original)
    .bind(attrs.country_of_affiliation.as_str())
    .bind(coi)
    .bind(org_str(attrs.organization_type))
    .bind(roles)
    .bind(now())
    .bind(alias)
    .bind(home_issuer)
    .execute(&db.pool)
    .await?;
    find_by_username(db, &username)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("user {username}")))
}

pub async fn find_by_username(db: &Db, username: &str) -> Result<Option<User>, IdpError> {
    let sql = format!("SELECT {COLUMNS} FROM idp_users WHERE username = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<User>, IdpError> {
    let sql = format!("SELECT {COLUMNS} FROM idp_users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<User>, IdpError> {
    let sql = format!("SELECT {COLUMNS} FROM idp_users ORDER BY username");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_enabled(db: &Db, username: &str, enabled: bool) -> Result<(), IdpError> {
    let r = sqlx::query("UPDATE idp_users SET enabled = $1 WHERE username = $2")
        .bind(i64::from(enabled))
        .bind(username)
        .execute(&db.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(IdpError::NotFound(format!("user {username}")));
    }
    Ok(())
}

/// Forget the user's TOTP enrolment and recovery codes; they enrol again at next login.
pub async fn reset_otp(db: &Db, username: &str) -> Result<(), IdpError> {
    let user = find_by_username(db, username)
        .await?
        .ok_or_else(|| IdpError::NotFound(format!("user {username}")))?;
    sqlx::query("UPDATE idp_users SET totp_secret = NULL, totp_last_step = 0 WHERE id = $1")
        .bind(&user.id)
        .execute(&db.pool)
        .await?;
    sqlx::query("DELETE FROM idp_recovery_codes WHERE user_id = $1")
        .bind(&user.id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn set_password(db: &Db, username: &str, password: &str) -> Result<(), IdpError> {
    crate::password::check_policy(username, password)?;
    let hash = crate::password::hash(password)?;
    let r = sqlx::query("UPDATE idp_users SET password_hash = $1 WHERE username = $2")
        .bind(hash)
        .bind(username)
        .execute(&db.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(IdpError::NotFound(format!("user {username}")));
    }
    Ok(())
}

/// The test users of an instance: `testuser-<code>-1..5` (one per level, with the nation's own
/// labels; levels 4-5 carry NATO, plus FVEY for FVEY nations), `admin-<code>` and an industry
/// user. Returns (username, password) of each user created now; existing users are kept.
pub async fn seed_test_users(
    db: &Db,
    country: CountryCode,
) -> Result<Vec<(String, String)>, IdpError> {
    let eq = Equivalency::builtin();
    let code = country.as_str().to_lowercase();
    let fvey = CoiRegistry::builtin().is_member("FVEY", country);
    let label = |level: Clearance| eq.labels(country, level).into_iter().next();
    let mut specs: Vec<NewUser> = Vec::new();
    for (i, level) in Clearance::ALL.iter().enumerate() {
        let clearance = label(*level).ok_or_else(|| {
            IdpError::invalid("instance", format!("no {level} label for {country}"))
        })?;
        let mut coi = Vec::new();
        if i >= 3 {
            coi.push("NATO".to_string());
            if fvey {
                coi.push("FVEY".to_string());
            }
        }
        specs.push(NewUser {
            username: format!("testuser-{code}-{}", i + 1),
            password: String::new(),
            unique_id: None,
            clearance,
            country,
            coi,
            organization_type: OrganizationType::Mil,
            roles: vec!["user".to_string()],
        });
    }
    let secret = label(Clearance::Secret).unwrap_or_default();
    specs.push(NewUser {
        username: format!("admin-{code}"),
        password: String::new(),
        unique_id: None,
        clearance: secret,
        country,
        coi: vec!["NATO".to_string()],
        organization_type: OrganizationType::Gov,
        roles: vec!["user".to_string(), dive_core::ADMIN_ROLE.to_string()],
    });
    let confidential = label(Clearance::Confidential).unwrap_or_default();
    specs.push(NewUser {
        username: format!("industry-{code}-1"),
        password: String::new(),
        unique_id: None,
        clearance: confidential,
        country,
        coi: vec![],
        organization_type: OrganizationType::Industry,
        roles: vec!["user".to_string()],
    });
    let mut created = Vec::new();
    for mut spec in specs {
        if find_by_username(db, &spec.username).await?.is_some() {
            continue;
        }
        spec.password = crate::password::generate();
        create(db, &spec).await?;
        created.push((spec.username, spec.password));
    }
    Ok(created)
}
