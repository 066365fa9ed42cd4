//! The headless approver: `keys init`, `keys enroll`, `keys list`, `pending`, `approve`, `deny`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use countersign_client::Client;
use countersign_client::approver::{enroll, open_session, sign_decision};
use countersign_core::Verdict;
use countersign_keys::{Signer, SoftwareKey};
use uuid::Uuid;

use crate::profile::{self, KeyRef, Profile, sign_with};

/// Key backends the CLI can create keys on.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// A key file: development only, never hardware-backed.
    Software,
}

/// Options of `keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// Key subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a signing key.
    Init {
        /// Where the key lives.
        #[arg(long, value_enum, default_value = "software")]
        backend: Backend,
        /// Key file (software backend).
        #[arg(long)]
        path: PathBuf,
    },
    /// Enrol a key with a service using a one-time code, and write the approver profile.
    Enroll {
        /// Service URL.
        #[arg(long, env = "COUNTERSIGN_SERVER")]
        server: String,
        /// Your approver identity.
        #[arg(long)]
        approver: String,
        /// The one-time enrolment code.
        #[arg(long)]
        code: String,
        /// Key file (software backend).
        #[arg(long)]
        key: PathBuf,
        /// Label shown to admins.
        #[arg(long, default_value = "software key")]
        label: String,
        /// Profile file to write.
        #[arg(long, env = "COUNTERSIGN_PROFILE")]
        profile: Option<PathBuf>,
    },
    /// Show the key of the profile.
    List {
        /// Profile file.
        #[arg(long, env = "COUNTERSIGN_PROFILE")]
        profile: Option<PathBuf>,
    },
}

/// Options of `pending`, `approve` and `deny`.
#[derive(Args, Debug)]
pub struct ProfileArg {
    /// Approver profile (from `keys enroll`).
    #[arg(long, env = "COUNTERSIGN_PROFILE")]
    pub profile: Option<PathBuf>,
}

/// Options of `approve` and `deny`.
#[derive(Args, Debug)]
pub struct DecideArgs {
    /// The request id.
    pub id: Uuid,
    /// A comment for the audit log.
    #[arg(long, default_value = "")]
    pub comment: String,
    #[command(flatten)]
    pub profile: ProfileArg,
}

/// Runs a `keys` command.
pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Init {
            backend: Backend::Software,
            path,
        } => {
            let key = SoftwareKey::generate(&path)?;
            let info = key.describe();
            eprintln!("created {}", info.describe());
            println!("{}", info.key_id);
        }
        KeysCommand::Enroll {
            server,
            approver,
            code,
            key,
            label,
            profile,
        } => {
            let signer = SoftwareKey::load(&key)?;
            let public_key = signer.public_key();
            let info = signer.describe();
            let client = Client::new(&server)?;
            let enrolled = enroll(
                &client,
                &approver,
                code,
                info.kind,
                &label,
                public_key,
                sign_with(&signer),
            )
            .await
            .context("enrolling the key")?;
            let path = profile.unwrap_or_else(profile::default_path);
            Profile {
                server,
                approver_id: approver,
                key_id: enrolled.key_id,
                key: KeyRef::Software { path: key },
            }
            .save(&path)?;
            eprintln!(
                "enrolled {} for {}; profile written to {}",
                info.describe(),
                enrolled.approver_id,
                path.display()
            );
        }
        KeysCommand::List { profile } => {
            let p = Profile::load(&profile.unwrap_or_else(profile::default_path))?;
            let signer = p.signer()?;
            println!(
                "{}  {}  {}",
                p.approver_id,
                p.server,
                signer.describe().describe()
            );
        }
    }
    Ok(())
}

async fn session(
    profile_path: Option<PathBuf>,
) -> anyhow::Result<(Profile, Box<dyn Signer>, Client)> {
    let profile = Profile::load(&profile_path.unwrap_or_else(profile::default_path))?;
    let signer = profile.signer()?;
    let client = Client::new(&profile.server)?;
    let client = open_session(&client, profile.key_id, sign_with(signer.as_ref())).await?;
    Ok((profile, signer, client))
}

/// `countersign pending`: the requests you may decide, one line each.
pub async fn pending(args: ProfileArg) -> anyhow::Result<()> {
    let (_, _, client) = session(args.profile).await?;
    let views = client.pending().await?;
    if views.is_empty() {
        eprintln!("nothing waiting for you");
    }
    for v in views {
        let a = &v.action;
        println!(
            "{}  {} {} [{}] by {}  {}/{} approvals  expires {}  — {}",
            v.id,
            a.request.action_type,
            a.request.resource,
            a.request.environment,
            a.requester,
            v.approvals,
            v.quorum,
            a.expires_at,
            a.policy.reason
        );
    }
    Ok(())
}

/// `countersign approve|deny ID`.
pub async fn decide(args: DecideArgs, verdict: Verdict) -> anyhow::Result<()> {
    let (profile, signer, client) = session(args.profile.profile).await?;
    let view = client.view(args.id).await?;
    if view.status.is_final() {
        bail!("request {} is already {:?}", args.id, view.status);
    }
    let signed = sign_decision(
        &view,
        &profile.approver_id,
        profile.key_id,
        verdict,
        &args.comment,
        sign_with(signer.as_ref()),
    )?;
    let result = client.decide(&signed).await?;
    println!(
        "{}: {} ({}/{} approvals)",
        args.id, result.result, result.approvals, result.quorum
    );
    Ok(())
}
