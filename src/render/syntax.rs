//! The compile error both template languages report (Mustache for DatoCMS, `{/pointer}`
//! placeholders for Contensis): where in the template text it is and what is wrong, so the
//! management API can answer 4xx with a message the user can act on.
//!
//! Messages name tags and positions, never template text around them: a header template may
//! carry a secret.

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxProblem {
    /// A tag opened with this delimiter has no closing delimiter.
    #[error("the tag opened with `{0}` is never closed")]
    UnclosedTag(Box<str>),
    #[error("the tag has no name")]
    EmptyName,
    #[error("a tag name cannot contain whitespace")]
    WhitespaceInName,
    /// `a..b`, `.a`, `a.`: a dotted name with an empty part.
    #[error("`{0}` has an empty part between dots")]
    EmptyNamePart(Box<str>),
    #[error(
        "a set-delimiter tag takes two delimiters without whitespace or `=`, as in `{{{{=<% %>=}}}}`"
    )]
    BadDelimiters,
    #[error("closing tag for `{0}` without a section open")]
    UnopenedSection(Box<str>),
    #[error("closing tag for `{close}` while section `{open}` is open; close it first")]
    MismatchedSection { open: Box<str>, close: Box<str> },
    #[error("section `{0}` is never closed")]
    UnclosedSection(Box<str>),
    #[error("sections are nested more than {0} deep")]
    TooDeep(usize),
    #[error("the placeholder opened with `{{/` is never closed with `}}`")]
    UnclosedPlaceholder,
    #[error("a placeholder cannot contain {0:?}")]
    PlaceholderChar(char),
    #[error("`~` in a placeholder must be followed by `0` (for `~`) or `1` (for `/`)")]
    PointerEscape,
}

/// A template that does not compile: the problem and where it starts (1-based line and column,
/// columns counted in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {problem}")]
pub struct SyntaxError {
    pub line: u32,
    pub column: u32,
    pub problem: SyntaxProblem,
}

impl SyntaxError {
    /// The error for `problem` found at byte `offset` of `src`.
    pub(crate) fn at(src: &str, offset: usize, problem: SyntaxProblem) -> SyntaxError {
        let offset = offset.min(src.len());
        // `offset` always comes from a scan over `src` at a character boundary; if it ever did
        // not, the position is still close enough to be useful.
        let before = src.get(..offset).unwrap_or(src);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        SyntaxError {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let src = "ab\ncé{{x\nz";
        let cases = [
            (0, 1, 1),
            (2, 1, 3),
            (3, 2, 1),
            (6, 2, 3),
            (11, 3, 2),
            (99, 3, 2),
        ];
        for (offset, line, column) in cases {
            let e = SyntaxError::at(src, offset, SyntaxProblem::EmptyName);
            assert_eq!((e.line, e.column), (line, column), "{offset}");
        }
        let e = SyntaxError::at(src, 6, SyntaxProblem::UnclosedTag("{{".into()));
        assert_eq!(
            e.to_string(),
            "line 2, column 3: the tag opened with `{{` is never closed"
        );
    }
}
