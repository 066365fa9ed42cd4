//! The right edge of a Merkle tree: one hash per complete subtree, enough to append leaves and
//! compute the root without keeping the leaves. A verifier that has seen every leaf uses it to
//! recompute the root a checkpoint claims, in O(log n) memory.

use super::{empty_root, node_hash};
use crate::digest::Digest;

/// Why stored frontier bytes were not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed Merkle frontier: {0}")]
pub struct FrontierError(&'static str);

/// The compact range `[0, size)`: the roots of its maximal complete subtrees, largest first
/// (one per set bit of `size`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Digest>,
}

impl Frontier {
    /// The empty tree's frontier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves seen.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its hash.
    pub fn push(&mut self, leaf: Digest) {
        let mut node = leaf;
        let mut size = self.size;
        // Each trailing one bit is a complete subtree of the same height as `node`: merge.
        while size & 1 == 1 {
            // One node per set bit of `size` (checked in `from_bytes`), so this always pops.
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The RFC 9162 root of the leaves seen.
    pub fn root(&self) -> Digest {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }

    /// `size` (8 bytes, big-endian) then the nodes: for storing between runs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.size.to_be_bytes().to_vec();
        for n in &self.nodes {
            out.extend_from_slice(n.as_bytes());
        }
        out
    }

    /// Parses [`Frontier::to_bytes`], checking the node count matches the size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FrontierError> {
        let (size, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or(FrontierError("shorter than its size field"))?;
        let size = u64::from_be_bytes(*size);
        if rest.len() != size.count_ones() as usize * 32 {
            return Err(FrontierError("node count does not match the size"));
        }
        let nodes = rest
            .chunks_exact(32)
            .map(|c| {
                let mut d = [0u8; 32];
                d.copy_from_slice(c);
                Digest(d)
            })
            .collect();
        Ok(Self { size, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MerkleTree, leaf_hash};

    #[test]
    fn root_equals_the_full_tree_root_at_every_size() {
        let mut frontier = Frontier::new();
        let mut tree = MerkleTree::new();
        assert_eq!(frontier.root(), tree.root());
        for i in 0u32..300 {
            let leaf = leaf_hash(&i.to_be_bytes());
            frontier.push(leaf);
            tree.push_leaf_hash(leaf);
            assert_eq!(frontier.root(), tree.root(), "size {}", i + 1);
            assert_eq!(frontier.size(), tree.size());
        }
    }

    #[test]
    fn bytes_round_trip_and_bad_lengths_are_refused() {
        let mut frontier = Frontier::new();
        for i in 0u32..13 {
            frontier.push(leaf_hash(&i.to_be_bytes()));
        }
        let bytes = frontier.to_bytes();
        assert_eq!(Frontier::from_bytes(&bytes), Ok(frontier));
        assert!(Frontier::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Frontier::from_bytes(&bytes[..7]).is_err());
        let mut wrong_size = bytes.clone();
        wrong_size[7] = 12;
        assert!(Frontier::from_bytes(&wrong_size).is_err());
    }
}
