//! Loki's pattern syntax (`<name> - <_> "<method> <path>"`), for the `pattern` parser and the `|>`/`!>`
//! line filters. Literals are matched in order from the start of the line; each capture takes the text up
//! to the next literal (the last one takes the rest of the line). The `|>` filters need the whole pattern
//! to match; the parser keeps what a partial match captured, as Loki's does ([`Pattern::extract_spans`]).

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literal the line must start with, if the pattern starts with one.
    prefix: Option<String>,
    /// The captures in order, each with the literal that ends it.
    steps: Vec<Step>,
}

/// A capture (`None` for `<_>`) and the literal after it (with a searcher built once per pattern, not per
/// line), `None` for a capture that ends the pattern and takes the rest of the line. Captures and literals
/// alternate (consecutive captures are refused, consecutive literal text is one literal), so a pattern is
/// an optional prefix and then such steps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    name: Option<String>,
    literal: Option<Box<Literal>>,
}

/// A piece of a pattern as the parser reads it, before the pieces are paired into [`Step`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Literal(String),
    Capture(Option<String>),
}

/// A pattern's literal text and its searcher.
#[derive(Debug, Clone)]
struct Literal {
    text: String,
    finder: memchr::memmem::Finder<'static>,
    /// The AVX2 byte-pair searcher the memmem searcher would use for this literal (two to 32 bytes, AVX2
    /// present), called directly: the memmem searcher's dispatch costs about 20 instructions a search.
    #[cfg(target_arch = "x86_64")]
    packed_pair: Option<memchr::arch::x86_64::avx2::packedpair::Finder>,
}

/// The longest literal [`Literal::find`] searches with the byte-pair searcher itself: the bound the memmem
/// searcher sets for it (longer needles with many candidates would make the search slow).
#[cfg(target_arch = "x86_64")]
const PACKED_PAIR_MAX_LEN: usize = 32;

/// How many bytes [`Literal::find`] compares one by one with a one-byte literal before it calls `memchr`: a
/// separator after a short value (`level=<level> `, `status_code=<status> `) is usually that close.
const NEAR_BYTES: usize = 8;

impl Literal {
    /// A literal and its searcher. `text` is not empty (the pattern parser makes no empty literals).
    fn new(text: String) -> Literal {
        let finder = memchr::memmem::Finder::new(text.as_bytes()).into_owned();
        #[cfg(target_arch = "x86_64")]
        let packed_pair = (text.len() <= PACKED_PAIR_MAX_LEN)
            .then(|| memchr::arch::x86_64::avx2::packedpair::Finder::new(text.as_bytes()))
            .flatten();
        Literal {
            text,
            finder,
            #[cfg(target_arch = "x86_64")]
            packed_pair,
        }
    }

    /// The offset of the literal's first occurrence in `haystack`, as `memmem::find` gives it. A one-byte
    /// literal is looked for in the first [`NEAR_BYTES`] bytes one by one, then with `memchr` (the memmem
    /// searcher's dispatch costs about 55 instructions even when the byte is the third one); a longer one
    /// goes to the memmem searcher (its vector search of a well-chosen byte pair beat both a byte-by-byte
    /// near search and trying the next occurrence of the first byte, in instructions per logfmt line).
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        let [byte] = self.text.as_bytes() else {
            #[cfg(target_arch = "x86_64")]
            if let Some(packed_pair) = &self.packed_pair
                && haystack.len() >= packed_pair.min_haystack_len()
            {
                return packed_pair.find(haystack, self.text.as_bytes());
            }
            return self.finder.find(haystack);
        };
        let near = haystack.get(..NEAR_BYTES).unwrap_or(haystack);
        if let Some(found) = near.iter().position(|candidate| candidate == byte) {
            return Some(found);
        }
        let far = haystack.get(NEAR_BYTES..)?;
        memchr::memchr(*byte, far).map(|found| found + NEAR_BYTES)
    }
}

impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        self.text == other.text
    }
}

impl Eq for Literal {}

