//! `dive ztdf`: encrypt, inspect and (offline) decrypt ZTDF files. Logic lives in `dive-ztdf`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use dive_ztdf::{
    EncryptOptions, KasPrivateKey, KasPublicKey, KeyAccessPlan, LocalKeyUnwrapper, Recipient,
    TdfReader,
};

use crate::context::Context;
use crate::exit::bad_input;

#[derive(Debug, Subcommand)]
pub enum ZtdfCommand {
    /// Encrypt a file into a ZTDF (OpenTDF BaseTDF 4.4) bound to a security label.
    Encrypt(EncryptArgs),
    /// Show a ZTDF's manifest, label and the integrity checks that need no key.
    Inspect(InspectArgs),
    /// Decrypt a ZTDF: through the KAS with your access token (--kas), or offline with a KAS
    /// private key (--private-key; operators, tests).
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// URL of a KAS that will release the key (or a share of it). Repeat for several KASes,
    /// each paired in order with a --kas-public-key.
    #[arg(long, value_name = "URL", required = true)]
    kas_url: Vec<String>,
    /// A KAS public key (PEM SubjectPublicKeyInfo; RSA-2048+ gives `wrapped`, EC P-256
    /// `ec-wrapped`). One per --kas-url, in the same order.
    #[arg(long, value_name = "FILE.pem", required = true)]
    kas_public_key: Vec<PathBuf>,
    /// Key id of a KAS key, recorded in its key access object: give none, or one per --kas-url.
    #[arg(long, value_name = "KID")]
    kid: Vec<String>,
    /// With several KASes: `all-of` splits the key so that every KAS must release its share;
    /// `any-of` wraps the whole key to each, so any one of them can release it.
    #[arg(long, value_enum, default_value = "all-of", value_name = "MODE")]
    split: SplitMode,
    /// Display marking, e.g. "SECRET//FVEY//REL TO USA, GBR".
    #[arg(
        long,
        value_name = "MARKING",
        conflicts_with = "label_file",
        required_unless_present = "label_file"
    )]
    label: Option<String>,
    /// JSON security label (fields: classification, releasabilityTo, COI, coiOperator, caveats,
    /// originalClassification, originalCountry, creationDate, releasableToIndustry).
    #[arg(long, value_name = "FILE")]
    label_file: Option<PathBuf>,
    /// Plaintext segment size in bytes.
    #[arg(long, default_value_t = dive_ztdf::DEFAULT_SEGMENT_SIZE, value_name = "BYTES")]
    segment_size: usize,
    /// MIME type of the plaintext.
    #[arg(long, default_value = "application/octet-stream")]
    mime_type: String,
    /// Input file.
    input: PathBuf,
    /// Output ZTDF file.
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The ZTDF file.
    file: PathBuf,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// KAS private key (PEM PKCS#8 RSA or EC P-256, or SEC1 EC): decrypt offline. Repeat for a
    /// file split across several KASes; each key access object is tried with the keys that fit.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "kas",
        conflicts_with = "kas"
    )]
    private_key: Vec<PathBuf>,
    /// Obtain the key from the KAS named in the file, as an OpenTDF client: rewrap with an
    /// ephemeral key, authorised by your access token (--token, or log in with --user).
    #[arg(long)]
    kas: bool,
    /// Send the rewrap to this KAS URL instead of the one in the file's key access objects.
    #[arg(long, value_name = "URL", requires = "kas")]
    kas_url: Option<String>,
    /// Your access token (a JWT from your instance's IdP).
    #[arg(
        long,
        env = "DIVE_ACCESS_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    token: Option<String>,
    /// Log in at the IdP (--issuer) as this user to obtain the token.
    #[arg(long, requires_all = ["kas", "issuer"])]
    user: Option<String>,
    /// The user's password (prefer the environment variable).
    #[arg(long, env = "DIVE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The user's TOTP secret (base32), for users whose login needs a one-time code.
    #[arg(long, env = "DIVE_TOTP_SECRET", hide_env_values = true)]
    totp_secret: Option<String>,
    /// The IdP's issuer URL (e.g. https://localhost:8443).
    #[arg(long, value_name = "URL", requires = "user")]
    issuer: Option<String>,
    /// The OAuth client to log in through.
    #[arg(long, default_value = "dive-cli", requires = "user")]
    client_id: String,
    /// The client's secret, for a confidential client.
    #[arg(long, env = "DIVE_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// A redirect URI registered for the client (the login never follows it).
    #[arg(
        long,
        default_value = "http://127.0.0.1/dive-cli/callback",
        requires = "user"
    )]
    redirect_uri: String,
    /// The ephemeral key the KAS rewraps to.
    #[arg(long, value_enum, default_value = "ec", requires = "kas")]
    client_key: ClientKeyArg,
    /// CA certificate the KAS and IdP certificates chain to (default: the installation CA,
    /// $DIVE_HOME/pki/ca/cert.pem).
    #[arg(long, value_name = "FILE.pem", requires = "kas")]
    ca_cert: Option<PathBuf>,
    /// The ZTDF file.
    input: PathBuf,
    /// Where to write the plaintext (written only if every check passes).
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitMode {
    /// Every KAS must release its share (XOR key split, one split id per KAS).
    AllOf,
    /// Any one KAS can release the whole key (one shared split id).
    AnyOf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ClientKeyArg {
    Rsa,
    Ec,
}

pub fn run(cmd: ZtdfCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        ZtdfCommand::Encrypt(a) => encrypt(a, ctx),
        ZtdfCommand::Inspect(a) => inspect(a),
        ZtdfCommand::Decrypt(a) => decrypt(a, ctx),
    }
}

