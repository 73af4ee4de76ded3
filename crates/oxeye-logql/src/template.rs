//! The Go `text/template` subset that `line_format` and `label_format` use: text with `{{ }}` actions,
//! `{{- -}}` trimming, fields (`.status_code`), string and number literals, function calls and pipes
//! (`.path | ToUpper`), and `if`/`else if`/`else`/`end`.
//!
//! Functions: `ToUpper ToLower upper lower title trim trimSpace trimPrefix trimSuffix replace default
//! printf len contains hasPrefix hasSuffix regexReplaceAll regexReplaceAllLiteral substr trunc add sub mul
//! div mod eq ne lt le gt ge not and or __line__ __timestamp__ unixEpoch`, following Loki's template
//! function list (<https://grafana.com/docs/loki/latest/query/template_functions/>).

use std::collections::HashMap;

/// What a template can read: labels, the line and the timestamp.
pub struct TemplateContext<'a> {
    /// Label values by name.
    pub labels: &'a HashMap<String, String>,
    /// The current line (`__line__`).
    pub line: &'a str,
    /// The entry timestamp in nanoseconds (`__timestamp__`).
    pub timestamp_ns: i64,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If { branches: Vec<(Pipeline, Vec<Node>)>, otherwise: Vec<Node> },
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone, PartialEq)]
struct Command {
    operands: Vec<Operand>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Field(String),
    Dot,
    Str(String),
    Number(f64),
    Function(String),
    Sub(Pipeline),
}

const FUNCTIONS: &[&str] = &[
    "ToUpper",
    "ToLower",
    "upper",
    "lower",
    "title",
    "trim",
    "trimSpace",
    "trimPrefix",
    "trimSuffix",
    "replace",
    "default",
    "printf",
    "len",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "substr",
    "trunc",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "not",
    "and",
    "or",
    "__line__",
    "__timestamp__",
    "unixEpoch",
    "toJson",
    "count",
];

impl Template {
    /// Parses template text.
    ///
    /// # Errors
    /// A message naming the problem: unclosed action, unknown function, unbalanced `if`/`end`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut trim_next_text = false;
        while let Some(start) = rest.find("{{") {
            let mut literal = &rest[..start];
            if trim_next_text {
                literal = literal.trim_start();
            }
            let after = &rest[start + 2..];
            let trim_before = after.starts_with('-') && after[1..].starts_with(char::is_whitespace);
            if trim_before {
                literal = literal.trim_end();
            }
            pieces.push(Piece::Text(literal.to_string()));
            let end = after.find("}}").ok_or_else(|| format!("template: unclosed action in {text:?}"))?;
            let mut action = &after[..end];
            if trim_before {
                action = &action[1..];
            }
            trim_next_text = action.ends_with('-') && action[..action.len() - 1].ends_with(char::is_whitespace);
            if trim_next_text {
                action = &action[..action.len() - 1];
            }
            pieces.push(Piece::Action(action.trim().to_string()));
            rest = &after[end + 2..];
        }
        let tail = if trim_next_text { rest.trim_start() } else { rest };
        pieces.push(Piece::Text(tail.to_string()));
        let mut position = 0;
        let nodes = build(&pieces, &mut position, false)?;
        if position < pieces.len() {
            return Err("template: unexpected {{end}} or {{else}}".to_string());
        }
        Ok(Template { nodes })
    }

    /// Renders the template. Missing fields render as empty strings (Loki's `missingkey=zero`).
    ///
    /// # Errors
    /// A message when a function gets wrong arguments.
    pub fn render(&self, context: &TemplateContext<'_>) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.nodes, context, &mut out)?;
        Ok(out)
    }
}

enum Piece {
    Text(String),
    Action(String),
}

