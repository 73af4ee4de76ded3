//! Golden cases for lines a parser cannot read: what `| json`, `| logfmt --strict` and `| unpack` keep, as
//! Loki's `JSONParser`, `LogfmtParser` and `UnpackParser` (pkg/logql/log/parser.go, and their cases in
//! pkg/logql/log/parser_test.go) do. The json parser and strict logfmt set each label as they read it and
//! then `__error__` and `__error_details__`, so the labels before the error stay; unpack adds its labels only
//! once the whole object is read.
#![allow(clippy::unwrap_used)]

use oxeye_logql::pipeline::Pipeline;
use oxeye_logql::syntax::{Expr, parse_expr};
use oxeye_model::Labels;
use oxeye_model::logs::LogEntry;

/// The entry's line and labels (`name=value`, the stream's `service_name` left out) after `query`'s
/// pipeline, or `None` when it drops the entry.
fn run(query: &str, line: &str) -> Option<(String, Vec<String>)> {
    let Expr::Log(log) = parse_expr(query).unwrap() else { panic!("{query}: not a log query") };
    let mut pipeline = Pipeline::new(&log.pipeline).unwrap();
    let stream = Labels::from_pairs([("service_name", "boxoffice")]);
    let processed = pipeline.process(&stream, &LogEntry::new(1, line))?;
    let labels = processed
        .labels
        .iter()
        .filter(|label| label.name != "service_name")
        .map(|label| format!("{}={}", label.name, label.value))
        .collect();
    Some((processed.line, labels))
}

fn labels(query: &str, line: &str) -> Vec<String> {
    run(query, line).unwrap_or_else(|| panic!("{query} dropped {line:?}")).1
}

const JSON_ERROR: &str = "__error__=JSONParserErr";

#[test]
fn json_keeps_the_fields_before_the_error() {
    let json = r#"{a="b"} | json"#;
    let details = |text: &str| format!("__error_details__={text}");
    // Not an object at all: no field, jsonparser's MalformedObjectError.
    for line in ["not json", "[1,2]", r#""text""#] {
        assert_eq!(
            labels(json, line),
            [JSON_ERROR.to_string(), details("Value looks like object, but can't find closing '}' symbol")],
            "{line}"
        );
    }
    // Truncated lines keep what was read before the cut.
    assert_eq!(
        labels(json, r#"{"level":"error","status":503,"path":"/x"#),
        [
            JSON_ERROR.to_string(),
            details("Value is string, but can't find closing '\"' symbol"),
            "level=error".into(),
            "status=503".into()
        ]
    );
    for line in [r#"{"level":"error","status":503"#, r#"{"level":"error","status":503,"#] {
        assert_eq!(
            labels(json, line),
            [
                JSON_ERROR.to_string(),
                details("Value is array, but can't find closing ']' symbol"),
                "level=error".into(),
                "status=503".into()
            ],
            "{line}"
        );
    }
    assert_eq!(
        labels(json, r#"{"level":"error","status":"#),
        [JSON_ERROR.to_string(), details("Malformed JSON error"), "level=error".into()]
    );
    // An error inside a nested object whose braces balance: its fields before the error stay.
    assert_eq!(
        labels(json, r#"{"level":"error","http":{"status":503,"method":x},"path":"/x"}"#),
        [JSON_ERROR.to_string(), details("Unknown value type"), "http_status=503".into(), "level=error".into()]
    );
    // A nested object cut off: none of its fields (jsonparser finds its end before walking it).
    assert_eq!(
        labels(json, r#"{"level":"error","http":{"status":503,"method":"GET""#),
        [
            JSON_ERROR.to_string(),
            details("Value looks like object, but can't find closing '}' symbol"),
            "level=error".into()
        ]
    );
    // What follows the closing brace is not read.
    assert_eq!(labels(json, r#"{"level":"error"} trailing"#), ["level=error"]);
}

#[test]
fn filters_and_drop_after_json_see_the_kept_fields() {
    let line = r#"{"user_id":-1,"level":"error","x":tru}"#;
    assert_eq!(
        run(r#"{a="b"} | json | drop __error__, __error_details__ | user_id < 0"#, line).unwrap().1,
        ["level=error", "user_id=-1"]
    );
    assert!(run(r#"{a="b"} | json | level = "error""#, line).is_some());
    assert!(run(r#"{a="b"} | json | level = "info""#, line).is_none());
}

#[test]
fn strict_logfmt_keeps_the_pairs_before_the_error() {
    let line = r#"level=error status=503 bad"key=1 path=/x"#;
    let strict = labels(r#"{a="b"} | logfmt --strict"#, line);
    assert_eq!(strict.len(), 4, "{strict:?}");
    assert!(strict[0] == "__error__=LogfmtParserErr" && strict[1].starts_with("__error_details__=logfmt syntax error"));
    assert_eq!(strict[2..], ["level=error", "status=503"]);
    let params = labels(r#"{a="b"} | logfmt --strict lvl="level", p="path""#, line);
    assert_eq!(params[0], "__error__=LogfmtParserErr");
    assert_eq!(params[2..], ["lvl=error"]);
    // An unterminated quote runs to the end of the line: Loki's decoder reports one past its last character.
    assert_eq!(
        labels(r#"{a="b"} | logfmt --strict"#, r#"level="unclosed status=500"#),
        ["__error__=LogfmtParserErr", "__error_details__=logfmt syntax error at pos 27 : unterminated quoted value"]
    );
    // Without --strict the pair that cannot be read is skipped.
    assert_eq!(labels(r#"{a="b"} | logfmt"#, line), ["level=error", "path=/x", "status=503"]);
}

#[test]
fn unpack_adds_labels_only_for_a_whole_packed_object() {
    let unpack = r#"{a="b"} | unpack"#;
    assert_eq!(
        run(unpack, "not json").unwrap(),
        (
            "not json".to_string(),
            vec![JSON_ERROR.to_string(), "__error_details__=expecting json object(6), but it is not".to_string()]
        )
    );
    assert_eq!(run(unpack, "").unwrap(), (String::new(), vec![]));
    let cut = r#"{"app":"shop","_entry":"original line""#;
    assert_eq!(
        run(unpack, cut).unwrap(),
        (
            cut.to_string(),
            vec![JSON_ERROR.to_string(), "__error_details__=Value is array, but can't find closing ']' symbol".into()]
        )
    );
    let unpacked = r#"{"app":"shop","n":1,"_entry":"original line"}"#;
    assert_eq!(run(unpack, unpacked).unwrap(), ("original line".to_string(), vec!["app=shop".to_string()]));
    // Without `_entry` the line and labels are left as they are.
    let plain = r#"{"app":"shop","n":1}"#;
    assert_eq!(run(unpack, plain).unwrap(), (plain.to_string(), vec![]));
}
