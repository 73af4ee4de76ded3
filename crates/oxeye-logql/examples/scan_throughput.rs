//! Scan throughput of LogQL over the log store: builds a corpus of seed-shaped structlog JSON lines
//! (request ids, trace ids, user ids) spread over the last 24 hours in a temporary store, flushes it to
//! chunk files, then times queries over the whole 24 h:
//!
//! - `count_over_time` and `bytes_over_time` over every stream (every chunk read),
//! - a needle search for one trace id (`|= "<trace id>"`, bloom filters skip chunks),
//! - "the last 100 lines containing a term" (`direction=backward`, `limit=100`),
//! - a line filter with a common term over every line,
//! - `| json` on every line: grouped `by` a label (only the labels the query reads are extracted, as
//!   Loki's parser hints do), also past `drop __error__` as Grafana's Logs Drilldown asks, and ungrouped
//!   over one stream (every label extracted per entry).
//!
//! Scan speed is raw (uncompressed) line bytes in the window divided by the query's CPU time (the main
//! thread's, which runs the query: the engine runs a query on one thread), so it reads per core. With
//! several runs of each query, the speed is that of the run with the least CPU time.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-logql cargo run --release -p oxeye-logql --example scan_throughput -- [MiB of raw lines, default 512] \
//!     [runs of each query, default 1] [only queries whose label contains this text]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use oxeye_logql::field_columns::LineFieldColumns;
use oxeye_logql::{Direction, Engine, QueryResult};
use oxeye_logstore::{LogStore, LogStoreOptions};
use oxeye_model::logs::{LogEntry, LogStream, LogWriter};
use oxeye_model::{Label, Labels};

#[path = "common/lines.rs"]
mod lines;

use lines::{Random, line, logfmt_line};

const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;