/// Library errors caused by the input (bad file, key, label, tampering) exit with code 2.
fn lib_err(e: dive_ztdf::Error, what: &str) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input(format!("{what}: {e}"))
    } else {
        anyhow::Error::new(e).context(what.to_string())
    }
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("cannot read {what} {}: {e}", path.display())))
}

fn open_input(path: &Path) -> anyhow::Result<File> {
    File::open(path).map_err(|e| bad_input(format!("cannot open input {}: {e}", path.display())))
}

/// The KAS recipients of `dive ztdf encrypt`, paired in command-line order.
fn recipients(a: &EncryptArgs) -> anyhow::Result<Vec<Recipient>> {
    if a.kas_url.len() != a.kas_public_key.len() {
        return Err(bad_input(format!(
            "{} --kas-url but {} --kas-public-key: give one public key per KAS, in the same order",
            a.kas_url.len(),
            a.kas_public_key.len()
        )));
    }
    if !a.kid.is_empty() && a.kid.len() != a.kas_url.len() {
        return Err(bad_input(format!(
            "{} --kid for {} KAS(es): give no --kid or one per --kas-url",
            a.kid.len(),
            a.kas_url.len()
        )));
    }
    let mut out = Vec::with_capacity(a.kas_url.len());
    for (i, (url, path)) in a.kas_url.iter().zip(&a.kas_public_key).enumerate() {
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(bad_input(format!(
                "--kas-url {url:?} must be an http(s) URL"
            )));
        }
        let key = KasPublicKey::from_pem(&read_text(path, "KAS public key")?)
            .map_err(|e| lib_err(e, &format!("{}", path.display())))?;
        out.push(Recipient::new(url.clone(), a.kid.get(i).cloned(), key));
    }
    Ok(out)
}

