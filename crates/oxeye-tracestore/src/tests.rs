//! Store behaviour: head and blocks, replay, tombstones, retention, search skipping, corruption.

use std::time::Duration;

use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanColumnSet, SpanColumnsRow,
    SpanKind, StatusCode, Trace, TraceReader, TraceScanHints, TraceWriter, visit_span_rows,
};

use crate::{DEFAULT_PAGE_BYTES, TraceStore, TraceStoreError, TraceStoreOptions};

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, start: u64, duration: u64) -> Span {
    Span {
        trace_id: [trace; 16],
        span_id: [id; 8],
        parent_span_id: parent.map(|parent| [parent; 8]),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        attributes: vec![Attribute::string("request_id", format!("req-{trace}"))],
        ..Span::default()
    }
}

fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Resource { attributes: vec![Attribute::string("service.name", service)], ..Resource::default() },
        scope_spans: vec![ScopeSpans {
            scope: Scope { name: "boxoffice.tickets".into(), ..Scope::default() },
            spans,
            ..ScopeSpans::default()
        }],
        ..ResourceSpans::default()
    }
}

fn checkout_trace(trace: u8, start: u64) -> Vec<ResourceSpans> {
    vec![batch(
        "boxoffice",
        vec![
            span(trace, 1, None, "ticket.checkout", start, 2_500_000_000),
            span(trace, 2, Some(1), "ticket.check_eligibility", start + 1_000, 1_000_000),
            span(trace, 3, Some(2), "eligibility.check_membership", start + 2_000, 500_000),
        ],
    )]
}

fn span_names(trace: &Trace) -> Vec<String> {
    let mut names: Vec<String> = trace.spans().map(|(_, span)| span.name.clone()).collect();
    names.sort();
    names
}

fn open(dir: &std::path::Path) -> std::sync::Arc<TraceStore> {
    TraceStore::open(TraceStoreOptions::new(dir)).unwrap()
}

#[test]
fn spans_are_found_in_the_head_in_blocks_and_across_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let start = now_nanos();
    let summary = store.push(checkout_trace(1, start)).unwrap();
    assert_eq!(summary.accepted_spans, 3);
    assert_eq!(span_names(&store.trace_by_id(&[1; 16], None).unwrap().unwrap()).len(), 3);

    store.cut_block().unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.stats().head_spans, 0);
    let from_block = store.trace_by_id(&[1; 16], None).unwrap().unwrap();
    assert_eq!(
        span_names(&from_block),
        ["eligibility.check_membership", "ticket.check_eligibility", "ticket.checkout"]
    );
    assert_eq!(from_block.root().unwrap().0.service_name(), Some("boxoffice"));

    // A late span of the same trace lands in the head; by-id merges it into the same resource and scope.
    store.push(vec![batch("boxoffice", vec![span(1, 4, Some(1), "redis.get", start + 5_000, 100)])]).unwrap();
    let merged = store.trace_by_id(&[1; 16], None).unwrap().unwrap();
    assert_eq!(merged.spans().count(), 4);
    assert_eq!(merged.resource_spans.len(), 1);
    assert_eq!(merged.resource_spans[0].scope_spans.len(), 1);
    assert!(store.trace_by_id(&[9; 16], None).unwrap().is_none());
}

#[test]
fn windows_restrict_spans_by_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let start = now_nanos();
    store.push(checkout_trace(1, start)).unwrap();
    let early = store.trace_by_id(&[1; 16], Some((start, start + 1_500))).unwrap().unwrap();
    assert_eq!(span_names(&early), ["ticket.check_eligibility", "ticket.checkout"]);
    assert!(store.trace_by_id(&[1; 16], Some((start + 10_000, start + 20_000))).unwrap().is_none());
}

#[test]
fn the_head_is_replayed_after_a_restart_and_blocks_are_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_nanos();
    {
        let store = open(dir.path());
        store.push(checkout_trace(1, start)).unwrap();
        store.cut_block().unwrap();
        store.push(checkout_trace(2, start)).unwrap();
        store.push(vec![batch("payments", vec![span(1, 9, Some(1), "stripe.webhook.handle", start + 9, 5)])]).unwrap();
        // No close: as after kill -9, only the fsynced WAL and the block remain.
    }
    let store = open(dir.path());
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.stats().head_spans, 4);
    let first = store.trace_by_id(&[1; 16], None).unwrap().unwrap();
    assert_eq!(first.spans().count(), 4, "block spans once, plus the replayed late span");
    assert_eq!(first.resource_spans.len(), 2);
    assert_eq!(store.trace_by_id(&[2; 16], None).unwrap().unwrap().spans().count(), 3);
}

