//! Golden LogQL tests: each query runs over a fixed corpus of seed-shaped structlog JSON lines in a real
//! log store and is compared with its expected result.
#![allow(clippy::unwrap_used)]

use oxeye_logql::{Direction, Engine, QueryResult};
use oxeye_logstore::{LogStore, LogStoreOptions};
use oxeye_model::logs::{LogEntry, LogStream, LogWriter};
use oxeye_model::{Label, Labels};

const SECOND: i64 = 1_000_000_000;

fn base_ns() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    // A whole minute, 10 minutes ago, so windows line up.
    (now / (60 * SECOND) - 10) * 60 * SECOND
}

fn corpus(base: i64) -> Vec<LogStream> {
    let request = |second: i64, status: u16, latency: f64, path: &str, level: &str, user: &str| {
        let mut entry = LogEntry::new(
            base + second * SECOND,
            format!(
                r#"{{"event": "request_finished", "status_code": {status}, "latency_ms": {latency}, "method": "GET", "path": "{path}", "user_id": "{user}", "level": "{level}", "logger": "boxoffice.request", "trace_id": "{:032x}"}}"#,
                second * 7919
            ),
        );
        entry.structured_metadata.push(Label { name: "trace_id".into(), value: format!("{:032x}", second * 7919) });
        entry
    };
    vec![
        LogStream {
            labels: Labels::from_pairs([
                ("service_name", "boxoffice"),
                ("env", "acceptance"),
                ("logger", "boxoffice.request"),
            ]),
            entries: vec![
                request(1, 200, 0.7, "/healthz/", "info", "anonymous"),
                request(2, 200, 12.5, "/api/events/", "info", "22"),
                request(3, 500, 250.0, "/api/events/3/checkout/", "error", "22"),
                request(4, 404, 3.0, "/api/nothing/", "warning", "anonymous"),
                request(5, 200, 40.0, "/api/events/", "info", "23"),
            ],
        },
        LogStream {
            labels: Labels::from_pairs([("service_name", "worker"), ("env", "acceptance"), ("logger", "celery")]),
            entries: vec![
                LogEntry::new(base + 2 * SECOND, "task_id=a1 task_name=notify_event_open duration=1.5s status=ok"),
                LogEntry::new(base + 4 * SECOND, "task_id=a2 task_name=notify_event_open duration=250ms status=retry"),
            ],
        },
    ]
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: std::sync::Arc<LogStore>,
    base: i64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LogStoreOptions::new(dir.path());
    options.background_maintenance = false;
    let store = LogStore::open(options).unwrap();
    let base = base_ns();
    let summary = store.push(corpus(base)).unwrap();
    assert_eq!(summary.accepted, 7);
    Fixture { _dir: dir, store, base }
}

/// Lines of a log query, oldest first, as `service_name: line-or-label`.
fn lines(fixture: &Fixture, query: &str) -> Vec<String> {
    let result = Engine::default()
        .query_range(
            fixture.store.as_ref(),
            query,
            fixture.base,
            fixture.base + 60 * SECOND,
            SECOND,
            1000,
            Direction::Forward,
        )
        .unwrap();
    let QueryResult::Streams(streams) = result else { panic!("{query}: not streams") };
    let mut entries: Vec<(i64, String)> = streams
        .iter()
        .flat_map(|stream| {
            stream.entries.iter().map(move |(time, line)| {
                (*time, format!("{}: {line}", stream.labels.get("service_name").unwrap_or("")))
            })
        })
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, line)| line).collect()
}

/// A metric query at `base + at_seconds`, rendered as `{labels} value` lines sorted.
fn instant(fixture: &Fixture, query: &str, at_seconds: i64) -> Vec<String> {
    let result =
        Engine::default().query_instant(fixture.store.as_ref(), query, fixture.base + at_seconds * SECOND).unwrap();
    let mut out: Vec<String> = match result {
        QueryResult::Vector(series) => {
            series.iter().map(|series| format!("{} {}", series.labels, series.points[0].1)).collect()
        }
        QueryResult::Scalar(points) => vec![format!("scalar {}", points[0].1)],
        other => panic!("{query}: {other:?}"),
    };
    out.sort();
    out
}