fn encrypt(a: EncryptArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut recipients = recipients(&a)?;
    let kases = recipients
        .iter()
        .map(|r| r.kas_url.as_str())
        .collect::<Vec<_>>()
        .join(if a.split == SplitMode::AllOf {
            " + "
        } else {
            " | "
        });
    let plan = if recipients.len() == 1 {
        KeyAccessPlan::single(recipients.remove(0))
    } else if a.split == SplitMode::AllOf {
        KeyAccessPlan::all_of(recipients)
    } else {
        KeyAccessPlan::any_of(recipients)
    };
    let label = match (&a.label, &a.label_file) {
        (Some(m), _) => {
            dive_ztdf::label::label_from_marking(m).map_err(|e| lib_err(e, "--label"))?
        }
        (None, Some(f)) => dive_ztdf::label::label_from_json(&read_text(f, "label file")?)
            .map_err(|e| lib_err(e, &format!("--label-file {}", f.display())))?,
        (None, None) => return Err(bad_input("one of --label or --label-file is required")),
    };
    let input = open_input(&a.input)?;
    let len = input
        .metadata()
        .with_context(|| format!("reading metadata of {}", a.input.display()))?
        .len();
    let opts = EncryptOptions::new(plan)
        .label(label.clone())
        .segment_size(a.segment_size)
        .mime_type(a.mime_type.clone())
        .plaintext_len(len);
    if ctx.dry_run {
        println!(
            "would encrypt {} ({len} bytes) to {} for {} as {}",
            a.input.display(),
            a.output.display(),
            kases,
            label.marking()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = File::create(&a.output)
        .map_err(|e| bad_input(format!("cannot create {}: {e}", a.output.display())))?;
    let summary = dive_ztdf::encrypt(
        BufReader::with_capacity(1 << 20, input),
        BufWriter::with_capacity(1 << 20, out),
        &opts,
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(&a.output);
        lib_err(e, "encryption failed")
    })?;
    if ctx.verbosity >= 0 {
        println!(
            "encrypted {} bytes in {} segment(s) to {} [{}]",
            summary.plaintext_len,
            summary.segments,
            a.output.display(),
            label.marking()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let file = open_input(&a.file)?;
    let report = dive_ztdf::inspect(BufReader::new(file))
        .map_err(|e| lib_err(e, &format!("{}", a.file.display())))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&a.file, &report);
    }
    if report.ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(bad_input(format!(
            "{} failed integrity checks",
            a.file.display()
        )))
    }
}

fn print_report(path: &Path, r: &dive_ztdf::Inspection) {
    println!("file:           {}", path.display());
    println!(
        "schema version: {}",
        r.schema_version.as_deref().unwrap_or("(none)")
    );
    println!(
        "mime type:      {}",
        r.mime_type.as_deref().unwrap_or("(none)")
    );
    println!(
        "plaintext:      {} bytes in {} segment(s) (default {} bytes){}",
        r.plaintext_size,
        r.segments,
        r.segment_size_default,
        if r.zip64 { ", ZIP64" } else { "" }
    );
    println!(
        "marking:        {}",
        r.marking.as_deref().unwrap_or("(no DIVE label)")
    );
    println!("policy:         {}", r.policy_uuid);
    for a in &r.data_attributes {
        println!("  attribute     {a}");
    }
    for d in &r.dissem {
        println!("  dissem        {d}");
    }
    for (i, k) in r.key_access.iter().enumerate() {
        println!(
            "key access {i}:   {} {} kid={} split={}{}",
            k.alg,
            k.kas,
            k.kid.as_deref().unwrap_or("-"),
            k.sid.as_deref().unwrap_or("-"),
            if k.encrypted_metadata {
                " +metadata"
            } else {
                ""
            }
        );
    }
    for a in &r.assertions {
        println!(
            "assertion:      {} {} scope={} format={} binding={}",
            a.id,
            a.kind,
            a.scope,
            a.format,
            a.binding_alg.as_deref().unwrap_or("none")
        );
    }
    for c in &r.checks {
        println!(
            "check {:<22} {}  {}",
            c.name,
            if c.ok { "ok  " } else { "FAIL" },
            c.detail
        );
    }
}

