//! What the field column tests share: a store with or without field columns, a visitor counting how a
//! scan hands its entries over, and the answers of queries over the last hour.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use oxeye_logql::{Direction, Engine};
use oxeye_logstore::{LogStore, LogStoreOptions};
use oxeye_model::logs::{LineFieldExtractor, LogEntryRef, LogReader, LogSelection, LogVisitor, ScanOrder};
use oxeye_model::{LabelRef, Labels, MatchOp, Matcher};

/// One second in nanoseconds.
pub const SECOND: i64 = 1_000_000_000;

/// An hour before now, in nanoseconds: the start of the tests' entries.
pub fn an_hour_ago_ns() -> i64 {
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    now_ns - 3600 * SECOND
}

/// A store in `dir` cutting chunks of about `chunk_target_bytes`, keeping the field columns `columns` finds.
pub fn store(
    dir: &std::path::Path,
    columns: Option<Arc<dyn LineFieldExtractor>>,
    chunk_target_bytes: usize,
) -> Arc<LogStore> {
    let mut options = LogStoreOptions::new(dir);
    options.background_maintenance = false;
    options.unordered_window_ms = 2 * 86_400_000;
    options.chunk_target_bytes = chunk_target_bytes;
    options.line_fields = columns;
    LogStore::open(options).unwrap()
}

/// Counts the entries a scan hands over with field columns and with lines.
struct Ways {
    semantics: u32,
    names: Vec<String>,
    with_fields: usize,
    with_lines: usize,
}

impl LogVisitor for Ways {
    fn line_fields(&self) -> Option<(u32, &[String])> {
        Some((self.semantics, &self.names))
    }

    fn entry_with_fields(&mut self, _: &Labels, _: i64, _: usize, _: &[LabelRef<'_>], _: &[Option<&str>]) {
        self.with_fields += 1;
    }

    fn entry(&mut self, _: &Labels, _: LogEntryRef<'_>) {
        self.with_lines += 1;
    }
}

/// How many entries of the streams with label `matcher` in the hour from `start_ns` a scan asking for the
/// columns `names` of `semantics` hands over from columns, and how many with their lines.
pub fn ways(
    reader: &dyn LogReader,
    start_ns: i64,
    semantics: u32,
    matcher: (&str, &str),
    names: &[&str],
) -> (usize, usize) {
    let names = names.iter().map(|name| name.to_string()).collect();
    let mut ways = Ways { semantics, names, with_fields: 0, with_lines: 0 };
    let selection = LogSelection {
        start_ns,
        end_ns: start_ns + 3600 * SECOND,
        matchers: vec![Matcher::new(MatchOp::Equal, matcher.0, matcher.1).unwrap()],
        line_contains: Vec::new(),
    };
    reader.scan(&selection, ScanOrder::Forward, &mut ways).unwrap();
    (ways.with_fields, ways.with_lines)
}

/// Each of `queries` over the 15 minutes from `start_ns` at 1-minute steps, with its answer.
pub fn answers(reader: &dyn LogReader, start_ns: i64, queries: &[&str]) -> Vec<String> {
    let engine = Engine::default();
    queries
        .iter()
        .map(|query| {
            let result = engine.query_range(
                reader,
                query,
                start_ns,
                start_ns + 900 * SECOND,
                60 * SECOND,
                1000,
                Direction::Backward,
            );
            format!("{query}: {result:?}")
        })
        .collect()
}

/// Asserts that `found` and `expected` answer alike, query by query.
pub fn assert_same_answers(found: &[String], expected: &[String], context: &str) {
    assert_eq!(found.len(), expected.len(), "{context}");
    for (found, expected) in found.iter().zip(expected) {
        assert_eq!(found, expected, "{context}");
    }
}
