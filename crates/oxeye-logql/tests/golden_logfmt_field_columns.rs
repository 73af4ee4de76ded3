//! `| logfmt` field columns answer as the lines do: the same entries stored with field columns of `| json` or `|
//! logfmt` (`LineFieldColumns`, written at each chunk cut) and without any give equal answers to every query, including
//! those reading the columns instead of the lines (`sum by (level) (count_over_time({...} | logfmt [1m]))`). Lines
//! cover quoted values with escapes, a key twice (an empty value or one holding U+FFFD first: left out, as Loki does),
//! keys sanitized into a column's name, bare keys, unterminated quotes, JSON lines among logfmt ones (chunks of mixed
//! lines), a stream label colliding with a parsed one (`level_extracted`) and structured metadata of a column's name.
//! Chunks written with `| json` columns only (before logfmt columns existed) still answer alike.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use oxeye_logql::field_columns::{LOGFMT_FIELD_COLUMNS_SEMANTICS, LineFieldColumns};
use oxeye_logql::pipeline::{JSON_FIELD_COLUMNS_SEMANTICS, JsonFieldColumns};
use oxeye_logstore::LogStore;
use oxeye_model::logs::{LineFieldExtractor, LogEntry, LogReader, LogStream, LogWriter};
use oxeye_model::{Label, Labels};

mod field_columns_common;
use field_columns_common::{SECOND, an_hour_ago_ns, assert_same_answers};
/// The columns written; `level_extracted` has values in the collided stream only.
const COLUMNS: [&str; 6] = ["level", "path", "status_code", "a_b", "user_id", "level_extracted"];
/// The columns every chunk of the plain stream holds.
const PLAIN_COLUMNS: [&str; 5] = ["level", "path", "status_code", "a_b", "user_id"];