/// CPU time of the main thread (which runs every query) in seconds, in nanoseconds from
/// `/proc/thread-self/schedstat` (its first field); else the process's user + system time from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    if let Some(nanoseconds) = schedstat.split_whitespace().next().and_then(|field| field.parse::<u64>().ok()) {
        return nanoseconds as f64 / 1e9;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A corpus of lines spread evenly over the 24 h from `start_ns`, in 4 streams (`service_name` x
/// `env="prod"`), each entry with its trace id as structured metadata, pushed through the store's write path
/// and flushed into chunk files of a temporary store.
struct Corpus {
    store: std::sync::Arc<LogStore>,
    /// Raw line bytes.
    raw_bytes: u64,
    /// The trace id of a line a third of the way through.
    needle: String,
    _dir: tempfile::TempDir,
}

impl Corpus {
    fn build(
        name: &str,
        target_bytes: u64,
        start_ns: i64,
        render: fn(&mut Random, &str) -> (String, String),
    ) -> Corpus {
        let dir = tempfile::tempdir().unwrap();
        let mut options = LogStoreOptions::new(dir.path());
        options.background_maintenance = false;
        options.unordered_window_ms = 2 * 86_400_000;
        // Field columns of `| json` or `| logfmt`, whichever reads a chunk: the default names, none with
        // `FIELD_COLUMNS=0` (for A/B runs), or the names listed, `FIELD_COLUMNS=level,path`.
        options.line_fields = match std::env::var("FIELD_COLUMNS").ok().as_deref() {
            None => Some(std::sync::Arc::new(LineFieldColumns::default())),
            Some("0") => None,
            Some(names) => Some(std::sync::Arc::new(LineFieldColumns::new(names.split(',')))),
        };
        let store = LogStore::open(options).unwrap();
        let services = ["boxoffice", "worker", "notifier", "gateway"];
        // The line count, from the average size of lines drawn from a copy of the generator.
        let mut sample = Random(0x9e37_79b9_7f4a_7c15);
        let average_line =
            (0..1000).map(|index| render(&mut sample, services[index % 4]).0.len() as u64).sum::<u64>() / 1000;
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let total_lines = target_bytes / average_line;
        let step_ns = DAY / total_lines as i64;
        let (mut raw_bytes, mut lines) = (0u64, 0u64);
        let mut needle = String::new();
        let build_started = Instant::now();
        let mut batch: Vec<LogStream> = services
            .iter()
            .map(|service| LogStream {
                labels: Labels::from_pairs([("service_name", *service), ("env", "prod")]),
                entries: Vec::new(),
            })
            .collect();
        while raw_bytes < target_bytes && lines < total_lines {
            let index = (lines % services.len() as u64) as usize;
            let (text, trace) = render(&mut random, services[index]);
            if lines == total_lines / 3 {
                needle = trace.clone();
            }
            raw_bytes += text.len() as u64;
            let mut entry = LogEntry::new(start_ns + lines as i64 * step_ns, text);
            entry.structured_metadata.push(Label { name: "trace_id".into(), value: trace });
            batch[index].entries.push(entry);
            lines += 1;
            if lines % 20_000 == 0 {
                let full = std::mem::take(&mut batch);
                batch = full
                    .iter()
                    .map(|stream| LogStream { labels: stream.labels.clone(), entries: Vec::new() })
                    .collect();
                store.push(full).unwrap();
            }
        }
        store.push(batch).unwrap();
        store.flush(true).unwrap();
        let stats = store.stats();
        println!(
            "{name} corpus: {lines} lines, {:.1} MiB raw, {} chunks in {} files ({:.1} MiB), built in {:.1} s",
            raw_bytes as f64 / 1048576.0,
            stats.chunks,
            stats.chunk_files,
            stats.chunk_file_bytes as f64 / 1048576.0,
            build_started.elapsed().as_secs_f64()
        );
        Corpus { store, raw_bytes, needle, _dir: dir }
    }
}

/// Runs the queries whose label contains `filter`, each `repeats` times in a row.
struct Timer {
    raw_bytes: u64,
    repeats: usize,
    filter: String,
}

impl Timer {
    /// Whether any of the queries labelled `labels` runs.
    fn runs_any(&self, labels: &[&str]) -> bool {
        labels.iter().any(|label| label.contains(self.filter.as_str()))
    }

    /// Runs `run` and prints the result's size, wall and CPU time of every run, and the speed of the run
    /// with the least CPU time.
    fn timed(&self, label: &str, run: impl Fn() -> QueryResult) {
        if !label.contains(self.filter.as_str()) {
            return;
        }
        let (mut best_cpu, mut best_wall, mut cpus, mut size) = (f64::INFINITY, 0.0, Vec::new(), String::new());
        for _ in 0..self.repeats.max(1) {
            let (cpu_before, wall_before) = (cpu_seconds(), Instant::now());
            let result = run();
            let (cpu, wall) = (cpu_seconds() - cpu_before, wall_before.elapsed().as_secs_f64());
            size = match &result {
                QueryResult::Streams(streams) => {
                    format!("{} lines", streams.iter().map(|stream| stream.entries.len()).sum::<usize>())
                }
                QueryResult::Matrix(series) | QueryResult::Vector(series) => format!("{} series", series.len()),
                QueryResult::Scalar(points) => format!("{} points", points.len()),
            };
            cpus.push(format!("{cpu:.3}"));
            if cpu < best_cpu {
                (best_cpu, best_wall) = (cpu, wall);
            }
        }
        let gigabytes = self.raw_bytes as f64 / 1e9;
        println!(
            "{label:<60} {size:>11}  wall {best_wall:>7.3} s  cpu {best_cpu:>6.3} s  {:>6.2} GB/s per CPU-s  {:>7.2} GB/s wall  (cpu s: {})",
            if best_cpu > 0.0 { gigabytes / best_cpu } else { f64::INFINITY },
            gigabytes / best_wall,
            cpus.join(", ")
        );
    }
}

fn main() {
    let mebibytes: u64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(512);
    let repeats: usize = std::env::args().nth(2).and_then(|text| text.parse().ok()).unwrap_or(1);
    let filter = std::env::args().nth(3).unwrap_or_default();
    let target_bytes = mebibytes << 20;
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let start_ns = now_ns - DAY;
    let corpus = Corpus::build("JSON", target_bytes, start_ns, line);
    let (store, raw_bytes, needle): (&LogStore, u64, String) = (&corpus.store, corpus.raw_bytes, corpus.needle.clone());
    let engine = Engine::default();
    let timer = Timer { raw_bytes, repeats, filter };
    let end_ns = now_ns + SECOND;
    let reader = store;
    // A metric query over the 24 h at 10-minute steps.
    let every_10m = |query: &str| {
        engine
            .query_range(reader, query, start_ns + 600 * SECOND, end_ns, 600 * SECOND, 100, Direction::Backward)
            .unwrap()
    };
    timer.timed("count_over_time, all streams, 24h", || {
        every_10m(r#"sum by (service_name) (count_over_time({env="prod"}[10m]))"#)
    });
    timer.timed("bytes_over_time, all streams, 24h", || {
        every_10m(r#"sum by (service_name) (bytes_over_time({env="prod"}[10m]))"#)
    });
    timer.timed("count_over_time |= \"checkout\", 24h", || {
        every_10m(r#"sum(count_over_time({env="prod"} |= "checkout" [10m]))"#)
    });
    let needle_query = format!(r#"{{env="prod"}} |= "{needle}""#);
    timer.timed("needle: one trace id, 24h, limit 100", || {
        engine.query_range(reader, &needle_query, start_ns, end_ns, SECOND, 100, Direction::Backward).unwrap()
    });
    timer.timed("last 100 lines |= \"checkout\", 24h", || {
        engine
            .query_range(reader, r#"{env="prod"} |= "checkout""#, start_ns, end_ns, SECOND, 100, Direction::Backward)
            .unwrap()
    });
    timer.timed("last 100 lines |= \"checkout\" | json, 24h", || {
        engine
            .query_range(
                reader,
                r#"{env="prod"} |= "checkout" | json | status_code >= 500"#,
                start_ns,
                end_ns,
                SECOND,
                100,
                Direction::Backward,
            )
            .unwrap()
    });
    timer.timed("sum by (level) (count_over_time(| json)), 24h", || {
        every_10m(r#"sum by (level) (count_over_time({env="prod"} | json [10m]))"#)
    });
    // The shape Grafana's Logs Drilldown sends for a field's breakdown.
    timer.timed("sum by (level) (count_over_time(| json | drop __error__))", || {
        every_10m(r#"sum by (level) (count_over_time({env="prod"} | json | drop __error__, __error_details__ [10m]))"#)
    });
    timer.timed("sum by (path) (count_over_time(| json | duration_ms > 1000))", || {
        every_10m(r#"sum by (path) (count_over_time({env="prod"} | json | duration_ms > 1000 [10m]))"#)
    });
    timer.timed("count_over_time(| json) (every label), 24h", || {
        every_10m(r#"count_over_time({env="prod"} | json | user_id < 0 [10m])"#)
    });
    let counters = store.stats();
    println!("chunks read {}, skipped by bloom {}", counters.chunks_read_total, counters.chunks_skipped_total);
    // The same fields in logfmt, read by `| logfmt`, `| pattern` and `| regexp`.
    let logfmt_queries = [
        (
            "sum by (level) (count_over_time(| logfmt)), 24h",
            r#"sum by (level) (count_over_time({env="prod"} | logfmt [10m]))"#,
        ),
        (
            "sum by (path) (count_over_time(| logfmt | duration_ms > 1000))",
            r#"sum by (path) (count_over_time({env="prod"} | logfmt | duration_ms > 1000 [10m]))"#,
        ),
        (
            "count_over_time(| logfmt) (every label), 24h",
            r#"count_over_time({env="prod"} | logfmt | user_id < 0 [10m])"#,
        ),
        (
            "sum by (status) (count_over_time(| pattern)), 24h",
            r#"sum by (status) (count_over_time({env="prod"} | pattern "<_> level=<level> <_> path=<path> status_code=<status> <_>" [10m]))"#,
        ),
        (
            "sum by (status) (count_over_time(| regexp)), 24h",
            r#"sum by (status) (count_over_time({env="prod"} | regexp "status_code=(?P<status>[0-9]+)" [10m]))"#,
        ),
    ];
    if timer.runs_any(&logfmt_queries.map(|(label, _)| label)) {
        let logfmt = Corpus::build("logfmt", target_bytes, start_ns, logfmt_line);
        let timer = Timer { raw_bytes: logfmt.raw_bytes, repeats: timer.repeats, filter: timer.filter.clone() };
        let reader: &LogStore = &logfmt.store;
        for (label, query) in logfmt_queries {
            timer.timed(label, || {
                engine
                    .query_range(reader, query, start_ns + 600 * SECOND, end_ns, 600 * SECOND, 100, Direction::Backward)
                    .unwrap()
            });
        }
        logfmt.store.close().unwrap();
    }
    store.close().unwrap();
}