fn build(pieces: &[Piece], position: &mut usize, inside_if: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while *position < pieces.len() {
        match &pieces[*position] {
            Piece::Text(text) => {
                if !text.is_empty() {
                    nodes.push(Node::Text(text.clone()));
                }
                *position += 1;
            }
            Piece::Action(action) => {
                if action.starts_with("/*") {
                    *position += 1;
                    continue;
                }
                if action == "end" || action == "else" || action.starts_with("else ") {
                    if !inside_if {
                        return Err(format!("template: unexpected {{{{{action}}}}}"));
                    }
                    return Ok(nodes);
                }
                if let Some(condition) = action.strip_prefix("if ") {
                    *position += 1;
                    let mut branches = vec![(parse_pipeline(condition)?, build(pieces, position, true)?)];
                    let mut otherwise = Vec::new();
                    loop {
                        let Some(Piece::Action(closing)) = pieces.get(*position) else {
                            return Err("template: missing {{end}}".to_string());
                        };
                        *position += 1;
                        if closing == "end" {
                            break;
                        }
                        if let Some(condition) = closing.strip_prefix("else if ") {
                            branches.push((parse_pipeline(condition)?, build(pieces, position, true)?));
                            continue;
                        }
                        otherwise = build(pieces, position, true)?;
                    }
                    nodes.push(Node::If { branches, otherwise });
                    continue;
                }
                nodes.push(Node::Action(parse_pipeline(action)?));
                *position += 1;
            }
        }
    }
    if inside_if {
        return Err("template: missing {{end}}".to_string());
    }
    Ok(nodes)
}

