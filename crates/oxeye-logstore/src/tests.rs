//! Store-level tests: push, read, restart, flush, skipping, retention, refusals.

use std::sync::Arc;

use oxeye_model::logs::{LogEntry, LogReader, LogSelection, LogStream, LogWriter};
use oxeye_model::{Label, Labels, MatchOp, Matcher};

use crate::{LineTooLongPolicy, LogStore, LogStoreOptions};

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn options(dir: &std::path::Path) -> LogStoreOptions {
    let mut options = LogStoreOptions::new(dir);
    options.background_maintenance = false;
    options
}

fn stream(service: &str, entries: Vec<LogEntry>) -> LogStream {
    LogStream { labels: Labels::from_pairs([("service_name", service), ("env", "acceptance")]), entries }
}

fn select_all(store: &LogStore, start_ns: i64, end_ns: i64, needles: &[&str]) -> Vec<LogStream> {
    store
        .select(&LogSelection {
            start_ns,
            end_ns,
            matchers: vec![Matcher::new(MatchOp::Regex, "service_name", ".+").unwrap()],
            line_contains: needles.iter().map(|needle| needle.to_string()).collect(),
        })
        .unwrap()
}

fn structlog_line(index: u64) -> String {
    format!(
        r#"{{"event": "request_finished", "status_code": 200, "trace_id": "{:032x}", "request_id": "{:x}-4abf", "path": "/api/events/{}/"}}"#,
        (index as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
        index.wrapping_mul(0x2545_f491_4f6c_dd1d),
        index % 50
    )
}

#[test]
fn unordered_pushes_are_read_back_sorted_and_duplicates_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(options(dir.path())).unwrap();
    let base = now_ns() - 60_000_000_000;
    let mut with_metadata = LogEntry::new(base + 1, "b");
    with_metadata.structured_metadata.push(Label { name: "trace_id".into(), value: "abc".into() });
    let summary = store
        .push(vec![stream(
            "boxoffice",
            vec![LogEntry::new(base + 5, "c"), with_metadata.clone(), LogEntry::new(base, "a")],
        )])
        .unwrap();
    assert_eq!(summary.accepted, 3);
    let again = store.push(vec![stream("boxoffice", vec![LogEntry::new(base + 5, "c")])]).unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    let read = select_all(&store, base, base + 10, &[]);
    let lines: Vec<&str> = read[0].entries.iter().map(|entry| entry.line.as_str()).collect();
    assert_eq!(lines, ["a", "b", "c"]);
    assert_eq!(read[0].entries[1], with_metadata);
    // The end of the window is exclusive.
    assert_eq!(select_all(&store, base, base + 5, &[])[0].entries.len(), 2);
}

#[test]
fn in_order_pushes_keep_equal_timestamps_in_arrival_order_and_drop_only_equal_lines() {
    // The in-order fast path of `StreamState::insert` must agree with the binary searches around it.
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(options(dir.path())).unwrap();
    let base = now_ns() - 60_000_000_000;
    let entries = ["a", "b", "b", "c"].map(|line| LogEntry::new(base + 1, line));
    let summary = store.push(vec![stream("boxoffice", entries.into())]).unwrap();
    assert_eq!((summary.accepted, summary.duplicates), (3, 1));
    let later = vec![LogEntry::new(base + 2, "d"), LogEntry::new(base + 1, "a"), LogEntry::new(base, "z")];
    let summary = store.push(vec![stream("boxoffice", later)]).unwrap();
    assert_eq!((summary.accepted, summary.duplicates), (2, 1));
    let read = select_all(&store, base, base + 10, &[]);
    let lines: Vec<&str> = read[0].entries.iter().map(|entry| entry.line.as_str()).collect();
    assert_eq!(lines, ["z", "a", "b", "c", "d"]);
}

