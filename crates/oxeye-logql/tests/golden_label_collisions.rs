//! A parser's label colliding with a label the entry already has, as Loki answers it, for `| pattern`,
//! `| regexp`, `| logfmt`, `| json`, `| unpack` and `| label_format`: with a stream label (the parsed label
//! becomes `<name>_extracted`, and so does structured metadata), with structured metadata (the parsed label
//! replaces it, same name), and a capture name twice in a pattern or regexp. The same answers come from chunks written with `| json` and
//! `| logfmt` field columns and from chunks without.
//!
//! Loki sources relied on (grafana/loki):
//! - `pkg/logql/log/labels.go`, `LabelsBuilder.BaseHas`: true for the stream labels only (`b.base`), so only
//!   a stream label's name gets the `duplicateSuffix` (`_extracted`) in the parsers and in
//!   `LabelsBuilder.Add`, which `pkg/logql/log/pipeline.go` (`streamPipeline.Process`) calls with the
//!   entry's structured metadata (`Add(StructuredMetadataLabel, structuredMetadata)`).
//! - `pkg/logql/log/labels.go`, `LabelsBuilder.Set`: a `ParsedLabel` deletes the structured metadata and
//!   stream label of its name ("Parsed takes precedence over Structured Metadata and Stream labels");
//!   `UnsortedLabels` then leaves the metadata out, so the parsed value is the label under the same name.
//! - `pkg/logql/log/parser.go`, `JSONParser.parseLabelValue`, `RegexpParser.Process`, `LogfmtParser.Process`,
//!   `PatternParser.Process`, `UnpackParser.unpack`: `if lbs.BaseHas(name) { name += duplicateSuffix }`,
//!   then `lbs.Set(ParsedLabel, name, value)`.
//! - `pkg/logql/log/fmt.go`, `LabelsFormatter.Process`: `lbs.Set(ParsedLabel, ...)` without a suffix, so
//!   `| label_format` replaces a stream label or metadata of the name it writes.
//! - `pkg/logql/log/pattern/ast.go`, `expr.validate`: a named capture twice is refused ("duplicate capture
//!   name (x): invalid expression"); `regexp.Compile` refuses a group name twice as well.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use oxeye_logql::field_columns::LineFieldColumns;
use oxeye_logql::{Direction, Engine, QueryResult};
use oxeye_logstore::LogStore;
use oxeye_model::logs::{LineFieldExtractor, LogEntry, LogReader, LogStream, LogWriter};
use oxeye_model::{Label, Labels};

mod field_columns_common;
use field_columns_common::{SECOND, an_hour_ago_ns};

/// Columns of every name the lines hold, so that `| json` and `| logfmt` chunks get them.
const COLUMNS: [&str; 4] = ["level", "trace_id", "msg", "level_extracted"];

/// Two streams with a `level` label, one of JSON lines and one of logfmt lines, whose lines carry `level`
/// and `trace_id` (one packed line, one line without `trace_id`); each entry has the structured metadata
/// `trace_id="from-metadata"`.
fn streams(start_ns: i64) -> Vec<LogStream> {
    let stream = |format: &str, lines: &[&str]| {
        let entries = lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                let mut entry = LogEntry::new(start_ns + (index as i64 + 1) * SECOND, *line);
                entry.structured_metadata.push(Label { name: "trace_id".into(), value: "from-metadata".into() });
                entry
            })
            .collect();
        LogStream { labels: Labels::from_pairs([("app", "shop"), ("format", format), ("level", "stream")]), entries }
    };
    vec![
        stream(
            "json",
            &[
                r#"{"level": "warn", "trace_id": "t1", "msg": "a"}"#,
                r#"{"level": "error", "trace_id": "t2", "msg": "b"}"#,
                r#"{"_entry": "packed", "level": "info", "trace_id": "t5"}"#,
            ],
        ),
        stream("logfmt", &["level=warn trace_id=t3 msg=c", "level=error trace_id=t4 msg=d", "level=info msg=e"]),
        // `trace.id` flattens to `trace_id`, in an object never closed: `| json` keeps none of its fields.
        stream("broken", &[r#"{"msg": "f", "trace": {"id": "t6""#]),
        with_level_metadata(stream("plain", &["msg=x", "level=warn"])),
    ]
}

/// `stream` with the structured metadata `level="from-metadata"` on each entry as well, named like its
/// stream label `level`.
fn with_level_metadata(mut stream: LogStream) -> LogStream {
    for entry in &mut stream.entries {
        entry.structured_metadata.push(Label { name: "level".into(), value: "from-metadata".into() });
    }
    stream
}

/// A store with or without field columns, holding [`streams`] flushed into chunk files of one entry or two.
fn store(dir: &std::path::Path, columns: bool, start_ns: i64) -> Arc<LogStore> {
    let columns: Option<Arc<dyn LineFieldExtractor>> =
        if columns { Some(Arc::new(LineFieldColumns::new(COLUMNS))) } else { None };
    let store = field_columns_common::store(dir, columns, 64);
    store.push(streams(start_ns)).unwrap();
    store.flush(true).unwrap();
    store
}

/// A log query's entries, oldest first, as `{labels} line`.
fn entries(reader: &dyn LogReader, start_ns: i64, query: &str) -> Vec<String> {
    let result = Engine::default()
        .query_range(reader, query, start_ns, start_ns + 60 * SECOND, SECOND, 1000, Direction::Forward)
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    let QueryResult::Streams(streams) = result else { panic!("{query}: not streams") };
    let mut entries: Vec<(i64, String)> = streams
        .iter()
        .flat_map(|stream| stream.entries.iter().map(move |(time, line)| (*time, format!("{} {line}", stream.labels))))
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, entry)| entry).collect()
}