#[test]
fn dropped_traces_stay_dropped_after_replay() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_nanos();
    {
        let store = open(dir.path());
        store.push(checkout_trace(1, start)).unwrap();
        store.push(checkout_trace(2, start)).unwrap();
        store.drop_traces(&[[1; 16], [7; 16]]).unwrap();
        assert!(store.trace_by_id(&[1; 16], None).unwrap().is_none());
        assert_eq!(store.stats().dropped_traces_total, 1);
        store.close().unwrap();
        assert!(matches!(store.push_batches(checkout_trace(3, start)), Err(TraceStoreError::Closed)));
    }
    let store = open(dir.path());
    assert!(store.trace_by_id(&[1; 16], None).unwrap().is_none());
    assert!(store.trace_by_id(&[2; 16], None).unwrap().is_some());
}

#[test]
fn zero_ids_and_spans_outside_retention_are_refused_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = TraceStoreOptions::new(dir.path());
    options.retention = Duration::from_secs(3600);
    let store = TraceStore::open(options).unwrap();
    let now = now_nanos();
    let mut zero_trace = span(0, 1, None, "zero trace id", now, 1);
    zero_trace.trace_id = [0; 16];
    let summary = store
        .push(vec![batch(
            "boxoffice",
            vec![
                span(1, 1, None, "kept", now, 1),
                zero_trace,
                span(2, 1, None, "two hours old", now - 7_200_000_000_000, 1),
            ],
        )])
        .unwrap();
    assert_eq!((summary.accepted_spans, summary.rejected_spans), (1, 2));
    assert!(summary.first_error.unwrap().contains("all zero"));
    assert!(store.trace_by_id(&[2; 16], None).unwrap().is_none());
}

#[test]
fn retention_deletes_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = now_nanos();
    store.push(checkout_trace(1, now)).unwrap();
    store.cut_block().unwrap();
    store.apply_retention(now + 29 * 24 * 3600 * 1_000_000_000).unwrap();
    assert_eq!(store.stats().blocks, 1);
    store.apply_retention(now + 31 * 24 * 3600 * 1_000_000_000).unwrap();
    assert_eq!(store.stats().blocks, 0);
    assert!(store.trace_by_id(&[1; 16], None).unwrap().is_none());
    let leftover: Vec<_> = std::fs::read_dir(dir.path().join("blocks")).unwrap().collect();
    assert!(leftover.is_empty());
}

#[test]
fn scans_visit_matching_windows_and_skip_blocks_by_summary() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let start = now_nanos();
    store.push(checkout_trace(1, start)).unwrap();
    store.cut_block().unwrap();
    let mut failing = span(2, 1, None, "stripe.webhook.handle", start, 10);
    failing.status_code = StatusCode::Error;
    store.push(vec![batch("payments", vec![failing])]).unwrap();
    store.cut_block().unwrap();
    store.push(checkout_trace(3, start + 1_000_000_000)).unwrap();

    let collect = |hints: &TraceScanHints, from: u64, to: u64| {
        let mut seen = Vec::new();
        store
            .scan_traces(from, to, hints, &mut |trace| {
                seen.push(trace.trace_id[0]);
                true
            })
            .unwrap();
        seen.sort();
        seen
    };
    assert_eq!(collect(&TraceScanHints::default(), start, start + 10_000_000_000), [1, 2, 3]);
    assert_eq!(collect(&TraceScanHints::default(), start + 500_000_000, start + 10_000_000_000), [3]);
    let errors = TraceScanHints { has_error: true, ..TraceScanHints::default() };
    assert_eq!(collect(&errors, start, start + 10_000_000_000), [2, 3], "the head is never skipped");
    let payments = TraceScanHints { service_name: Some("payments".into()), ..TraceScanHints::default() };
    assert_eq!(collect(&payments, start, start + 10_000_000_000), [2, 3]);
    let request =
        TraceScanHints { string_attributes: vec![("request_id".into(), "req-1".into())], ..TraceScanHints::default() };
    assert_eq!(collect(&request, start, start + 10_000_000_000), [1, 3]);
    let slow = TraceScanHints { min_span_duration_nanos: Some(2_000_000_000), ..TraceScanHints::default() };
    assert_eq!(collect(&slow, start, start + 10_000_000_000), [1, 3]);

    let mut visits = 0;
    store
        .scan_traces(start, start + 10_000_000_000, &TraceScanHints::default(), &mut |_| {
            visits += 1;
            false
        })
        .unwrap();
    assert_eq!(visits, 1, "a visitor returning false stops the scan");
}

