//! An append-only Merkle tree that keeps every complete subtree's hash, so roots of any past
//! size and proofs cost O(log n) hashes instead of rehashing the log.

use super::{empty_root, node_hash, split_point};
use crate::digest::Digest;

/// Why a tree operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    /// A size beyond the tree.
    #[error("tree size {asked} is larger than the tree ({size} leaves)")]
    SizeBeyondTree {
        /// Size asked for.
        asked: u64,
        /// Leaves in the tree.
        size: u64,
    },
    /// A leaf index outside the tree of the given size.
    #[error("leaf {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// Index asked for.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A consistency proof from a larger to a smaller tree, or from the empty tree.
    #[error("no consistency proof from size {from} to size {to}")]
    BadRange {
        /// Older size.
        from: u64,
        /// Newer size.
        to: u64,
    },
}

/// The tree. `levels[k][i]` is the hash of the complete subtree of `2^k` leaves starting at
/// leaf `i·2^k`; level 0 holds the leaf hashes.
#[derive(Clone, Debug, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Digest>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of the given leaf hashes, in order.
    pub fn from_leaf_hashes(leaves: impl IntoIterator<Item = Digest>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push_leaf_hash(leaf);
        }
        tree
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf by its hash (see [`super::leaf_hash`]); returns its index.
    pub fn push_leaf_hash(&mut self, leaf: Digest) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let index = self.size() - 1;
        // Completing a pair at one level completes a node at the next, like a binary carry.
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let len = self.levels[level].len();
            let parent = node_hash(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
        index
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Digest> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The root of the current tree.
    pub fn root(&self) -> Digest {
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Digest, TreeError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.range_hash(0, size))
    }

    /// The audit path for leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Digest>, TreeError> {
        self.check_size(size)?;
        if index >= size {
            return Err(TreeError::IndexOutOfRange { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Ok(path)
    }

    /// The consistency proof from the tree of `from` leaves to the tree of `to` leaves
    /// (RFC 9162 §2.1.4.1). Empty when `from == to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Digest>, TreeError> {
        self.check_size(to)?;
        if from == 0 || from > to {
            return Err(TreeError::BadRange { from, to });
        }
        let mut proof = Vec::new();
        self.subproof(from, 0, to, true, &mut proof);
        Ok(proof)
    }

    fn check_size(&self, asked: u64) -> Result<(), TreeError> {
        if asked > self.size() {
            return Err(TreeError::SizeBeyondTree {
                asked,
                size: self.size(),
            });
        }
        Ok(())
    }

    /// MTH(D[start:end]). Every range RFC 9162 asks for is either a stored complete subtree or
    /// splits into one on the left and a smaller range on the right, so this is O(log n).
    fn range_hash(&self, start: u64, end: u64) -> Digest {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = split_point(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Digest>) {
        let n = end - start;
        if n == 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.range_hash(start, start + k));
        }
    }

    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Digest>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.range_hash(start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.range_hash(start, start + k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::leaf_hash;
    use super::*;

    /// The leaves of the reference tree used by RFC 6962 implementations' test suites.
    pub(crate) fn reference_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).expect("hex"))
        .collect()
    }

    /// Roots of the reference tree at sizes 1..=8, as published with those suites.
    const REFERENCE_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference_tree() -> MerkleTree {
        MerkleTree::from_leaf_hashes(reference_leaves().iter().map(|l| leaf_hash(l)))
    }

    #[test]
    fn roots_match_the_reference_tree_at_every_size() {
        let tree = reference_tree();
        for (i, expected) in REFERENCE_ROOTS.iter().enumerate() {
            let size = i as u64 + 1;
            assert_eq!(
                tree.root_at(size).map(|d| d.to_hex()).as_deref(),
                Ok(*expected)
            );
            let prefix =
                MerkleTree::from_leaf_hashes(reference_leaves()[..=i].iter().map(|l| leaf_hash(l)));
            assert_eq!(prefix.root().to_hex(), *expected, "size {size}");
        }
    }

    #[test]
    fn empty_tree_root_is_hash_of_empty_string() {
        assert_eq!(
            MerkleTree::new().root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn proof_lengths_match_rfc_examples() {
        // RFC 9162 §2.1.5's seven-leaf tree: the path for d0 is [b, h, l]; the consistency
        // proof from 3 to 7 is [c, d, g, l], from 4 to 7 is [l], from 6 to 7 is [i, j, k].
        let tree = MerkleTree::from_leaf_hashes(reference_tree().levels[0][..7].to_vec());
        assert_eq!(tree.inclusion_proof(0, 7).map(|p| p.len()), Ok(3));
        assert_eq!(tree.consistency_proof(3, 7).map(|p| p.len()), Ok(4));
        assert_eq!(tree.consistency_proof(4, 7).map(|p| p.len()), Ok(1));
        assert_eq!(tree.consistency_proof(6, 7).map(|p| p.len()), Ok(3));
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let tree = reference_tree();
        assert!(matches!(
            tree.root_at(9),
            Err(TreeError::SizeBeyondTree { .. })
        ));
        assert!(matches!(
            tree.inclusion_proof(8, 8),
            Err(TreeError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            tree.consistency_proof(0, 8),
            Err(TreeError::BadRange { .. })
        ));
        assert!(matches!(
            tree.consistency_proof(5, 4),
            Err(TreeError::BadRange { .. })
        ));
        assert_eq!(tree.consistency_proof(8, 8), Ok(vec![]));
    }
}
