//! Field-level validation errors that name the offending field, so an API client sees
//! exactly which part of its request was wrong.

/// A field that breaks a rule.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the field, e.g. `tags[2]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks that `value` is non-empty (after trimming), at most `max` bytes, and free of control
/// characters other than tab and newline (`multiline`).
pub fn text(field: &str, value: &str, max: usize, multiline: bool) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes, at most {max} allowed", value.len()),
        ));
    }
    let allowed = |c: char| !c.is_control() || (multiline && (c == '\n' || c == '\t'));
    if let Some(c) = value.chars().find(|&c| !allowed(c)) {
        return Err(ValidationError::new(
            field,
            format!("contains the control character U+{:04X}", c as u32),
        ));
    }
    Ok(())
}

/// Checks an identifier: 1..=`max` characters of `[a-z0-9]` plus the given punctuation, starting
/// with a letter or digit.
pub fn identifier(
    field: &str,
    value: &str,
    max: usize,
    punctuation: &str,
) -> Result<(), ValidationError> {
    let ok_first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || punctuation.contains(c));
    if !ok_first || !ok_rest || value.len() > max {
        return Err(ValidationError::new(
            field,
            format!(
                "must be 1 to {max} characters of a-z, 0-9 and {punctuation:?}, starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(text("f", "ok", 10, false).is_ok());
        assert!(text("f", "  ", 10, false).is_err());
        assert!(text("f", "01234567890", 10, false).is_err());
        assert!(text("f", "a\nb", 10, false).is_err());
        assert!(text("f", "a\nb", 10, true).is_ok());
        let err = text("f", "a\u{7}", 10, true).expect_err("bell");
        assert_eq!(err.to_string(), "f: contains the control character U+0007");
    }

    #[test]
    fn identifier_rules() {
        assert!(identifier("f", "prod-eu", 10, "-").is_ok());
        assert!(identifier("f", "-prod", 10, "-").is_err());
        assert!(identifier("f", "Prod", 10, "-").is_err());
        assert!(identifier("f", "", 10, "-").is_err());
    }
}
