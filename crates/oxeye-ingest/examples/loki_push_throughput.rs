//! Measures Loki push JSON decode throughput (`decode_push_json`) on bodies shaped like the logs ingest
//! benchmark's: 1000 structlog JSON lines per body in two streams, so every line is a JSON string full of
//! `\"` escapes (about one every 7 bytes).
//!
//! Run: `cargo run --release -p oxeye-ingest --example loki_push_throughput [bodies] [repeats]`
//! (defaults 100 bodies, 7 repeats). It prints each repeat's MB of lines per CPU-second of this thread and
//! the best of them.

use std::time::Instant;

/// CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`), so that the figure holds on a
/// machine shared with other work; falls back to wall time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanoseconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds / 1e9)
}

/// Deterministic pseudo-random numbers (SplitMix64 steps), so every run decodes the same bodies.
struct Random(u64);

impl Random {
    /// A number below `bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (mixed ^ (mixed >> 31)) % bound
    }
}

/// One structlog-like line of a web request (about 380 bytes, 15 fields).
fn structlog_line(random: &mut Random, timestamp_ns: i64) -> String {
    let events = ["request_started", "cache_lookup", "db_query", "request_finished", "login_succeeded"];
    let paths = ["/api/events/", "/api/events/17/", "/api/events/3/checkout/", "/api/auth/login/", "/healthz"];
    let levels = ["info", "info", "debug", "warning", "error"];
    format!(
        r#"{{"event": "{}", "duration_ms": {}.{}, "request_id": "{:08x}-{:012x}", "method": "GET", "trace_id": "{:016x}{:016x}", "user_id": "{}", "endpoint": "event-list", "ip_address": "10.0.{}.{}", "path": "{}", "level": "{}", "logger": "boxoffice.views", "span_id": "{:016x}", "timestamp": "2026-11-25T01:{:02}:{:02}.{:06}Z"}}"#,
        events[random.below(5) as usize],
        random.below(300),
        random.below(10),
        random.below(1 << 32),
        random.below(1 << 48),
        random.below(u64::MAX),
        random.below(u64::MAX),
        random.below(5000) + 1,
        random.below(8),
        random.below(250) + 2,
        paths[random.below(5) as usize],
        levels[random.below(5) as usize],
        random.below(u64::MAX),
        timestamp_ns / 60_000_000_000 % 60,
        timestamp_ns / 1_000_000_000 % 60,
        timestamp_ns / 1000 % 1_000_000,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let body_count: usize = arguments.next().map_or(Ok(100), |text| text.parse())?;
    let repeats: usize = arguments.next().map_or(Ok(7), |text| text.parse())?;
    let lines_per_body = 1000;
    let mut random = Random(1);
    let mut timestamp_ns: i64 = 1_795_000_000_000_000_000;
    let mut line_bytes = 0usize;
    let bodies: Vec<Vec<u8>> = (0..body_count)
        .map(|_| {
            let mut values: [Vec<serde_json::Value>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..lines_per_body {
                timestamp_ns += i64::try_from(random.below(2_000_000)).unwrap_or(0);
                let line = structlog_line(&mut random, timestamp_ns);
                line_bytes += line.len();
                values[usize::from(random.below(4) == 0)].push(serde_json::json!([timestamp_ns.to_string(), line]));
            }
            let [views, tasks] = values;
            let body = serde_json::json!({"streams": [
                {"stream": {"service_name": "boxoffice", "deployment_environment": "production"}, "values": views},
                {"stream": {"service_name": "boxoffice-worker", "deployment_environment": "production"}, "values": tasks},
            ]});
            serde_json::to_vec(&body).unwrap_or_default()
        })
        .collect();
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "{body_count} bodies of {lines_per_body} lines: {:.1} MB of lines, {:.1} MB of bodies",
        line_bytes as f64 / 1e6,
        body_bytes as f64 / 1e6
    );
    // A digest of everything decoded (labels, timestamps, lines, metadata), to compare builds.
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for body in &bodies {
        std::hash::Hash::hash(&format!("{:?}", oxeye_ingest::loki_push::decode_push_json(body)?), &mut digest);
    }
    println!("digest of the decoded streams: {:016x}", std::hash::Hasher::finish(&digest));
    let mut best = 0.0f64;
    for repeat in 0..repeats {
        let wall = Instant::now();
        let cpu_start = cpu_seconds();
        let mut entries = 0usize;
        for body in &bodies {
            let streams = oxeye_ingest::loki_push::decode_push_json(body)?;
            entries += streams.iter().map(|stream| stream.entries.len()).sum::<usize>();
        }
        let wall_seconds = wall.elapsed().as_secs_f64();
        let cpu = match (cpu_start, cpu_seconds()) {
            (Some(start), Some(end)) => end - start,
            _ => wall_seconds,
        };
        let rate = line_bytes as f64 / 1e6 / cpu.max(1e-9);
        best = best.max(rate);
        println!(
            "repeat {repeat}: {entries} entries, {rate:.0} MB of lines/s per CPU-second ({:.0} MB/s wall)",
            line_bytes as f64 / 1e6 / wall_seconds
        );
    }
    println!("decode_push_json: best {best:.0} MB of lines/s per CPU-second");
    Ok(())
}
