//! `countersign admin migrate-store`: an embedded deployment onto PostgreSQL, proven complete by
//! the audit log. Stop the service first: writes made during the copy would not be moved.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use countersign_core::checkpoint::SignedCheckpoint;
use countersign_core::{Digest, MerkleTree, merkle};
use countersign_store::{AuditLog as _, Store};
use countersign_store_postgres::PgStore;
use countersign_store_sqlite::DATABASE_FILE;
use countersign_store_sqlite::SqliteStore;

use crate::commands::database::redact;

/// The log's tree, rebuilt from the stored leaf hashes; every stored event is checked against
/// its leaf on the way.
async fn tree_of(store: &dyn Store, name: &str) -> anyhow::Result<MerkleTree> {
    let mut tree = MerkleTree::new();
    loop {
        let from = tree.size();
        let leaves = store.audit_leaves(from, 10_000).await?;
        let hashes = store.leaf_hashes(from, 10_000).await?;
        if leaves.len() != hashes.len() {
            bail!("{name}: events and leaf hashes differ in number from event {from}");
        }
        for ((seq, text), hash) in leaves.iter().zip(&hashes) {
            if merkle::leaf_hash(text.as_bytes()) != *hash {
                bail!("{name}: event {seq} does not match its leaf hash");
            }
            tree.push_leaf_hash(*hash);
        }
        if leaves.len() < 10_000 {
            return Ok(tree);
        }
    }
}

fn root_hex(d: &Digest) -> String {
    d.to_hex()
}

/// Runs the migration.
pub async fn run(from: &str, to: &str) -> anyhow::Result<()> {
    let path = from
        .strip_prefix("sqlite:")
        .map(PathBuf::from)
        .with_context(|| format!("--from {from:?}: expected sqlite:DATA_DIR or sqlite:FILE.db"))?;
    let file = if path.is_dir() {
        path.join(DATABASE_FILE)
    } else {
        path
    };
    if !file.is_file() {
        bail!("no SQLite store at {}", file.display());
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to {}: expected postgres://…", redact(to));
    }
    // Opening applies any pending migration, so the copy starts from the current schema.
    let source = SqliteStore::open(&file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let source_tree = tree_of(&source, "source").await?;
    let checkpoint = source
        .latest_checkpoint()
        .await?
        .map(|(_, note)| SignedCheckpoint::parse_note(&note))
        .transpose()
        .context("the source's latest checkpoint does not parse")?;
    if let Some(cp) = &checkpoint {
        let root = source_tree.root_at(cp.checkpoint.tree_size)?;
        if root != cp.checkpoint.root_hash {
            bail!(
                "the source log does not match its own checkpoint {}: refusing to migrate a damaged log",
                cp.checkpoint.tree_size
            );
        }
    }
    source.close().await;

    let target = PgStore::connect(to)
        .await
        .with_context(|| format!("opening {}", redact(to)))?;
    let imported = target.import_sqlite(&file).await?;
    for (table, rows) in &imported.tables {
        eprintln!("copied {rows:>8} rows of {table}");
    }
    let target_tree = tree_of(&target, "destination").await?;
    if target_tree.size() != source_tree.size() || target_tree.root() != source_tree.root() {
        bail!(
            "the copied log differs: {} events, root {} in SQLite; {} events, root {} in PostgreSQL",
            source_tree.size(),
            root_hex(&source_tree.root()),
            target_tree.size(),
            root_hex(&target_tree.root())
        );
    }
    println!(
        "migrated: {} audit events, root {}",
        target_tree.size(),
        root_hex(&target_tree.root())
    );
    match checkpoint {
        Some(cp) => {
            let root = target_tree.root_at(cp.checkpoint.tree_size)?;
            if root != cp.checkpoint.root_hash {
                bail!(
                    "the copied log does not match checkpoint {}",
                    cp.checkpoint.tree_size
                );
            }
            println!(
                "the copied log matches the last signed checkpoint ({} events, signed {})",
                cp.checkpoint.tree_size, cp.checkpoint.timestamp
            );
        }
        None => println!("(the source had no signed checkpoint yet)"),
    }
    println!("start the replicas with --database-url and this data directory's service-key.pem");
    Ok(())
}
