//! `countersign audit sync|status|search|show|export|verify`: the verified audit mirror and its
//! reports, for headless use (the console does the same with a window).
//!
//! Exit codes: 0 fine; 1 an error (service unreachable, bad input); 3 an audit alarm — the
//! service's history did not verify (and the mirror kept its last verified state) or a bundle
//! did not verify.

use countersign_approver::{export as exports, history};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use countersign_client::approver::now;
use countersign_core::text::escape_for_display;
use countersign_core::{KeyId, Timestamp};
use countersign_mirror::{Mirror, MirrorError, SearchQuery, Sort};
use countersign_report::{Control, ExportProgress, bundle};

use crate::commands::approver::ProfileArg;
use crate::profile::{self, Profile};

/// Exit code of a failed verification.
pub const ALARM_EXIT: i32 = 3;
/// Exit status of `audit verify` when the bundle is consistent but nothing ties it to a service
/// the caller trusts (no `--server-key-id`, and `--accept-unanchored` not given).
pub const UNANCHORED_EXIT: i32 = 4;

/// Options of `audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Where the mirror lives.
#[derive(Args, Debug)]
pub struct MirrorArg {
    /// The mirror database (default: `$XDG_DATA_HOME/countersign/mirror.db`).
    #[arg(long, env = "COUNTERSIGN_MIRROR")]
    pub mirror: Option<PathBuf>,
}

/// Search filters, shared by `search` and `export`.
#[derive(Args, Debug, Default)]
pub struct Filters {
    /// Words to find (type, resource, requester, approvers, justification, comments,
    /// parameters, tags).
    #[arg(long, default_value = "")]
    pub text: String,
    /// Verdict: pending, approved, denied, expired, cancelled.
    #[arg(long)]
    pub verdict: Option<String>,
    /// Someone who decided.
    #[arg(long)]
    pub approver: Option<String>,
    /// Who asked.
    #[arg(long)]
    pub requester: Option<String>,
    /// Action type.
    #[arg(long = "type")]
    pub action_type: Option<String>,
    /// Environment.
    #[arg(long)]
    pub environment: Option<String>,
    /// A tag (repeat for several; all must be present).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Created at or after (RFC 3339, or a date: 2026-11-01).
    #[arg(long)]
    pub from: Option<String>,
    /// Created before (RFC 3339, or a date).
    #[arg(long)]
    pub to: Option<String>,
    /// One request, by id.
    #[arg(long)]
    pub id: Option<uuid::Uuid>,
}

/// Report formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per request (RFC 4180).
    Csv,
    /// JSON Lines evidence that `audit verify` checks offline (signed with your key).
    Bundle,
    /// A report for auditors.
    Pdf,
}

