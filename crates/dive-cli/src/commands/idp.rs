//! `dive idp users|clients`: manage the identity provider's users and clients.

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
            println!("added client {client_id}");
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
