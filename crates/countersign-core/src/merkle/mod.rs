//! The audit log's Merkle tree, as RFC 9162 (Certificate Transparency v2) §2.1 defines it:
//! leaf hash `SHA-256(0x00 || leaf)`, node hash `SHA-256(0x01 || left || right)`, the empty
//! tree's root `SHA-256("")`, inclusion and consistency proofs and their verification.

mod frontier;
mod proof;
mod tree;

pub use frontier::{Frontier, FrontierError};
pub use proof::{ConsistencyProof, InclusionProof, MAX_PROOF_LEN, ProofError};
pub use tree::{MerkleTree, TreeError};

use crate::digest::Digest;

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Digest {
    Digest::of_prefixed(&[0x00], leaf)
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(left.as_bytes());
    both[32..].copy_from_slice(right.as_bytes());
    Digest::of_prefixed(&[0x01], &both)
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Digest {
    Digest::of(b"")
}

/// The largest power of two strictly less than `n` (n ≥ 2): where RFC 9162 splits a tree.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in cases {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let a = leaf_hash(b"");
        assert_eq!(
            a.to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_ne!(node_hash(&a, &a), leaf_hash(&[a.0, a.0].concat()));
    }
}
