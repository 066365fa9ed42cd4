//! `{name}` templates in the gate's configuration — a tool's resource (`file://{path}`), a
//! command's arguments (`--service={service}`) — split once, by one parser, into literal text and
//! the names of the call's arguments that fill them.

/// One piece of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text as written.
    Text(&'a str),
    /// `{name}`: the call's argument `name`.
    Argument(&'a str),
}

/// The pieces of `template`; an unbalanced brace or an empty or nested name is an error that
/// quotes the template.
pub fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("unmatched '}}' in {template:?}"));
        }
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("empty or nested placeholder in {template:?}"));
        }
        out.push(Piece::Argument(name));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_text_and_arguments() {
        assert_eq!(
            pieces("file://{path}").expect("ok"),
            [Piece::Text("file://"), Piece::Argument("path")]
        );
        assert_eq!(
            pieces("{a}:{b}").expect("ok"),
            [Piece::Argument("a"), Piece::Text(":"), Piece::Argument("b")]
        );
        assert_eq!(pieces("plain").expect("ok"), [Piece::Text("plain")]);
        for bad in ["{", "}", "{}", "a{b", "a}b", "{a{b}}"] {
            assert!(pieces(bad).is_err(), "{bad:?}");
        }
    }
}