fn decrypt(a: DecryptArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if a.kas && a.token.is_none() && a.user.is_none() {
        return Err(bad_input(
            "--kas needs your access token (--token or DIVE_ACCESS_TOKEN) or a login (--user)",
        ));
    }
    let input = open_input(&a.input)?;
    let reader = TdfReader::open(BufReader::with_capacity(1 << 20, input))
        .map_err(|e| lib_err(e, &format!("{}", a.input.display())))?;
    let unlocked = if a.kas {
        let rewrapped = rewrap_with_kas(&a, ctx, &reader)?;
        reader.unlock(&rewrapped)
    } else {
        if a.private_key.is_empty() {
            return Err(bad_input("one of --private-key or --kas is required"));
        }
        let mut keys = LocalKeyUnwrapper::new();
        for path in &a.private_key {
            let key = KasPrivateKey::from_pem(&read_text(path, "private key")?)
                .map_err(|e| lib_err(e, &format!("{}", path.display())))?;
            keys = keys.with_key(None, key);
        }
        reader.unlock(&keys)
    };
    let mut unlocked = unlocked.map_err(|e| lib_err(e, &format!("{}", a.input.display())))?;
    if ctx.dry_run {
        println!(
            "would decrypt {} to {} (all key checks passed)",
            a.input.display(),
            a.output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // One pass into a temporary file beside OUT, renamed only when every segment authenticated:
    // a tampered file never leaves plaintext at OUT.
    let dir = a
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| bad_input(format!("cannot write in {}: {e}", dir.display())))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp);
    let n = unlocked
        .decrypt_streaming_to(&mut w)
        .map_err(|e| lib_err(e, &format!("{}", a.input.display())))?;
    w.flush()?;
    let tmp = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("flushing plaintext: {}", e.error()))?;
    tmp.persist(&a.output).map_err(|e| {
        anyhow::anyhow!(
            "cannot move plaintext to {}: {}",
            a.output.display(),
            e.error
        )
    })?;
    if ctx.verbosity >= 0 {
        println!("decrypted {n} bytes to {}", a.output.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Obtain the access token (given, or by logging in), then rewrap every KAO at the KAS it names
/// (or at --kas-url), one request per KAS.
fn rewrap_with_kas<R: std::io::Read + std::io::Seek>(
    a: &DecryptArgs,
    ctx: &Context,
    reader: &TdfReader<R>,
) -> anyhow::Result<dive_kas::Rewrapped> {
    let ca = a
        .ca_cert
        .clone()
        .unwrap_or_else(|| ctx.home.join("pki").join("ca").join("cert.pem"));
    if !ca.exists() {
        return Err(bad_input(format!(
            "no CA certificate at {}: pass --ca-cert or set DIVE_HOME to the installation",
            ca.display()
        )));
    }
    let http = dive_http::https_client_trusting(&ca)?;
    let kind = match a.client_key {
        ClientKeyArg::Rsa => dive_kas::ClientKeyKind::Rsa2048,
        ClientKeyArg::Ec => dive_kas::ClientKeyKind::EcP256,
    };
    let policy = reader.manifest().encryption_information.policy.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let token = match (&a.token, &a.user) {
            (Some(t), _) => t.clone(),
            (None, Some(user)) => login(a, &http, user).await?,
            (None, None) => {
                return Err(bad_input("one of --token or --user is required with --kas"));
            }
        };
        let all = dive_kas::rewrap_all(
            &http,
            &token,
            &policy,
            reader.key_access_objects(),
            kind,
            a.kas_url.as_deref(),
        )
        .await
        .map_err(|e| match e {
            dive_kas::ClientError::Status { status: 400, .. } => bad_input(e.to_string()),
            other => anyhow::Error::new(other),
        })?;
        if all.released() == 0 {
            anyhow::bail!(
                "the KAS refused to release the key of {} (forbidden): your token, clearance, \
                 country or communities do not allow it, or the file was altered",
                a.input.display()
            );
        }
        Ok(all)
    })
}

/// The IdP login helper: password, then TOTP (or first-time enrolment), then the code exchange.
async fn login(a: &DecryptArgs, http: &reqwest::Client, user: &str) -> anyhow::Result<String> {
    let issuer = a
        .issuer
        .clone()
        .ok_or_else(|| bad_input("--issuer is required with --user"))?;
    let password = a
        .password
        .clone()
        .ok_or_else(|| bad_input("--password (or DIVE_PASSWORD) is required with --user"))?;
    let req = dive_idp::login_helper::LoginRequest {
        issuer: issuer.trim_end_matches('/').to_string(),
        client_id: a.client_id.clone(),
        client_secret: a.client_secret.clone(),
        redirect_uri: a.redirect_uri.clone(),
        scope: "openid coalition".to_string(),
        username: user.to_string(),
        password,
        totp_secret: a.totp_secret.clone(),
        extra: vec![],
    };
    let (tokens, outcome) = dive_idp::login_helper::login(http, &req)
        .await
        .map_err(|e| anyhow::anyhow!("login as {user} at {issuer} failed: {e}"))?;
    if let Some(secret) = outcome.enrolled_totp_secret {
        // First login of a user who needs a second factor: the helper enrolled one.
        eprintln!(
            "note: {user} was enrolled for TOTP now; keep this secret for later logins \
             (--totp-secret / DIVE_TOTP_SECRET): {secret}"
        );
    }
    tokens["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the IdP's token response has no access_token"))
}
