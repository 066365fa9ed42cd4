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

/// Checks free text shown to people: non-empty (after trimming), at most `max` bytes, and free
/// of control characters (tab and newline allowed when `multiline`), bidirectional controls,
/// invisible characters and line separators: text that could reorder, hide or drive what a
/// reader sees is refused where it enters ([`crate::text`]).
pub fn text(field: &str, value: &str, max: usize, multiline: bool) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    optional_text(field, value, max, multiline)
}

/// [`text`] for a field that may be empty (a decision's comment).
pub fn optional_text(
    field: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes, at most {max} allowed", value.len()),
        ));
    }
    if let Some((_, c, hazard)) = crate::text::first_hazard(value, multiline) {
        return Err(ValidationError::new(
            field,
            format!("contains the {} U+{:04X}", hazard.describe(), c as u32),
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

/// Checks a free-form JSON object from an agent (`parameters`, `context`): at most `max` bytes
/// as JSON, and no control characters but tab, newline and carriage return in any key or
/// string. Bidirectional and invisible characters are kept — the value is data, and may need
/// them — and every output shows them escaped ([`crate::text::escape_for_display`]).
pub fn free_form(
    field: &str,
    value: &serde_json::Map<String, serde_json::Value>,
    max: usize,
) -> Result<(), ValidationError> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    if size > max {
        return Err(ValidationError::new(
            field,
            format!("is {size} bytes as JSON, at most {max} allowed"),
        ));
    }
    let mut path = field.to_owned();
    for (key, item) in value {
        free_form_text(&path, key)?;
        let len = path.len();
        path.push('.');
        path.push_str(key);
        free_form_value(&mut path, item)?;
        path.truncate(len);
    }
    Ok(())
}

fn free_form_value(path: &mut String, value: &serde_json::Value) -> Result<(), ValidationError> {
    use serde_json::Value;
    match value {
        Value::String(s) => free_form_text(path, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                free_form_value(path, item)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                free_form_text(path, key)?;
                let len = path.len();
                path.push('.');
                path.push_str(key);
                free_form_value(path, item)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Data text (free-form strings, diffs): control characters other than tab, newline and
/// carriage return are refused.
pub fn data_text(field: &str, value: &str) -> Result<(), ValidationError> {
    free_form_text(field, value)
}

fn free_form_text(field: &str, value: &str) -> Result<(), ValidationError> {
    match value
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(ValidationError::new(
            field,
            format!("contains the control character U+{:04X}", c as u32),
        )),
        None => Ok(()),
    }
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
        let err = text("f", "a\u{202E}b", 10, true).expect_err("bidi");
        assert_eq!(
            err.to_string(),
            "f: contains the bidirectional control character U+202E"
        );
        assert!(text("f", "a\u{200B}b", 10, false).is_err());
        assert!(optional_text("f", "", 10, false).is_ok());
    }

    #[test]
    fn free_form_values_refuse_controls_and_name_the_path() {
        let ok = serde_json::json!({"sql": "SELECT 1;\r\n\tFROM t", "rtl": "\u{202E}kept"});
        assert!(free_form("parameters", ok.as_object().expect("object"), 1000).is_ok());
        let bad = serde_json::json!({"a": [{"b": "x\u{1b}[2J"}]});
        let err = free_form("context", bad.as_object().expect("object"), 1000).expect_err("esc");
        assert_eq!(err.field, "context.a[0].b");
        let bad_key = serde_json::json!({"k\u{0}": 1});
        assert!(free_form("context", bad_key.as_object().expect("object"), 1000).is_err());
        let big = serde_json::json!({"a": "x".repeat(100)});
        assert!(free_form("context", big.as_object().expect("object"), 50).is_err());
    }

    #[test]
    fn identifier_rules() {
        assert!(identifier("f", "prod-eu", 10, "-").is_ok());
        assert!(identifier("f", "-prod", 10, "-").is_err());
        assert!(identifier("f", "Prod", 10, "-").is_err());
        assert!(identifier("f", "", 10, "-").is_err());
    }
}