fn tokenize_action(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let characters: Vec<char> = text.chars().collect();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        if character.is_whitespace() {
            index += 1;
        } else if character == '"' || character == '`' {
            let mut token = String::from('"');
            index += 1;
            while index < characters.len() && characters[index] != character {
                if character == '"' && characters[index] == '\\' && index + 1 < characters.len() {
                    index += 1;
                    token.push(match characters[index] {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    token.push(characters[index]);
                }
                index += 1;
            }
            if index >= characters.len() {
                return Err(format!("template: unterminated string in {text:?}"));
            }
            index += 1;
            tokens.push(token);
        } else if character == '|' || character == '(' || character == ')' {
            tokens.push(character.to_string());
            index += 1;
        } else {
            let start = index;
            while index < characters.len()
                && !characters[index].is_whitespace()
                && !matches!(characters[index], '|' | '(' | ')' | '"')
            {
                index += 1;
            }
            tokens.push(characters[start..index].iter().collect());
        }
    }
    Ok(tokens)
}

fn parse_pipeline(text: &str) -> Result<Pipeline, String> {
    let tokens = tokenize_action(text)?;
    let mut position = 0;
    let pipeline = parse_tokens(&tokens, &mut position)?;
    if position < tokens.len() {
        return Err(format!("template: unexpected {:?} in {text:?}", tokens[position]));
    }
    Ok(pipeline)
}

fn parse_tokens(tokens: &[String], position: &mut usize) -> Result<Pipeline, String> {
    let mut pipeline = Vec::new();
    let mut command = Command { operands: Vec::new() };
    while *position < tokens.len() {
        let token = &tokens[*position];
        *position += 1;
        match token.as_str() {
            "|" => pipeline.push(std::mem::replace(&mut command, Command { operands: Vec::new() })),
            "(" => command.operands.push(Operand::Sub(parse_tokens(tokens, position)?)),
            ")" => break,
            "." => command.operands.push(Operand::Dot),
            _ if token.starts_with('"') => command.operands.push(Operand::Str(token[1..].to_string())),
            _ if token.starts_with('.') => command.operands.push(Operand::Field(token[1..].to_string())),
            _ if token.starts_with('$') => command.operands.push(Operand::Dot),
            _ => {
                if let Ok(number) = token.parse::<f64>() {
                    command.operands.push(Operand::Number(number));
                } else if FUNCTIONS.contains(&token.as_str()) {
                    command.operands.push(Operand::Function(token.clone()));
                } else {
                    return Err(format!("template: function {token:?} not defined"));
                }
            }
        }
    }
    if command.operands.is_empty() {
        return Err("template: missing value for command".to_string());
    }
    pipeline.push(command);
    Ok(pipeline)
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Number(f64),
    Bool(bool),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Str(text) => text.clone(),
            Value::Number(value) => format_number(*value),
            Value::Bool(value) => value.to_string(),
        }
    }

    fn number(&self) -> f64 {
        match self {
            Value::Str(text) => text.trim().parse().unwrap_or(0.0),
            Value::Number(value) => *value,
            Value::Bool(value) => f64::from(u8::from(*value)),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Value::Str(text) => !text.is_empty(),
            Value::Number(value) => *value != 0.0,
            Value::Bool(value) => *value,
        }
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

fn render_nodes(nodes: &[Node], context: &TemplateContext<'_>, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => out.push_str(&eval_pipeline(pipeline, context)?.text()),
            Node::If { branches, otherwise } => {
                let mut taken = false;
                for (condition, body) in branches {
                    if eval_pipeline(condition, context)?.truthy() {
                        render_nodes(body, context, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    render_nodes(otherwise, context, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(pipeline: &Pipeline, context: &TemplateContext<'_>) -> Result<Value, String> {
    let mut previous: Option<Value> = None;
    for command in pipeline {
        previous = Some(eval_command(command, previous.take(), context)?);
    }
    Ok(previous.unwrap_or(Value::Str(String::new())))
}

fn eval_operand(operand: &Operand, context: &TemplateContext<'_>) -> Result<Value, String> {
    Ok(match operand {
        Operand::Field(name) => Value::Str(context.labels.get(name).cloned().unwrap_or_default()),
        Operand::Dot => Value::Str(String::new()),
        Operand::Str(text) => Value::Str(text.clone()),
        Operand::Number(value) => Value::Number(*value),
        Operand::Function(name) => call(name, Vec::new(), context)?,
        Operand::Sub(pipeline) => eval_pipeline(pipeline, context)?,
    })
}

fn eval_command(command: &Command, piped: Option<Value>, context: &TemplateContext<'_>) -> Result<Value, String> {
    let Some(first) = command.operands.first() else {
        return Ok(Value::Str(String::new()));
    };
    match first {
        Operand::Function(name) => {
            let mut arguments = Vec::with_capacity(command.operands.len());
            for operand in &command.operands[1..] {
                arguments.push(eval_operand(operand, context)?);
            }
            if let Some(value) = piped {
                arguments.push(value);
            }
            call(name, arguments, context)
        }
        other => {
            if command.operands.len() > 1 || piped.is_some() {
                return Err("template: can't give argument to non-function".to_string());
            }
            eval_operand(other, context)
        }
    }
}

fn call(name: &str, arguments: Vec<Value>, context: &TemplateContext<'_>) -> Result<Value, String> {
    let text = |index: usize| arguments.get(index).map(Value::text).unwrap_or_default();
    let number = |index: usize| arguments.get(index).map_or(0.0, Value::number);
    let need = |count: usize| {
        if arguments.len() < count {
            Err(format!("template: wrong number of args for {name}: want {count} got {}", arguments.len()))
        } else {
            Ok(())
        }
    };
    Ok(match name {
        "__line__" => Value::Str(context.line.to_string()),
        "__timestamp__" => Value::Number(context.timestamp_ns as f64 / 1e9),
        "unixEpoch" => Value::Number((context.timestamp_ns / 1_000_000_000) as f64),
        "ToUpper" | "upper" => {
            need(1)?;
            Value::Str(text(0).to_uppercase())
        }
        "ToLower" | "lower" => {
            need(1)?;
            Value::Str(text(0).to_lowercase())
        }
        "title" => {
            need(1)?;
            let mut out = String::new();
            let mut at_word_start = true;
            for character in text(0).chars() {
                if at_word_start {
                    out.extend(character.to_uppercase());
                } else {
                    out.push(character);
                }
                at_word_start = !character.is_alphanumeric();
            }
            Value::Str(out)
        }
        "trim" | "trimSpace" => {
            need(1)?;
            Value::Str(text(0).trim().to_string())
        }
        "trimPrefix" => {
            need(2)?;
            let value = text(1);
            Value::Str(value.strip_prefix(text(0).as_str()).unwrap_or(&value).to_string())
        }
        "trimSuffix" => {
            need(2)?;
            let value = text(1);
            Value::Str(value.strip_suffix(text(0).as_str()).unwrap_or(&value).to_string())
        }
        "replace" => {
            need(3)?;
            Value::Str(text(2).replace(&text(0), &text(1)))
        }
        "default" => {
            need(1)?;
            match arguments.get(1) {
                Some(value) if value.truthy() => value.clone(),
                _ => arguments.first().cloned().unwrap_or(Value::Str(String::new())),
            }
        }
        "len" | "count" => Value::Number(text(arguments.len().saturating_sub(1)).chars().count() as f64),
        "contains" => {
            need(2)?;
            Value::Bool(text(1).contains(&text(0)))
        }
        "hasPrefix" => {
            need(2)?;
            Value::Bool(text(1).starts_with(&text(0)))
        }
        "hasSuffix" => {
            need(2)?;
            Value::Bool(text(1).ends_with(&text(0)))
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            need(3)?;
            let regex = regex::Regex::new(&text(0)).map_err(|error| format!("template: {error}"))?;
            let source = text(2);
            let replacement = text(1);
            let replaced = if name == "regexReplaceAll" {
                regex.replace_all(&source, replacement.as_str()).into_owned()
            } else {
                regex.replace_all(&source, regex::NoExpand(&replacement)).into_owned()
            };
            Value::Str(replaced)
        }
        "substr" => {
            need(3)?;
            let characters: Vec<char> = text(2).chars().collect();
            let start = (number(0).max(0.0) as usize).min(characters.len());
            let end = if number(1) < 0.0 { characters.len() } else { (number(1) as usize).min(characters.len()) };
            Value::Str(characters[start..end.max(start)].iter().collect())
        }
        "trunc" => {
            need(2)?;
            let characters: Vec<char> = text(1).chars().collect();
            let count = number(0);
            let kept: String = if count >= 0.0 {
                characters.iter().take(count as usize).collect()
            } else {
                characters.iter().skip(characters.len().saturating_sub((-count) as usize)).collect()
            };
            Value::Str(kept)
        }
        "add" => Value::Number(number(0) + number(1)),
        "sub" => Value::Number(number(0) - number(1)),
        "mul" => Value::Number(number(0) * number(1)),
        "div" => Value::Number(if number(1) == 0.0 { 0.0 } else { number(0) / number(1) }),
        "mod" => Value::Number(if number(1) == 0.0 { 0.0 } else { number(0) % number(1) }),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            need(2)?;
            let (left, right) = (&arguments[0], &arguments[1]);
            let ordering = match (left.text().parse::<f64>(), right.text().parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(left.text().cmp(&right.text())),
            };
            let ordering = ordering.unwrap_or(std::cmp::Ordering::Less);
            Value::Bool(match name {
                "eq" => ordering.is_eq(),
                "ne" => !ordering.is_eq(),
                "lt" => ordering.is_lt(),
                "le" => ordering.is_le(),
                "gt" => ordering.is_gt(),
                _ => ordering.is_ge(),
            })
        }
        "not" => Value::Bool(!arguments.first().is_some_and(Value::truthy)),
        "and" => Value::Bool(arguments.iter().all(Value::truthy)),
        "or" => Value::Bool(arguments.iter().any(Value::truthy)),
        "printf" => {
            need(1)?;
            Value::Str(printf(&text(0), &arguments[1..]))
        }
        "toJson" => Value::Str(serde_json::Value::String(text(0)).to_string()),
        _ => return Err(format!("template: function {name:?} not defined")),
    })
}

fn printf(format: &str, arguments: &[Value]) -> String {
    let mut out = String::new();
    let mut characters = format.chars().peekable();
    let mut next = arguments.iter();
    while let Some(character) = characters.next() {
        if character != '%' {
            out.push(character);
            continue;
        }
        // Skip flags and width, keep the verb.
        let mut verb = None;
        for candidate in characters.by_ref() {
            if candidate.is_ascii_alphabetic() || candidate == '%' {
                verb = Some(candidate);
                break;
            }
        }
        match verb {
            Some('%') => out.push('%'),
            Some('d') => out.push_str(&format!("{}", next.next().map_or(0.0, Value::number) as i64)),
            Some('f') => out.push_str(&format!("{:.6}", next.next().map_or(0.0, Value::number))),
            Some(_) => out.push_str(&next.next().map(Value::text).unwrap_or_default()),
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, labels: &[(&str, &str)]) -> String {
        let labels: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let context = TemplateContext { labels: &labels, line: "the line", timestamp_ns: 1_500_000_000 };
        Template::parse(template).unwrap().render(&context).unwrap()
    }

    #[test]
    fn fields_pipes_functions_and_conditions() {
        assert_eq!(render("{{.method}} {{ .path | ToUpper }}", &[("method", "GET"), ("path", "/a")]), "GET /A");
        assert_eq!(render("{{ .missing }}|{{ __line__ }}", &[]), "|the line");
        assert_eq!(render(r#"{{ if eq .status "500" }}bad{{ else }}ok{{ end }}"#, &[("status", "500")]), "bad");
        assert_eq!(render(r#"{{ if gt .ms "100" }}slow{{ end }}"#, &[("ms", "20")]), "");
        assert_eq!(render(r#"{{ default "none" .user }}"#, &[]), "none");
        assert_eq!(render(r#"a  {{- .x -}}  b"#, &[("x", "X")]), "aXb");
        assert_eq!(render(r#"{{ printf "%s=%d" .k .v }}"#, &[("k", "n"), ("v", "42")]), "n=42");
        assert!(Template::parse("{{ nosuch .x }}").is_err());
        assert!(Template::parse("{{ if .x }}").is_err());
    }
}
