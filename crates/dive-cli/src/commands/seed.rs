//! `dive seed --instance CODE --count N [--seed-value S]`: the stack's `init` job. Creates the
//! instance's test users at its IdP and N real ZTDF documents, wrapped to the instance's KAS,
//! in its resource store. Re-running replaces the seeded documents, never duplicates them.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use dive_api::store::{NewResource, ResourceStore};
use dive_kas::client::RemoteKas;
use dive_kas::keys::KeyAlgorithm;
use dive_seed::{CorpusSpec, EncryptedDocument, KasRecipient, SeedOptions};
use sha2::{Digest, Sha256};

use crate::commands::serve::instance;
use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The instance (ISO 3166-1 alpha-3 code).
    #[arg(long)]
    pub instance: String,
    /// ZTDF documents to create.
    #[arg(long, default_value_t = 5000)]
    pub count: usize,
    /// Makes the documents reproducible: the same value gives the same corpus.
    #[arg(long, default_value = "dive")]
    pub seed_value: String,
    /// The KAS the documents' keys are wrapped to (default: the instance's, from instance.json).
    #[arg(long, value_name = "URL")]
    pub kas_url: Option<String>,
    /// Resource store: a postgres:// URL or a SQLite path (default $DIVE_HOME/instances/<code>/api.db).
    #[arg(long, env = "DIVE_API_DATABASE")]
    pub database: Option<String>,
    /// IdP database for the test users (default $DIVE_HOME/instances/<code>/idp.db).
    #[arg(long, env = "DIVE_IDP_DATABASE")]
    pub idp_database: Option<String>,
    /// Do not create the test users.
    #[arg(long)]
    pub no_users: bool,
    /// Worker threads generating and encrypting (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Who the store records as the creator of seeded documents.
const CREATOR: &str = "dive-seed";

/// A `--seed-value` as the generator's 64-bit seed: a number is taken as is, anything else is
/// hashed, so operators can use words.
fn seed_number(value: &str) -> u64 {
    value.parse().unwrap_or_else(|_| {
        let d = Sha256::digest(value.as_bytes());
        u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
    })
}

pub fn run(ctx: &Context, a: SeedArgs) -> anyhow::Result<ExitCode> {
    let code = instance(&a.instance)?;
    if a.count > 1_000_000 {
        return Err(bad_input("--count: at most 1,000,000 documents"));
    }
    let paths = dive_instance::InstancePaths::new(&ctx.home, code);
    let kas_url = match a.kas_url.clone() {
        Some(u) => u,
        None => dive_instance::config::load(&paths)?
            .map(|c| c.urls.kas.clone())
            .ok_or_else(|| {
                bad_input(format!(
                    "instance {code} is not initialised here (no {}); give --kas-url",
                    paths.config().display()
                ))
            })?,
    };
    let api_db = a.database.clone().unwrap_or_else(|| {
        dive_idp::instance_dir(&ctx.home, code)
            .join("api.db")
            .display()
            .to_string()
    });
    let idp_db = a
        .idp_database
        .clone()
        .unwrap_or_else(|| paths.idp_db().display().to_string());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        if !a.no_users {
            let db = dive_idp::Db::open(&idp_db).await?;
            let (file, created) = dive_idp::seed::seed_test_users(&ctx.home, code, &db).await?;
            println!(
                "test users: {} created now; passwords in {}",
                created.len(),
                file.display()
            );
        }
        let pki = dive_pki::Pki::open(&ctx.home)?;
        let http = dive_http::https_client(&pki)?;
        // The public key endpoint needs no token.
        let (pem, kid) = RemoteKas::new(http, kas_url.clone(), "")
            .public_key(KeyAlgorithm::Rsa2048)
            .await?;
        let kas = KasRecipient::from_pem(kas_url.clone(), Some(kid), &pem)?;
        let spec = CorpusSpec::new(code, a.count, seed_number(&a.seed_value));
        let opts = SeedOptions {
            threads: a.threads,
            ..SeedOptions::default()
        };
        let started = Instant::now();
        let mut docs = Vec::with_capacity(a.count);
        let mut hashes = std::collections::BTreeMap::new();
        let report = dive_seed::seed_with(&spec, &kas, &opts, |batch| {
            for d in batch {
                hashes.insert(d.meta.id.to_string(), hex::encode(d.plaintext_sha256));
                docs.push(new_resource(d));
            }
            Ok::<(), std::convert::Infallible>(())
        })?;
        let encrypted = started.elapsed();
        let store = ResourceStore::open(&api_db).await?;
        // The record describes the documents in the default store only (what deploy and verify
        // read); it goes before they are replaced, so a run that dies leaves none.
        let own_store = a.database.is_none();
        if own_store {
            dive_instance::seed_record::remove(&paths)?;
        }
        let summary = store.replace_seeded(docs).await?;
        if own_store {
            let stored = store.count(Some(true)).await?;
            dive_instance::seed_record::write(
                &paths,
                &dive_instance::seed_record::SeedRecord {
                    count: a.count as u64,
                    seed_value: a.seed_value.clone(),
                    stored,
                    finished_at: time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    plaintext_sha256: hashes,
                },
            )?;
        }
        println!(
            "documents: {} ZTDF created in {:.2} s ({:.0}/s), {} stored ({} replaced) in {:.2} s total",
            report.documents,
            encrypted.as_secs_f64(),
            report.documents as f64 / encrypted.as_secs_f64().max(1e-9),
            summary.inserted,
            summary.removed,
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn new_resource(d: EncryptedDocument) -> NewResource {
    let m = d.meta;
    NewResource {
        id: m.id.to_string(),
        title: m.title,
        description: Some(m.description),
        label: m.label,
        mime_type: m.mime_type.to_string(),
        file_name: m.file_name,
        size: d.plaintext_len,
        created_at: m.created_at,
        creator: CREATOR.to_string(),
        policy_uuid: d.policy_uuid,
        ztdf: d.ztdf,
        seeded: true,
    }
}
