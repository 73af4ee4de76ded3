//! CPU per line of LogQL pipelines alone, without a store or decompression: runs each pipeline over the
//! same seed-shaped structlog JSON or logfmt lines as `scan_throughput` (through `Pipeline::process_grouped_key`, as a
//! range aggregation grouped by `level` does) and prints nanoseconds of the thread's CPU per line, the least of
//! several runs. Steady enough under load to count instructions with callgrind:
//!
//! ```text
//! cargo build --release -p oxeye-logql --example pipeline_throughput
//! pipeline_throughput [lines, default 200000] [runs, default 5] [only the case of this index]
//! valgrind --tool=callgrind --toggle-collect='*process_grouped_key*' pipeline_throughput 20000 1 0
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/lines.rs"]
mod lines;

use lines::{Random, line, logfmt_line};
use oxeye_logql::pipeline::{ParserHints, Pipeline};
use oxeye_logql::syntax::{Expr, parse_expr};
use oxeye_model::logs::LogEntryRef;
use oxeye_model::{LabelRef, Labels};

/// CPU time of this thread in seconds (nanoseconds from `/proc/thread-self/schedstat`).
fn cpu_seconds() -> f64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    schedstat.split_whitespace().next().and_then(|field| field.parse::<u64>().ok()).unwrap_or(0) as f64 / 1e9
}

fn main() {
    let argument = |index: usize| std::env::args().nth(index).and_then(|text| text.parse::<usize>().ok());
    let (count, runs, only) = (argument(1).unwrap_or(200_000), argument(2).unwrap_or(5), argument(3));
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let json_lines: Vec<String> =
        (0..count).map(|index| line(&mut random, ["boxoffice", "worker"][index % 2]).0).collect();
    let logfmt_lines: Vec<String> =
        (0..count).map(|index| logfmt_line(&mut random, ["boxoffice", "worker"][index % 2]).0).collect();
    let stream = Labels::from_pairs([("service_name", "boxoffice"), ("env", "prod")]);
    let metadata = [LabelRef { name: "trace_id", value: "0123456789abcdef0123456789abcdef" }];
    let group_by = vec!["level".to_string()];
    // Pipelines with the parser hints their metric queries get (`None`: every label extracted).
    let cases: [(&str, Option<&[&str]>); 7] = [
        (r#"{env="prod"} | json"#, Some(&["level"])),
        (r#"{env="prod"} | json | duration_ms > 1000"#, Some(&["duration_ms", "path"])),
        (r#"{env="prod"} | json | user_id < 0"#, None),
        (r#"{env="prod"} | json"#, None),
        (r#"{env="prod"} | logfmt"#, Some(&["level"])),
        (r#"{env="prod"} | logfmt | duration_ms > 1000"#, Some(&["duration_ms", "path"])),
        (r#"{env="prod"} | logfmt | user_id < 0"#, None),
    ];
    for (index, (query, hinted)) in cases.into_iter().enumerate() {
        if only.is_some_and(|only| only != index) {
            continue;
        }
        let Expr::Log(log) = parse_expr(query).unwrap() else { panic!("{query} is no log query") };
        let hints = match hinted {
            Some(names) => ParserHints::Only(names.iter().map(|name| name.to_string()).collect()),
            None => ParserHints::All,
        };
        let label = format!("{query} ({})", hinted.map_or("every label".to_string(), |names| names.join(", ")));
        let mut pipeline = Pipeline::with_hints(&log.pipeline, hints).unwrap();
        let lines = if query.contains("logfmt") { &logfmt_lines } else { &json_lines };
        let mut group_key = Vec::new();
        let (mut least_cpu, mut kept) = (f64::INFINITY, 0);
        for _ in 0..runs.max(1) {
            let started = cpu_seconds();
            kept = 0;
            for line in lines {
                let entry = LogEntryRef { timestamp_ns: 0, line, structured_metadata: &metadata };
                kept += usize::from(pipeline.process_grouped_key(&stream, entry, &group_by, &mut group_key).is_some());
            }
            least_cpu = least_cpu.min(cpu_seconds() - started);
        }
        println!("{label:<70} {:>7.1} ns per line  ({kept} of {count} kept)", least_cpu * 1e9 / count as f64);
    }
}