#[test]
fn too_old_too_long_and_invalid_entries_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.max_line_bytes = 8;
    let store = LogStore::open(options).unwrap();
    let now = now_ns();
    let summary = store
        .push(vec![
            stream("boxoffice", vec![LogEntry::new(now, "short"), LogEntry::new(now, "much too long line")]),
            stream("boxoffice", vec![LogEntry::new(now - 31 * 24 * 3600 * 1_000_000_000, "ancient")]),
            // Behind the stream's newest entry by more than the out-of-order window (1 h).
            stream("boxoffice", vec![LogEntry::new(now - 2 * 3600 * 1_000_000_000, "late")]),
            LogStream { labels: Labels::empty(), entries: vec![LogEntry::new(now, "x")] },
        ])
        .unwrap();
    assert_eq!(summary.accepted, 1);
    assert_eq!(summary.rejected_too_long, 1);
    assert_eq!(summary.rejected_too_old, 2);
    assert_eq!(summary.rejected_invalid, 1);
    assert!(summary.first_error.unwrap().contains("max entry size"));
    let stats = store.stats();
    assert_eq!((stats.rejected_too_old_total, stats.rejected_too_long_total), (2, 1));

    let dir = tempfile::tempdir().unwrap();
    let mut options = crate::tests::options(dir.path());
    options.max_line_bytes = 8;
    options.line_too_long = LineTooLongPolicy::Truncate;
    let store = LogStore::open(options).unwrap();
    let summary = store.push(vec![stream("boxoffice", vec![LogEntry::new(now, "héllo wörld")])]).unwrap();
    assert_eq!((summary.accepted, summary.truncated), (1, 1));
    assert_eq!(select_all(&store, now, now + 1, &[])[0].entries[0].line, "héllo w");
}

#[test]
fn entries_survive_restart_from_wal_and_from_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ns() - 600_000_000_000;
    {
        let store = LogStore::open(options(dir.path())).unwrap();
        store
            .push(vec![stream(
                "boxoffice",
                (0..100).map(|i| LogEntry::new(base + i, structlog_line(i as u64))).collect(),
            )])
            .unwrap();
        // No close: the WAL alone must bring the entries back.
    }
    let store = LogStore::open(options(dir.path())).unwrap();
    assert_eq!(select_all(&store, base, base + 1000, &[])[0].entries.len(), 100);
    let report = store.flush(true).unwrap();
    assert_eq!(report.chunks_written, 1);
    store.push(vec![stream("boxoffice", vec![LogEntry::new(base + 500, "after flush")])]).unwrap();
    assert_eq!(store.wal_stats().fsyncs_total, 1, "one push after open, one group commit");
    store.flush(false).unwrap();
    drop(store);
    let store = LogStore::open(options(dir.path())).unwrap();
    let read = select_all(&store, base, base + 1000, &[]);
    assert_eq!(read[0].entries.len(), 101);
    assert_eq!(read[0].entries[100].line, "after flush");
    let stats = store.stats();
    assert_eq!((stats.chunk_files, stats.chunks, stats.head_entries), (1, 1, 1));
    assert_eq!(stats.head_line_bytes, "after flush".len() as u64);
    store.close().unwrap();
    let store = LogStore::open(options(dir.path())).unwrap();
    assert_eq!(select_all(&store, base, base + 1000, &[])[0].entries.len(), 101);
    assert_eq!(store.stats().head_entries, 0);
}

#[test]
fn needle_search_reads_a_small_fraction_of_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.chunk_target_bytes = 32 << 10;
    let store = LogStore::open(options).unwrap();
    let base = now_ns() - 3_600_000_000_000;
    let total = 20_000u64;
    for batch in 0..20u64 {
        let entries = (batch * 1000..(batch + 1) * 1000)
            .map(|i| LogEntry::new(base + i as i64 * 1000, structlog_line(i)))
            .collect();
        store.push(vec![stream("boxoffice", entries)]).unwrap();
    }
    store.flush(true).unwrap();
    let chunks = store.index_stats(base, base + total as i64 * 1000, &[]).unwrap().chunks;
    assert!(chunks >= 50, "{chunks} chunks");
    let needle = format!("{:032x}", 12_345u128.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
    let found = select_all(&store, base, base + total as i64 * 1000, &[&needle]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entries.len(), 1);
    assert_eq!(found[0].entries[0].line, structlog_line(12_345));
    let stats = store.stats();
    assert!(stats.chunks_read_total <= 3, "read {} of {chunks} chunks", stats.chunks_read_total);
    assert!(stats.chunks_skipped_total >= chunks - 3);
}

