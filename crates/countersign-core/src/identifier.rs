//! Identifiers of people, agents and groups (approver ids, agent ids and token subjects,
//! `on_behalf_of`, group names) have one canonical spelling, so that a rule comparing two of
//! them ("nobody approves their own request", "members of `security`") cannot be walked around
//! by writing the same name differently.
//!
//! The canonical form is lowercase ASCII: a letter or digit first, then letters, digits and
//! `. _ - @ + : /`, at most [`MAX_LEN`] bytes. Everything else is refused where an identifier
//! enters the system (approver creation, token issue, enrolment, submission), with a message
//! that names the canonical spelling when there is one. Comparisons go through [`same`], which
//! also folds values stored before these rules (case, surrounding space, invisible characters,
//! fullwidth forms), so an old row cannot be used to re-spell around a rule either.

use crate::text;
use crate::validate::ValidationError;

/// Longest identifier, in bytes.
pub const MAX_LEN: usize = 256;

/// Punctuation an identifier may hold after its first character.
pub const PUNCTUATION: &str = "._-@+:/";

fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || PUNCTUATION.contains(c)
}

/// Checks that `value` is an identifier in its canonical form; the error names `field` and,
/// when the value only differs by case, spaces or invisible characters, the spelling to use.
pub fn check(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_LEN {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes, at most {MAX_LEN} allowed", value.len()),
        ));
    }
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if first_ok && value.chars().all(allowed) {
        return Ok(());
    }
    let rule = format!(
        "identifiers are lowercase ASCII letters, digits and {PUNCTUATION:?}, starting with a letter or digit"
    );
    let folded = fold(value);
    let message = match value.chars().find(|&c| !allowed(c)) {
        Some(c) if text::hazard(c).is_some() || !c.is_ascii() => {
            let what = text::hazard(c).map_or("non-ASCII character", text::Hazard::describe);
            format!("contains the {what} U+{:04X}; {rule}", c as u32)
        }
        Some(c) if c.is_whitespace() => format!("contains a space; {rule}"),
        Some(c) if c.is_ascii_uppercase() => format!("must be lowercase; {rule}"),
        Some(c) => format!("contains {c:?}; {rule}"),
        None => format!("must start with a letter or digit; {rule}"),
    };
    let message = if folded != value && check_plain(&folded) {
        format!("{message} (write {folded:?})")
    } else {
        message
    };
    Err(ValidationError::new(field, message))
}

fn check_plain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value.chars().all(allowed)
}

/// The comparison form of an identifier: lowercase, without surrounding or invisible
/// characters, fullwidth forms mapped to ASCII. For canonical identifiers it is the identity.
pub fn fold(value: &str) -> String {
    value
        .chars()
        .filter(|&c| !c.is_whitespace() && text::hazard(c).is_none())
        .map(|c| match c as u32 {
            // Fullwidth ASCII variants (U+FF01..U+FF5E) are the ASCII characters at -0xFEE0.
            u @ 0xFF01..=0xFF5E => char::from_u32(u - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when `a` and `b` name the same identity.
pub fn same(a: &str, b: &str) -> bool {
    a == b || fold(a) == fold(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_identifiers_pass() {
        for ok in [
            "alice@example.com",
            "agent:deploy-bot",
            "security",
            "spiffe://acme.example/ns/prod/sa/bot",
            "a.b_c+d",
            "7",
        ] {
            assert_eq!(check("id", ok), Ok(()), "{ok}");
        }
    }

    /// The six spellings an outside tester used to approve their own request.
    #[test]
    fn re_spellings_are_refused_and_fold_to_the_same_identity() {
        let alice = "alice@example.com";
        for spelling in [
            "Alice@example.com",
            "ALICE@EXAMPLE.COM",
            " alice@example.com",
            "alice@example.com ",
            "alice\u{200B}@example.com",
            "alice@example.com\u{200F}",
            "alice\u{FF20}example.com",
        ] {
            let err = check("on_behalf_of", spelling).expect_err(spelling);
            assert_eq!(err.field, "on_behalf_of");
            assert!(same(spelling, alice), "{spelling:?} folds to {alice}");
        }
        assert!(!same("alice@example.com", "alice@example.org"));
    }

    #[test]
    fn errors_say_what_is_wrong_and_the_spelling_to_use() {
        let err = check("id", "Alice@example.com").expect_err("upper");
        assert!(err.message.contains("lowercase"), "{err}");
        assert!(err.message.contains("\"alice@example.com\""), "{err}");
        let err = check("id", "bob\u{202E}").expect_err("bidi");
        assert!(
            err.message
                .contains("bidirectional control character U+202E"),
            "{err}"
        );
        let err = check("id", "bob smith").expect_err("space");
        assert!(err.message.contains("space"), "{err}");
        let err = check("id", "josé").expect_err("non-ascii");
        assert!(err.message.contains("non-ASCII character U+00E9"), "{err}");
        assert!(check("id", "").is_err());
        assert!(check("id", "-x").is_err());
        assert!(check("id", &"a".repeat(MAX_LEN + 1)).is_err());
    }
}