/// Audit subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Bring the mirror up to date, verifying everything, and cosign the checkpoint.
    Sync {
        #[command(flatten)]
        mirror: MirrorArg,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// What the mirror holds and any alarms.
    Status {
        #[command(flatten)]
        mirror: MirrorArg,
    },
    /// Search requests (newest first).
    Search {
        #[command(flatten)]
        mirror: MirrorArg,
        #[command(flatten)]
        filters: Filters,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One request in full, with its events' inclusion evidence (JSON).
    Show {
        #[command(flatten)]
        mirror: MirrorArg,
        /// Request id.
        id: uuid::Uuid,
    },
    /// Export a report of the requests matching the filters.
    Export {
        #[command(flatten)]
        mirror: MirrorArg,
        #[command(flatten)]
        filters: Filters,
        /// Report format.
        #[arg(long, value_enum)]
        format: Format,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// Pin a witness policy (from `countersign admin witness-policy`, handed over out of band):
    /// from the next sync on, a checkpoint counts as verified only once the policy's threshold
    /// of witnesses have cosigned it.
    PinWitnessPolicy {
        #[command(flatten)]
        mirror: MirrorArg,
        /// The policy file.
        policy: PathBuf,
    },
    /// Write the proof of one request: its events, each with its inclusion proof, the
    /// checkpoint with its cosignatures, and the keys that signed its decisions, signed by you
    /// (an evidence bundle of one request; `audit verify` checks it offline).
    Proof {
        #[command(flatten)]
        mirror: MirrorArg,
        /// Request id.
        id: uuid::Uuid,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// Verify an evidence bundle (or a proof of one request) offline.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// The service key id it must be anchored to (hex, from `GET /v1/server-key` or
        /// `countersign admin server-key`). Without it the result anchors to nothing.
        #[arg(long)]
        server_key_id: Option<KeyId>,
        /// Exit 0 even without --server-key-id: a bundle that is only consistent in itself (anyone
        /// with a key of their own could have made one) is accepted.
        #[arg(long, conflicts_with = "server_key_id")]
        accept_unanchored: bool,
    },
}

fn default_mirror() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("countersign/mirror.db")
}

async fn open(arg: MirrorArg) -> anyhow::Result<Mirror> {
    let path = arg.mirror.unwrap_or_else(default_mirror);
    Ok(Mirror::open(&path).await?)
}

fn time_arg(name: &str, text: &str) -> anyhow::Result<Timestamp> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    Timestamp::parse(&full)
        .map_err(|e| anyhow::anyhow!("--{name} {text:?} is not an RFC 3339 time or a date: {e}"))
}

impl Filters {
    fn query(self) -> anyhow::Result<SearchQuery> {
        Ok(SearchQuery {
            text: self.text,
            id: self.id.map(|id| id.to_string()),
            status: self.verdict,
            approver: self.approver,
            requester: self.requester,
            action_type: self.action_type,
            environment: self.environment,
            tags: self.tags,
            from: self
                .from
                .as_deref()
                .map(|t| time_arg("from", t))
                .transpose()?,
            to: self.to.as_deref().map(|t| time_arg("to", t)).transpose()?,
            ..SearchQuery::default()
        })
    }
}

/// Runs an audit subcommand; returns the exit code.
pub async fn run(args: AuditArgs) -> anyhow::Result<i32> {
    match args.command {
        AuditCommand::Sync { mirror, profile } => sync(mirror, profile).await,
        AuditCommand::Status { mirror } => status(mirror).await,
        AuditCommand::Search {
            mirror,
            filters,
            limit,
            json,
        } => search(mirror, filters, limit, json).await,
        AuditCommand::Show { mirror, id } => {
            let detail = open(mirror).await?.request(id).await?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
            Ok(0)
        }
        AuditCommand::Export {
            mirror,
            filters,
            format,
            out,
            profile,
        } => export(mirror, filters, format, &out, profile).await,
        AuditCommand::PinWitnessPolicy { mirror, policy } => {
            let text = std::fs::read_to_string(&policy)
                .with_context(|| format!("reading {}", policy.display()))?;
            let signed: countersign_core::witness_policy::SignedWitnessPolicy =
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a witness policy", policy.display()))?;
            open(mirror).await?.pin_witness_policy(&signed).await?;
            println!(
                "pinned: {} of {} must cosign checkpoints of {}",
                signed.policy.threshold,
                signed.policy.names().join(", "),
                signed.policy.origin
            );
            Ok(0)
        }
        AuditCommand::Proof {
            mirror,
            id,
            out,
            profile,
        } => {
            let filters = Filters {
                id: Some(id),
                ..Filters::default()
            };
            export(mirror, filters, Format::Bundle, &out, profile).await
        }
        AuditCommand::Verify {
            bundle,
            server_key_id,
            accept_unanchored,
        } => verify(&bundle, server_key_id.as_ref(), accept_unanchored),
    }
}