#[test]
fn labels_series_and_stats_follow_matchers_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LogStore::open(options(dir.path())).unwrap());
    let now = now_ns();
    store
        .push(vec![
            stream("boxoffice", vec![LogEntry::new(now, "a")]),
            stream("worker", vec![LogEntry::new(now - 10, "bb")]),
        ])
        .unwrap();
    assert_eq!(store.label_names(now - 100, now + 1, &[]).unwrap(), ["env", "service_name"]);
    assert_eq!(store.label_values(now - 100, now + 1, "service_name", &[]).unwrap(), ["boxoffice", "worker"]);
    assert_eq!(store.label_values(now - 5, now + 1, "service_name", &[]).unwrap(), ["boxoffice"]);
    let matcher = Matcher::equal("service_name", "worker");
    assert_eq!(store.series(now - 100, now + 1, std::slice::from_ref(&matcher)).unwrap().len(), 1);
    let stats = store.index_stats(now - 100, now + 1, &[]).unwrap();
    assert_eq!((stats.streams, stats.entries, stats.bytes), (2, 2, 3));
}

#[test]
fn retention_deletes_expired_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.retention_ms = 2000;
    let store = LogStore::open(options).unwrap();
    let now = now_ns();
    // Expires 1 s from now: a margin for a loaded machine between the push and the first flush.
    store.push(vec![stream("boxoffice", vec![LogEntry::new(now - 1_000_000_000, "soon expired")])]).unwrap();
    store.flush(true).unwrap();
    assert_eq!(store.stats().chunk_files, 1);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let report = store.flush(false).unwrap();
    assert_eq!(report.files_deleted, 1);
    assert!(select_all(&store, now - 2_000_000_000, now + 1, &[]).is_empty());
}

#[test]
fn unordered_window_is_configurable_and_refusals_use_lokis_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.unordered_window_ms = 10 * 60 * 1000;
    let store = LogStore::open(options).unwrap();
    let now = now_ns();
    let minute_ns = 60 * 1_000_000_000;
    let summary = store
        .push(vec![stream(
            "boxoffice",
            vec![LogEntry::new(now, "newest"), LogEntry::new(now - 5 * minute_ns, "within the window")],
        )])
        .unwrap();
    assert_eq!(summary.accepted, 2);
    let summary = store.push(vec![stream("boxoffice", vec![LogEntry::new(now - 20 * minute_ns, "behind")])]).unwrap();
    assert_eq!(summary.rejected_too_old, 1);
    let message = summary.first_error.unwrap();
    assert!(message.contains("entry too far behind, entry timestamp is: "), "{message}");
    let summary = store
        .push(vec![stream("boxoffice", vec![LogEntry::new(now - 40 * 24 * 60 * minute_ns, "beyond retention")])])
        .unwrap();
    let message = summary.first_error.unwrap();
    assert!(message.contains("has timestamp too old: ") && message.contains("oldest acceptable timestamp is: "));
}

#[test]
fn rfc3339_formatting_of_refusal_timestamps() {
    assert_eq!(crate::store::format_rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(crate::store::format_rfc3339(1_795_417_334_099_679_000), "2026-11-23T07:02:14Z");
    assert_eq!(crate::store::format_rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    assert_eq!(crate::store::format_rfc3339(-1_000_000_000), "1969-12-31T23:59:59Z");
}