#[test]
fn line_filters_and_parsers() {
    let fixture = fixture();
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} |= "checkout" | json | line_format "{{.status_code}} {{.path}}""#
        ),
        ["boxoffice: 500 /api/events/3/checkout/"]
    );
    assert_eq!(
        lines(&fixture, r#"{env="acceptance"} |~ "status_code\": 4\\d\\d" or "status=retry" | line_format "x""#).len(),
        2
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} | json | latency_ms > 10 and user_id != "anonymous" | line_format "{{.user_id}}""#
        ),
        ["boxoffice: 22", "boxoffice: 22", "boxoffice: 23"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="worker"} | logfmt | duration < 1s | line_format "{{.task_id}} {{ .status | ToUpper }}""#
        ),
        ["worker: a2 RETRY"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} | json | level="error" or status_code=404 | line_format "{{.status_code}}""#
        ),
        ["boxoffice: 500", "boxoffice: 404"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="boxoffice"} != "api" | json | keep path | line_format "{{.path}}""#),
        [": /healthz/"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="boxoffice"} |> "<_>\"status_code\": 500<_>" | line_format "hit""#),
        ["boxoffice: hit"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="worker"} | pattern "task_id=<id> <_>" | label_format who="{{.id}}-x" | line_format "{{.who}}""#
        ),
        ["worker: a1-x", "worker: a2-x"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="worker"} | regexp "duration=(?P<d>\\S+)" | d > 1s | line_format "{{.d}}""#),
        ["worker: 1.5s"]
    );
}