impl Pattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// A message for consecutive captures, an unterminated capture, a pattern without any capture or a
    /// named capture twice.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut nodes = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let end = after.find('>');
            let name = end.map(|end| &after[..end]);
            let is_capture = name.is_some_and(|name| {
                name == "_" || (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            });
            if !is_capture {
                literal.push_str(&rest[..start + 1]);
                rest = after;
                continue;
            }
            let name = name.unwrap_or_default();
            literal.push_str(&rest[..start]);
            if !literal.is_empty() {
                nodes.push(Node::Literal(std::mem::take(&mut literal)));
            }
            if matches!(nodes.last(), Some(Node::Capture(_))) {
                return Err(format!("invalid pattern {text:?}: consecutive captures are not allowed"));
            }
            nodes.push(Node::Capture((name != "_").then(|| name.to_string())));
            rest = &after[name.len() + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            nodes.push(Node::Literal(literal));
        }
        if !nodes.iter().any(|node| matches!(node, Node::Capture(_))) {
            return Err(format!("invalid pattern {text:?}: at least one capture is required"));
        }
        // Loki refuses a named capture twice (grafana/loki `pkg/logql/log/pattern/ast.go`, `expr.validate`).
        let mut names: Vec<&str> = nodes
            .iter()
            .filter_map(|node| if let Node::Capture(name) = node { name.as_deref() } else { None })
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("invalid pattern {text:?}: duplicate capture name ({})", pair[0]));
        }
        let mut nodes = nodes.into_iter().peekable();
        let prefix = match nodes.next_if(|node| matches!(node, Node::Literal(_))) {
            Some(Node::Literal(text)) => Some(text),
            _ => None,
        };
        let mut steps = Vec::new();
        while let Some(node) = nodes.next() {
            let Node::Capture(name) = node else { continue };
            let literal = match nodes.next_if(|node| matches!(node, Node::Literal(_))) {
                Some(Node::Literal(text)) => Some(Box::new(Literal::new(text))),
                _ => None,
            };
            steps.push(Step { name, literal });
        }
        Ok(Pattern { prefix, steps })
    }

    /// The named captures of `line`, or `None` when the line does not match.
    pub fn captures<'a>(&self, line: &'a str) -> Option<Vec<(&str, &'a str)>> {
        let names: Vec<Option<&str>> = self.capture_names().collect();
        let mut captures = Vec::new();
        let matched = self.match_spans(line, |index, start, end| {
            if let (Some(Some(name)), Some(value)) = (names.get(index), line.get(start..end)) {
                captures.push((*name, value));
            }
        });
        matched.then_some(captures)
    }

    /// The pattern's captures in order, `None` for `<_>`: the indices [`Pattern::match_spans`] reports.
    pub fn capture_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.steps.iter().map(|step| step.name.as_deref())
    }

    /// Matches `line` and reports each capture as `(index, start, end)`: its index among
    /// [`Pattern::capture_names`] and its byte range in `line` (on character boundaries: a capture ends
    /// where a literal starts, or at the end of the line). Nothing is allocated; captures are reported
    /// as they are found, so a caller must drop them when this returns false (the line does not match).
    pub fn match_spans(&self, line: &str, report: impl FnMut(usize, usize, usize)) -> bool {
        self.walk(line, false, report)
    }

    /// Reports the captures the `| pattern` parser extracts from `line`, each as `(index, start, end)` like
    /// [`Pattern::match_spans`], the way Loki's parser finds them (`Matches` in grafana/loki
    /// `pkg/logql/log/pattern/pattern.go`), which does not need the whole pattern to match:
    /// - nothing on an empty line, or when the pattern starts with a literal that does not start the line;
    /// - otherwise each capture takes the text up to the first occurrence of the literal after it, and a
    ///   capture whose literal is not found takes the rest of the line and ends the search: the captures
    ///   before it are kept (`<_> level=<lvl> path=<path> status=<status>` on `ts=1 level=warn path=/x
    ///   code=404` gives `lvl="warn"` and `path="/x code=404"`);
    /// - text after the pattern's last literal is ignored.
    pub fn extract_spans(&self, line: &str, report: impl FnMut(usize, usize, usize)) {
        if !line.is_empty() {
            self.walk(line, true, report);
        }
    }

    /// The pattern cut after its first `captures` captures, for a parser that reads only those: its
    /// [`Pattern::extract_spans`] reports exactly the captures below index `captures` that the whole
    /// pattern's reports, and stops looking there (the literals after them are not searched). Only for
    /// extracting: the cut pattern matches lines the whole one does not ([`Pattern::is_match`]).
    pub fn first_captures(&self, captures: usize) -> Pattern {
        Pattern { prefix: self.prefix.clone(), steps: self.steps.iter().take(captures).cloned().collect() }
    }

    /// Walks `line` along the pattern, reporting captures as [`Pattern::match_spans`] does. A literal that
    /// is not found after a capture ends the walk: with `partial`, the capture takes the rest of the line
    /// and the walk counts as a match, else it is no match. A leading literal must start the line.
    fn walk(&self, line: &str, partial: bool, mut report: impl FnMut(usize, usize, usize)) -> bool {
        let mut position = 0;
        if let Some(prefix) = &self.prefix {
            if !line.starts_with(prefix.as_str()) {
                return false;
            }
            position = prefix.len();
        }
        for (index, step) in self.steps.iter().enumerate() {
            let Some(literal) = &step.literal else {
                report(index, position, line.len());
                return true;
            };
            let Some(rest) = line.as_bytes().get(position..) else { return false };
            let Some(found) = literal.find(rest) else {
                if partial {
                    report(index, position, line.len());
                }
                return partial;
            };
            report(index, position, position + found);
            position += found + literal.text.len();
        }
        true
    }

    /// True when the line matches.
    pub fn is_match(&self, line: &str) -> bool {
        self.match_spans(line, |_, _, _| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_follow_literals() {
        let pattern = Pattern::parse(r#"<ip> - <_> "<method> <path> <_>" <status>"#).unwrap();
        let captures = pattern.captures(r#"10.0.0.1 - - "GET /healthz/ HTTP/1.1" 200 512"#).unwrap();
        assert_eq!(captures, [("ip", "10.0.0.1"), ("method", "GET"), ("path", "/healthz/"), ("status", "200 512")]);
        assert!(Pattern::parse("<a><b>").is_err());
        assert!(Pattern::parse("no captures").is_err());
        assert!(!Pattern::parse("GET <_>").unwrap().is_match("POST /x"));
        // A `<` that opens no capture is literal text, joined with the text after it into one literal.
        let angled = Pattern::parse("x<<a>> <b>").unwrap();
        assert_eq!(angled.captures("x<1> 2 3").unwrap(), [("a", "1"), ("b", "2 3")]);
        assert_eq!(angled.captures("y<1> 2"), None);
        assert_eq!(Pattern::parse("<a>").unwrap().captures("all of it").unwrap(), [("a", "all of it")]);
    }

    /// The parser's captures as Loki's `Matches` gives them: partial matches keep the captures found, the
    /// capture whose literal is missing takes the rest of the line, a leading literal must start the line.
    #[test]
    fn extracted_spans_follow_lokis_matcher() {
        let extract = |pattern: &str, line: &str| {
            let pattern = Pattern::parse(pattern).unwrap();
            let names: Vec<Option<&str>> = pattern.capture_names().collect();
            let mut found = Vec::new();
            pattern.extract_spans(line, |index, start, end| {
                if let Some(Some(name)) = names.get(index) {
                    found.push((name.to_string(), line[start..end].to_string()));
                }
            });
            found
        };
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
        };
        let query = "<_> level=<lvl> path=<path> status=<status>";
        assert_eq!(
            extract(query, "ts=1 level=warn path=/x status=404"),
            pairs(&[("lvl", "warn"), ("path", "/x"), ("status", "404")])
        );
        assert_eq!(
            extract(query, "ts=1 level=warn path=/x code=404"),
            pairs(&[("lvl", "warn"), ("path", "/x code=404")])
        );
        assert_eq!(extract(query, "ts=1 lvl=warn"), pairs(&[]));
        assert_eq!(extract(query, ""), pairs(&[]));
        assert_eq!(extract("GET <path> HTTP", "POST /x HTTP"), pairs(&[]));
        assert_eq!(extract("GET <path> HTTP", "GET /x"), pairs(&[("path", "/x")]));
        assert_eq!(extract("GET <path> HTTP", "GET /x HTTP/1.1 200"), pairs(&[("path", "/x")]));
        assert_eq!(extract("<a> - <b>", "x - y - z"), pairs(&[("a", "x"), ("b", "y - z")]));
    }

    /// A small xorshift generator, so the randomised comparisons below are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }

        /// Text of `length` bytes over a small alphabet (with a two-byte character), so literals recur.
        fn text(&mut self, length: usize) -> String {
            const PIECES: [&str; 8] = [" ", "=", "a", "b", "l", "é", "\0", "\u{80}"];
            (0..length).map(|_| PIECES[self.below(PIECES.len())]).collect()
        }
    }

    /// The near search and the searcher after it find what `memmem::find` finds, at every offset (around
    /// the [`NEAR_BYTES`] seam too) and on texts shorter than the literal.
    #[test]
    fn literal_search_agrees_with_memmem() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let (needle_length, haystack_length) = (1 + rng.below(12), rng.below(160));
            let (needle, haystack) = (rng.text(needle_length), rng.text(haystack_length));
            let literal = Literal::new(needle.clone());
            let expected = memchr::memmem::find(haystack.as_bytes(), needle.as_bytes());
            assert_eq!(literal.find(haystack.as_bytes()), expected, "{needle:?} in {haystack:?}");
        }
        for needle in [" path=", " "] {
            let literal = Literal::new(needle.to_string());
            for offset in 0..40 {
                for filler in ["a", " p"] {
                    let haystack = format!("{}{needle}/x", filler.repeat(offset));
                    let expected = memchr::memmem::find(haystack.as_bytes(), needle.as_bytes());
                    assert_eq!(literal.find(haystack.as_bytes()), expected, "{needle:?} in {haystack:?}");
                    let cut = &haystack.as_bytes()[..haystack.len() - 3];
                    assert_eq!(literal.find(cut), memchr::memmem::find(cut, needle.as_bytes()));
                }
            }
        }
    }

    /// The parser's walk gives what a plain walk with `str::find` gives (the walk before the near search),
    /// on random patterns and lines.
    #[test]
    fn extracted_spans_agree_with_a_plain_walk() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let mut text = String::new();
            let leading = rng.below(2) == 0;
            for piece in 0..1 + rng.below(4) {
                if leading || piece > 0 {
                    let length = 1 + rng.below(3);
                    text.push_str(&rng.text(length));
                }
                text.push_str(if rng.below(2) == 0 { "<_>" } else { "<v>" });
            }
            if rng.below(2) == 0 {
                let length = 1 + rng.below(3);
                text.push_str(&rng.text(length));
            }
            let Ok(pattern) = Pattern::parse(&text) else { continue };
            let line_length = rng.below(120);
            let line = rng.text(line_length);
            let mut found = Vec::new();
            pattern.extract_spans(&line, |index, start, end| found.push((index, start, end)));
            let mut expected = Vec::new();
            let prefix_ok = pattern.prefix.as_deref().is_none_or(|prefix| line.starts_with(prefix));
            if !line.is_empty() && prefix_ok {
                let mut position = pattern.prefix.as_ref().map_or(0, String::len);
                for (index, step) in pattern.steps.iter().enumerate() {
                    let Some(literal) = &step.literal else {
                        expected.push((index, position, line.len()));
                        break;
                    };
                    let Some(found) = line[position..].find(literal.text.as_str()) else {
                        expected.push((index, position, line.len()));
                        break;
                    };
                    expected.push((index, position, position + found));
                    position += found + literal.text.len();
                }
            }
            assert_eq!(found, expected, "{text:?} on {line:?}");
            // The walk cut short after the first captures reports exactly those of them the whole walk does.
            for captures in 0..=pattern.steps.len() {
                let mut first = Vec::new();
                let cut = pattern.first_captures(captures);
                cut.extract_spans(&line, |index, start, end| first.push((index, start, end)));
                let below: Vec<_> = expected.iter().copied().filter(|(index, _, _)| *index < captures).collect();
                assert_eq!(first, below, "{text:?} on {line:?}, first {captures} captures");
            }
        }
    }
}
