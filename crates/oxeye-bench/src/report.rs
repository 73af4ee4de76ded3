//! The results table: one column per server, oxeye's ratios to VictoriaMetrics against the goals.

use std::fmt::Write;

use crate::run::RunResult;
use crate::server::ServerKind;

const MIB: f64 = 1024.0 * 1024.0;

/// A table row: its name, how to read the figure, how to print it, and the goal for oxeye / VM.
type Row = (&'static str, fn(&RunResult) -> f64, fn(f64) -> String, &'static str);

/// A markdown table of `results` (any order, any subset of servers).
pub fn table(results: &[RunResult]) -> String {
    let find = |kind: ServerKind| results.iter().find(|result| result.server == kind);
    // Columns in the order given; the ratio column compares the first oxeye column with VictoriaMetrics.
    let columns: Vec<&RunResult> = results.iter().collect();
    let oxeye = find(ServerKind::Oxeye);
    let victoria = find(ServerKind::VictoriaMetrics);
    let mut out = String::new();
    if let Some(first) = columns.first() {
        let workload = &first.workload;
        let _ = writeln!(
            out,
            "Workload: {} active series on {} targets x {} rounds = {} samples, {} samples/request, {} connections; server on CPU {}.\n",
            workload.active_series,
            workload.targets,
            workload.rounds,
            workload.total_samples,
            workload.samples_per_request,
            workload.concurrency,
            first.server_cpus.as_deref().unwrap_or("any"),
        );
    }
    let _ = write!(out, "| measure |");
    for result in &columns {
        let name = if result.label.is_empty() { result.server.name() } else { result.label.as_str() };
        let _ = write!(out, " {name} |");
    }
    let _ = writeln!(out, " oxeye / VM | goal |");
    let _ = write!(out, "|---|");
    for _ in &columns {
        let _ = write!(out, "---:|");
    }
    let _ = writeln!(out, "---:|---|");

    let rows: [Row; 16] = [
        (
            "ingest, samples/s (wall; server pinned to 1 core)",
            |r| r.ingest.samples_per_second,
            |v| format!("{v:.0}"),
            "≥ 2x and > 1,000,000",
        ),
        ("ingest, samples per server CPU-second", |r| r.samples_per_cpu_second, |v| format!("{v:.0}"), "≥ 2x"),
        ("server CPU-s per million samples", |r| r.cpu_seconds_per_million_samples, |v| format!("{v:.2}"), "≤ 0.5x"),
        (
            "peak RSS during ingest, MiB (VmHWM)",
            |r| r.memory_after_ingest.peak_rss_bytes as f64 / MIB,
            |v| format!("{v:.0}"),
            "≤ 0.5x",
        ),
        ("RSS after ingest, MiB", |r| r.memory_after_ingest.rss_bytes as f64 / MIB, |v| format!("{v:.0}"), ""),
        ("RSS per active series, bytes", |r| r.rss_bytes_per_series, |v| format!("{v:.0}"), ""),
        (
            "peak RSS of restarted process (replay + cut), MiB",
            |r| r.memory_after_cut.peak_rss_bytes as f64 / MIB,
            |v| format!("{v:.0}"),
            "",
        ),
        ("bytes per sample on disk (persisted)", |r| r.disk.bytes_per_sample, |v| format!("{v:.3}"), "≤ 0.5x"),
        (
            "data dir after graceful stop, MiB",
            |r| r.data_dir_after_stop.values().map(|size| size.apparent_bytes).sum::<u64>() as f64 / MIB,
            |v| format!("{v:.1}"),
            "",
        ),
        ("ready on empty data dir, ms", |r| r.startup_empty_ms, |v| format!("{v:.0}"), "≤ 100 ms"),
        ("ready after kill -9, ms", |r| r.startup_after_kill_ms, |v| format!("{v:.0}"), "seconds at 1M series"),
        (
            "WAL after the last checkpoint at the kill, MiB (oxeye)",
            |r| r.wal_at_kill.as_ref().map_or(0, |wal| wal.segment_bytes_after_checkpoint) as f64 / MIB,
            |v| format!("{v:.1}"),
            "",
        ),
        (
            "WAL segments after the last checkpoint at the kill (oxeye)",
            |r| r.wal_at_kill.as_ref().map_or(0, |wal| wal.segments_after_checkpoint) as f64,
            |v| format!("{v:.0}"),
            "",
        ),
        ("ready on full data dir (after SIGTERM), ms", |r| r.startup_full_ms, |v| format!("{v:.0}"), ""),
        ("graceful shutdown, ms", |r| r.shutdown_ms, |v| format!("{v:.0}"), ""),
        ("block cut / flush CPU-s", |r| r.disk.cpu_seconds, |v| format!("{v:.2}"), ""),
    ];
    for (name, getter, format, goal) in rows {
        let _ = write!(out, "| {name} |");
        for result in &columns {
            let _ = write!(out, " {} |", format(getter(result)));
        }
        let ratio = match (oxeye, victoria) {
            (Some(oxeye), Some(victoria)) if getter(victoria) != 0.0 => {
                format!("{:.2}x", getter(oxeye) / getter(victoria))
            }
            _ => "—".to_string(),
        };
        let _ = writeln!(out, " {ratio} | {goal} |");
    }
    let _ = write!(out, "| failed requests / checks ok |");
    for result in &columns {
        let checks = [&result.check_after_ingest, &result.check_after_kill, &result.check_after_full_start];
        let passed = checks.iter().filter(|check| check.ok).count();
        let _ = write!(out, " {} / {passed} of 3 |", result.ingest.requests_failed);
    }
    let _ = writeln!(out, " | |");
    let _ = write!(out, "| version |");
    for result in &columns {
        let _ = write!(out, " {} |", result.version.replace('|', "/"));
    }
    let _ = writeln!(out, " | |");
    out
}