fn alarm_exit(e: &MirrorError) -> Option<i32> {
    if let MirrorError::Alarm(a) = e {
        eprintln!("countersign: {a}");
        eprintln!(
            "countersign: the mirror kept its last verified state; do not trust the service until this is explained"
        );
        Some(ALARM_EXIT)
    } else {
        None
    }
}

async fn sync(mirror: MirrorArg, profile: ProfileArg) -> anyhow::Result<i32> {
    let profile = Profile::load(&profile.profile.unwrap_or_else(profile::default_path))?;
    let signer = profile.signer()?;
    let mirror = open(mirror).await?;
    let progress = |p: countersign_mirror::Progress| {
        if p.target > 0 {
            eprint!("\rverified {} of {} events", p.verified, p.target);
        }
    };
    let approver = history::Approver {
        server: &profile.server,
        approver_id: &profile.approver_id,
        key_id: profile.key_id,
        signer: signer.as_ref(),
    };
    let result = history::sync_as_witness(&mirror, &approver, &progress).await;
    eprintln!();
    let report = match result {
        Ok(r) => r,
        Err(history::SyncError::Mirror(e)) => {
            return alarm_exit(&e).map_or_else(|| Err(e.into()), Ok);
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "verified checkpoint {} (root {}); {} new events; cosigned: {}",
        report.checkpoint.tree_size,
        report.checkpoint.root_hash.to_hex(),
        report.to_size - report.from_size,
        if report.cosigned { "yes" } else { "no" }
    );
    if let Some(size) = report.witnessed_size {
        println!("witnessed: the witness policy's threshold vouches for the history up to {size}");
    }
    for w in &report.witnesses {
        println!(
            "consistent with {}'s cosigned checkpoint {}",
            w.approver_id, w.tree_size
        );
    }
    Ok(0)
}

async fn status(mirror: MirrorArg) -> anyhow::Result<i32> {
    let mirror = open(mirror).await?;
    let s = mirror.status().await?;
    println!("mirror      {}", mirror.path().display());
    println!(
        "service     {}",
        s.server_url.as_deref().unwrap_or("(never synced)")
    );
    println!("log         {}", s.origin.as_deref().unwrap_or("-"));
    match &s.checkpoint {
        Some(c) => println!(
            "checkpoint  {} events, root {}, signed {}",
            c.tree_size,
            c.root_hash.to_hex(),
            c.timestamp
        ),
        None => println!("checkpoint  none"),
    }
    println!(
        "verified    {} events, {} requests",
        s.verified_size, s.requests
    );
    for a in &s.alarms {
        println!("ALARM {}  {}", a.raised_at, a.alarm);
    }
    Ok(if s.alarms.is_empty() { 0 } else { ALARM_EXIT })
}

async fn search(
    mirror: MirrorArg,
    filters: Filters,
    limit: u32,
    json: bool,
) -> anyhow::Result<i32> {
    let mirror = open(mirror).await?;
    let mut q = filters.query()?;
    q.sort = Sort::Newest;
    let mut left = limit;
    while left > 0 {
        q.limit = Some(left.min(countersign_mirror::MAX_PAGE));
        let page = mirror.search(&q).await?;
        for r in &page.items {
            if json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                // Agent-written text is shown escaped: a resource written before intake refused
                // control and bidirectional characters could otherwise drive the terminal.
                let shown = |t: &str| escape_for_display(t, false).into_owned();
                println!(
                    "{}  {}  {:9} {} {} [{}] by {}{}",
                    r.created_at,
                    r.id,
                    r.status,
                    shown(&r.action_type),
                    shown(&r.resource),
                    shown(&r.environment),
                    shown(&r.requester),
                    if r.approvers.is_empty() {
                        String::new()
                    } else {
                        format!("; decided by {}", shown(&r.approvers.join(", ")))
                    }
                );
            }
        }
        left -= page.items.len() as u32;
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    Ok(0)
}

async fn export(
    mirror: MirrorArg,
    filters: Filters,
    format: Format,
    out: &Path,
    profile: ProfileArg,
) -> anyhow::Result<i32> {
    let mirror = open(mirror).await?;
    let q = filters.query()?;
    if let Some(id) = &q.id
        && mirror.count(&q).await? == 0
    {
        anyhow::bail!(
            "no request {id} in the mirror: `countersign audit sync` first, or check the id"
        );
    }
    // Ctrl-C stops the export at the next page and removes the partial file.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let progress = |p: ExportProgress| eprint!("\rexported {} of {} requests", p.done, p.total);
    let control = Control {
        progress: &progress,
        cancel: Some(&cancel),
    };
    let export_format = match format {
        Format::Csv => exports::Format::Csv,
        Format::Bundle => exports::Format::Bundle,
        Format::Pdf => exports::Format::Pdf,
    };
    // A bundle is signed, and so is the evidence a PDF comes with when there is a profile to
    // sign it: the key (and its PIN) is asked for only then.
    let profile_path = profile.profile.unwrap_or_else(profile::default_path);
    let profile = match format {
        Format::Bundle => Some(Profile::load(&profile_path)?),
        Format::Pdf if profile_path.exists() => Some(Profile::load(&profile_path)?),
        _ => None,
    };
    let signer = profile.as_ref().map(Profile::signer).transpose()?;
    let exporter = match (&profile, &signer) {
        (Some(p), Some(s)) => Some(exports::Exporter {
            approver_id: &p.approver_id,
            key_id: p.key_id,
            signer: s.as_ref(),
        }),
        _ => None,
    };
    let result = exports::write(
        &mirror,
        &q,
        export_format,
        out,
        exporter.as_ref(),
        now(),
        control,
    )
    .await;
    eprintln!();
    result?;
    println!("wrote {}", out.display());
    let evidence = countersign_approver::export::evidence_path(out);
    if format == Format::Pdf && evidence.exists() {
        println!(
            "wrote {} (the evidence the PDF names by its hash)",
            evidence.display()
        );
    }
    Ok(0)
}

fn verify(path: &Path, pinned: Option<&KeyId>, accept_unanchored: bool) -> anyhow::Result<i32> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    match bundle::verify(BufReader::new(file), pinned) {
        Ok(v) => {
            let anchored = pinned.is_some();
            println!(
                "{} {}",
                if anchored { "VERIFIED" } else { "UNANCHORED" },
                path.display()
            );
            println!("log          {}", v.origin);
            println!(
                "service key  {}{}",
                v.server_key_id,
                if anchored {
                    " (the key you gave)"
                } else {
                    " (named by the bundle itself)"
                }
            );
            println!(
                "checkpoint   {} events, root {}, signed {}",
                v.checkpoint.tree_size,
                v.checkpoint.root_hash.to_hex(),
                v.checkpoint.timestamp
            );
            if !v.cosigned_by.is_empty() {
                println!("cosigned by  {}", v.cosigned_by.join(", "));
            }
            println!(
                "exported by  {} ({}) at {}",
                v.exported_by.approver_id,
                v.exported_by.key_id.short(),
                v.exported_at
            );
            println!(
                "contents     {} requests, {} events, each proven in the checkpoint",
                v.requests, v.events
            );
            println!(
                "checked      every event's inclusion proof, the checkpoint's signature by that key, \
                 decision and grant signatures, the exporter's signature over the whole file"
            );
            if anchored {
                return Ok(0);
            }
            println!(
                "NOT checked  that this service key is your service's: anyone can make a consistent \
                 bundle with a key of their own. Pass --server-key-id (from `countersign admin \
                 server-key` or GET /v1/server-key), or --accept-unanchored"
            );
            Ok(if accept_unanchored {
                0
            } else {
                UNANCHORED_EXIT
            })
        }
        Err(e) => {
            eprintln!("countersign: NOT VERIFIED: {e}");
            Ok(ALARM_EXIT)
        }
    }
}
