//! The budget that JSON from outside must fit before it is parsed, so that whatever the service
//! accepts, every reader of the log can read again: the service itself, the client, the
//! console, the audit mirror and the evidence-bundle verifier.
//!
//! Readers nest the agent's JSON inside their own (an audit event wraps the action, which wraps
//! the request, which holds `context`), and `serde_json` stops at 128 levels. Intake therefore
//! allows [`MAX_DEPTH`] levels for a whole body — a quarter of that limit, so every wrapper a
//! reader adds stays far inside it. Integer literals outside I-JSON's exact range
//! (±(2^53−1)) are refused here too: `serde_json` would read a literal beyond 2^64 as a float
//! and round it, so the digest would cover a number the agent never sent.

use crate::canonical::MAX_SAFE_INTEGER;

/// Deepest nesting of arrays and objects in a body from outside (the body itself is level 1).
pub const MAX_DEPTH: usize = 32;

/// Why a JSON text is over budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels (at byte {0})")]
    TooDeep(usize),
    /// An integer literal outside ±(2^53−1).
    #[error(
        "integer {0} is outside ±(2^53−1) (I-JSON): it cannot be represented exactly; send it as a string"
    )]
    UnsafeInteger(String),
}

/// Checks nesting depth and integer literals of `text` without parsing it into values; syntax
/// errors are left to the parser, which reports them with their position.
pub fn check(text: &[u8]) -> Result<(), BudgetError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => i = skip_string(text, i + 1),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BudgetError::TooDeep(i));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = text[i..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .map_or(text.len(), |n| i + n);
                check_integer_literal(&text[i..end])?;
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Index just past the string whose contents start at `i`.
fn skip_string(text: &[u8], mut i: usize) -> usize {
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn check_integer_literal(token: &[u8]) -> Result<(), BudgetError> {
    if token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Ok(()); // a decimal or exponent literal: a binary64 value by definition
    }
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    let significant = digits
        .iter()
        .position(|&b| b != b'0')
        .map_or(&digits[digits.len()..], |n| &digits[n..]);
    let too_big = significant.len() > 16
        || std::str::from_utf8(significant)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_SAFE_INTEGER);
    if too_big {
        return Err(BudgetError::UnsafeInteger(
            String::from_utf8_lossy(token).into_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert_eq!(check(nested(MAX_DEPTH).as_bytes()), Ok(()));
        assert!(matches!(
            check(nested(MAX_DEPTH + 1).as_bytes()),
            Err(BudgetError::TooDeep(_))
        ));
        let in_string = format!("{{\"a\":\"{}\"}}", "[".repeat(500));
        assert_eq!(check(in_string.as_bytes()), Ok(()));
        let escaped_quote = format!("[\"\\\"{}\"]", "{".repeat(500));
        assert_eq!(check(escaped_quote.as_bytes()), Ok(()));
    }

    #[test]
    fn integers_outside_the_i_json_range_are_refused() {
        for ok in [
            "9007199254740991",
            "-9007199254740991",
            "0",
            "-0",
            "1e30",
            "18446744073709551617.5",
            "[1,2,3]",
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        for refused in [
            "9007199254740992",
            "-9007199254740992",
            "{\"n\":18446744073709551617}",
            "[123456789012345678901234567890]",
        ] {
            assert!(
                matches!(
                    check(refused.as_bytes()),
                    Err(BudgetError::UnsafeInteger(_))
                ),
                "{refused}"
            );
        }
        // Digits inside a string are text, not numbers.
        assert_eq!(check(b"{\"n\":\"18446744073709551617\"}"), Ok(()));
    }
}
