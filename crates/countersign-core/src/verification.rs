//! Verification codes ("number matching"). When the policy asks for one, the requester is
//! shown a two-digit code derived from the request's digest, and an approver must pick it from
//! three choices before approving. The pick is part of the signed decision, so approving a
//! request nobody confirmed with its requester — a rubber stamp, or a look-alike request
//! slipped into the inbox — fails, and the service can check it without storing anything.

use crate::digest::Digest;
use crate::domain;

/// How many codes the approver chooses from.
pub const CHOICES: usize = 3;

fn two_digit(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]]) % 100
}

fn stream(digest: &Digest) -> [u8; 32] {
    Digest::of_prefixed(domain::VERIFICATION, &digest.0).0
}

/// The code for the request with this digest, e.g. `"07"`.
pub fn code(digest: &Digest) -> String {
    format!("{:02}", two_digit(&stream(digest)))
}

/// The code and two decoys, distinct and in ascending order (so their order says nothing).
pub fn choices(digest: &Digest) -> Vec<String> {
    let bytes = stream(digest);
    let mut values: Vec<u16> = Vec::with_capacity(CHOICES);
    let candidates = bytes
        .chunks_exact(2)
        .map(two_digit)
        // Sixteen draws almost always give three distinct values; the sequence below makes
        // "almost" certain without depending on luck.
        .chain((1..100).map(|k| (two_digit(&bytes) + k * 37) % 100));
    for v in candidates {
        if !values.contains(&v) {
            values.push(v);
            if values.len() == CHOICES {
                break;
            }
        }
    }
    values.sort_unstable();
    values.into_iter().map(|v| format!("{v:02}")).collect()
}

/// Whether `picked` is the code for `digest`.
pub fn matches(digest: &Digest, picked: &str) -> bool {
    picked == code(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_one_of_three_distinct_sorted_choices() {
        for i in 0u32..2_000 {
            let d = Digest::of(&i.to_be_bytes());
            let c = choices(&d);
            assert_eq!(c.len(), CHOICES);
            assert!(c.contains(&code(&d)), "{c:?} lacks {}", code(&d));
            assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
            assert!(
                c.iter()
                    .all(|x| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit()))
            );
        }
    }

    #[test]
    fn codes_depend_on_the_digest_and_spread_over_all_values() {
        let mut seen = std::collections::HashSet::new();
        for i in 0u32..2_000 {
            seen.insert(code(&Digest::of(&i.to_be_bytes())));
        }
        assert_eq!(seen.len(), 100, "every two-digit code occurs");
        let d = Digest::of(b"a request");
        assert!(matches(&d, &code(&d)));
        let wrong = choices(&d)
            .into_iter()
            .find(|c| *c != code(&d))
            .expect("a decoy");
        assert!(!matches(&d, &wrong));
        assert!(!matches(&d, ""));
    }

    #[test]
    fn the_code_is_pinned_for_a_known_digest() {
        // Other implementations (third-party approvers) can check theirs against this:
        // SHA-256("countersign/verification/v1\n" ‖ 32 zero bytes) starts 56 7d …, so the
        // code is 0x567d mod 100 = 41 and the decoys the next two values, 61 and 43.
        let d = Digest([0u8; 32]);
        assert_eq!(code(&d), "41");
        assert_eq!(choices(&d), ["41", "43", "61"]);
    }
}