/// Seed-shaped logfmt lines with odd ones among them, JSON and mixed streams, by stream.
fn streams(start_ns: i64) -> Vec<LogStream> {
    let levels = [
        "info",
        "info",
        "warning",
        "error",
        r#""in\"fo""#,
        "caf\u{e9}",
        r#""a b\\c""#,
        "",
        "a\u{fffd}b",
        "\"q \u{fffd}\"",
        "\u{ff21}",
    ];
    let paths = ["/api/events/", "/healthz/", "/api/tickets/", r#""/a\\b/""#, "\"/tab\\there\""];
    let mut plain = Vec::new();
    for index in 0..700i64 {
        let level = levels[index as usize % levels.len()];
        let path = paths[index as usize % paths.len()];
        let status = [200, 404, 500, 201][index as usize % 4];
        let mut line = format!(
            "time=2026-11-24T10:00:00Z event=request_finished level={level} path={path} status_code={status} duration_ms={}.5 user_id={index}",
            index % 1500
        );
        line = match index % 17 {
            // A key twice: the first non-empty value counts.
            1 => format!("level= level={level} level=shadowed path={path} path=/second"),
            // Keys sanitized into a column's name; one key needing sanitizing into no column.
            2 => format!("a.b=dot{} a-b=dash status-code={status} 1x=digit user.id=u{}", index % 3, index % 5),
            // Bare keys and a lone `=`.
            3 => format!("level path =x status_code={status}"),
            // An unterminated quote takes the rest of the line.
            4 => format!(r#"path=/p{} level="unterminated status_code=1"#, index % 2),
            // A JSON line among logfmt ones.
            5 => format!(r#"{{"level": "json{}", "path": "/j"}}"#, index % 2),
            // A quote inside a key: the token is skipped.
            6 => format!(r#"le"vel=x level=after{} path="q""#, index % 2),
            7 => String::new(),
            // A value holding U+FFFD is left out, as Loki does: the next pair of its key gives the label.
            8 => format!("level=\u{fffd} path=\"\\\"\u{fffd}\" level={level} path={path} status_code={status}"),
            _ => line,
        };
        let mut entry = LogEntry::new(start_ns + index * SECOND, line);
        if index % 13 == 0 {
            entry.structured_metadata.push(Label { name: "level".into(), value: "from-metadata".into() });
        }
        plain.push(entry);
    }
    // JSON lines first, then logfmt ones: chunks starting with JSON lines get no columns; chunks of logfmt
    // lines, logfmt's; chunks of JSON lines, JSON's.
    let mixed: Vec<LogEntry> = (0..1200i64)
        .map(|index| {
            let level = ["info", "error"][index as usize % 2];
            let line = if (index / 300) % 2 == 0 {
                format!(r#"{{"level": "{level}", "path": "/m{}"}}"#, index % 3)
            } else {
                format!("level={level} path=/m{}", index % 3)
            };
            LogEntry::new(start_ns + index * SECOND + 1, line)
        })
        .collect();
    // A stream label named like a column: the parsed label becomes `level_extracted`.
    let collided: Vec<LogEntry> = (0..200i64)
        .map(|index| {
            let level = ["info", "error"][index as usize % 2];
            let line = match index % 5 {
                0 => format!("level_extracted=first level={level} path=/c"),
                _ => format!("level={level} level_extracted=second path=/c"),
            };
            LogEntry::new(start_ns + index * SECOND + 2, line)
        })
        .collect();
    vec![
        LogStream { labels: Labels::from_pairs([("app", "plain"), ("env", "prod")]), entries: plain },
        LogStream { labels: Labels::from_pairs([("app", "mixed"), ("env", "prod")]), entries: mixed },
        LogStream {
            labels: Labels::from_pairs([("app", "collided"), ("env", "prod"), ("level", "stream")]),
            entries: collided,
        },
    ]
}

/// A store cutting small chunks (each stream is cut into several).
fn store(dir: &std::path::Path, columns: Option<Arc<dyn LineFieldExtractor>>) -> Arc<LogStore> {
    field_columns_common::store(dir, columns, 4096)
}

/// [`field_columns_common::ways`] over the streams of label `app`.
fn ways(reader: &dyn LogReader, start_ns: i64, semantics: u32, app: &str, names: &[&str]) -> (usize, usize) {
    field_columns_common::ways(reader, start_ns, semantics, ("app", app), names)
}

const QUERIES: [&str; 18] = [
    r#"sum by (level) (count_over_time({env="prod"} | logfmt [1m]))"#,
    r#"sum by (level) (count_over_time({env="prod"} | logfmt | drop __error__, __error_details__ [1m]))"#,
    r#"sum by (level, path) (count_over_time({app="plain"} | logfmt [1m]))"#,
    r#"sum by (path) (bytes_over_time({app="plain"} | logfmt | level="info" [1m]))"#,
    r#"sum by (path) (rate({app="plain"} | logfmt | status_code >= 500 [1m]))"#,
    r#"sum by (status_code) (count_over_time({app="plain"} | logfmt | status_code > 250 or level=~"in.*" [1m]))"#,
    r#"sum by (a_b, user_id) (count_over_time({app="plain"} | logfmt [1m]))"#,
    r#"sum by (level) (count_over_time({app="plain"} | logfmt | level="" [1m]))"#,
    r#"sum by (level) (count_over_time({app="plain"} | logfmt | path=~".*\\\\.*" [1m]))"#,
    r#"sum by (level_extracted, level) (count_over_time({app="collided"} | logfmt [1m]))"#,
    r#"sum by (level) (count_over_time({app="collided"} | logfmt [1m]))"#,
    r#"sum by (level, path) (count_over_time({app="mixed"} | logfmt [1m]))"#,
    r#"sum by (level, path) (count_over_time({app="mixed"} | json [1m]))"#,
    r#"sum by (level) (count_over_time({app="plain"} | logfmt --keep-empty [1m]))"#,
    r#"sum by (path) (count_over_time({app="plain"} | logfmt --keep-empty | level="" [1m]))"#,
    r#"sum by (path) (count_over_time({app="plain"} | logfmt | level!="" [1m]))"#,
    r#"sum by (path) (count_over_time({app="plain"} | logfmt | duration_ms > 300 [1m]))"#,
    r#"count_over_time({app="plain"} | logfmt | level="error" [1m])"#,
];

fn answers(reader: &dyn LogReader, start_ns: i64) -> Vec<String> {
    field_columns_common::answers(reader, start_ns, &QUERIES)
}

#[test]
fn logfmt_field_columns_answer_as_the_lines_do() {
    let start_ns = an_hour_ago_ns();
    let (with_dir, without_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with = store(with_dir.path(), Some(Arc::new(LineFieldColumns::new(COLUMNS))));
    let without = store(without_dir.path(), None);
    with.push(streams(start_ns)).unwrap();
    without.push(streams(start_ns)).unwrap();
    // Cut chunks held in memory, then the same in chunk files.
    for flushed in [false, true] {
        if flushed {
            with.flush(true).unwrap();
            without.flush(true).unwrap();
        }
        let expected = answers(&*without, start_ns);
        assert_same_answers(&answers(&*with, start_ns), &expected, &format!("flushed: {flushed}"));
        // The logfmt stream's chunks answer from logfmt columns, none from JSON's.
        let least = if flushed { 600 } else { 1 };
        let (from_columns, from_lines) =
            ways(&*with, start_ns, LOGFMT_FIELD_COLUMNS_SEMANTICS, "plain", &PLAIN_COLUMNS);
        assert!(from_columns >= least, "flushed: {flushed}: {from_columns} entries from columns");
        assert_eq!(from_columns + from_lines, 700);
        assert_eq!(ways(&*with, start_ns, JSON_FIELD_COLUMNS_SEMANTICS, "plain", &PLAIN_COLUMNS), (0, 700));
        // The mixed stream: chunks of logfmt lines from logfmt columns, chunks of JSON lines from JSON's,
        // chunks starting with JSON lines and ending with logfmt ones from the lines.
        let logfmt_ways = ways(&*with, start_ns, LOGFMT_FIELD_COLUMNS_SEMANTICS, "mixed", &["level"]);
        let json_ways = ways(&*with, start_ns, JSON_FIELD_COLUMNS_SEMANTICS, "mixed", &["level"]);
        if flushed {
            assert!(logfmt_ways.0 > 0 && json_ways.0 > 0, "{logfmt_ways:?} {json_ways:?}");
            assert!(logfmt_ways.0 + json_ways.0 < 1200, "{logfmt_ways:?} {json_ways:?}");
        }
        assert_eq!(ways(&*without, start_ns, LOGFMT_FIELD_COLUMNS_SEMANTICS, "plain", &PLAIN_COLUMNS), (0, 700));
    }
}

/// The streams written with `old_columns` by a store of an earlier version (`written` looks at it before it
/// is closed), reopened by one writing today's columns, and a store of the same streams without columns;
/// the temporary folders first, kept for as long as the stores are read.
fn reopened_and_without(
    old_columns: Arc<dyn LineFieldExtractor>,
    start_ns: i64,
    written: impl FnOnce(&LogStore),
) -> ([tempfile::TempDir; 2], Arc<LogStore>, Arc<LogStore>) {
    let (old_dir, without_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = store(old_dir.path(), Some(old_columns));
    old.push(streams(start_ns)).unwrap();
    old.flush(true).unwrap();
    written(&old);
    old.close().unwrap();
    drop(old);
    let reopened = store(old_dir.path(), Some(Arc::new(LineFieldColumns::new(COLUMNS))));
    let without = store(without_dir.path(), None);
    without.push(streams(start_ns)).unwrap();
    without.flush(true).unwrap();
    ([old_dir, without_dir], reopened, without)
}

/// An extractor writing logfmt columns under semantics 2, as stores did before values holding U+FFFD were
/// emptied (columns of semantics 2 may hold such a value where a later pair gives the label).
#[derive(Debug)]
struct SemanticsTwo(LineFieldColumns);

impl LineFieldExtractor for SemanticsTwo {
    fn writes(&self, semantics: u32, names: &[String]) -> bool {
        semantics == 2 && self.0.writes(LOGFMT_FIELD_COLUMNS_SEMANTICS, names)
    }

    fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32> {
        let semantics = self.0.extract(lines, field)?;
        Some(if semantics == LOGFMT_FIELD_COLUMNS_SEMANTICS { 2 } else { semantics })
    }
}

/// Chunks whose logfmt columns were written under semantics 2 are read from their lines: the same answers.
#[test]
fn logfmt_columns_of_semantics_two_are_not_read() {
    assert_eq!(LOGFMT_FIELD_COLUMNS_SEMANTICS, 3);
    let start_ns = an_hour_ago_ns();
    let old_columns = Arc::new(SemanticsTwo(LineFieldColumns::new(COLUMNS)));
    let (_dirs, reopened, without) = reopened_and_without(old_columns, start_ns, |old| {
        assert!(ways(old, start_ns, 2, "plain", &PLAIN_COLUMNS).0 >= 600);
    });
    assert_same_answers(&answers(&*reopened, start_ns), &answers(&*without, start_ns), "semantics 2");
    assert_eq!(ways(&*reopened, start_ns, LOGFMT_FIELD_COLUMNS_SEMANTICS, "plain", &PLAIN_COLUMNS), (0, 700));
}

/// Chunks written with `| json` columns alone, by a store of an earlier version, read by one writing logfmt
/// columns too: the same answers, JSON chunks from their columns.
#[test]
fn chunks_with_json_columns_only_still_answer() {
    let start_ns = an_hour_ago_ns();
    let old_columns = Arc::new(JsonFieldColumns::new(COLUMNS));
    let (_dirs, reopened, without) = reopened_and_without(old_columns, start_ns, |_| {});
    assert_same_answers(&answers(&*reopened, start_ns), &answers(&*without, start_ns), "reopened");
    assert!(ways(&*reopened, start_ns, JSON_FIELD_COLUMNS_SEMANTICS, "mixed", &["level"]).0 > 0);
    assert_eq!(ways(&*reopened, start_ns, LOGFMT_FIELD_COLUMNS_SEMANTICS, "plain", &PLAIN_COLUMNS), (0, 700));
}
