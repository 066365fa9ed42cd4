//! Inclusion and consistency proofs and their verification (RFC 9162 §2.1.3.2, §2.1.4.2).

use serde::{Deserialize, Serialize};

use super::node_hash;
use crate::digest::Digest;

/// The longest proof a tree of up to 2^64 leaves can need (two hashes per level at most).
pub const MAX_PROOF_LEN: usize = 128;

/// Why a proof does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is outside the tree.
    #[error("leaf {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// Sizes that no consistency proof can relate.
    #[error("no consistency proof from size {from} to size {to}")]
    BadRange {
        /// Older size.
        from: u64,
        /// Newer size.
        to: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length for these tree sizes")]
    WrongLength,
    /// The proof does not lead to the expected root(s).
    #[error("proof does not match the root hash")]
    RootMismatch,
}

/// Proof that a leaf is at `leaf_index` in the tree of `tree_size` leaves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Index of the leaf.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path, bottom to top.
    pub hashes: Vec<Digest>,
}

impl InclusionProof {
    /// Checks that `leaf_hash` at `leaf_index` leads to `root`.
    pub fn verify(&self, leaf_hash: &Digest, root: &Digest) -> Result<(), ProofError> {
        let (index, size) = (self.leaf_index, self.tree_size);
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        if self.hashes.len() > MAX_PROOF_LEN {
            return Err(ProofError::WrongLength);
        }
        let mut f_n = index;
        let mut s_n = size - 1;
        let mut r = *leaf_hash;
        for p in &self.hashes {
            if s_n == 0 {
                return Err(ProofError::WrongLength);
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(p, &r);
                if f_n & 1 == 0 {
                    while f_n & 1 == 0 && f_n != 0 {
                        f_n >>= 1;
                        s_n >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        if s_n != 0 {
            return Err(ProofError::WrongLength);
        }
        if &r != root {
            return Err(ProofError::RootMismatch);
        }
        Ok(())
    }
}

/// Proof that the tree of `from_size` leaves is a prefix of the tree of `to_size` leaves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older, smaller size.
    pub from_size: u64,
    /// The newer size.
    pub to_size: u64,
    /// The proof hashes.
    pub hashes: Vec<Digest>,
}

impl ConsistencyProof {
    /// Checks that `from_root` (of `from_size` leaves) and `to_root` (of `to_size`) are the
    /// same history, the second extending the first.
    pub fn verify(&self, from_root: &Digest, to_root: &Digest) -> Result<(), ProofError> {
        let (m, n) = (self.from_size, self.to_size);
        if m == 0 || m > n {
            return Err(ProofError::BadRange { from: m, to: n });
        }
        if self.hashes.len() > MAX_PROOF_LEN {
            return Err(ProofError::WrongLength);
        }
        if m == n {
            if !self.hashes.is_empty() {
                return Err(ProofError::WrongLength);
            }
            return if from_root == to_root {
                Ok(())
            } else {
                Err(ProofError::RootMismatch)
            };
        }
        if self.hashes.is_empty() {
            return Err(ProofError::WrongLength);
        }
        // When the old tree is a complete subtree, its root is the proof's implicit first node.
        let mut path = self.hashes.iter();
        let first = if m.is_power_of_two() {
            *from_root
        } else {
            *path.next().ok_or(ProofError::WrongLength)?
        };
        let mut f_n = m - 1;
        let mut s_n = n - 1;
        while f_n & 1 == 1 {
            f_n >>= 1;
            s_n >>= 1;
        }
        let mut f_r = first;
        let mut s_r = first;
        for c in path {
            if s_n == 0 {
                return Err(ProofError::WrongLength);
            }
            if f_n & 1 == 1 || f_n == s_n {
                f_r = node_hash(c, &f_r);
                s_r = node_hash(c, &s_r);
                if f_n & 1 == 0 {
                    while f_n & 1 == 0 && f_n != 0 {
                        f_n >>= 1;
                        s_n >>= 1;
                    }
                }
            } else {
                s_r = node_hash(&s_r, c);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        if s_n != 0 {
            return Err(ProofError::WrongLength);
        }
        if &f_r != from_root || &s_r != to_root {
            return Err(ProofError::RootMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MerkleTree, leaf_hash};
    use super::*;
    use proptest::prelude::*;
    use sha2_011::Sha256 as OracleSha256;

    fn tree_of(n: u64) -> MerkleTree {
        MerkleTree::from_leaf_hashes((0..n).map(|i| leaf_hash(&i.to_be_bytes())))
    }

    fn inclusion(tree: &MerkleTree, index: u64, size: u64) -> InclusionProof {
        InclusionProof {
            leaf_index: index,
            tree_size: size,
            hashes: tree.inclusion_proof(index, size).expect("in range"),
        }
    }

    fn consistency(tree: &MerkleTree, from: u64, to: u64) -> ConsistencyProof {
        ConsistencyProof {
            from_size: from,
            to_size: to,
            hashes: tree.consistency_proof(from, to).expect("in range"),
        }
    }

    fn flip(d: &mut Digest, bit: usize) {
        d.0[(bit / 8) % 32] ^= 1 << (bit % 8);
    }

    #[test]
    fn every_inclusion_and_consistency_proof_of_small_trees_verifies() {
        let tree = tree_of(33);
        for size in 1..=33 {
            let root = tree.root_at(size).expect("root");
            for index in 0..size {
                let leaf = tree.leaf(index).expect("leaf");
                assert_eq!(inclusion(&tree, index, size).verify(&leaf, &root), Ok(()));
            }
            for from in 1..=size {
                let old = tree.root_at(from).expect("root");
                assert_eq!(consistency(&tree, from, size).verify(&old, &root), Ok(()));
            }
        }
    }

    #[test]
    fn proof_for_wrong_index_fails() {
        let tree = tree_of(10);
        let root = tree.root();
        let mut proof = inclusion(&tree, 3, 10);
        proof.leaf_index = 4;
        assert!(proof.verify(&tree.leaf(3).expect("leaf"), &root).is_err());
    }

    #[test]
    fn truncated_and_padded_proofs_fail() {
        let tree = tree_of(10);
        let (old, new) = (tree.root_at(3).expect("root"), tree.root());
        let mut c = consistency(&tree, 3, 10);
        c.hashes.pop();
        assert!(c.verify(&old, &new).is_err());
        let mut c = consistency(&tree, 3, 10);
        c.hashes.push(new);
        assert!(c.verify(&old, &new).is_err());
        let mut i = inclusion(&tree, 0, 10);
        i.hashes.push(new);
        assert!(i.verify(&tree.leaf(0).expect("leaf"), &new).is_err());
    }

    #[test]
    fn equal_sizes_need_equal_roots_and_no_hashes() {
        let tree = tree_of(5);
        let root = tree.root();
        let same = ConsistencyProof {
            from_size: 5,
            to_size: 5,
            hashes: vec![],
        };
        assert_eq!(same.verify(&root, &root), Ok(()));
        assert_eq!(
            same.verify(&root, &tree.root_at(4).expect("root")),
            Err(ProofError::RootMismatch)
        );
        let empty = ConsistencyProof {
            from_size: 0,
            to_size: 5,
            hashes: vec![],
        };
        assert!(matches!(
            empty.verify(&root, &root),
            Err(ProofError::BadRange { .. })
        ));
    }

    /// A tree built by the independent `ct-merkle` crate over the same leaves.
    fn oracle(n: u64) -> ct_merkle::mem_backed_tree::MemoryBackedTree<OracleSha256, [u8; 8]> {
        let mut t = ct_merkle::mem_backed_tree::MemoryBackedTree::new();
        for i in 0..n {
            t.push(i.to_be_bytes());
        }
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn roots_and_proofs_match_an_independent_implementation(size in 1u64..300, seed in any::<u64>()) {
            let ours = tree_of(size);
            let theirs = oracle(size);
            let (our_root, their_root) = (ours.root(), theirs.root());
            prop_assert_eq!(our_root.0.as_slice(), their_root.as_bytes().as_slice());
            let index = seed % size;
            let path: Vec<u8> = ours.inclusion_proof(index, size).expect("proof").iter().flat_map(|d| d.0).collect();
            let their_path = theirs.prove_inclusion(index as usize);
            prop_assert_eq!(path.as_slice(), their_path.as_bytes());
            let from = 1 + seed % size;
            if from < size {
                let ours_c: Vec<u8> = ours.consistency_proof(from, size).expect("proof").iter().flat_map(|d| d.0).collect();
                let theirs_c = oracle(size).prove_consistency((size - from) as usize);
                prop_assert_eq!(ours_c.as_slice(), theirs_c.as_bytes());
            }
        }

        #[test]
        fn every_inclusion_proof_verifies(size in 1u64..2000, seed in any::<u64>()) {
            let tree = tree_of(size);
            let index = seed % size;
            let proof = inclusion(&tree, index, size);
            prop_assert_eq!(proof.verify(&tree.leaf(index).expect("leaf"), &tree.root()), Ok(()));
        }

        #[test]
        fn every_consistency_proof_verifies(n in 1u64..2000, seed in any::<u64>()) {
            let tree = tree_of(n);
            let m = 1 + seed % n;
            let proof = consistency(&tree, m, n);
            prop_assert_eq!(proof.verify(&tree.root_at(m).expect("root"), &tree.root()), Ok(()));
        }

        #[test]
        fn any_flipped_bit_breaks_an_inclusion_proof(size in 2u64..500, seed in any::<u64>(), bit in 0usize..(256 * 40)) {
            let tree = tree_of(size);
            let index = seed % size;
            let proof = inclusion(&tree, index, size);
            let (mut leaf, mut root) = (tree.leaf(index).expect("leaf"), tree.root());
            // Flip one bit of the leaf, the root or one proof hash.
            let slots = proof.hashes.len() + 2;
            let slot = (bit / 256) % slots;
            let mut proof = proof;
            match slot {
                0 => flip(&mut leaf, bit),
                1 => flip(&mut root, bit),
                s => flip(&mut proof.hashes[s - 2], bit),
            }
            prop_assert!(proof.verify(&leaf, &root).is_err());
        }

        #[test]
        fn any_flipped_bit_breaks_a_consistency_proof(n in 2u64..500, seed in any::<u64>(), bit in 0usize..(256 * 40)) {
            let tree = tree_of(n);
            let m = 1 + seed % (n - 1);
            let mut proof = consistency(&tree, m, n);
            let (mut old, mut new) = (tree.root_at(m).expect("root"), tree.root());
            let slots = proof.hashes.len() + 2;
            let slot = (bit / 256) % slots;
            match slot {
                0 => flip(&mut old, bit),
                1 => flip(&mut new, bit),
                s => flip(&mut proof.hashes[s - 2], bit),
            }
            prop_assert!(proof.verify(&old, &new).is_err());
        }

        #[test]
        fn consistency_with_a_different_history_fails(n in 2u64..300, seed in any::<u64>()) {
            let tree = tree_of(n);
            let m = 1 + seed % (n - 1);
            // Same sizes, one leaf of the old part rewritten.
            let mut leaves: Vec<Digest> = (0..n).map(|i| tree.leaf(i).expect("leaf")).collect();
            leaves[(seed % m) as usize] = leaf_hash(b"rewritten");
            let forged = MerkleTree::from_leaf_hashes(leaves);
            let proof = consistency(&forged, m, n);
            prop_assert!(proof.verify(&tree.root_at(m).expect("root"), &forged.root()).is_err());
        }
    }
}