/// A metric query's series at the end of the first minute, as `{labels} value`, sorted.
fn series(reader: &dyn LogReader, start_ns: i64, query: &str) -> Vec<String> {
    let result = Engine::default()
        .query_instant(reader, query, start_ns + 60 * SECOND)
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    let QueryResult::Vector(series) = result else { panic!("{query}: not a vector") };
    let mut found: Vec<String> =
        series.iter().map(|series| format!("{} {}", series.labels, series.points[0].1)).collect();
    found.sort();
    found
}

/// The two stores (with and without field columns) over the same entries, and the entries' start.
fn stores() -> (tempfile::TempDir, tempfile::TempDir, [Arc<LogStore>; 2], i64) {
    let start_ns = an_hour_ago_ns() / (60 * SECOND) * (60 * SECOND);
    let (with_dir, without_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with = store(with_dir.path(), true, start_ns);
    let without = store(without_dir.path(), false, start_ns);
    (with_dir, without_dir, [with, without], start_ns)
}

/// Asserts that each store gives each query of `cases` its answer, as `answer` writes it.
fn assert_answers(
    stores: &[Arc<LogStore>],
    start_ns: i64,
    cases: &[(&str, Vec<&str>)],
    answer: fn(&dyn LogReader, i64, &str) -> Vec<String>,
) {
    for (index, store) in stores.iter().enumerate() {
        for (query, expected) in cases {
            assert_eq!(answer(store.as_ref(), start_ns, query), *expected, "{query} (store {index}, columns first)");
        }
    }
}

#[test]
fn parsed_labels_take_the_suffix_on_stream_labels_and_replace_structured_metadata() {
    let (_with_dir, _without_dir, stores, start_ns) = stores();
    let cases: [(&str, Vec<&str>); 9] = [
        // Structured metadata named like a stream label takes the suffix too (`LabelsBuilder.Add`); a parsed
        // label of that name then replaces it.
        (
            r#"{format="plain"}"#,
            vec![
                r#"{app="shop", format="plain", level="stream", level_extracted="from-metadata", trace_id="from-metadata"} msg=x"#,
                r#"{app="shop", format="plain", level="stream", level_extracted="from-metadata", trace_id="from-metadata"} level=warn"#,
            ],
        ),
        (
            r#"{format="plain"} | logfmt"#,
            vec![
                r#"{app="shop", format="plain", level="stream", level_extracted="from-metadata", msg="x", trace_id="from-metadata"} msg=x"#,
                r#"{app="shop", format="plain", level="stream", level_extracted="warn", trace_id="from-metadata"} level=warn"#,
            ],
        ),
        (
            r#"{format="broken"} | json | line_format "{{.trace_id}} {{.msg}} {{.__error__}}""#,
            vec![
                r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="shop", format="broken", level="stream", msg="f", trace_id="from-metadata"} from-metadata f JSONParserErr"#,
            ],
        ),
        (
            r#"{format="json"} | json"#,
            vec![
                r#"{app="shop", format="json", level="stream", level_extracted="warn", msg="a", trace_id="t1"} {"level": "warn", "trace_id": "t1", "msg": "a"}"#,
                r#"{app="shop", format="json", level="stream", level_extracted="error", msg="b", trace_id="t2"} {"level": "error", "trace_id": "t2", "msg": "b"}"#,
                r#"{_entry="packed", app="shop", format="json", level="stream", level_extracted="info", trace_id="t5"} {"_entry": "packed", "level": "info", "trace_id": "t5"}"#,
            ],
        ),
        (
            r#"{format="logfmt"} | logfmt"#,
            vec![
                r#"{app="shop", format="logfmt", level="stream", level_extracted="warn", msg="c", trace_id="t3"} level=warn trace_id=t3 msg=c"#,
                r#"{app="shop", format="logfmt", level="stream", level_extracted="error", msg="d", trace_id="t4"} level=error trace_id=t4 msg=d"#,
                // No `trace_id` in the line: the structured metadata stays.
                r#"{app="shop", format="logfmt", level="stream", level_extracted="info", msg="e", trace_id="from-metadata"} level=info msg=e"#,
            ],
        ),
        (
            r#"{format="logfmt"} | regexp "level=(?P<level>\\w+) trace_id=(?P<trace_id>\\w+)""#,
            vec![
                r#"{app="shop", format="logfmt", level="stream", level_extracted="warn", trace_id="t3"} level=warn trace_id=t3 msg=c"#,
                r#"{app="shop", format="logfmt", level="stream", level_extracted="error", trace_id="t4"} level=error trace_id=t4 msg=d"#,
                r#"{app="shop", format="logfmt", level="stream", trace_id="from-metadata"} level=info msg=e"#,
            ],
        ),
        (
            r#"{format="logfmt"} | pattern "level=<level> trace_id=<trace_id> <_>""#,
            vec![
                r#"{app="shop", format="logfmt", level="stream", level_extracted="warn", trace_id="t3"} level=warn trace_id=t3 msg=c"#,
                r#"{app="shop", format="logfmt", level="stream", level_extracted="error", trace_id="t4"} level=error trace_id=t4 msg=d"#,
                // A literal not found ends the match: the capture before it takes the rest of the line
                // (grafana/loki `pkg/logql/log/pattern/pattern.go`, `Matcher.Matches`).
                r#"{app="shop", format="logfmt", level="stream", level_extracted="info msg=e", trace_id="from-metadata"} level=info msg=e"#,
            ],
        ),
        (
            r#"{format="json"} |= "_entry" | unpack"#,
            vec![r#"{app="shop", format="json", level="stream", level_extracted="info", trace_id="t5"} packed"#],
        ),
        (
            // `label_format` writes the names as given: it replaces the stream label and the metadata; each
            // template reads the labels from before the stage.
            r#"{format="logfmt"} |= "t3" | label_format level="{{.trace_id}}", trace_id="new""#,
            vec![
                r#"{app="shop", format="logfmt", level="from-metadata", trace_id="new"} level=warn trace_id=t3 msg=c"#,
            ],
        ),
    ];
    assert_answers(&stores, start_ns, &cases, entries);
}

#[test]
fn grouped_counts_see_the_parsed_label_over_structured_metadata() {
    let (_with_dir, _without_dir, stores, start_ns) = stores();
    // One parser, then label filters only: the pipelines the field columns answer.
    let cases: [(&str, Vec<&str>); 8] = [
        (
            r#"sum by (level_extracted) (count_over_time({format="plain"} [1m]))"#,
            vec![r#"{level_extracted="from-metadata"} 2"#],
        ),
        (
            r#"sum by (level_extracted) (count_over_time({format="plain"} | logfmt [1m]))"#,
            vec![r#"{level_extracted="from-metadata"} 1"#, r#"{level_extracted="warn"} 1"#],
        ),
        (
            r#"sum by (trace_id) (count_over_time({format="json"} | json [1m]))"#,
            vec![r#"{trace_id="t1"} 1"#, r#"{trace_id="t2"} 1"#, r#"{trace_id="t5"} 1"#],
        ),
        (
            r#"sum by (trace_id, level_extracted) (count_over_time({format="logfmt"} | logfmt [1m]))"#,
            vec![
                r#"{level_extracted="error", trace_id="t4"} 1"#,
                r#"{level_extracted="info", trace_id="from-metadata"} 1"#,
                r#"{level_extracted="warn", trace_id="t3"} 1"#,
            ],
        ),
        (
            r#"sum by (trace_id) (count_over_time({format="json"} | json | trace_id != "t1" [1m]))"#,
            vec![r#"{trace_id="t2"} 1"#, r#"{trace_id="t5"} 1"#],
        ),
        (
            r#"sum by (trace_id) (count_over_time({format="logfmt"} | logfmt | trace_id = "from-metadata" [1m]))"#,
            vec![r#"{trace_id="from-metadata"} 1"#],
        ),
        (r#"sum by (level) (count_over_time({format="logfmt"} | logfmt [1m]))"#, vec![r#"{level="stream"} 3"#]),
        (
            r#"sum by (trace_id) (count_over_time({format="logfmt"} | pattern "level=<level> trace_id=<trace_id> <_>" [1m]))"#,
            vec![r#"{trace_id="from-metadata"} 1"#, r#"{trace_id="t3"} 1"#, r#"{trace_id="t4"} 1"#],
        ),
    ];
    assert_answers(&stores, start_ns, &cases, series);
}

#[test]
fn a_capture_name_twice_is_refused() {
    let (_with_dir, _without_dir, stores, start_ns) = stores();
    let store = stores[1].as_ref();
    let engine = Engine::default();
    for (query, message) in [
        (r#"{format="logfmt"} | pattern "<a> <a>""#, "duplicate"),
        (r#"{format="logfmt"} | regexp "(?P<a>\\w+) (?P<a>\\w+)""#, "duplicate"),
    ] {
        let error = engine
            .query_range(store, query, start_ns, start_ns + 60 * SECOND, SECOND, 10, Direction::Forward)
            .err()
            .unwrap_or_else(|| panic!("{query}: accepted"));
        assert!(error.to_string().contains(message), "{query}: {error}");
    }
}
