//! Random secrets handed to people and programs: shown once, stored only as hashes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_core::Digest;
use rand_core::RngCore as _;

/// 32 random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}

/// A bearer token with a recognisable prefix (`csa_` agent, `css_` session).
pub fn token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// An enrolment code people can read out and type: 20 Crockford base32 characters (100 bits)
/// in groups of five.
pub fn enrolment_code() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = random_bytes::<20>();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// How a secret is stored and looked up: SHA-256 of its text (codes case- and dash-insensitive).
pub fn hash(secret: &str) -> Digest {
    Digest::of(secret.as_bytes())
}

/// The canonical form of a typed enrolment code.
pub fn normalise_code(code: &str) -> String {
    let plain: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    plain
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_prefixed() {
        let (a, b) = (token("csa_"), token("csa_"));
        assert_ne!(a, b);
        assert!(a.starts_with("csa_") && a.len() == 4 + 43);
    }

    #[test]
    fn enrolment_codes_normalise_from_how_people_type_them() {
        let code = enrolment_code();
        assert_eq!(code.len(), 23);
        assert_eq!(normalise_code(&code.to_lowercase().replace('-', " ")), code);
    }
}
