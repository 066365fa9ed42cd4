//! The headless approver: `pending`, `approve`, `deny`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use countersign_client::Client;
use countersign_client::approver::{Choice, open_session, sign_decision, sign_review};
use countersign_core::Verdict;
use countersign_keys::Signer;
use uuid::Uuid;

use crate::profile::{self, Profile, sign_with};

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
    /// The verification code the requester told you, when the request asks for one (`pending`
    /// shows the choices).
    #[arg(long)]
    pub code: Option<String>,
    #[command(flatten)]
    pub profile: ProfileArg,
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
        // Agent-written text is shown escaped, whatever the service let through.
        let shown = |t: &str| countersign_core::text::escape_for_display(t, false).into_owned();
        println!(
            "{}  {} {} [{}] by {}  {}/{} approvals  expires {}  — {}",
            v.id,
            a.request.action_type,
            shown(&a.request.resource),
            a.request.environment,
            shown(&a.requester),
            v.approvals,
            v.quorum,
            a.expires_at,
            shown(&a.policy.reason)
        );
        if let Some(risk) = &a.policy.risk {
            let why = risk
                .reasons
                .iter()
                .map(|r| shown(r))
                .collect::<Vec<_>>()
                .join("; ");
            println!(
                "    {} risk{}{}",
                risk.level.label(),
                if why.is_empty() { "" } else { ": " },
                why
            );
        }
        if let Some(choices) = &v.verification_choices {
            println!(
                "    verification code: one of {} (ask the requester; approve with --code)",
                choices.join(", ")
            );
        }
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
    if let (Verdict::Approve, Some(choices), None) =
        (verdict, &view.verification_choices, &args.code)
    {
        bail!(
            "request {} asks for the requester's verification code: ask them, then add --code (one of {})",
            args.id,
            choices.join(", ")
        );
    }
    let choice = Choice {
        verdict,
        comment: &args.comment,
        verification_code: args.code.as_deref(),
    };
    let signed = sign_decision(
        &view,
        &profile.approver_id,
        profile.key_id,
        choice,
        sign_with(signer.as_ref()),
    )?;
    let result = client.decide(&signed).await?;
    println!(
        "{}: {} ({}/{} approvals)",
        args.id, result.result, result.approvals, result.quorum
    );
    Ok(())
}

/// Options of `review`.
#[derive(Args, Debug)]
pub struct ReviewArgs {
    /// The break-glass request's id.
    pub id: Uuid,
    /// Raise a concern: the use was not justified, or needs follow-up.
    #[arg(long)]
    pub concern: bool,
    /// What you found, for the audit log.
    #[arg(long, default_value = "")]
    pub comment: String,
    #[command(flatten)]
    pub profile: ProfileArg,
}

/// `countersign reviews`: break-glass uses waiting for your review.
pub async fn reviews(args: ProfileArg) -> anyhow::Result<()> {
    let (_, _, client) = session(args.profile).await?;
    let views = client.pending_reviews().await?;
    if views.is_empty() {
        eprintln!("no break-glass use waiting for your review");
    }
    for v in views {
        let a = &v.action;
        let shown = |t: &str| countersign_core::text::escape_for_display(t, false).into_owned();
        println!(
            "{}  BREAK-GLASS  {} {} [{}] by {}  granted {}  — {}",
            v.id,
            a.request.action_type,
            shown(&a.request.resource),
            a.request.environment,
            shown(&a.requester),
            a.created_at,
            shown(&a.request.justification)
        );
    }
    Ok(())
}

/// `countersign review ID`: signs a review of a break-glass use.
pub async fn review(args: ReviewArgs) -> anyhow::Result<()> {
    let (profile, signer, client) = session(args.profile.profile).await?;
    let view = client.view(args.id).await?;
    let signed = sign_review(
        &view,
        &profile.approver_id,
        profile.key_id,
        args.concern,
        &args.comment,
        sign_with(signer.as_ref()),
    )?;
    let result = client.review(&signed).await?;
    println!(
        "{}: reviewed{} ({}/{} reviews{})",
        args.id,
        if args.concern { " with a concern" } else { "" },
        result.reviews,
        result.review_quorum,
        if result.complete { ", complete" } else { "" }
    );
    Ok(())
}