#[test]
fn many_traces_span_several_pages_and_stay_findable() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = TraceStoreOptions::new(dir.path());
    options.page_bytes = 4096;
    options.max_head_spans = 500;
    let store = TraceStore::open(options).unwrap();
    let start = now_nanos();
    for round in 0..5u8 {
        let spans: Vec<Span> = (0..=255u8)
            .map(|trace| {
                let mut span = span(trace.max(1), round + 1, None, "GET /events/{id}/", start, 1_000);
                span.trace_id[0] = round;
                span
            })
            .collect();
        store.push(vec![batch("boxoffice", spans)]).unwrap();
    }
    assert!(store.stats().blocks >= 1, "the head was cut by size");
    for round in 0..5u8 {
        for trace in [1u8, 100, 255] {
            let mut trace_id = [trace; 16];
            trace_id[0] = round;
            let found = store.trace_by_id(&trace_id, None).unwrap();
            assert!(found.is_some(), "round {round} trace {trace}");
        }
    }
}

#[test]
fn a_corrupt_block_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.push(checkout_trace(1, now_nanos())).unwrap();
        store.cut_block().unwrap();
    }
    let block_path = std::fs::read_dir(dir.path().join("blocks")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&block_path).unwrap();
    let length = bytes.len();
    bytes[length - 40] ^= 0xff;
    std::fs::write(&block_path, &bytes).unwrap();
    let error = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap_err();
    assert!(error.to_string().contains(&block_path.display().to_string()), "{error}");
    assert!(matches!(error, TraceStoreError::Corrupt { .. }));
}

#[test]
fn interrupted_block_writes_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_nanos();
    {
        let store = open(dir.path());
        store.push(checkout_trace(1, start)).unwrap();
    }
    std::fs::write(dir.path().join("blocks").join("0000000000000001.tmp"), b"partial").unwrap();
    let store = open(dir.path());
    assert!(!dir.path().join("blocks").join("0000000000000001.tmp").exists());
    assert!(store.trace_by_id(&[1; 16], None).unwrap().is_some());
}

#[test]
fn options_are_validated_by_field() {
    let mut options = TraceStoreOptions::new("/nonexistent");
    options.page_bytes = 10;
    let error = options.validate().unwrap_err();
    assert!(error.to_string().contains("page_bytes"), "{error}");
}

/// A span row with owned strings, to compare rows from span columns with rows from traces.
type OwnedRow = (u64, u64, Option<String>, String, u8, u8);

fn owned(row: &SpanColumnsRow<'_>) -> OwnedRow {
    (
        row.start_time_unix_nano,
        row.duration_nanos,
        row.service_name.and_then(AttributeValue::as_str).map(str::to_string),
        row.name.to_string(),
        row.kind as u8,
        row.status_code as u8,
    )
}

fn span_rows(store: &TraceStore, start: u64, end: u64, columns: SpanColumnSet) -> Vec<OwnedRow> {
    let mut rows = Vec::new();
    store
        .scan_span_rows(start, end, columns, &mut |row| {
            rows.push(owned(row));
            true
        })
        .unwrap();
    rows.sort();
    rows
}

fn rows_from_traces(store: &TraceStore, start: u64, end: u64) -> Vec<OwnedRow> {
    let mut rows = Vec::new();
    store
        .scan(start, end, &TraceScanHints::default(), &mut |trace| {
            visit_span_rows(trace, start, end, &mut |row| {
                rows.push(owned(row));
                true
            })
        })
        .unwrap();
    rows.sort();
    rows
}

#[test]
fn span_columns_hold_every_spans_intrinsics_and_respect_the_window() {
    check_span_columns(DEFAULT_PAGE_BYTES);
}

/// Span names reach the columns through each page's string table: with many pages per block, every
/// page's names must still map to the block's sorted name list.
#[test]
fn span_columns_are_right_when_a_block_has_many_pages() {
    check_span_columns(1 << 10);
}

