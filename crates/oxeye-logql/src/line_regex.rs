//! The regular expression of a `| regexp` stage, searched only where its literal prefix stands.
//!
//! A pattern such as `status_code=(?P<status>[0-9]+)` can only match where `status_code=` is written. An
//! unanchored capture search runs the regex crate's forward and reverse DFAs to find the match and then a
//! capture engine over it (30% of a `| regexp` scan); finding the literal with `memchr::memmem` and running
//! the pattern anchored there (`\A(?:...)`) captures in one pass. Every match starts with the literal, so
//! trying its occurrences from the left and keeping the first that matches gives the leftmost-first match
//! the unanchored search gives. The anchored pattern leaves the literal out (`\A(?:[0-9]+)` after
//! `status_code=`), so the capture engine reads only what follows it: the literal holds no group, so the
//! groups keep their indices and names.

use memchr::memmem;
use regex::{CaptureLocations, Regex};

/// A compiled `| regexp` expression.
#[derive(Debug, Clone)]
pub(crate) struct LineRegex {
    regex: Regex,
    /// For patterns that begin with a plain literal of 3 bytes or more and hold no `|`: the literal and
    /// the rest of the pattern, anchored at the start of the text searched.
    prefixed: Option<(memmem::Finder<'static>, Regex)>,
}

impl LineRegex {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// The regex crate's error when `pattern` does not compile.
    pub(crate) fn new(pattern: &str) -> Result<LineRegex, regex::Error> {
        let regex = Regex::new(pattern)?;
        let prefixed = match plain_literal_prefix(pattern) {
            Some(literal) => Regex::new(&format!(r"\A(?:{})", pattern.get(literal.len()..).unwrap_or_default()))
                .ok()
                .map(|anchored| (memmem::Finder::new(literal.as_bytes()).into_owned(), anchored)),
            None => None,
        };
        Ok(LineRegex { regex, prefixed })
    }

    /// The regex whose groups the locations of [`LineRegex::captures_read`] follow (same names and indices
    /// as the pattern's).
    pub(crate) fn regex(&self) -> &Regex {
        &self.regex
    }

    /// Capture locations for [`LineRegex::captures_read`].
    pub(crate) fn capture_locations(&self) -> CaptureLocations {
        match &self.prefixed {
            Some((_, anchored)) => anchored.capture_locations(),
            None => self.regex.capture_locations(),
        }
    }

    /// Searches `line` for the leftmost-first match, filling `locations` (from
    /// [`LineRegex::capture_locations`]); returns the offset in `line` that the locations' positions are
    /// relative to, or `None` without a match. The named groups' locations are those of the unanchored
    /// search; group 0 may leave out the match's literal prefix.
    pub(crate) fn captures_read(&self, locations: &mut CaptureLocations, line: &str) -> Option<usize> {
        let Some((literal, anchored)) = &self.prefixed else {
            return self.regex.captures_read(locations, line).map(|_| 0);
        };
        let mut from = 0;
        while let Some(found) = line.as_bytes().get(from..).and_then(|rest| literal.find(rest)) {
            let start = from + found;
            // The literal is ASCII, so it starts and ends on character boundaries.
            let after = start + literal.needle().len();
            if let Some(rest) = line.get(after..)
                && anchored.captures_read(locations, rest).is_some()
            {
                return Some(after);
            }
            from = start + 1;
        }
        None
    }
}

/// The plain literal every match of `pattern` starts with, when the pattern starts with one of at least 3
/// bytes and has no alternation: the leading run of characters that stand for themselves in the regex
/// syntax, less its last character when a quantifier follows it.
fn plain_literal_prefix(pattern: &str) -> Option<&str> {
    if pattern.contains('|') {
        return None;
    }
    let literal_character = |character: char| {
        character.is_ascii_alphanumeric()
            || matches!(
                character,
                '_' | '=' | ':' | ' ' | '-' | '"' | '/' | ',' | ';' | '<' | '>' | '@' | '%' | '&' | '\'' | '!' | '~'
            )
    };
    let end = pattern.find(|character: char| !literal_character(character)).unwrap_or(pattern.len());
    let run = pattern.get(..end)?;
    let literal = match pattern.get(end..).and_then(|rest| rest.chars().next()) {
        Some('?' | '*' | '+' | '{') => run.get(..run.len().saturating_sub(1))?,
        _ => run,
    };
    (literal.len() >= 3).then_some(literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes_are_taken_only_where_every_match_starts_with_them() {
        let cases = [
            ("status_code=(?P<status>[0-9]+)", Some("status_code=")),
            ("abcd*e", Some("abc")),
            ("ab(c)", None),
            ("abc|def", None),
            ("(?i)status", None),
            (r"\bstatus", None),
            ("level=(\\w+)", Some("level=")),
            ("path", Some("path")),
        ];
        for (pattern, literal) in cases {
            assert_eq!(plain_literal_prefix(pattern), literal, "{pattern}");
        }
    }

    /// The literal-first search finds the same match and groups as the regex crate's unanchored search.
    #[test]
    fn literal_first_search_equals_the_unanchored_search() {
        let patterns = [
            "status_code=(?P<status>[0-9]+)",
            "aab(?P<x>.)",
            "abcd*(?P<e>[ef])?",
            "level=(?P<level>\\w+) (?P<next>\\S+)",
            "key=\"(?P<value>[^\"]*)\"",
            "xx=(?P<x>é+)$",
            "path=(?P<p>/api/[a-z]+/)(?P<id>[0-9]*)",
        ];
        let lines = [
            "status_code=500",
            "status_code= status_code=404 status_code=200",
            "aaab! aab?",
            "aaaab",
            "abce abcdddf abc",
            "level=info msg=hello level=error",
            "level= level=warning x",
            r#"key="a" key="b c""#,
            "xx=éé xx=é",
            "xx=é y",
            "path=/api/events/42 path=/api/users/",
            "naïve café status_code=201 ünïcode",
            "",
            "nothing here",
        ];
        for pattern in patterns {
            let line_regex = LineRegex::new(pattern).unwrap();
            assert!(line_regex.prefixed.is_some(), "{pattern} takes the literal-first search");
            let plain = Regex::new(pattern).unwrap();
            let mut locations = line_regex.capture_locations();
            let mut plain_locations = plain.capture_locations();
            for line in lines {
                let found = line_regex.captures_read(&mut locations, line);
                let expected = plain.captures_read(&mut plain_locations, line);
                assert_eq!(found.is_some(), expected.is_some(), "{pattern} on {line:?}");
                let Some(base) = found else { continue };
                // Group 0 leaves the literal out; the others are the same.
                let literal = plain_literal_prefix(pattern).unwrap_or_default().len();
                let whole = locations.get(0).map(|(start, end)| (start + base - literal, end + base));
                assert_eq!(whole, plain_locations.get(0), "{pattern} on {line:?}, the whole match");
                for index in 1..plain_locations.len() {
                    let shifted = locations.get(index).map(|(start, end)| (start + base, end + base));
                    assert_eq!(shifted, plain_locations.get(index), "{pattern} on {line:?}, group {index}");
                }
            }
        }
    }
}