#[test]
fn metric_queries() {
    let fixture = fixture();
    // Structured metadata (trace_id) is part of the series labels, as in Loki, so aggregate it away.
    assert_eq!(
        instant(&fixture, r#"sum without (trace_id) (count_over_time({env="acceptance"}[1m]))"#, 30),
        [
            r#"{env="acceptance", logger="boxoffice.request", service_name="boxoffice"} 5"#,
            r#"{env="acceptance", logger="celery", service_name="worker"} 2"#
        ]
    );
    assert_eq!(instant(&fixture, r#"sum(rate({service_name="worker"}[1m]))"#, 30), ["{} 0.03333333333333333"]);
    assert_eq!(
        instant(
            &fixture,
            r#"sum by (status_code) (count_over_time({service_name="boxoffice"} | json | __error__="" [1m]))"#,
            30
        ),
        [r#"{status_code="200"} 3"#, r#"{status_code="404"} 1"#, r#"{status_code="500"} 1"#]
    );
    assert_eq!(
        instant(
            &fixture,
            r#"max_over_time({service_name="boxoffice"} | json | unwrap latency_ms [1m]) by (service_name)"#,
            30
        ),
        [r#"{service_name="boxoffice"} 250"#]
    );
    assert_eq!(
        instant(
            &fixture,
            r#"sum_over_time({service_name="worker"} | logfmt | unwrap duration(duration) [1m]) by (task_name)"#,
            30
        ),
        [r#"{task_name="notify_event_open"} 1.75"#]
    );
    assert_eq!(
        instant(
            &fixture,
            r#"quantile_over_time(0.5, {service_name="boxoffice"} | json | unwrap latency_ms [1m]) by (service_name)"#,
            30
        ),
        [r#"{service_name="boxoffice"} 12.5"#]
    );
    // Windows are (t - range, t]: at second 3 a 2s window holds seconds 2 and 3.
    assert_eq!(instant(&fixture, r#"sum(count_over_time({service_name="boxoffice"}[2s]))"#, 3), ["{} 2"]);
    assert_eq!(instant(&fixture, r#"sum(count_over_time({service_name="boxoffice"}[2s] offset 1s))"#, 4), ["{} 2"]);
    assert_eq!(instant(&fixture, r#"sum(bytes_over_time({service_name="worker"}[1m])) > 100"#, 30), ["{} 128"]);
    assert_eq!(instant(&fixture, r#"topk(1, count_over_time({env="acceptance"}[1m]))"#, 30).len(), 1);
    assert_eq!(
        instant(&fixture, r#"absent_over_time({service_name="nothing"}[1m])"#, 30),
        [r#"{service_name="nothing"} 1"#]
    );
    assert_eq!(instant(&fixture, "vector(1) + vector(1)", 30), ["{} 2"]);
    assert_eq!(instant(&fixture, "2 * 3 + 1", 30), ["scalar 7"]);
    let error = Engine::default()
        .query_instant(
            fixture.store.as_ref(),
            r#"count_over_time({service_name="worker"} | json [1m])"#,
            fixture.base + 30 * SECOND,
        )
        .unwrap_err();
    assert!(error.to_string().starts_with("pipeline error: 'JSONParserErr'"), "{error}");
}

#[test]
fn parse_errors_carry_positions_and_queries_print_back() {
    for (query, position) in [
        (r#"{service_name="boxoffice"} | jsn"#, "col 30"),
        (r#"sum(count_over_time({a="b"}))"#, "col 28"),
        (r#"rate({a="b"} | json [5x])"#, "col 22"),
    ] {
        let error = oxeye_logql::syntax::parse_expr(query).unwrap_err().to_string();
        assert!(error.contains(position), "{query}: {error}");
    }
    for query in [
        r#"{a="b", c=~"d.*"} |= "x" or "y" != "z" | json status="response.code" | logfmt --strict | status >= 500 and latency > 250ms or size < 1KB | line_format "{{.a}}" | label_format x=y | drop a | keep b | decolorize"#,
        r#"sum by (a) (rate({a="b"} | unwrap bytes(size) | __error__="" [5m] offset 1h)) / on (a) group_left (b) sum by (a, b) (count_over_time({a="b"} [5m]))"#,
    ] {
        let expr = oxeye_logql::syntax::parse_expr(query).unwrap_or_else(|error| panic!("{query}: {error}"));
        let printed = expr.to_string();
        assert_eq!(oxeye_logql::syntax::parse_expr(&printed).unwrap(), expr, "{printed}");
    }
}

#[test]
fn vector_aggregations_one_to_many_matching_and_duration_seconds() {
    let fixture = fixture();
    // Per stream: boxoffice 5 lines, worker 2 (trace_id metadata aggregated away).
    let per_stream = r#"sum without (trace_id) (count_over_time({env="acceptance"}[1m]))"#;
    assert_eq!(instant(&fixture, &format!("stdvar({per_stream})"), 30), ["{} 2.25"]);
    assert_eq!(instant(&fixture, &format!("stddev({per_stream})"), 30), ["{} 1.5"]);
    assert_eq!(
        instant(
            &fixture,
            &format!(r#"{per_stream} / on (env) group_left sum by (env) (count_over_time({{env="acceptance"}}[1m]))"#),
            30
        ),
        [
            r#"{env="acceptance", logger="boxoffice.request", service_name="boxoffice"} 0.7142857142857143"#,
            r#"{env="acceptance", logger="celery", service_name="worker"} 0.2857142857142857"#
        ]
    );
    assert_eq!(
        instant(
            &fixture,
            r#"sum_over_time({service_name="worker"} | logfmt | unwrap duration_seconds(duration) [1m]) by (task_name)"#,
            30
        ),
        [r#"{task_name="notify_event_open"} 1.75"#]
    );
}

#[test]
fn backward_queries_return_the_newest_entries_up_to_the_limit() {
    let fixture = fixture();
    let result = Engine::default()
        .query_range(
            fixture.store.as_ref(),
            r#"{service_name="boxoffice"} | json | line_format "{{.path}}""#,
            fixture.base,
            fixture.base + 60 * SECOND,
            SECOND,
            2,
            Direction::Backward,
        )
        .unwrap();
    let QueryResult::Streams(streams) = result else { panic!("not streams") };
    let mut entries: Vec<(i64, String)> =
        streams.iter().flat_map(|stream| stream.entries.iter().map(|(time, line)| (*time, line.to_string()))).collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            (fixture.base + 4 * SECOND, "/api/nothing/".to_string()),
            (fixture.base + 5 * SECOND, "/api/events/".to_string())
        ]
    );
}

/// Range aggregations over series with many entries per window (which the engine sums per step interval
/// instead of keeping every sample) equal counting the entries of each window by hand, with and without
/// `offset`, for ranges of one and of several steps, grouped and not.
#[test]
fn range_aggregations_over_many_entries_equal_counting_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LogStoreOptions::new(dir.path());
    options.background_maintenance = false;
    options.chunk_target_bytes = 4096;
    let store = LogStore::open(options).unwrap();
    let base = base_ns() - 10 * 60 * SECOND;
    // Two streams, an entry every 250 ms (one exactly on each whole second) for 10 minutes; lines of
    // 10 to 19 bytes.
    let entries = |service: &str, shift_ns: i64| LogStream {
        labels: Labels::from_pairs([("service_name", service), ("env", "prod")]),
        entries: (0..2400i64)
            .map(|index| {
                LogEntry::new(
                    base + index * SECOND / 4 + shift_ns,
                    format!("{service} {}", "x".repeat((index % 10) as usize)),
                )
            })
            .collect(),
    };
    let streams = [entries("worker", 0), entries("gateway", 1)];
    let by_hand: Vec<(i64, String)> = streams
        .iter()
        .flat_map(|stream| stream.entries.iter().map(|entry| (entry.timestamp_ns, entry.line.clone())))
        .collect();
    store.push(streams.to_vec()).unwrap();
    store.flush(true).unwrap();
    let (start, end, step) = (base + 30 * SECOND, base + 9 * 60 * SECOND, 10 * SECOND);
    for (query, range_s, offset_s, bytes) in [
        (r#"sum(count_over_time({env="prod"}[10s]))"#, 10, 0, false),
        (r#"sum(count_over_time({env="prod"}[30s] offset 5s))"#, 30, 5, false),
        (r#"sum by (env) (bytes_over_time({env="prod"}[20s]))"#, 20, 0, true),
        (r#"sum(rate({env="prod"}[1m]))"#, 60, 0, false),
        (r#"sum(count_over_time({env="prod"} | drop __error__, __error_details__ [20s]))"#, 20, 0, false),
        (r#"sum(count_over_time({env="prod"} | keep env [10s] offset 3s))"#, 10, 3, false),
        (r#"sum(bytes_rate({env="prod"} | drop __error__ [30s]))"#, 30, 0, true),
    ] {
        let result =
            Engine::default().query_range(store.as_ref(), query, start, end, step, 100, Direction::Forward).unwrap();
        let QueryResult::Matrix(series) = result else { panic!("{query}: not a matrix") };
        assert_eq!(series.len(), 1, "{query}");
        let mut at = start;
        for (timestamp, value) in &series[0].points {
            assert_eq!(*timestamp, at, "{query}");
            let window_end = at - offset_s * SECOND;
            let inside =
                by_hand.iter().filter(|(time, _)| *time > window_end - range_s * SECOND && *time <= window_end);
            let (count, line_bytes) = inside.fold((0, 0), |(count, bytes), (_, line)| (count + 1, bytes + line.len()));
            let expected = match (bytes, query.contains("rate")) {
                (true, true) => line_bytes as f64 / range_s as f64,
                (true, false) => line_bytes as f64,
                (false, true) => count as f64 / range_s as f64,
                (false, false) => count as f64,
            };
            assert_eq!(*value, expected, "{query} at {}", (at - base) / SECOND);
            at += step;
        }
        assert_eq!(at, end + step, "{query}: every step has a value");
    }
}
