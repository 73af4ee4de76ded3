//! TraceQL search and metrics latency over seed-shaped traces.
//!
//! Stores `--rate` synthetic traces per second (a Django request with 2–8 child spans, 2% errors, 1% slower
//! than 2 s) over `--hours` ending now, then times each query `--runs` times over the last hour and over the
//! whole range, printing the median and the worst.
//!
//! - Default: the in-memory store of `oxeye_traceql::testing`, which keeps decoded traces: the figures are
//!   the engine's cost (hint checks, evaluation, result building) without reading blocks.
//! - `--disk`: oxeye's trace store (`oxeye-tracestore`) in a temporary directory, a block cut every 5
//!   minutes of data (its default head age), so searches read and decode blocks as `oxeye serve` does.
//!
//! ```text
//! cargo run --release -p oxeye-traceql --example search_latency -- --hours 24 --rate 10 --runs 5 --disk
//! ```

use std::time::Instant;

use oxeye_model::traces::{TraceReader, TraceWriter};
use oxeye_traceql::metrics::{MetricsRange, query_range};
use oxeye_traceql::search::{SearchQuery, SearchRequest, search};
use oxeye_traceql::testing::{MemoryTraceStore, synthetic_trace};

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SECOND;

fn argument(name: &str, default: u64) -> u64 {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|index| arguments.get(index + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn time_runs(runs: u64, mut work: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut timings = Vec::new();
    let mut found = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        found = work();
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    timings.sort_by(f64::total_cmp);
    (timings[timings.len() / 2], timings[timings.len() - 1], found)
}

fn main() {
    let hours = argument("--hours", 1);
    let rate = argument("--rate", 10);
    let runs = argument("--runs", 5);
    let on_disk = std::env::args().any(|argument| argument == "--disk");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let end = now * SECOND;
    let start = end - hours * HOUR;
    let trace_count = hours * 3600 * rate;
    let directory = tempfile::tempdir().expect("temporary directory");
    let memory = MemoryTraceStore::default();
    let disk = if on_disk {
        Some(
            oxeye_tracestore::TraceStore::open(oxeye_tracestore::TraceStoreOptions::new(directory.path()))
                .expect("store opens"),
        )
    } else {
        None
    };
    let started = Instant::now();
    let traces_per_block = 300 * rate;
    let mut batch = Vec::new();
    let mut spans = 0usize;
    for number in 0..trace_count {
        let trace = synthetic_trace(number, start + number * SECOND / rate);
        spans += trace.spans().count();
        match &disk {
            Some(store) => {
                batch.extend(trace.resource_spans);
                if batch.len() >= 1_000 || (number + 1) % traces_per_block == 0 || number + 1 == trace_count {
                    store.push(std::mem::take(&mut batch)).expect("push");
                }
                if (number + 1) % traces_per_block == 0 {
                    store.cut_block().expect("cut block");
                }
            }
            None => memory.insert(trace),
        }
    }
    let store: &dyn TraceReader = match &disk {
        Some(store) => store.as_ref(),
        None => &memory,
    };
    println!(
        "stored {trace_count} traces, {spans} spans over {hours} h in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        if on_disk { "oxeye-tracestore blocks" } else { "in memory" }
    );

    let queries = [
        r#"{ resource.service.name = "boxoffice" && status = error }"#,
        "{ duration > 2s }",
        r#"{ span.http.route = "/tickets/checkout/" } >> { name = "SELECT events" }"#,
        "{ } | count() > 8",
        r#"{ span.request_id = "req-none" }"#,
        r#"{ span.http.route =~ "/tickets/.*" && span.http.status_code >= 500 }"#,
    ];
    let windows = [("last 1h", end - HOUR), ("whole range", start)];
    println!("| query | window | limit | traces found | median ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for query_text in queries {
        let Ok(query) = oxeye_traceql::parse(query_text) else {
            println!("cannot parse {query_text}");
            continue;
        };
        for (window_name, window_start) in windows {
            if window_start == start && hours == 1 && window_name == "whole range" {
                continue;
            }
            let request = SearchRequest {
                query: SearchQuery::TraceQl(Box::new(query.clone())),
                start_unix_nano: window_start,
                end_unix_nano: end,
                min_duration_nanos: None,
                max_duration_nanos: None,
                limit: 20,
                spans_per_spanset: 3,
            };
            let (median, worst, found) =
                time_runs(runs, || search(store, &request).map(|response| response.traces.len()).unwrap_or(0));
            println!(
                "| `{}` | {window_name} | 20 | {found} | {median:.1} | {worst:.1} |",
                query_text.replace('|', "\\|")
            );
        }
    }
    for metrics_text in
        ["{ } | rate() by (resource.service.name)", "{ kind = server } | quantile_over_time(duration, .5, .9, .99)"]
    {
        let Ok(query) = oxeye_traceql::parse(metrics_text) else {
            continue;
        };
        for (window_name, window_start) in windows {
            if window_start == start && hours == 1 && window_name == "whole range" {
                continue;
            }
            let range = MetricsRange {
                start_unix_nano: window_start,
                end_unix_nano: end,
                step_nanos: MetricsRange::default_step_nanos(window_start, end, 100),
            };
            let (median, worst, found) =
                time_runs(runs, || query_range(store, &query, range).map(|series| series.len()).unwrap_or(0));
            println!(
                "| `{}` (metrics, 100 steps) | {window_name} | - | {found} series | {median:.1} | {worst:.1} |",
                metrics_text.replace('|', "\\|")
            );
        }
    }
}
