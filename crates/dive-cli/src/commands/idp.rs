//! `dive idp users|clients|upstreams`: manage the identity provider's users, clients and
//! upstream identity providers (brokering).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::users::NewUser;

use crate::commands::serve::instance;
use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum IdpCommand {
    /// Users of an instance.
    #[command(subcommand)]
    Users(UsersCommand),
    /// OAuth clients of an instance.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Upstream identity providers the instance's IdP brokers (partner IdPs).
    #[command(subcommand)]
    Upstreams(UpstreamsCommand),
}

#[derive(Debug, Subcommand)]
pub enum UpstreamsCommand {
    /// Add an upstream OpenID Provider. Its client secret (the secret of the client this IdP
    /// holds at the upstream) is read from DIVE_IDP_UPSTREAM_SECRET, never from a flag.
    Add {
        #[command(flatten)]
        target: Target,
        /// Alias, e.g. fra-idp (lower case; used in /broker/<alias>/callback and idp_hint).
        alias: String,
        /// The upstream's issuer URL (https; its discovery document is read from there).
        #[arg(long)]
        issuer: String,
        /// The client id this IdP holds at the upstream.
        #[arg(long)]
        client_id: String,
        /// What the login page's button says (default: the alias's first part, upper case).
        #[arg(long)]
        display_name: Option<String>,
        /// Scopes to ask for (default: openid profile coalition roles).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// The only countryOfAffiliation the upstream may assert (ISO alpha-3).
        #[arg(long)]
        country: Option<String>,
        /// A PEM file with the CA certificate(s) of the upstream's HTTPS (a partner's
        /// installation CA).
        #[arg(long)]
        ca_pem: Option<std::path::PathBuf>,
        /// Claim mapping LOCAL=UPSTREAM (repeat), e.g. clearance=nationalClearance.
        #[arg(long = "claim", value_name = "LOCAL=UPSTREAM")]
        claims: Vec<String>,
        /// Add it disabled (not offered, refused).
        #[arg(long)]
        disabled: bool,
    },
    /// List upstreams (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Enable an upstream.
    Enable {
        #[command(flatten)]
        target: Target,
        alias: String,
    },
    /// Disable an upstream: no longer offered, logins through it refused.
    Disable {
        #[command(flatten)]
        target: Target,
        alias: String,
    },
    /// Remove an upstream.
    Remove {
        #[command(flatten)]
        target: Target,
        alias: String,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// The instance (ISO 3166-1 alpha-3 code).
    #[arg(long)]
    pub instance: String,
    /// Database: a postgres:// URL or a SQLite path (default $DIVE_HOME/instances/<code>/idp.db).
    #[arg(long, env = "DIVE_IDP_DATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Org {
    Gov,
    Mil,
    Industry,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user. The password is read from DIVE_IDP_PASSWORD, or generated and printed once.
    Add {
        #[command(flatten)]
        target: Target,
        username: String,
        /// The national clearance label as issued (e.g. "SECRET DÉFENSE").
        #[arg(long)]
        clearance: String,
        /// Country of affiliation (default: the instance).
        #[arg(long)]
        country: Option<String>,
        /// Communities of interest (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        coi: Vec<String>,
        #[arg(long, value_enum, default_value = "mil")]
        organization_type: Org,
        /// Roles (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', default_value = "user")]
        roles: Vec<String>,
    },
    /// List users (never passwords or secrets).
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: no more logins or refreshes.
    Disable {
        #[command(flatten)]
        target: Target,
        username: String,
    },
    /// Forget a user's TOTP enrolment and recovery codes; they enrol again at next login.
    ResetOtp {
        #[command(flatten)]
        target: Target,
        username: String,
    },
    /// Create the instance's test users (testuser-<code>-1..5, admin-<code>, industry-<code>-1)
    /// with generated passwords stored 0600 under $DIVE_HOME/instances/<code>/.
    Seed {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClientKind {
    /// Confidential, with a generated secret (client_secret_basic / client_secret_post).
    Confidential,
    /// Public (browser or native app): PKCE required, no secret.
    Public,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client. A generated secret is printed once.
    Add {
        #[command(flatten)]
        target: Target,
        client_id: String,
        #[arg(long, value_enum, default_value = "confidential")]
        kind: ClientKind,
        /// Allowed redirect URIs (exact match; repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        redirect_uri: Vec<String>,
        /// Allowed post-logout redirect URIs.
        #[arg(long, value_delimiter = ',')]
        post_logout_redirect_uri: Vec<String>,
        /// Also allow client_credentials (confidential clients only).
        #[arg(long)]
        client_credentials: bool,
        /// Let the client obtain the `admin` scope (the IdP's admin API) through
        /// client_credentials.
        #[arg(long, requires = "client_credentials")]
        admin: bool,
    },
    /// List clients (never secrets).
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Remove a client.
    Remove {
        #[command(flatten)]
        target: Target,
        client_id: String,
    },
}

fn bad(e: dive_idp::IdpError) -> anyhow::Error {
    match e {
        dive_idp::IdpError::Invalid { .. }
        | dive_idp::IdpError::NotFound(_)
        | dive_idp::IdpError::Exists(_) => crate::exit::bad_input(e.to_string()),
        other => anyhow::Error::new(other),
    }
}

async fn open(ctx: &Context, t: &Target) -> anyhow::Result<(dive_core::CountryCode, dive_idp::Db)> {
    let code = instance(&t.instance)?;
    let mut cfg = dive_idp::IdpConfig::new(code, ctx.home.clone());
    cfg.database = t.database.clone();
    Ok((code, dive_idp::Db::open(&cfg.database_location()).await?))
}

pub fn run(command: IdpCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            IdpCommand::Users(c) => users(ctx, c).await,
            IdpCommand::Clients(c) => clients(ctx, c).await,
            IdpCommand::Upstreams(c) => upstreams(ctx, c).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn users(ctx: &Context, c: UsersCommand) -> anyhow::Result<()> {
    match c {
        UsersCommand::Add {
            target,
            username,
            clearance,
            country,
            coi,
            organization_type,
            roles,
        } => {
            let (code, db) = open(ctx, &target).await?;
            let country = match country {
                Some(c) => instance(&c)?,
                None => code,
            };
            let (password, generated) = match std::env::var("DIVE_IDP_PASSWORD") {
                Ok(p) if !p.is_empty() => (p, false),
                _ => (dive_idp::password::generate(), true),
            };
            let new = NewUser {
                username: username.clone(),
                password: password.clone(),
                unique_id: None,
                clearance,
                country,
                coi,
                organization_type: match organization_type {
                    Org::Gov => dive_core::OrganizationType::Gov,
                    Org::Mil => dive_core::OrganizationType::Mil,
                    Org::Industry => dive_core::OrganizationType::Industry,
                },
                roles,
            };
            dive_idp::users::create(&db, &new).await.map_err(bad)?;
            println!("added user {username}");
            if generated {
                println!("password (shown once): {password}");
            }
        }
        UsersCommand::List { target, json } => {
            let (_, db) = open(ctx, &target).await?;
            let list = dive_idp::users::list(&db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for u in list {
                    println!(
                        "{:<24} {:<24} {} [{}] {:?} {}{}",
                        u.username,
                        u.clearance,
                        u.country,
                        u.coi.join(","),
                        u.organization_type,
                        if u.enabled { "enabled" } else { "disabled" },
                        if u.totp_enrolled() { " otp" } else { "" },
                    );
                }
            }
        }
        UsersCommand::Disable { target, username } => {
            let (_, db) = open(ctx, &target).await?;
            dive_idp::users::set_enabled(&db, &username, false)
                .await
                .map_err(bad)?;
            println!("disabled {username}");
        }
        UsersCommand::ResetOtp { target, username } => {
            let (_, db) = open(ctx, &target).await?;
            dive_idp::users::reset_otp(&db, &username)
                .await
                .map_err(bad)?;
            println!("reset the second factor of {username}");
        }
        UsersCommand::Seed { target } => {
            let (code, db) = open(ctx, &target).await?;
            let (path, created) = dive_idp::seed::seed_test_users(&ctx.home, code, &db)
                .await
                .map_err(bad)?;
            println!(
                "created {} test user(s): {}",
                created.len(),
                created.join(", ")
            );
            println!("passwords: {}", path.display());
        }
    }
    Ok(())
}

async fn clients(ctx: &Context, c: ClientsCommand) -> anyhow::Result<()> {
    match c {
        ClientsCommand::Add {
            target,
            client_id,
            kind,
            redirect_uri,
            post_logout_redirect_uri,
            client_credentials,
            admin,
        } => {
            let (_, db) = open(ctx, &target).await?;
            let mut grants = Vec::new();
            if !redirect_uri.is_empty() {
                grants.push(GrantType::AuthorizationCode);
                grants.push(GrantType::RefreshToken);
            }
            if client_credentials {
                grants.push(GrantType::ClientCredentials);
            }
            if grants.is_empty() {
                return Err(crate::exit::bad_input(
                    "give --redirect-uri (code flow) or --client-credentials",
                ));
            }
            let new = NewClient {
                client_id: client_id.clone(),
                auth: match kind {
                    ClientKind::Confidential => NewClientAuth::GenerateSecret,
                    ClientKind::Public => NewClientAuth::Public,
                },
                redirect_uris: redirect_uri,
                post_logout_redirect_uris: post_logout_redirect_uri,
                grant_types: grants,
            };
            let (_, secret) = dive_idp::clients::create(&db, &new).await.map_err(bad)?;
            if admin {
                let scopes = [dive_idp::clients::ADMIN_SCOPE.to_string()];
                if let Err(e) = dive_idp::clients::set_scopes(&db, &client_id, &scopes).await {
                    // Leave nothing half-registered.
                    let _ = dive_idp::clients::remove(&db, &client_id).await;
                    return Err(bad(e));
                }
            }
            println!(
                "added client {client_id}{}",
                if admin { " (admin)" } else { "" }
            );
            if let Some(s) = secret {
                println!("client secret (shown once): {s}");
            }
        }
        ClientsCommand::List { target, json } => {
            let (_, db) = open(ctx, &target).await?;
            let list = dive_idp::clients::list(&db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in list {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    println!(
                        "{:<24} {:<10} {} {}",
                        c.client_id,
                        if c.is_public() {
                            "public"
                        } else {
                            "confidential"
                        },
                        grants.join(","),
                        c.redirect_uris.join(",")
                    );
                }
            }
        }
        ClientsCommand::Remove { target, client_id } => {
            let (_, db) = open(ctx, &target).await?;
            dive_idp::clients::remove(&db, &client_id)
                .await
                .map_err(bad)?;
            println!("removed client {client_id}");
        }
    }
    Ok(())
}

/// `LOCAL=UPSTREAM` pairs onto the default mapping; an unknown local name is a usage error.
fn claim_mapping(pairs: &[String]) -> anyhow::Result<Option<dive_idp::upstreams::ClaimMapping>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut map = serde_json::to_value(dive_idp::upstreams::ClaimMapping::default())?;
    for p in pairs {
        let Some((local, upstream)) = p.split_once('=') else {
            return Err(crate::exit::bad_input(format!(
                "--claim {p:?}: expected LOCAL=UPSTREAM, e.g. clearance=nationalClearance"
            )));
        };
        if map.get(local).is_none() {
            return Err(crate::exit::bad_input(format!(
                "--claim {p:?}: unknown local claim {local:?} (uniqueID, clearance, \
                 countryOfAffiliation, acpCOI, organizationType, roles, acr, amr)"
            )));
        }
        map[local] = serde_json::Value::String(upstream.to_string());
    }
    Ok(Some(serde_json::from_value(map)?))
}

async fn upstreams(ctx: &Context, c: UpstreamsCommand) -> anyhow::Result<()> {
    match c {
        UpstreamsCommand::Add {
            target,
            alias,
            issuer,
            client_id,
            display_name,
            scopes,
            country,
            ca_pem,
            claims,
            disabled,
        } => {
            let client_secret = match std::env::var("DIVE_IDP_UPSTREAM_SECRET") {
                Ok(s) if !s.is_empty() => s,
                _ => {
                    return Err(crate::exit::bad_input(
                        "set DIVE_IDP_UPSTREAM_SECRET to the client secret this IdP holds at the upstream",
                    ));
                }
            };
            let ca_pem = match ca_pem {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    crate::exit::bad_input(format!("--ca-pem {}: {e}", path.display()))
                })?),
                None => None,
            };
            let spec = dive_idp::upstreams::UpstreamSpec {
                alias: alias.clone(),
                display_name,
                issuer,
                client_id,
                client_secret,
                scopes: (!scopes.is_empty()).then_some(scopes),
                claim_mapping: claim_mapping(&claims)?,
                country,
                ca_pem,
                enabled: Some(!disabled),
            };
            let (_, db) = open(ctx, &target).await?;
            let u = dive_idp::upstreams::create(&db, spec).await.map_err(bad)?;
            println!(
                "added upstream {} ({}) -> {}{}",
                u.alias,
                u.display_name,
                u.issuer,
                if u.enabled { "" } else { " [disabled]" }
            );
        }
        UpstreamsCommand::List { target, json } => {
            let (_, db) = open(ctx, &target).await?;
            let list = dive_idp::upstreams::list(&db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for u in list {
                    println!(
                        "{:<16} {:<10} {:<8} {} client={}{}",
                        u.alias,
                        u.display_name,
                        if u.enabled { "enabled" } else { "disabled" },
                        u.issuer,
                        u.client_id,
                        if u.ca_pem.is_some() { " +ca" } else { "" },
                    );
                }
            }
        }
        UpstreamsCommand::Enable { target, alias } => {
            let (_, db) = open(ctx, &target).await?;
            dive_idp::upstreams::set_enabled(&db, &alias, true)
                .await
                .map_err(bad)?;
            println!("enabled upstream {alias}");
        }
        UpstreamsCommand::Disable { target, alias } => {
            let (_, db) = open(ctx, &target).await?;
            dive_idp::upstreams::set_enabled(&db, &alias, false)
                .await
                .map_err(bad)?;
            println!("disabled upstream {alias}");
        }
        UpstreamsCommand::Remove { target, alias } => {
            let (_, db) = open(ctx, &target).await?;
            dive_idp::upstreams::remove(&db, &alias)
                .await
                .map_err(bad)?;
            println!("removed upstream {alias}");
        }
    }
    Ok(())
}
