//! Characters that attack the reader: control characters that drive terminals, bidirectional
//! controls that reorder what is shown, and invisible characters that make two different texts
//! look the same. Fields either refuse them ([`crate::validate::text`]) or keep them and every
//! output shows them escaped ([`escape_for_display`]).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a character is unsafe to show as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hazard {
    /// C0 or C1 control, or DEL: can drive a terminal (ESC), end a string (NUL), rewrite a line (CR).
    Control,
    /// Bidirectional formatting (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C): reorders text.
    Bidi,
    /// Zero-width, joiners, BOM, soft hyphen, variation selectors, tag characters and other
    /// default-ignorable code points: invisible, so two texts look the same.
    Invisible,
    /// A line or paragraph separator other than `\n` (U+2028, U+2029, U+0085 is a control).
    LineSeparator,
}

impl Hazard {
    /// How the hazard is named in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Hazard::Control => "control character",
            Hazard::Bidi => "bidirectional control character",
            Hazard::Invisible => "invisible character",
            Hazard::LineSeparator => "line separator",
        }
    }
}

/// The hazard a character is, if any. Tab and newline are controls too; callers that allow
/// them check for them first.
pub fn hazard(c: char) -> Option<Hazard> {
    let u = c as u32;
    if c.is_control() {
        return Some(Hazard::Control);
    }
    if matches!(u, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069) {
        return Some(Hazard::Bidi);
    }
    if matches!(u, 0x2028 | 0x2029) {
        return Some(Hazard::LineSeparator);
    }
    // Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt), plus the Hangul
    // fillers that render blank: each is drawn as nothing.
    let invisible = matches!(
        u,
        0x00AD
            | 0x034F
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200D
            | 0x2060..=0x2065
            | 0x206A..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    );
    invisible.then_some(Hazard::Invisible)
}

/// The first hazardous character in `text` and its position, ignoring tab and newline when
/// `multiline`.
pub fn first_hazard(text: &str, multiline: bool) -> Option<(usize, char, Hazard)> {
    text.char_indices().find_map(|(i, c)| {
        if multiline && (c == '\n' || c == '\t') {
            return None;
        }
        hazard(c).map(|h| (i, c, h))
    })
}

/// True when `text` holds a character that [`escape_for_display`] would escape.
pub fn needs_escaping(text: &str, multiline: bool) -> bool {
    first_hazard(text, multiline).is_some()
}

/// `text` with every hazardous character replaced by its visible escape `\u{XXXX}`; tab and
/// newline stay when `multiline`. Every output that shows agent-supplied text to a person
/// (terminal, notification, CSV, PDF) passes it through here, so a stored value can never
/// reorder, hide or drive what is shown. (Text that merely spells an escape stays as it is: it
/// looks like one and does nothing, and paths with backslashes stay readable.)
pub fn escape_for_display(text: &str, multiline: bool) -> Cow<'_, str> {
    if !needs_escaping(text, multiline) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if multiline && (c == '\n' || c == '\t') || hazard(c).is_none() {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:04X}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_invisible_characters_are_named() {
        assert_eq!(hazard('\u{1b}'), Some(Hazard::Control));
        assert_eq!(hazard('\u{0}'), Some(Hazard::Control));
        assert_eq!(hazard('\u{85}'), Some(Hazard::Control));
        assert_eq!(hazard('\u{7f}'), Some(Hazard::Control));
        assert_eq!(hazard('\u{202E}'), Some(Hazard::Bidi));
        assert_eq!(hazard('\u{200F}'), Some(Hazard::Bidi));
        assert_eq!(hazard('\u{2067}'), Some(Hazard::Bidi));
        assert_eq!(hazard('\u{200B}'), Some(Hazard::Invisible));
        assert_eq!(hazard('\u{FEFF}'), Some(Hazard::Invisible));
        assert_eq!(hazard('\u{E0041}'), Some(Hazard::Invisible));
        assert_eq!(hazard('\u{2028}'), Some(Hazard::LineSeparator));
        for ok in ['a', 'é', '中', '😀', ' ', '@'] {
            assert_eq!(hazard(ok), None, "{ok}");
        }
    }

    #[test]
    fn escaping_shows_every_hazard() {
        assert_eq!(escape_for_display("plain", false), "plain");
        assert_eq!(
            escape_for_display("invoice\u{202E}fdp.exe", false),
            "invoice\\u{202E}fdp.exe"
        );
        assert_eq!(escape_for_display("a\u{1b}[31mb", false), "a\\u{001B}[31mb");
        assert_eq!(escape_for_display("a\nb", true), "a\nb");
        assert_eq!(escape_for_display("a\nb", false), "a\\u{000A}b");
        assert_eq!(escape_for_display("C:\\Users", false), "C:\\Users");
    }
}
