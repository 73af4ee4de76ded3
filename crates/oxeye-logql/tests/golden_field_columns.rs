//! Field columns answer as the lines do: the same entries stored with and without `| json` field columns
//! (`JsonFieldColumns`, written at each chunk cut) give equal answers to every query, including the queries
//! that read the columns instead of the lines (`sum by (level) (count_over_time({...} | json [1m]))`) and
//! chunks that get no columns (a line `| json` fails on, a name coming twice in a line). Lines cover escapes,
//! nulls, numbers, nested objects flattened into a column's name, empty values, values holding U+FFFD (raw
//! or escaped: emptied, as Loki does), a stream label colliding
//! with a parsed one (`level_extracted`) and structured metadata of a column's name.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use oxeye_logql::pipeline::{JSON_FIELD_COLUMNS_SEMANTICS, JsonFieldColumns};
use oxeye_logstore::LogStore;
use oxeye_model::logs::{LineFieldExtractor, LogEntry, LogReader, LogStream, LogWriter};
use oxeye_model::{Label, Labels};

mod field_columns_common;
use field_columns_common::{SECOND, an_hour_ago_ns, assert_same_answers};
const COLUMNS: [&str; 6] = ["level", "path", "status_code", "a_b", "user_id", "duration_ms"];

/// Seed-shaped lines, then the odd ones, by stream.
fn streams(start_ns: i64) -> Vec<LogStream> {
    // A value holding U+FFFD is emptied, as Loki does: raw here, from an escape further down.
    let levels = ["info", "info", "warning", "error", "in\"fo", "caf\u{e9}", "", "a\u{fffd}b", "\u{ff21}"];
    let paths = ["/api/events/", "/healthz/", "/api/tickets/", "/a\\b/"];
    let mut plain = Vec::new();
    for index in 0..600i64 {
        let level = levels[index as usize % levels.len()];
        let level = level.replace('\\', "\\\\").replace('"', "\\\"");
        let path = paths[index as usize % paths.len()].replace('\\', "\\\\");
        let status = [200, 404, 500, 201][index as usize % 4];
        // Durations of every shape: decimals kept as numbers in a values column, and others kept as text.
        let duration = match index % 8 {
            0 => format!("{}.5", index % 1500),
            1 => format!("{}", index * 7),
            2 => format!("0.0{index}"),
            3 => format!("-{index}.25"),
            4 => format!("1e{}", index % 5),
            5 => format!(r#""0{index}""#),
            6 => format!(r#""{index}\"ms\u00e9""#),
            _ => format!("{index}.{:03}", index % 1000),
        };
        let mut line = format!(
            r#"{{"event": "request_finished", "level": "{level}", "path": "{path}", "status_code": {status}, "duration_ms": {duration}, "user_id": {index}}}"#
        );
        if index % 7 == 0 {
            line = format!(
                r#"{{"level": null, "path": "{path}", "a": {{"b": "nested{}"}}, "user-id": "u{}"}}"#,
                index % 3,
                index % 5
            );
        }
        if index % 19 == 3 {
            line = format!(
                r#"{{"level": "esc\ufffd", "path": "half\ud800", "status_code": {status}, "duration_ms": "\uFFFD"}}"#
            );
        }
        if index % 11 == 0 {
            line = format!(r#"{{"status_code": "{status}", "level": "debug", "msg": "tab\there \u00e9"}} trailing"#);
        }
        let mut entry = LogEntry::new(start_ns + index * SECOND, line);
        if index % 13 == 0 {
            entry.structured_metadata.push(Label { name: "level".into(), value: "from-metadata".into() });
        }
        plain.push(entry);
    }
    // Chunks holding a line `| json` fails on, or a name twice: no columns, answered from the lines.
    let mut broken = Vec::new();
    for index in 0..300i64 {
        let line = match index {
            150 => r#"{"level": "error", "path": "/x"#.to_string(),
            151 => r#"{"level": null, "level": "warn"}"#.to_string(),
            152 => "not json at all".to_string(),
            _ => format!(r#"{{"level": "{}", "path": "/p{}"}}"#, ["info", "error"][index as usize % 2], index % 3),
        };
        broken.push(LogEntry::new(start_ns + index * SECOND + 1, line));
    }
    // A stream label named like a column: the parsed label becomes `level_extracted`.
    let collided: Vec<LogEntry> = (0..200i64)
        .map(|index| {
            let level = ["info", "error"][index as usize % 2];
            LogEntry::new(start_ns + index * SECOND + 2, format!(r#"{{"level": "{level}", "path": "/c"}}"#))
        })
        .collect();
    vec![
        LogStream { labels: Labels::from_pairs([("app", "plain"), ("env", "prod")]), entries: plain },
        LogStream { labels: Labels::from_pairs([("app", "broken"), ("env", "prod")]), entries: broken },
        LogStream {
            labels: Labels::from_pairs([("app", "collided"), ("env", "prod"), ("level", "stream")]),
            entries: collided,
        },
    ]
}

fn store(dir: &std::path::Path, columns: bool, chunk_target_bytes: usize) -> Arc<LogStore> {
    let columns: Option<Arc<dyn LineFieldExtractor>> =
        if columns { Some(Arc::new(JsonFieldColumns::new(COLUMNS))) } else { None };
    field_columns_common::store(dir, columns, chunk_target_bytes)
}

/// [`field_columns_common::ways`] for `| json` columns over the `env="prod"` streams.
fn ways(reader: &dyn LogReader, start_ns: i64, names: &[&str]) -> (usize, usize) {
    field_columns_common::ways(reader, start_ns, JSON_FIELD_COLUMNS_SEMANTICS, ("env", "prod"), names)
}

const QUERIES: [&str; 18] = [
    r#"sum by (level) (count_over_time({env="prod"} | json [1m]))"#,
    r#"sum by (level) (count_over_time({env="prod"} | json | drop __error__, __error_details__ [1m]))"#,
    r#"sum by (level, path) (count_over_time({app="plain"} | json [1m]))"#,
    r#"sum by (path) (bytes_over_time({app="plain"} | json | level="info" [1m]))"#,
    r#"sum by (path) (rate({app="plain"} | json | status_code >= 500 [1m]))"#,
    r#"sum by (status_code) (count_over_time({app="plain"} | json | status_code > 250 or level=~"in.*" [1m]))"#,
    r#"sum by (a_b, user_id) (count_over_time({app="plain"} | json [1m]))"#,
    r#"sum by (level) (count_over_time({app="plain"} | json | level="" [1m]))"#,
    r#"sum by (path) (count_over_time({app="plain"} | json | level!="" [1m]))"#,
    r#"sum by (level_extracted, level) (count_over_time({app="collided"} | json [1m]))"#,
    r#"sum by (level) (count_over_time({app="collided"} | json [1m]))"#,
    r#"sum by (level) (count_over_time({app="broken"} | json [1m]))"#,
    r#"sum by (level) (count_over_time({app="broken"} | json | __error__="" [1m]))"#,
    r#"sum by (path) (count_over_time({app="plain"} | json | duration_ms > 300 [1m]))"#,
    r#"count_over_time({app="plain"} | json | level="error" [1m])"#,
    r#"sum by (duration_ms, path) (count_over_time({app="plain"} | json [1m]))"#,
    r#"sum by (path) (count_over_time({env="prod"} | json | duration_ms > 1000 [1m]))"#,
    r#"sum by (duration_ms) (count_over_time({app="plain"} | json | duration_ms=~".*[^0-9.].*" [1m]))"#,
];

fn answers(reader: &dyn LogReader, start_ns: i64) -> Vec<String> {
    field_columns_common::answers(reader, start_ns, &QUERIES)
}

#[test]
fn field_columns_answer_as_the_lines_do() {
    let start_ns = an_hour_ago_ns();
    let (with_dir, without_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Small chunks: each stream is cut into several.
    let (with, without) = (store(with_dir.path(), true, 4096), store(without_dir.path(), false, 4096));
    with.push(streams(start_ns)).unwrap();
    without.push(streams(start_ns)).unwrap();
    // Cut chunks held in memory, then the same in chunk files.
    for flushed in [false, true] {
        if flushed {
            with.flush(true).unwrap();
            without.flush(true).unwrap();
        }
        assert_same_answers(&answers(&*with, start_ns), &answers(&*without, start_ns), &format!("flushed: {flushed}"));
        // The seed-shaped stream's chunks answer from their columns; the broken stream's chunks that hold
        // the bad lines, and every chunk of the store without columns, from the lines.
        // (Before the flush, the heads' last entries are read from lines too.)
        let (with_fields, with_lines) = ways(&*with, start_ns, &["level", "path"]);
        let least = if flushed { 800 } else { 1 };
        assert!(with_fields >= least, "flushed: {flushed}: {with_fields} entries from columns");
        assert!(with_lines > 0, "flushed: {flushed}: the broken chunks are read from lines");
        assert_eq!(with_fields + with_lines, 1100);
        assert_eq!(ways(&*without, start_ns, &["level", "path"]), (0, 1100));
        // The by-path row of `scan_throughput` reads `path` and `duration_ms`, mostly a values column: the
        // seed-shaped stream's chunks answer from columns too (those of streams without `duration_ms` have
        // no such column and answer from lines).
        let (by_path_fields, by_path_lines) = ways(&*with, start_ns, &["path", "duration_ms"]);
        assert!(by_path_fields >= least.min(500), "flushed: {flushed}: {by_path_fields} entries from columns");
        assert_eq!(by_path_fields + by_path_lines, 1100);
        // A name without a column (here `event`): lines.
        assert_eq!(ways(&*with, start_ns, &["level", "event"]), (0, 1100));
    }
}

/// One chunk per stream: a batch of hundreds of distinct field values (`user_id`, `duration_ms`), past which
/// the engine stops memoizing their series, answers as its lines do.
#[test]
fn large_batches_answer_as_the_lines_do() {
    let start_ns = an_hour_ago_ns();
    let (with_dir, without_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (with, without) = (store(with_dir.path(), true, 1 << 20), store(without_dir.path(), false, 1 << 20));
    with.push(streams(start_ns)).unwrap();
    without.push(streams(start_ns)).unwrap();
    with.flush(true).unwrap();
    without.flush(true).unwrap();
    assert_eq!(ways(&*with, start_ns, &["path", "duration_ms"]).0, 600);
    assert_same_answers(&answers(&*with, start_ns), &answers(&*without, start_ns), "one chunk per stream");
}
