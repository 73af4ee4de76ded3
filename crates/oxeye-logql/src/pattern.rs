//! Loki's pattern syntax (`<name> - <_> "<method> <path>"`), for the `pattern` parser and the `|>`/`!>`
//! line filters. Literals are matched in order from the start of the line; each capture takes the text up
//! to the next literal (the last one takes the rest of the line).

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Text to find after a capture (with a searcher built once per pattern, not per line) or to match
    /// where the previous literal ended.
    Literal(Box<Literal>),
    Capture(Option<String>),
}

/// A pattern's literal text and its searcher.
#[derive(Debug, Clone)]
struct Literal {
    text: String,
    finder: memchr::memmem::Finder<'static>,
}

impl Literal {
    fn new(text: String) -> Literal {
        let finder = memchr::memmem::Finder::new(text.as_bytes()).into_owned();
        Literal { text, finder }
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
    /// A message for consecutive captures, an unterminated capture or a pattern without any capture.
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
                nodes.push(Node::Literal(Box::new(Literal::new(std::mem::take(&mut literal)))));
            }
            if matches!(nodes.last(), Some(Node::Capture(_))) {
                return Err(format!("invalid pattern {text:?}: consecutive captures are not allowed"));
            }
            nodes.push(Node::Capture((name != "_").then(|| name.to_string())));
            rest = &after[name.len() + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            nodes.push(Node::Literal(Box::new(Literal::new(literal))));
        }
        if !nodes.iter().any(|node| matches!(node, Node::Capture(_))) {
            return Err(format!("invalid pattern {text:?}: at least one capture is required"));
        }
        Ok(Pattern { nodes })
    }

    /// The named captures of `line`, or `None` when the line does not match.
    pub fn captures<'a>(&self, line: &'a str) -> Option<Vec<(&str, &'a str)>> {
        let mut captures = Vec::new();
        let mut position = 0;
        let mut pending: Option<&Option<String>> = None;
        for node in &self.nodes {
            match node {
                Node::Capture(name) => pending = Some(name),
                Node::Literal(literal) => {
                    let rest = line.get(position..)?;
                    match pending.take() {
                        None => {
                            if !rest.starts_with(literal.text.as_str()) {
                                return None;
                            }
                            position += literal.text.len();
                        }
                        Some(name) => {
                            let found = literal.finder.find(rest.as_bytes())?;
                            if let Some(name) = name {
                                captures.push((name.as_str(), rest.get(..found)?));
                            }
                            position += found + literal.text.len();
                        }
                    }
                }
            }
        }
        if let Some(Some(name)) = pending {
            captures.push((name.as_str(), line.get(position..)?));
        }
        Some(captures)
    }

    /// True when the line matches.
    pub fn is_match(&self, line: &str) -> bool {
        self.captures(line).is_some()
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
    }
}
