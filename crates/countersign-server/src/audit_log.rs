//! The service's Merkle view of the stored audit log: caught up from the store before it
//! answers, so it also sees events other replicas appended.

use std::sync::Mutex;

use countersign_core::checkpoint::{Checkpoint, SignedCheckpoint};
use countersign_core::{ConsistencyProof, Digest, InclusionProof, MerkleTree};
use countersign_store::{Store, StoreError};

use crate::error::ApiError;
use crate::state::AppState;

const BATCH: u32 = 50_000;

/// The tree of leaf hashes.
#[derive(Default)]
pub struct AuditLog {
    tree: Mutex<MerkleTree>,
}

impl AuditLog {
    fn size(&self) -> u64 {
        self.tree.lock().map(|t| t.size()).unwrap_or(0)
    }

    /// Appends what the store has beyond the tree; returns the new size.
    pub async fn sync(&self, store: &dyn Store) -> Result<u64, StoreError> {
        loop {
            let from = self.size();
            let hashes = store.leaf_hashes(from, BATCH).await?;
            let mut tree = self
                .tree
                .lock()
                .map_err(|_| StoreError::Backend("audit tree lock poisoned".into()))?;
            // Another task may have caught up meanwhile: skip what it already added.
            let skip = (tree.size() - from) as usize;
            for h in hashes.iter().skip(skip) {
                tree.push_leaf_hash(*h);
            }
            if (hashes.len() as u32) < BATCH {
                return Ok(tree.size());
            }
        }
    }

    fn with_tree<T>(&self, f: impl FnOnce(&MerkleTree) -> T) -> Result<T, ApiError> {
        let tree = self
            .tree
            .lock()
            .map_err(|_| ApiError::internal("audit tree", "lock poisoned"))?;
        Ok(f(&tree))
    }

    /// Root at `size`.
    pub fn root_at(&self, size: u64) -> Result<Digest, ApiError> {
        self.with_tree(|t| t.root_at(size))?
            .map_err(|e| ApiError::bad_request("bad_tree_size", e.to_string()))
    }

    /// Inclusion proof of leaf `index` in the tree of `size`.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<InclusionProof, ApiError> {
        let hashes = self
            .with_tree(|t| t.inclusion_proof(index, size))?
            .map_err(|e| ApiError::bad_request("bad_proof_request", e.to_string()))?;
        Ok(InclusionProof {
            leaf_index: index,
            tree_size: size,
            hashes,
        })
    }

    /// Consistency proof from `from` to `to`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, ApiError> {
        let hashes = self
            .with_tree(|t| t.consistency_proof(from, to))?
            .map_err(|e| ApiError::bad_request("bad_proof_request", e.to_string()))?;
        Ok(ConsistencyProof {
            from_size: from,
            to_size: to,
            hashes,
        })
    }
}

/// The latest signed checkpoint, signing a new one when the log has grown since.
pub async fn current_checkpoint(state: &AppState) -> Result<SignedCheckpoint, ApiError> {
    let size = state.log.sync(state.store.as_ref()).await?;
    if let Some((stored_size, note)) = state.store.latest_checkpoint().await?
        && stored_size >= size
    {
        return SignedCheckpoint::parse_note(&note)
            .map_err(|e| ApiError::internal("stored checkpoint", e));
    }
    let checkpoint = Checkpoint {
        origin: state.config.origin.clone(),
        tree_size: size,
        root_hash: state.log.root_at(size)?,
        timestamp: state.now(),
    };
    let signature = state
        .key
        .sign(&checkpoint.signing_payload())
        .map_err(|e| ApiError::internal("checkpoint signature", e))?;
    let signed = SignedCheckpoint::new(
        checkpoint,
        &state.config.origin,
        state.key.public(),
        signature,
    );
    state.store.save_checkpoint(size, &signed.to_note()).await?;
    // Another replica may have saved one for this size first: serve the stored one.
    match state.store.latest_checkpoint().await? {
        Some((s, note)) if s == size => SignedCheckpoint::parse_note(&note)
            .map_err(|e| ApiError::internal("stored checkpoint", e)),
        _ => Ok(signed),
    }
}
