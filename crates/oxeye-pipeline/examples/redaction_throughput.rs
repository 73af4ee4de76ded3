//! Measures `Redactor::redact_line` throughput on seed-shaped lines, one core.
//!
//! `CARGO_TARGET_DIR=/work/target-pipeline cargo run --release -p oxeye-pipeline --example redaction_throughput`
//!
//! Throughput is reported per CPU second of this process (and as wall-clock throughput), because the shared
//! 2-core development machine is usually busy with other jobs. Measured 2026-11-23 (load average ~11):
//! structlog JSON without secrets ~440 MB/s per CPU second (~960 ns for a 418-byte line), logfmt ~225 MB/s,
//! plain text ~900 MB/s, structlog JSON with a password, a card number and e-mails ~335 MB/s. After session 14's
//! line prefilter (2026-11-25, load average 5.7-8.8): structlog JSON without secrets 1,000-1,500 MB/s, logfmt
//! ~1,000-1,150 MB/s, plain text ~1,150-1,500 MB/s (the CPU clock has 10 ms steps; see BENCHMARKS.md).

use std::hint::black_box;
use std::time::Instant;

use oxeye_pipeline::{RedactionOptions, Redactor};

const LINES: usize = 20_000;
const ROUNDS: usize = 25;

/// structlog JSON lines like the boxoffice app's, without secrets (the `email` field is kept, so lines with it
/// take the e-mail detector's slow path only to keep the value).
fn structlog_line(index: usize) -> String {
    let events = ["ticket_purchased", "events_list", "login_ok", "request_finished", "cache_miss"];
    let email =
        if index.is_multiple_of(4) { format!("\"email\": \"user{index}@example.com\", ") } else { String::new() };
    format!(
        r#"{{{email}"event": "{}", "user_id": {}, "event_id": {}, "tier": "vip", "request_id": "88d89450-{:012x}", "method": "POST", "trace_id": "{:032x}", "endpoint": "ticket-checkout", "ip_address": "127.0.0.1", "path": "/api/events/{}/checkout/", "latency_ms": {}.{}, "level": "info", "logger": "boxoffice.views", "span_id": "{:016x}", "timestamp": "2026-11-23T07:02:{:02}.{:06}Z"}}"#,
        events[index % events.len()],
        index % 97,
        index % 13,
        index * 7919,
        (index as u128) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834,
        index % 13,
        index % 500,
        index % 10,
        (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        index % 60,
        index % 1_000_000,
    )
}

fn logfmt_line(index: usize) -> String {
    format!(
        "ts=2026-11-23T07:02:{:02}Z level=info msg=\"GET /api/events/{}/\" status=200 duration_ms={} trace_id={:032x} user_id={}",
        index % 60,
        index % 13,
        index % 500,
        (index as u128) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834,
        index % 97
    )
}

fn plain_line(index: usize) -> String {
    format!(
        "\"GET /api/events/{}/ HTTP/1.1\" 200 {} [23/Nov/2026 07:02:{:02}] handled by worker {} in {} ms",
        index % 13,
        5000 + index % 700,
        index % 60,
        index % 8,
        index % 500
    )
}

fn secret_line(index: usize) -> String {
    format!(
        r#"{{"email": "ann{index}@example.com", "password": "s3cr3t-{index}", "card_number": "4111111111111111", "message": "declined for ann{index}@example.com", "event": "checkout_failed", "request_id": "88d89450-{:012x}", "trace_id": "{:032x}", "timestamp": "2026-11-23T07:02:59.820140Z"}}"#,
        index * 7919,
        (index as u128) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834,
    )
}

/// CPU time this process has used, from `/proc/self/stat` (utime + stime, in clock ticks of 10 ms), so the
/// figure stays meaningful on a machine shared with other jobs; `None` off Linux.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user_ticks: f64 = fields.get(11)?.parse().ok()?;
    let system_ticks: f64 = fields.get(12)?.parse().ok()?;
    Some((user_ticks + system_ticks) / 100.0)
}

fn measure(redactor: &Redactor, name: &str, lines: &[String]) {
    let bytes: usize = lines.iter().map(String::len).sum();
    let mut changed = 0usize;
    let cpu_started = process_cpu_seconds();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        for line in lines {
            if matches!(black_box(redactor.redact_line(black_box(line))), std::borrow::Cow::Owned(_)) {
                changed += 1;
            }
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu_started, process_cpu_seconds()) {
        (Some(before), Some(after)) if after > before => after - before,
        _ => wall_seconds,
    };
    let total_bytes = (bytes * ROUNDS) as f64;
    println!(
        "{name:<28} {:>7.1} MB/s per CPU second ({:>7.1} MB/s wall)  {:>6.0} ns/line  avg {:>4} B/line  changed {:>6}/{}",
        total_bytes / cpu_seconds / 1e6,
        total_bytes / wall_seconds / 1e6,
        cpu_seconds * 1e9 / (lines.len() * ROUNDS) as f64,
        bytes / lines.len(),
        changed,
        lines.len() * ROUNDS
    );
}

fn main() {
    let redactor = match Redactor::new(RedactionOptions::default()) {
        Ok(redactor) => redactor,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    };
    let structlog: Vec<String> = (0..LINES).map(structlog_line).collect();
    let logfmt: Vec<String> = (0..LINES).map(logfmt_line).collect();
    let plain: Vec<String> = (0..LINES).map(plain_line).collect();
    let secrets: Vec<String> = (0..LINES).map(secret_line).collect();
    if std::env::var_os("SHOW_CHANGED").is_some() {
        for line in structlog.iter().chain(&logfmt).chain(&plain) {
            if let std::borrow::Cow::Owned(redacted) = redactor.redact_line(line) {
                println!("{line}\n  -> {redacted}");
            }
        }
        return;
    }
    measure(&redactor, "structlog json, no secret", &structlog);
    measure(&redactor, "logfmt, no secret", &logfmt);
    measure(&redactor, "plain text, no secret", &plain);
    measure(&redactor, "structlog json, secrets", &secrets);
}
