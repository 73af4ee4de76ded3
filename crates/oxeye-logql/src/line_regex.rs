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
//!
//! When what follows the literal is one capture group repeating a character class and nothing else
//! (`status_code=(?P<status>[0-9]+)`, `level=(?P<level>\w+)`), the group is the whole anchored match: a
//! greedy repetition of a class with nothing after it takes every character of the class it can (up to its
//! maximum), so the group is read by testing characters against the class, without a regex engine (whose
//! capture search took 73% of a `| regexp` stage's instructions for three digits).

use memchr::memmem;
use regex::{CaptureLocations, Regex};

/// A compiled `| regexp` expression.
#[derive(Debug, Clone)]
pub(crate) struct LineRegex {
    regex: Regex,
    /// For patterns that begin with a plain literal of 3 bytes or more and hold no `|`: the literal and
    /// the rest of the pattern, anchored at the start of the text searched.
    prefixed: Option<(memmem::Finder<'static>, Regex)>,
    /// When the pattern after the literal is one group repeating a class (see the module docs).
    repeated_class: Option<RepeatedClass>,
}

/// A capture group of a repeated character class: `(?P<name>[class]{min,max})`, greedy.
#[derive(Debug, Clone)]
struct RepeatedClass {
    /// The class's ASCII members, bit `b` for byte `b`.
    ascii: u128,
    /// Its members above ASCII, as inclusive ranges in order.
    wide: Vec<(char, char)>,
    /// The fewest and most characters the repetition takes.
    min: usize,
    max: Option<usize>,
}

impl RepeatedClass {
    /// The repetition of group 1 when `pattern` (the part after the literal) is that group alone, parsed as
    /// the regex crate parses it.
    fn of(pattern: &str) -> Option<RepeatedClass> {
        use regex_syntax::hir::{Class, HirKind};
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let HirKind::Capture(capture) = hir.kind() else { return None };
        let HirKind::Repetition(repetition) = capture.sub.kind() else { return None };
        if !repetition.greedy || capture.index != 1 {
            return None;
        }
        let HirKind::Class(class) = repetition.sub.kind() else { return None };
        let ranges: Vec<(char, char)> = match class {
            Class::Unicode(class) => class.ranges().iter().map(|range| (range.start(), range.end())).collect(),
            // A byte class in a pattern over text holds ASCII bytes only (the regex crate refuses others).
            Class::Bytes(class) => class
                .ranges()
                .iter()
                .map(|range| (char::from(range.start()), char::from(range.end())))
                .filter(|(start, end)| start.is_ascii() && end.is_ascii())
                .collect(),
        };
        let mut ascii = 0u128;
        let mut wide = Vec::new();
        for (start, end) in ranges {
            for byte in u32::from(start)..=u32::from(end).min(0x7f) {
                ascii |= 1 << byte;
            }
            if u32::from(end) > 0x7f {
                let wide_start = if start.is_ascii() { '\u{80}' } else { start };
                wide.push((wide_start, end));
            }
        }
        Some(RepeatedClass {
            ascii,
            wide,
            min: usize::try_from(repetition.min).ok()?,
            max: repetition.max.and_then(|max| usize::try_from(max).ok()),
        })
    }

    fn contains(&self, character: char) -> bool {
        if character.is_ascii() {
            return self.ascii & (1 << u32::from(character)) != 0;
        }
        self.wide
            .binary_search_by(|(start, end)| {
                if *end < character {
                    std::cmp::Ordering::Less
                } else if *start > character {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// The length in bytes of the repetition's match at the start of `text`, or `None` when it has fewer
    /// than `min` characters there.
    fn match_length(&self, text: &str) -> Option<usize> {
        let mut characters = 0;
        let mut length = 0;
        for character in text.chars() {
            if self.max.is_some_and(|max| characters >= max) || !self.contains(character) {
                break;
            }
            characters += 1;
            length += character.len_utf8();
        }
        (characters >= self.min).then_some(length)
    }
}

impl LineRegex {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// The regex crate's error when `pattern` does not compile.
    pub(crate) fn new(pattern: &str) -> Result<LineRegex, regex::Error> {
        let regex = Regex::new(pattern)?;
        let repeated_class =
            plain_literal_prefix(pattern).and_then(|literal| RepeatedClass::of(pattern.get(literal.len()..)?));
        let prefixed = match plain_literal_prefix(pattern) {
            Some(literal) => Regex::new(&format!(r"\A(?:{})", pattern.get(literal.len()..).unwrap_or_default()))
                .ok()
                .map(|anchored| (memmem::Finder::new(literal.as_bytes()).into_owned(), anchored)),
            None => None,
        };
        Ok(LineRegex { regex, prefixed, repeated_class })
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

    /// For a pattern of a literal and one group repeating a class (see the module docs): the byte range in
    /// `line` of group 1 in the leftmost-first match, `Some(None)` when nothing matches; `None` for other
    /// patterns (use [`LineRegex::captures_read`]).
    pub(crate) fn repeated_class_group(&self, line: &str) -> Option<Option<(usize, usize)>> {
        let (Some((literal, _)), Some(repeated)) = (&self.prefixed, &self.repeated_class) else { return None };
        let mut from = 0;
        while let Some(found) = line.as_bytes().get(from..).and_then(|rest| literal.find(rest)) {
            let start = from + found;
            // The literal is ASCII, so it starts and ends on character boundaries.
            let after = start + literal.needle().len();
            if let Some(length) = line.get(after..).and_then(|rest| repeated.match_length(rest)) {
                return Some(Some((after, after + length)));
            }
            from = start + 1;
        }
        Some(None)
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

    /// Patterns of a literal and one group repeating a class give the group the regex crate's search gives
    /// it, on lines with several or no occurrences, short runs, non-ASCII text and bounded repetitions.
    #[test]
    fn repeated_class_groups_equal_the_regex_crate_groups() {
        let patterns = [
            "status_code=(?P<status>[0-9]+)",
            "level=(?P<level>\\w+)",
            "id=(?P<id>\\d{2,4})",
            "path=(?P<path>[^ ]*)",
            "user=(?P<user>(?i)[a-c]+)",
            "xx=(?P<x>[é-ü]+)",
            "key=(?P<k>[[:alpha:]]{3})",
        ];
        let lines = [
            "status_code=500",
            "status_code= status_code=404 status_code=200",
            "level= level=info_1 level=x",
            "level=naïve level=日本",
            "id=1 id=12345 id=123",
            "path= path=/api/x y",
            "user=ABCd user=x",
            "xx=a xx=éü xx=ÿ",
            "key=ab key=abcd",
            "",
            "nothing here",
        ];
        for pattern in patterns {
            let line_regex = LineRegex::new(pattern).unwrap();
            assert!(line_regex.repeated_class.is_some(), "{pattern} takes the class path");
            let plain = Regex::new(pattern).unwrap();
            for line in lines {
                let expected =
                    plain.captures(line).map(|captures| captures.get(1).map(|group| (group.start(), group.end())));
                let found = line_regex.repeated_class_group(line).unwrap();
                assert_eq!(found.map(Some), expected, "{pattern} on {line:?}");
            }
        }
        for pattern in ["took (?P<ms>[0-9]+)ms", "status=(?P<a>[0-9])(?P<b>[0-9])", "level=(?P<l>\\w+?)", "abc(x)"] {
            assert!(LineRegex::new(pattern).unwrap().repeated_class.is_none(), "{pattern}");
        }
    }
}
