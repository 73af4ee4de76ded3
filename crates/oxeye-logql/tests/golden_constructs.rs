//! Golden LogQL cases for every construct of issue 4, on a fixed corpus of structlog JSON (with nested
//! objects, sizes and durations), logfmt (with a malformed line), colored plain text, a counter and a
//! packed line. Expected results follow Loki's documented semantics
//! (<https://grafana.com/docs/loki/latest/query/>).

#![allow(clippy::unwrap_used, clippy::panic)]

use oxeye_logql::{Direction, Engine, QueryResult};
use oxeye_logstore::{LogStore, LogStoreOptions};
use oxeye_model::Labels;
use oxeye_model::logs::{LogEntry, LogStream, LogWriter};

const SECOND: i64 = 1_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: std::sync::Arc<LogStore>,
    base: i64,
}

const LEGACY_ERROR: &str = "\x1b[31mERROR\x1b[0m disk full on 10.0.0.5";
const LEGACY_INFO: &str = "\x1b[32mINFO\x1b[0m backup done on 10.0.1.7";

fn fixture() -> Fixture {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let base = (now / (60 * SECOND) - 10) * 60 * SECOND;
    let stream = |service: &str, entries: Vec<(i64, &str)>| LogStream {
        labels: Labels::from_pairs([("service_name", service), ("env", "prod")]),
        entries: entries.into_iter().map(|(second, line)| LogEntry::new(base + second * SECOND, line)).collect(),
    };
    let streams = vec![
        stream(
            "boxoffice",
            vec![
                (
                    1,
                    r#"{"event": "request_finished", "status_code": 200, "response": {"size": "1.5KB", "code": 200}, "user": {"id": 22}, "latency": "120ms", "level": "info"}"#,
                ),
                (
                    2,
                    r#"{"event": "request_finished", "status_code": 500, "response": {"size": "20KB", "code": 500}, "user": {"id": 23}, "latency": "2.5s", "level": "error"}"#,
                ),
                (3, r#"{"event": "cache_miss", "key": "events", "level": "debug"}"#),
            ],
        ),
        stream(
            "worker",
            vec![
                (1, "task=notify status=ok empty= bytes=512"),
                (2, "task=receipt status=retry empty= bytes=2048"),
                (3, r#"task=broken "oops"#),
            ],
        ),
        stream("legacy", vec![(2, LEGACY_ERROR), (4, LEGACY_INFO)]),
        stream(
            "counter",
            vec![
                (1, "requests_total=10"),
                (11, "requests_total=20"),
                (21, "requests_total=5"),
                (31, "requests_total=15"),
            ],
        ),
        stream("packed", vec![(5, r#"{"_entry": "original line", "app": "shop"}"#)]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut options = LogStoreOptions::new(dir.path());
    options.background_maintenance = false;
    let store = LogStore::open(options).unwrap();
    assert_eq!(store.push(streams).unwrap().accepted, 13);
    Fixture { _dir: dir, store, base }
}

/// Lines of a log query over the first minute, oldest first, as `service_name: line`.
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
        .unwrap_or_else(|error| panic!("{query}: {error}"));
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

/// A metric query at `base + at_seconds` as `{labels} value` lines, in the engine's order.
fn instant(fixture: &Fixture, query: &str, at_seconds: i64) -> Vec<String> {
    let result = Engine::default()
        .query_instant(fixture.store.as_ref(), query, fixture.base + at_seconds * SECOND)
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    match result {
        QueryResult::Vector(series) => {
            series.iter().map(|series| format!("{} {}", series.labels, series.points[0].1)).collect()
        }
        QueryResult::Scalar(points) => vec![format!("scalar {}", points[0].1)],
        other => panic!("{query}: {other:?}"),
    }
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn json_with_parameters_extracts_only_the_named_paths() {
    let fixture = fixture();
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} |= "request_finished" | json code="response.code", uid="user.id" | line_format "{{.code}}-{{.uid}}-{{.status_code}}""#
        ),
        ["boxoffice: 200-22-", "boxoffice: 500-23-"]
    );
    // Without parameters nested objects flatten with `_`.
    assert_eq!(
        lines(&fixture, r#"{service_name="boxoffice"} | json | response_code=500 | line_format "{{.user_id}}""#),
        ["boxoffice: 23"]
    );
}

#[test]
fn logfmt_flags_and_parser_errors() {
    let fixture = fixture();
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="worker"} | logfmt --strict | __error__="LogfmtParserErr" | line_format "bad""#
        ),
        ["worker: bad"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="worker"} | logfmt | __error__="" | line_format "{{.task}}""#),
        ["worker: notify", "worker: receipt", "worker: broken"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="worker"} |= "bytes" | logfmt --strict --keep-empty | line_format "{{.task}}:{{.empty}}:{{.bytes}}""#
        ),
        ["worker: notify::512", "worker: receipt::2048"]
    );
    // A pipeline error dropped on purpose with `__error__!=""` filters.
    assert_eq!(
        lines(&fixture, r#"{service_name="legacy"} |= "disk" | json | __error__!="" | line_format "{{.__error__}}""#),
        ["legacy: JSONParserErr"]
    );
}

#[test]
fn line_filters_patterns_and_or() {
    let fixture = fixture();
    assert_eq!(
        lines(&fixture, r#"{env="prod"} |= "disk" or "backup""#),
        [format!("legacy: {LEGACY_ERROR}"), format!("legacy: {LEGACY_INFO}")]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="worker"} !> "task=<_> status=ok <_>" | logfmt | line_format "{{.task}}""#),
        ["worker: receipt", "worker: broken"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="worker"} |> "task=<_> status=ok <_>" or "<_>oops<_>" | line_format "hit""#),
        ["worker: hit", "worker: hit"]
    );
    assert_eq!(lines(&fixture, r#"{service_name="worker"} |~ "(?i)TASK=RE.*" | line_format "x""#), ["worker: x"]);
    assert_eq!(lines(&fixture, r#"{service_name="worker"} !~ "bytes=\\d+" | line_format "x""#), ["worker: x"]);
}

#[test]
fn label_filters_on_durations_and_bytes() {
    let fixture = fixture();
    assert_eq!(
        lines(&fixture, r#"{service_name="boxoffice"} | json | response_size > 10KB | line_format "{{.status_code}}""#),
        ["boxoffice: 500"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} | json | latency >= 1s or response_size <= 1.5KB | line_format "{{.status_code}}""#
        ),
        ["boxoffice: 200", "boxoffice: 500"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="boxoffice"} | json | latency < 200ms and level="info" | line_format "ok""#),
        ["boxoffice: ok"]
    );
}

#[test]
fn formatting_drop_keep_decolorize_unpack_and_ip() {
    let fixture = fixture();
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} |= "request_finished" | json | label_format lvl="{{ .level | upper }}", code=status_code | line_format "{{.lvl}} {{.code}} {{.status_code}}""#
        ),
        ["boxoffice: INFO 200 ", "boxoffice: ERROR 500 "]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} |= "request_finished" | json | drop level="error", user_id | line_format "{{.level}}|{{.user_id}}""#
        ),
        ["boxoffice: info|", "boxoffice: |"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="boxoffice"} |= "request_finished" | json | keep level="info", service_name | line_format "{{.level}}|{{.status_code}}""#
        ),
        ["boxoffice: info|", "boxoffice: |"]
    );
    assert_eq!(
        lines(&fixture, r#"{service_name="legacy"} | decolorize"#),
        ["legacy: ERROR disk full on 10.0.0.5", "legacy: INFO backup done on 10.0.1.7"]
    );
    assert_eq!(
        lines(
            &fixture,
            r#"{service_name="legacy"} | decolorize | pattern "<level> <_> on <addr>" | addr = ip("10.0.0.0/24") | line_format "{{.level}}""#
        ),
        ["legacy: ERROR"]
    );
    assert_eq!(lines(&fixture, r#"{service_name="packed"} | unpack | app="shop""#), ["packed: original line"]);
}

#[test]
fn range_aggregations_with_unwrap() {
    let fixture = fixture();
    assert_eq!(
        instant(
            &fixture,
            r#"sum(sum_over_time({service_name="worker"} | logfmt | unwrap bytes(bytes) | __error__="" [1m]))"#,
            30
        ),
        ["{} 2560"]
    );
    assert_eq!(
        instant(
            &fixture,
            r#"sum(sum_over_time({service_name="boxoffice"} |= "request_finished" | json | unwrap duration(latency) [1m]))"#,
            30
        ),
        ["{} 2.62"]
    );
    // A `sum by` reaches into `sum_over_time` and `rate` of unwrapped values, and past `drop` (extracting
    // only what it reads), and answers as the same sum over every series (`* 1` keeps the sum out of the
    // range).
    for inner in [
        r#"sum_over_time({service_name=~".+"} | logfmt | unwrap bytes(bytes) | __error__="" [1m])"#,
        r#"rate({service_name=~".+"} | logfmt | unwrap bytes(bytes) | __error__="" [1m])"#,
        r#"count_over_time({service_name=~".+"} | json | drop __error__, __error_details__ [1m])"#,
    ] {
        let pushed = instant(&fixture, &format!("sum by (service_name) ({inner})"), 30);
        assert!(pushed.iter().any(|line| line.starts_with(r#"{service_name="worker"} "#)), "{pushed:?}");
        assert_eq!(pushed, instant(&fixture, &format!("sum by (service_name) ({inner} * 1)"), 30), "{inner}");
    }
    let worker = |function: &str| {
        instant(
            &fixture,
            &format!(
                r#"{function}({{service_name="worker"}} | logfmt | unwrap bytes | __error__="" [1m]) by (service_name)"#
            ),
            30,
        )
    };
    assert_eq!(worker("avg_over_time"), [r#"{service_name="worker"} 1280"#]);
    assert_eq!(worker("min_over_time"), [r#"{service_name="worker"} 512"#]);
    assert_eq!(worker("first_over_time"), [r#"{service_name="worker"} 512"#]);
    assert_eq!(worker("last_over_time"), [r#"{service_name="worker"} 2048"#]);
    assert_eq!(worker("stdvar_over_time"), [r#"{service_name="worker"} 589824"#]);
    assert_eq!(worker("stddev_over_time"), [r#"{service_name="worker"} 768"#]);
    let legacy_bytes = (LEGACY_ERROR.len() + LEGACY_INFO.len()) as f64;
    assert_eq!(
        instant(&fixture, r#"sum(bytes_rate({service_name="legacy"}[1m]))"#, 30),
        [format!("{{}} {}", legacy_bytes / 60.0)]
    );
    // rate_counter is Prometheus' extrapolated counter rate: 10, 20, 5 (reset), 15 at seconds 1, 11, 21,
    // 31 give an increase of 25; the zero point cuts the start extrapolation to 12 s (> 1.1 × 10 s, so half
    // an interval, 5 s) and the end adds 9 s: 25 × 44 / 30 over 60 s.
    assert_eq!(
        instant(&fixture, r#"sum(rate_counter({service_name="counter"} | logfmt | unwrap requests_total [1m]))"#, 40),
        [format!("{{}} {}", 25.0 * 44.0 / 30.0 / 60.0)]
    );
    assert_eq!(
        instant(&fixture, r#"absent_over_time({service_name="counter"}[1m])"#, 40),
        Vec::<String>::new(),
        "present streams give no absent series"
    );
}

#[test]
fn vector_aggregations_and_binary_operations() {
    let fixture = fixture();
    let counts = r#"count_over_time({env="prod"}[1m])"#;
    assert_eq!(instant(&fixture, &format!("count({counts})"), 40), ["{} 5"]);
    assert_eq!(instant(&fixture, &format!("sum without (service_name) ({counts})"), 40), [r#"{env="prod"} 13"#]);
    assert_eq!(instant(&fixture, &format!("max by (env) ({counts})"), 40), [r#"{env="prod"} 4"#]);
    assert_eq!(instant(&fixture, &format!("min({counts})"), 40), ["{} 1"]);
    assert_eq!(instant(&fixture, &format!("avg({counts})"), 40), ["{} 2.6"]);
    assert_eq!(instant(&fixture, &format!("bottomk(1, {counts})"), 40), [r#"{env="prod", service_name="packed"} 1"#]);
    assert_eq!(
        instant(&fixture, &format!("sort_desc(sum by (service_name) ({counts}))"), 40),
        [
            r#"{service_name="counter"} 4"#,
            r#"{service_name="boxoffice"} 3"#,
            r#"{service_name="worker"} 3"#,
            r#"{service_name="legacy"} 2"#,
            r#"{service_name="packed"} 1"#
        ]
    );
    assert_eq!(
        sorted(instant(&fixture, &format!("{counts} > bool 2"), 40)),
        [
            r#"{env="prod", service_name="boxoffice"} 1"#,
            r#"{env="prod", service_name="counter"} 1"#,
            r#"{env="prod", service_name="legacy"} 0"#,
            r#"{env="prod", service_name="packed"} 0"#,
            r#"{env="prod", service_name="worker"} 1"#
        ]
    );
    assert_eq!(instant(&fixture, &format!("{counts} > 3"), 40), [r#"{env="prod", service_name="counter"} 4"#]);
    let two = r#"count_over_time({service_name=~"worker|legacy"}[1m])"#;
    assert_eq!(
        sorted(instant(
            &fixture,
            &format!("sum by (service_name) ({two}) + on (service_name) sum by (service_name, env) ({two})"),
            40
        )),
        [r#"{service_name="legacy"} 4"#, r#"{service_name="worker"} 6"#]
    );
    assert_eq!(
        sorted(instant(
            &fixture,
            &format!("sum by (service_name, env) ({two}) * ignoring (env) sum by (service_name) ({two})"),
            40
        )),
        [r#"{service_name="legacy"} 4"#, r#"{service_name="worker"} 9"#]
    );
    assert_eq!(
        instant(
            &fixture,
            &format!(r#"{counts} unless count_over_time({{service_name=~"legacy|packed|counter"}}[1m])"#),
            40
        )
        .len(),
        2
    );
    assert_eq!(
        sorted(instant(&fixture, &format!(r#"{two} and count_over_time({{service_name="worker"}}[1m])"#), 40)),
        [r#"{env="prod", service_name="worker"} 3"#]
    );
    assert_eq!(instant(&fixture, &format!(r#"{two} or count_over_time({{service_name="packed"}}[1m])"#), 40).len(), 3);
    // `offset` moves the window back: at 40 s with offset 30 s the minute ends at 10 s.
    assert_eq!(instant(&fixture, r#"sum(count_over_time({service_name="counter"}[1m] offset 30s))"#, 40), ["{} 1"]);
}

#[test]
fn invalid_queries_name_the_position_as_loki() {
    let error = Engine::default()
        .query_range(fixture().store.as_ref(), r#"{app="x"} |= "a" | unknown"#, 0, 1, 1, 10, Direction::Forward)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("parse error at line 1, col 20:"), "{error}");
    let error = oxeye_logql::syntax::parse_expr("sum(\n  rate({a=\"b\"}[5m]) by").unwrap_err().to_string();
    assert!(error.starts_with("parse error at line 2, col"), "{error}");
}