fn check_span_columns(page_bytes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let open = |dir: &std::path::Path| {
        let mut options = TraceStoreOptions::new(dir);
        options.page_bytes = page_bytes;
        TraceStore::open(options).unwrap()
    };
    let store = open(dir.path());
    let start = now_nanos();
    for trace in 1..=20u8 {
        let mut batches = checkout_trace(trace, start + u64::from(trace) * 1_000_000);
        batches[0].scope_spans[0].spans[1].kind = SpanKind::Internal;
        // Names that pages meet in different orders, so page string indexes differ from block name ranks.
        batches[0].scope_spans[0].spans[1].name = format!("step {}", 3 - trace % 4);
        if trace % 7 == 0 {
            batches[0].scope_spans[0].spans[0].status_code = StatusCode::Error;
        }
        // A resource without service.name.
        batches.push(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span(trace, 8, Some(1), "redis.get", start + u64::from(trace) * 1_000_000 + 7, 40)],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        });
        store.push(batches).unwrap();
        if trace == 10 {
            store.cut_block().unwrap();
        }
    }
    store.cut_block().unwrap();
    let everything = rows_from_traces(&store, 0, u64::MAX);
    assert_eq!(everything.len(), 80);
    assert_eq!(span_rows(&store, 0, u64::MAX, SpanColumnSet::ALL), everything);
    let (window_start, window_end) = (start + 5_000_000, start + 12_000_001);
    let window = rows_from_traces(&store, window_start, window_end);
    assert_eq!(window.len(), 7 * 4 + 1, "traces 5 to 11 and the root of trace 12");
    assert_eq!(span_rows(&store, window_start, window_end, SpanColumnSet::ALL), window);
    // Only the start and the asked columns are read; the others keep their defaults.
    let durations = span_rows(&store, 0, u64::MAX, SpanColumnSet { duration: true, ..SpanColumnSet::default() });
    assert!(durations.iter().all(|row| row.2.is_none() && row.3.is_empty()));
    let expected: Vec<(u64, u64)> = everything.iter().map(|row| (row.0, row.1)).collect();
    let mut found: Vec<(u64, u64)> = durations.iter().map(|row| (row.0, row.1)).collect();
    found.sort();
    assert_eq!(found, expected);
    // Reopened from disk, the columns are read back the same.
    drop(store);
    let store = open(dir.path());
    assert_eq!(span_rows(&store, 0, u64::MAX, SpanColumnSet::ALL), everything);
}

#[test]
fn version_1_blocks_without_span_columns_are_still_read() {
    // Written by the version 1 writer (commit 6a9af7e): three checkout traces, boxoffice and celery spans,
    // trace 2's root with status error, pages of 1 KiB.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/block-v1.oxtb");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blocks")).unwrap();
    std::fs::copy(&fixture, dir.path().join("blocks/0000000000000001.oxtb")).unwrap();
    let store = open(dir.path());
    assert_eq!(store.stats().block_spans, 12);
    let trace = store.trace_by_id(&[2; 16], None).unwrap().unwrap();
    assert_eq!(trace.spans().count(), 4);
    assert_eq!(trace.root().unwrap().1.status_code, StatusCode::Error);
    // No columns: rows come from the decoded traces.
    let rows = span_rows(&store, 0, u64::MAX, SpanColumnSet::ALL);
    assert_eq!(rows, rows_from_traces(&store, 0, u64::MAX));
    assert_eq!(rows.iter().filter(|row| row.2.as_deref() == Some("celery")).count(), 3);
    assert_eq!(rows.iter().filter(|row| row.5 == StatusCode::Error as u8).count(), 1);
}

#[test]
fn a_corrupt_span_column_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.push(checkout_trace(1, now_nanos())).unwrap();
    store.cut_block().unwrap();
    drop(store);
    let block = std::fs::read_dir(dir.path().join("blocks")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&block).unwrap();
    // The columns lie just before the index; the index offset is the footer's first field.
    let footer = bytes.len() - 32;
    let index_offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    bytes[index_offset - 2] ^= 0xff;
    std::fs::write(&block, bytes).unwrap();
    let store = open(dir.path());
    let error = store.scan_span_rows(0, u64::MAX, SpanColumnSet::ALL, &mut |_| true).unwrap_err();
    assert!(error.to_string().contains(".oxtb"), "{error}");
    assert!(error.to_string().contains("span column"), "{error}");
}
