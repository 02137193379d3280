//! Short texts people type (names, address lines, carriers): trimmed, bounded, and free of
//! control characters, which no such text needs and PostgreSQL refuses outright (NUL).

/// Why a text was refused, said after the field's name ("name: must not be empty").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
}

/// `value` trimmed, if it is 1 to `max` characters without control characters.
pub fn line(value: &str, max: usize) -> Result<String, TextError> {
    let value = value.trim();
    if value.is_empty() {
        Err(TextError::Empty)
    } else if value.chars().count() > max {
        Err(TextError::TooLong(max))
    } else if value.chars().any(char::is_control) {
        Err(TextError::Control)
    } else {
        Ok(value.to_owned())
    }
}

/// Like [`line`], but nothing or only blanks is `None`.
pub fn optional_line(value: Option<&str>, max: usize) -> Result<Option<String>, TextError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => line(value, max).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_trimmed_bounded_and_printable() {
        assert_eq!(line("  DHL ", 100), Ok("DHL".to_owned()));
        assert_eq!(line("Zürich 東京", 11), Ok("Zürich 東京".to_owned()));
        assert_eq!(line("   ", 100), Err(TextError::Empty));
        assert_eq!(line("abcd", 3), Err(TextError::TooLong(3)));
        assert_eq!(line("T-1\u{0}", 100), Err(TextError::Control));
        assert_eq!(line("a\nb", 100), Err(TextError::Control));
        assert_eq!(optional_line(Some("  "), 10), Ok(None));
        assert_eq!(optional_line(None, 10), Ok(None));
        assert_eq!(optional_line(Some("x\u{7}"), 10), Err(TextError::Control));
    }
}
